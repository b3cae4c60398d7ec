//! CEL policies: expressions compiled once at load, checked against what
//! their decision provides, and run with bounded input, and, when they can
//! loop, under a deadline and a memory cap that are enforced.
//!
//! The `cel` crate finds an unknown variable or function only when an
//! expression runs, has no type checker, and has neither a cost limit nor
//! cancellation. So Plumbline checks every expression at load: against its
//! decision's variables and the functions the environment declares, and for
//! its result type where the syntax tree shows it (`1 + 1` is an int, never
//! a bool, and is refused then). At run time it caps the size of the input.
//!
//! An expression whose cost the input's size bounds (no comprehension, only
//! functions that are linear in their arguments) runs natively, in the
//! caller. Any other (comprehensions: `all`, `exists`, `map`, `filter`,
//! nested; functions such as `replace` whose output can grow as the product
//! of their inputs) runs in the CEL sandbox ([`super::cel_sandbox`]), a Wasm
//! component in a fresh instance per evaluation: the epoch deadline stops
//! it, the memory cap refuses what it asks beyond, and its memory comes
//! back when it ends. A runaway costs its own evaluation and nothing else.

use super::Decision;
use super::cel_sandbox::Evaluation;
use super::error::PolicyError;
use cel::common::ast::{EntryExpr, Expr, IdedExpr, LiteralValue};
use cel::{Context, Env, Program};
use serde::{Deserialize, Serialize};
use serde_json::Value as Json;
use std::collections::BTreeSet;
use std::path::PathBuf;
use std::sync::{Arc, LazyLock};
use std::time::Duration;

/// A CEL policy as written, inline or in its own file.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct RawCel {
    /// The policy's name, used in every message about it.
    pub name: String,
    /// In a policy file: the decision it is written for, checked against
    /// the chain it is used in.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub decision: Option<Decision>,
    /// The CEL expression; it must evaluate to a bool.
    pub expression: String,
    /// The reason given when the expression is false (gate, schema).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    /// For schema rules: the JSON pointer a violation points at.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub path: Option<String>,
}

/// Bounds on CEL evaluation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CelLimits {
    /// How long an expression that can loop may run (in the sandbox).
    pub deadline: Duration,
    /// The largest input (JSON bytes) an expression is handed.
    pub max_input: usize,
}

impl Default for CelLimits {
    fn default() -> Self {
        CelLimits {
            deadline: Duration::from_millis(50),
            max_input: 1 << 20,
        }
    }
}

/// The CEL environment: the standard library and the strings extension.
static ENV: LazyLock<Arc<Env>> = LazyLock::new(|| {
    let mut env = Env::stdlib();
    env.add_extension(cel::extensions::strings)
        .expect("the strings extension declares nothing twice");
    Arc::new(env)
});

/// The variables an expression of `decision` may use.
pub fn variables(decision: Decision) -> &'static [&'static str] {
    match decision {
        Decision::Match => &["event", "object"],
        Decision::Sanitize => &["object"],
        Decision::Schema => &["schema", "context"],
        Decision::Gate => &["request"],
    }
}

/// A compiled CEL policy. Cheap to clone.
#[derive(Clone)]
pub struct CelPolicy {
    inner: Arc<Inner>,
}

struct Inner {
    name: String,
    expression: String,
    message: Option<String>,
    path: String,
    program: Program,
    decision: Decision,
    /// Whether it can loop, and so runs in the sandbox.
    sandboxed: bool,
    limits: CelLimits,
}

impl std::fmt::Debug for CelPolicy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CelPolicy")
            .field("name", &self.inner.name)
            .field("expression", &self.inner.expression)
            .finish()
    }
}

/// What a CEL policy is made of, as written in a configuration.
#[derive(Debug, Clone)]
pub struct CelSource {
    /// The policy's name, used in every message about it.
    pub name: String,
    /// The CEL expression; it must evaluate to a bool.
    pub expression: String,
    /// The reason given when the expression is false (gate, schema).
    pub message: Option<String>,
    /// For schema rules: the JSON pointer a violation points at.
    pub path: Option<String>,
    /// The file it came from, for messages.
    pub file: Option<PathBuf>,
}

impl CelPolicy {
    /// Compiles and checks an expression for `decision`.
    pub fn compile(
        source: CelSource,
        decision: Decision,
        limits: CelLimits,
    ) -> Result<CelPolicy, PolicyError> {
        let CelSource {
            name,
            expression,
            message,
            path,
            file,
        } = source;
        let program = match ENV.compile(&expression) {
            Ok(program) => program,
            Err(errors) => {
                return Err(PolicyError::CelCompile {
                    policy: name,
                    source_file: file,
                    expression,
                    message: errors.to_string().replace('\n', "; "),
                });
            }
        };
        let mut refs = References::default();
        refs.walk(program.expression(), &mut Vec::new());
        let problem = refs
            .problem(decision)
            .or_else(|| not_a_bool(program.expression(), decision));
        if let Some(message) = problem {
            return Err(PolicyError::CelCheck {
                policy: name,
                source_file: file,
                expression,
                message,
            });
        }
        let sandboxed = refs.can_loop();
        if sandboxed {
            super::cel_sandbox::warm_up();
        }
        Ok(CelPolicy {
            inner: Arc::new(Inner {
                name,
                expression,
                message,
                path: path.unwrap_or_default(),
                program,
                decision,
                sandboxed,
                limits,
            }),
        })
    }

    /// The policy's name.
    pub fn name(&self) -> &str {
        &self.inner.name
    }

    /// The expression's text.
    pub fn expression(&self) -> &str {
        &self.inner.expression
    }

    /// The reason to give when the expression is false.
    pub fn message(&self) -> String {
        self.inner
            .message
            .clone()
            .unwrap_or_else(|| format!("{} ({}) is false", self.inner.name, self.inner.expression))
    }

    /// The JSON pointer a schema violation points at.
    pub fn path(&self) -> &str {
        &self.inner.path
    }

    /// Runs the expression with `variables` (name, JSON text) bound and
    /// answers its boolean result, within the size and time bounds.
    pub fn test(&self, variables: &[(&'static str, &str)]) -> Result<bool, PolicyError> {
        let size: usize = variables.iter().map(|(_, text)| text.len()).sum();
        if size > self.inner.limits.max_input {
            return Err(PolicyError::CelInputTooLarge {
                policy: self.inner.name.clone(),
                expression: self.inner.expression.clone(),
                size,
                limit: self.inner.limits.max_input,
            });
        }
        if self.inner.sandboxed {
            // The sandbox reads the JSON text itself: nothing the
            // expression builds from it is ever allocated in the host.
            return Evaluation {
                policy: &self.inner.name,
                expression: &self.inner.expression,
                decision: self.inner.decision,
                deadline: self.inner.limits.deadline,
            }
            .run(variables);
        }
        let mut parsed = Vec::with_capacity(variables.len());
        for (name, text) in variables {
            let value: Json = serde_json::from_str(text)
                .map_err(|e| self.runtime_error(format!("`{name}` is not JSON: {e}")))?;
            parsed.push((*name, value));
        }
        self.inner
            .evaluate(&parsed)
            .map_err(|m| self.runtime_error(m))
    }

    /// Whether the expression can loop, and so runs in the CEL sandbox.
    pub fn is_sandboxed(&self) -> bool {
        self.inner.sandboxed
    }

    fn runtime_error(&self, message: String) -> PolicyError {
        PolicyError::CelRuntime {
            policy: self.inner.name.clone(),
            expression: self.inner.expression.clone(),
            message,
        }
    }

    /// Evaluates natively with already converted variables, unbounded
    /// (even an expression that can loop): for the benchmarks, which measure
    /// the expression alone against its sandboxed evaluation.
    pub fn evaluate_prepared(&self, context: &Context<'_, '_>) -> Result<bool, String> {
        as_bool(self.inner.program.execute(context))
    }

    /// A context with `variables` bound, for [`CelPolicy::evaluate_prepared`].
    pub fn prepare(variables: &[(&str, &Json)]) -> Result<Context<'static, 'static>, String> {
        let mut context = Context::with_env(Arc::clone(&ENV));
        for (name, value) in variables {
            let value = cel::to_value(value).map_err(|e| e.to_string())?;
            context.add_variable_from_value(*name, value);
        }
        Ok(context)
    }
}

impl Inner {
    fn evaluate(&self, variables: &[(&'static str, Json)]) -> Result<bool, String> {
        let bound: Vec<(&str, &Json)> = variables.iter().map(|(n, v)| (*n, v)).collect();
        let context = CelPolicy::prepare(&bound)?;
        as_bool(self.program.execute(&context))
    }
}

fn as_bool(result: cel::ResolveResult) -> Result<bool, String> {
    match result {
        Ok(cel::Value::Bool(b)) => Ok(b),
        Ok(other) => Err(format!("returned {other:?}, not a bool")),
        Err(error) => Err(error.to_string()),
    }
}

/// What an expression refers to, found by walking its syntax tree.
#[derive(Default)]
struct References {
    free_variables: BTreeSet<String>,
    functions: BTreeSet<String>,
    comprehensions: usize,
}

/// Functions whose cost and result size are bounded by their arguments'
/// sizes (linear, or a regular expression's linear-time match): an
/// expression made of these and of operators, without comprehensions,
/// costs at most its length times its input's size, and runs natively.
/// Anything else (comprehensions, `replace`, `format`, functions added
/// later) runs in the sandbox: a function is trusted only once it is
/// listed here.
const LINEAR_FUNCTIONS: &[&str] = &[
    "size",
    "has",
    "int",
    "uint",
    "double",
    "string",
    "bytes",
    "bool",
    "type",
    "dyn",
    "startsWith",
    "endsWith",
    "contains",
    "matches",
    "lowerAscii",
    "upperAscii",
    "trim",
    "charAt",
    "indexOf",
    "lastIndexOf",
    "substring",
    "split",
    "join",
    "reverse",
];

impl References {
    /// Whether evaluation could cost more than the input's size bounds.
    fn can_loop(&self) -> bool {
        self.comprehensions > 0
            || self
                .functions
                .iter()
                .any(|f| !is_operator(f) && !LINEAR_FUNCTIONS.contains(&f.as_str()))
    }

    fn walk(&mut self, node: &IdedExpr, bound: &mut Vec<String>) {
        match &node.expr {
            Expr::Ident(name) => {
                if !name.starts_with('@') && !bound.contains(name) {
                    self.free_variables.insert(name.clone());
                }
            }
            Expr::Call(call) => {
                self.functions.insert(call.func_name.clone());
                if let Some(target) = &call.target {
                    self.walk(target, bound);
                }
                call.args.iter().for_each(|a| self.walk(a, bound));
            }
            Expr::Comprehension(c) => {
                self.comprehensions += 1;
                self.walk(&c.iter_range, bound);
                self.walk(&c.accu_init, bound);
                let depth = bound.len();
                bound.push(c.iter_var.clone());
                bound.extend(c.iter_var2.clone());
                bound.push(c.accu_var.clone());
                for part in [&c.loop_cond, &c.loop_step, &c.result] {
                    self.walk(part, bound);
                }
                bound.truncate(depth);
            }
            Expr::List(list) => list.elements.iter().for_each(|e| self.walk(e, bound)),
            Expr::Map(map) => map
                .entries
                .iter()
                .for_each(|e| self.walk_entry(&e.expr, bound)),
            Expr::Struct(s) => s
                .entries
                .iter()
                .for_each(|e| self.walk_entry(&e.expr, bound)),
            Expr::Select(select) => self.walk(&select.operand, bound),
            Expr::Literal(_) | Expr::Unspecified => {}
        }
    }

    fn walk_entry(&mut self, entry: &EntryExpr, bound: &mut Vec<String>) {
        match entry {
            EntryExpr::StructField(field) => self.walk(&field.value, bound),
            EntryExpr::MapEntry(entry) => {
                self.walk(&entry.key, bound);
                self.walk(&entry.value, bound);
            }
        }
    }

    /// The first thing the expression uses that `decision` does not provide.
    fn problem(&self, decision: Decision) -> Option<String> {
        let allowed = variables(decision);
        if let Some(unknown) = self
            .free_variables
            .iter()
            .find(|v| !allowed.contains(&v.as_str()) && !is_type_name(v))
        {
            return Some(format!(
                "unknown variable `{unknown}`; a {decision} policy can use {}",
                allowed
                    .iter()
                    .map(|v| format!("`{v}`"))
                    .collect::<Vec<_>>()
                    .join(", ")
            ));
        }
        self.functions
            .iter()
            .find(|f| !is_declared(f))
            .map(|f| format!("unknown function `{f}`"))
    }
}

/// Operators are calls with internal names (`_==_`, `@in`, `!_`).
fn is_operator(name: &str) -> bool {
    name.starts_with('_') || name.starts_with('@') || name.starts_with('!')
}

/// What the syntax tree says of an expression's result type.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    /// Certainly a bool.
    Bool,
    /// Certainly not a bool: this type.
    Other(&'static str),
    /// Known only at run time (a variable, a field, an index).
    Unknown,
}

/// Why an expression, whose result type the syntax shows, cannot be a
/// policy: every decision needs a bool.
fn not_a_bool(expression: &IdedExpr, decision: Decision) -> Option<String> {
    match kind_of(expression, &mut Vec::new()) {
        Kind::Other(type_name) => Some(format!(
            "its result is of type {type_name}, not bool; a {decision} policy must evaluate to a bool"
        )),
        Kind::Bool | Kind::Unknown => None,
    }
}

/// The result type of `node` where the syntax fixes it; `accumulators` are
/// the comprehensions' accumulator variables in scope, with their types.
fn kind_of(node: &IdedExpr, accumulators: &mut Vec<(String, Kind)>) -> Kind {
    match &node.expr {
        Expr::Literal(literal) => match literal {
            LiteralValue::Boolean(_) => Kind::Bool,
            LiteralValue::Bytes(_) => Kind::Other("bytes"),
            LiteralValue::Double(_) => Kind::Other("double"),
            LiteralValue::Int(_) => Kind::Other("int"),
            LiteralValue::Null => Kind::Other("null_type"),
            LiteralValue::String(_) => Kind::Other("string"),
            LiteralValue::UInt(_) => Kind::Other("uint"),
        },
        Expr::List(_) => Kind::Other("list"),
        Expr::Map(_) => Kind::Other("map"),
        Expr::Ident(name) => accumulators
            .iter()
            .rev()
            .find(|(accumulator, _)| accumulator == name)
            .map_or(Kind::Unknown, |(_, kind)| *kind),
        Expr::Select(select) if select.test => Kind::Bool,
        Expr::Comprehension(c) => {
            // A macro's type is its result's, which reads the accumulator:
            // `all` starts it at `true`, `map` at `[]`.
            let accumulator = kind_of(&c.accu_init, accumulators);
            accumulators.push((c.accu_var.clone(), accumulator));
            let kind = kind_of(&c.result, accumulators);
            accumulators.pop();
            kind
        }
        Expr::Call(call) => match call.func_name.as_str() {
            "_&&_"
            | "_||_"
            | "!_"
            | "_==_"
            | "_!=_"
            | "_<_"
            | "_<=_"
            | "_>_"
            | "_>=_"
            | "@in"
            | "@not_strictly_false"
            | "startsWith"
            | "endsWith"
            | "contains"
            | "matches"
            | "bool" => Kind::Bool,
            "_+_" | "_-_" | "_*_" | "_/_" | "_%_" | "-_" => call
                .args
                .iter()
                .map(|a| kind_of(a, accumulators))
                .find_map(|k| match k {
                    Kind::Other(t) => Some(Kind::Other(t)),
                    _ => None,
                })
                // Whatever the operands, arithmetic never yields a bool.
                .unwrap_or(Kind::Other(
                    "int, uint, double, string, bytes, list or duration",
                )),
            "size" | "int" | "indexOf" | "lastIndexOf" => Kind::Other("int"),
            "uint" => Kind::Other("uint"),
            "double" => Kind::Other("double"),
            "string" | "lowerAscii" | "upperAscii" | "trim" | "replace" | "substring"
            | "charAt" | "reverse" | "format" | "join" | "strings.quote" => Kind::Other("string"),
            "bytes" => Kind::Other("bytes"),
            "split" => Kind::Other("list"),
            "type" => Kind::Other("type"),
            "_?_:_" if call.args.len() == 3 => {
                let (a, b) = (
                    kind_of(&call.args[1], accumulators),
                    kind_of(&call.args[2], accumulators),
                );
                match (a, b) {
                    (Kind::Bool, Kind::Bool) => Kind::Bool,
                    (Kind::Other(t), Kind::Other(_)) => Kind::Other(t),
                    _ => Kind::Unknown,
                }
            }
            _ => Kind::Unknown,
        },
        Expr::Select(_) | Expr::Struct(_) | Expr::Unspecified => Kind::Unknown,
    }
}

/// Type names (`int`, `string`, …) read as identifiers in CEL.
fn is_type_name(name: &str) -> bool {
    matches!(
        name,
        "int"
            | "uint"
            | "double"
            | "bool"
            | "string"
            | "bytes"
            | "list"
            | "map"
            | "null_type"
            | "type"
    )
}

/// Whether the environment declares `name`: operators are internal names
/// (`_==_`, `@in`, `!_`); for the rest, the environment refuses to let a
/// context function shadow a declared overload, which is the public way to
/// ask it.
fn is_declared(name: &str) -> bool {
    if is_operator(name) {
        return true;
    }
    let mut probe = Context::with_env(Arc::clone(&ENV));
    probe.add_function(name, || false).is_err()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn compile(expression: &str, decision: Decision) -> Result<CelPolicy, PolicyError> {
        let source = CelSource {
            name: "t".into(),
            expression: expression.into(),
            message: None,
            path: None,
            file: None,
        };
        CelPolicy::compile(source, decision, CelLimits::default())
    }

    #[test]
    fn checks_variables_and_functions_at_load() {
        assert!(compile("object.metadata.name.startsWith('a')", Decision::Sanitize).is_ok());
        assert!(
            compile(
                "[1, 2].all(x, x > 0) && object.kind == 'A'",
                Decision::Sanitize
            )
            .is_ok()
        );
        assert!(
            compile(
                "size(object.items) > 0 && 'a' in object",
                Decision::Sanitize
            )
            .is_ok()
        );
        let err = compile("request.x == 1", Decision::Sanitize)
            .unwrap_err()
            .to_string();
        assert!(err.contains("unknown variable `request`"), "{err}");
        let err = compile("frobnicate(object)", Decision::Sanitize)
            .unwrap_err()
            .to_string();
        assert!(err.contains("unknown function `frobnicate`"), "{err}");
    }

    #[test]
    fn evaluates_with_json_bound() {
        let policy = compile(
            "object.metadata.labels.team == 'payments'",
            Decision::Sanitize,
        )
        .unwrap();
        let object = r#"{"metadata": {"labels": {"team": "payments"}}}"#;
        assert!(policy.test(&[("object", object)]).unwrap());
        let other = r#"{"metadata": {"labels": {"team": "search"}}}"#;
        assert!(!policy.test(&[("object", other)]).unwrap());
    }

    #[test]
    fn a_non_boolean_result_is_refused_at_load() {
        for (expression, type_name) in [
            ("1 + 1", "int"),
            ("'a' + object.kind", "string"),
            ("object.items.map(x, x)", "list"),
            ("size(object)", "int"),
            ("true ? 1 : 2", "int"),
        ] {
            let err = compile(expression, Decision::Sanitize)
                .unwrap_err()
                .to_string();
            assert!(
                err.starts_with(&format!("CEL policy `t`: expression `{expression}`: its result is of type {type_name}, not bool")),
                "{err}"
            );
        }
        // Types known only at run time, or certainly bool, load.
        for expression in [
            "object.spec.enabled",
            "object.items.all(x, x > 0)",
            "object.items.exists_one(x, x > 0)",
            "has(object.spec) ? object.spec.on : false",
            "!(object.kind in ['A', 'B'])",
        ] {
            assert!(
                compile(expression, Decision::Sanitize).is_ok(),
                "{expression}"
            );
        }
    }

    #[test]
    fn only_expressions_that_can_loop_are_sandboxed() {
        for expression in [
            "object.metadata.name.startsWith('a') && size(object.items) < 3",
            "object.kind.lowerAscii().matches('^s') || 'x' in object.metadata.labels",
        ] {
            assert!(
                !compile(expression, Decision::Sanitize)
                    .unwrap()
                    .is_sandboxed(),
                "{expression}"
            );
        }
        for expression in [
            "object.items.all(x, x > 0)",
            "[1, 2].exists(x, x == 2)",
            // Quadratic output without a comprehension.
            "object.kind.replace('', object.kind) != ''",
        ] {
            assert!(
                compile(expression, Decision::Sanitize)
                    .unwrap()
                    .is_sandboxed(),
                "{expression}"
            );
        }
    }

    #[test]
    fn sandboxed_and_native_evaluation_agree() {
        let object = r#"{"kind": "A", "items": [1, 2, 3], "metadata": {"name": "n"}}"#;
        for (expression, expected) in [
            ("object.items.all(x, x > 0)", true),
            ("object.items.exists(x, x > 5)", false),
            (
                "object.items.map(x, x + x).exists(x, x == 6u) && object.kind == 'A'",
                true,
            ),
            ("object.items.filter(x, x > 1).size() == 2", true),
            ("object.kind.replace('A', 'bb') == 'bb'", true),
        ] {
            let policy = compile(expression, Decision::Sanitize).unwrap();
            assert!(policy.is_sandboxed(), "{expression}");
            assert_eq!(
                policy.test(&[("object", object)]).unwrap(),
                expected,
                "{expression}"
            );
            let json: Json = serde_json::from_str(object).unwrap();
            let context = CelPolicy::prepare(&[("object", &json)]).unwrap();
            assert_eq!(
                policy.evaluate_prepared(&context),
                Ok(expected),
                "{expression}"
            );
        }
        let err = compile("object.items.all(x, x.y)", Decision::Sanitize)
            .unwrap()
            .test(&[("object", object)])
            .unwrap_err()
            .to_string();
        assert!(
            err.starts_with("CEL policy `t`: expression `object.items.all(x, x.y)` failed: "),
            "{err}"
        );
    }
}
