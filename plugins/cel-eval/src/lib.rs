//! `cel-eval`: the host's CEL sandbox.
//!
//! The `cel` crate has no cost limit and no cancellation, so an expression
//! with comprehensions (`map`, `filter`, `all`, `exists`, nested) can run
//! and allocate without bound. The host therefore evaluates such
//! expressions here, in a fresh instance of this component per evaluation:
//! the epoch deadline stops it, the memory cap refuses its allocations, and
//! dropping the instance gives every byte back. Expressions that cannot loop
//! stay native in the host, where they are cheaper.
//!
//! The logic ([`evaluate`]) is plain Rust, so it runs natively too; the
//! component export lives in `component`, built only for wasm32.

use cel::{Context, Env, Program};
use std::sync::Arc;

/// The environment: the standard library and the strings extension, as in
/// the host (`crates/policy/src/cel.rs`).
fn env() -> Result<Env, String> {
    let mut env = Env::stdlib();
    env.add_extension(cel::extensions::strings)
        .map_err(|e| e.to_string())?;
    Ok(env)
}

/// Compiles `expression`, binds `variables` (name, JSON text) and answers
/// its boolean result.
pub fn evaluate(expression: &str, variables: &[(String, String)]) -> Result<bool, String> {
    let env = Arc::new(env()?);
    let program: Program = env
        .compile(expression)
        .map_err(|e| e.to_string().replace('\n', "; "))?;
    let mut context = Context::with_env(env);
    for (name, text) in variables {
        let json: serde_json::Value =
            serde_json::from_str(text).map_err(|e| format!("`{name}` is not JSON: {e}"))?;
        let value = cel::to_value(json).map_err(|e| e.to_string())?;
        context.add_variable_from_value(name.as_str(), value);
    }
    match program.execute(&context) {
        Ok(cel::Value::Bool(b)) => Ok(b),
        Ok(other) => Err(format!("returned {other:?}, not a bool")),
        Err(error) => Err(error.to_string()),
    }
}

#[cfg(target_arch = "wasm32")]
mod component {
    //! The component's export: the `evaluator` world of `wit/cel`.
    wit_bindgen::generate!({
        path: "../../wit/cel",
        world: "evaluator",
    });

    struct CelEval;

    impl Guest for CelEval {
        fn evaluate(expression: String, variables: Vec<(String, String)>) -> Result<bool, String> {
            super::evaluate(&expression, &variables)
        }
    }

    export!(CelEval);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn evaluates_comprehensions_over_json() {
        let object = r#"{"items": [1, 2, 3]}"#.to_owned();
        let vars = [("object".to_owned(), object)];
        assert_eq!(evaluate("object.items.all(x, x > 0)", &vars), Ok(true));
        assert_eq!(evaluate("object.items.exists(x, x > 2)", &vars), Ok(true));
        assert_eq!(
            evaluate(
                "object.items.map(x, x + x)[2] == 6u && 'a-b'.split('-').size() == 2",
                &vars
            ),
            Ok(true)
        );
        let err = evaluate("object.items.map(x, x)", &vars).unwrap_err();
        assert!(err.contains("not a bool"), "{err}");
    }
}
