//! CEL policies: expressions compiled once at load, checked against what
//! their decision provides, and run with bounded input and a deadline.
//!
//! The `cel` crate finds an unknown variable or function only when an
//! expression runs, and has neither a cost limit nor cancellation. So
//! Plumbline checks every expression at load against its decision's
//! variables and the functions the environment declares, caps the size of
//! the input, and treats comprehensions (`all`, `exists`, `map`, `filter`,
//! the only constructs whose cost is not bounded by the input's size) as
//! untrusted: those run on a helper thread and the caller stops waiting at
//! the deadline. A runaway evaluation cannot be killed, so only a few may run
//! past their deadline at once; beyond that, such policies fail at once as
//! their chain says, and the host keeps serving.

use super::Decision;
use super::error::PolicyError;
use cel::common::ast::{EntryExpr, Expr, IdedExpr};
use cel::{Context, Env, Program};
use serde_json::Value as Json;
use std::collections::BTreeSet;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU8, AtomicUsize, Ordering};
use std::sync::mpsc;
use std::sync::{Arc, LazyLock};
use std::time::Duration;

/// Bounds on CEL evaluation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CelLimits {
    /// How long an expression with comprehensions may run.
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

/// How many evaluations may be running past their deadline at once.
const MAX_OVERTIME: usize = 4;
static OVERTIME: AtomicUsize = AtomicUsize::new(0);

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
    has_comprehension: bool,
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
        if let Some(message) = refs.problem(decision) {
            return Err(PolicyError::CelCheck {
                policy: name,
                source_file: file,
                expression,
                message,
            });
        }
        Ok(CelPolicy {
            inner: Arc::new(Inner {
                name,
                expression,
                message,
                path: path.unwrap_or_default(),
                program,
                has_comprehension: refs.comprehensions > 0,
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
        let mut parsed = Vec::with_capacity(variables.len());
        for (name, text) in variables {
            let value: Json = serde_json::from_str(text)
                .map_err(|e| self.runtime_error(format!("`{name}` is not JSON: {e}")))?;
            parsed.push((*name, value));
        }
        if self.inner.has_comprehension {
            self.test_with_deadline(parsed)
        } else {
            self.inner
                .evaluate(&parsed)
                .map_err(|m| self.runtime_error(m))
        }
    }

    fn test_with_deadline(
        &self,
        variables: Vec<(&'static str, Json)>,
    ) -> Result<bool, PolicyError> {
        let deadline_error = || PolicyError::CelDeadline {
            policy: self.inner.name.clone(),
            expression: self.inner.expression.clone(),
            deadline: self.inner.limits.deadline,
        };
        if OVERTIME.load(Ordering::Relaxed) >= MAX_OVERTIME {
            return Err(deadline_error());
        }
        const RUNNING: u8 = 0;
        const DONE: u8 = 1;
        const ABANDONED: u8 = 2;
        let state = Arc::new(AtomicU8::new(RUNNING));
        let (tx, rx) = mpsc::sync_channel(1);
        let inner = Arc::clone(&self.inner);
        let thread_state = Arc::clone(&state);
        std::thread::Builder::new()
            .name("plumbline-cel".into())
            .spawn(move || {
                let result = inner.evaluate(&variables);
                let _ = tx.send(result);
                let finished = thread_state.compare_exchange(
                    RUNNING,
                    DONE,
                    Ordering::AcqRel,
                    Ordering::Acquire,
                );
                if finished == Err(ABANDONED) {
                    OVERTIME.fetch_sub(1, Ordering::Relaxed);
                }
            })
            .map_err(|e| self.runtime_error(format!("cannot start an evaluation thread: {e}")))?;
        let result = match rx.recv_timeout(self.inner.limits.deadline) {
            Ok(result) => result,
            Err(_) => {
                if state
                    .compare_exchange(RUNNING, ABANDONED, Ordering::AcqRel, Ordering::Acquire)
                    .is_ok()
                {
                    OVERTIME.fetch_add(1, Ordering::Relaxed);
                    tracing::warn!(policy = %self.inner.name, "CEL evaluation ran past its deadline and was abandoned");
                    return Err(deadline_error());
                }
                // It finished just as the deadline passed.
                rx.recv().map_err(|_| deadline_error())?
            }
        };
        result.map_err(|m| self.runtime_error(m))
    }

    fn runtime_error(&self, message: String) -> PolicyError {
        PolicyError::CelRuntime {
            policy: self.inner.name.clone(),
            expression: self.inner.expression.clone(),
            message,
        }
    }

    /// Evaluates with already converted variables, unbounded: for the
    /// benchmarks, which measure the expression alone.
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

impl References {
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
    if name.starts_with('_') || name.starts_with('@') || name.starts_with('!') {
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
}
