//! The CEL sandbox: CEL expressions that can loop are evaluated inside a
//! Wasm component (`plugins/cel-eval`, the same `cel` crate built for
//! `wasm32-wasip2`), so that a runaway is stopped for real.
//!
//! The `cel` crate has neither a cost limit nor cancellation: natively, an
//! evaluation past its deadline can only be abandoned, and it goes on using
//! a core and memory (eight nested `map`s reached 2.3 GB). In the sandbox
//! the epoch deadline interrupts it, the memory cap refuses its
//! allocations, and each evaluation has a fresh instance from the pooling
//! allocator, so when it ends, however it ends, its memory goes back at
//! once and nothing is left running.
//!
//! The sandbox has a runtime of its own (engine, pool, epoch clock), built
//! on first use: CEL policies are compiled without a plugin runtime at hand
//! (a WatchRule's condition is read with the mirror configuration), and a
//! pool of its own means runaway expressions can never take the instances
//! plugins need.

use super::Decision;
use super::bindings::cel_evaluator::EvaluatorPre;
use super::error::{PolicyError, describe};
use super::runtime::{Runtime, RuntimeConfig};
use super::store::{HostState, Identity, Limits, new_store};
use std::path::PathBuf;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

/// The sandbox component, built from `plugins/cel-eval` by the build script.
const COMPONENT: &[u8] = include_bytes!(concat!(env!("PLUMBLINE_GUESTS_DIR"), "/cel-eval.wasm"));

/// The memory one evaluation may use. An expression that needs more is
/// stopped; 64 MiB is what a plugin instance gets by default, and far more
/// than a predicate over a 1 MiB object needs.
pub const MEMORY_CAP: usize = 64 << 20;

/// How many evaluations may run at once (the pool's size); routing runs one
/// per core.
const MAX_INSTANCES: u32 = 64;

/// The sandbox, built once per process.
struct Sandbox {
    runtime: Runtime,
    pre: EvaluatorPre<HostState>,
}

static SANDBOX: OnceLock<Result<Sandbox, String>> = OnceLock::new();
static CACHE_DIR: OnceLock<Option<PathBuf>> = OnceLock::new();

/// Where the sandbox's compiled component is cached (the plugins' cache
/// folder), so a start deserializes it instead of compiling 2.5 MB of Wasm.
/// Only the first call counts; call it before the first CEL policy loads.
pub fn use_cache_dir(dir: Option<PathBuf>) {
    let _ = CACHE_DIR.set(dir);
}

/// Builds the sandbox in the background, so that the first evaluation does
/// not wait for the compilation (called when a policy that needs it loads).
pub(crate) fn warm_up() {
    static STARTED: std::sync::Once = std::sync::Once::new();
    STARTED.call_once(|| {
        let _ = std::thread::Builder::new()
            .name("plumbline-cel-sandbox".into())
            .spawn(|| {
                sandbox().ok();
            });
    });
}

fn sandbox() -> Result<&'static Sandbox, &'static str> {
    SANDBOX
        .get_or_init(|| {
            let config = RuntimeConfig {
                limits: Limits {
                    deadline: Duration::from_millis(50),
                    memory: MEMORY_CAP,
                },
                max_instances: MAX_INSTANCES,
                cache_dir: CACHE_DIR.get().cloned().flatten(),
            };
            let runtime = Runtime::new(&config).map_err(|e| e.to_string())?;
            let pre = runtime
                .instantiate_pre(COMPONENT)
                .and_then(EvaluatorPre::new)
                .map_err(|e| format!("cannot load the CEL sandbox: {}", describe(&e)))?;
            Ok(Sandbox { runtime, pre })
        })
        .as_ref()
        .map_err(String::as_str)
}

/// What is evaluated, and who to name when it fails.
pub(crate) struct Evaluation<'a> {
    pub policy: &'a str,
    pub expression: &'a str,
    pub decision: Decision,
    pub deadline: Duration,
}

impl Evaluation<'_> {
    /// Evaluates in a fresh sandbox instance with `variables` (name, JSON
    /// text) bound; every way it can fail is an error naming the policy.
    pub(crate) fn run(&self, variables: &[(&'static str, &str)]) -> Result<bool, PolicyError> {
        let sandbox = sandbox().map_err(|message| self.failed(message.to_owned()))?;
        let identity = Identity {
            plugin: format!("CEL policy `{}`", self.policy).into(),
            decision: self.decision,
            grants: Arc::default(),
        };
        let limits = Limits {
            deadline: self.deadline,
            memory: MEMORY_CAP,
        };
        let mut store = new_store(&sandbox.runtime.inner().engine, identity, &limits);
        let variables: Vec<(String, String)> = variables
            .iter()
            .map(|(name, text)| ((*name).to_owned(), (*text).to_owned()))
            .collect();
        let outcome = sandbox
            .pre
            .instantiate(&mut store)
            .and_then(|evaluator| evaluator.call_evaluate(&mut store, self.expression, &variables));
        match outcome {
            Ok(Ok(value)) => Ok(value),
            Ok(Err(message)) => Err(self.failed(message)),
            Err(_) if store.data().memory_refused() => Err(self.failed(format!(
                "stopped: it needed more than the {} MiB an evaluation may use",
                MEMORY_CAP >> 20
            ))),
            Err(error) => match error.downcast_ref::<wasmtime::Trap>() {
                Some(wasmtime::Trap::Interrupt) => Err(PolicyError::CelDeadline {
                    policy: self.policy.to_owned(),
                    expression: self.expression.to_owned(),
                    deadline: self.deadline,
                }),
                _ => Err(self.failed(format!("stopped: {}", describe(&error)))),
            },
        }
    }

    fn failed(&self, message: String) -> PolicyError {
        PolicyError::CelRuntime {
            policy: self.policy.to_owned(),
            expression: self.expression.to_owned(),
            message,
        }
    }
}
