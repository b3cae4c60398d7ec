//! The policy runtime's errors. Every message names the culprit: the plugin
//! and its decision, or the CEL policy and its expression.

use super::Decision;
use std::path::PathBuf;
use std::time::Duration;

/// Everything that can go wrong loading or running a policy.
///
/// The fields are the same throughout: `plugin` and `decision` name the
/// culprit component, `policy` and `expression` the culprit CEL policy,
/// `message` says what went wrong.
#[derive(Debug, thiserror::Error)]
#[allow(missing_docs)]
pub enum PolicyError {
    /// The `sops` step could not encrypt the object: it is not written.
    #[error("sops: cannot encrypt it, so it is not written: {source}")]
    Sops {
        #[source]
        source: crate::sops::SopsError,
    },
    /// The engine could not be built with the configured limits.
    #[error("cannot start the WebAssembly engine: {message}")]
    Engine { message: String },
    /// The bytes are not a component this engine can compile.
    #[error("plugin `{plugin}` ({decision}): not a loadable component: {message}")]
    Component {
        plugin: String,
        decision: Decision,
        message: String,
    },
    /// The component does not implement the world its decision needs, or
    /// imports something the host does not provide.
    #[error(
        "plugin `{plugin}` ({decision}): does not fit the `{world}` world: {message}",
        world = decision.world()
    )]
    WrongWorld {
        plugin: String,
        decision: Decision,
        message: String,
    },
    /// The component imports an interface that needs a capability the
    /// operator did not grant.
    #[error(
        "plugin `{plugin}` ({decision}): imports `{import}`, which needs the `{capability}` \
         capability; grant it in the plugin's `grants` if this plugin should have it"
    )]
    NotGranted {
        plugin: String,
        decision: Decision,
        capability: &'static str,
        import: String,
    },
    /// The plugin's settings check refused its settings.
    #[error("plugin `{plugin}` ({decision}): settings refused: {message}")]
    Settings {
        plugin: String,
        decision: Decision,
        message: String,
    },
    /// The guest trapped: a panic, an out-of-bounds access, an abort.
    #[error("plugin `{plugin}` ({decision}): trapped: {message}")]
    Trap {
        plugin: String,
        decision: Decision,
        message: String,
    },
    /// The guest ran past its deadline and was interrupted: it used that
    /// much CPU time, or ran [`WALL_FACTOR`](crate::store::WALL_FACTOR)
    /// times as long on the clock.
    #[error(
        "plugin `{plugin}` ({decision}): interrupted after its {deadline:?} deadline \
         (of CPU time, or {} times as long on the clock)",
        crate::store::WALL_FACTOR
    )]
    Deadline {
        plugin: String,
        decision: Decision,
        deadline: Duration,
    },
    /// The guest asked for more memory than its cap.
    #[error("plugin `{plugin}` ({decision}): refused memory beyond its cap of {cap} bytes")]
    MemoryCap {
        plugin: String,
        decision: Decision,
        cap: usize,
    },
    /// The guest answered `err(message)`: it could not decide.
    #[error("plugin `{plugin}` ({decision}): failed: {message}")]
    Failed {
        plugin: String,
        decision: Decision,
        message: String,
    },
    /// The guest answered something that breaks the contract (not JSON, an
    /// index out of range).
    #[error("plugin `{plugin}` ({decision}): returned malformed output: {message}")]
    BadOutput {
        plugin: String,
        decision: Decision,
        message: String,
    },
    /// The plugin was asked a decision it does not answer (a sanitizer
    /// asked to match, say).
    #[error("plugin `{plugin}` ({decision}): cannot answer a {asked} decision")]
    NotThisDecision {
        plugin: String,
        decision: Decision,
        asked: Decision,
    },
    /// The host could not instantiate the guest (the instance pool is full).
    #[error("plugin `{plugin}` ({decision}): could not be instantiated: {message}")]
    Instantiate {
        plugin: String,
        decision: Decision,
        message: String,
    },
    /// A CEL expression does not parse.
    #[error("CEL policy `{policy}`{at}: expression `{expression}` does not compile: {message}", at = at(source_file))]
    CelCompile {
        policy: String,
        source_file: Option<PathBuf>,
        expression: String,
        message: String,
    },
    /// A CEL expression uses a variable or function its decision does not provide.
    #[error("CEL policy `{policy}`{at}: expression `{expression}`: {message}", at = at(source_file))]
    CelCheck {
        policy: String,
        source_file: Option<PathBuf>,
        expression: String,
        message: String,
    },
    /// A CEL expression failed while it ran.
    #[error("CEL policy `{policy}`: expression `{expression}` failed: {message}")]
    CelRuntime {
        policy: String,
        expression: String,
        message: String,
    },
    /// A CEL expression ran past its deadline.
    #[error(
        "CEL policy `{policy}`: expression `{expression}` ran past its {deadline:?} deadline \
         (of CPU time, or {} times as long on the clock)",
        crate::store::WALL_FACTOR
    )]
    CelDeadline {
        policy: String,
        expression: String,
        deadline: Duration,
    },
    /// The input handed to a CEL expression is larger than allowed.
    #[error(
        "CEL policy `{policy}`: input of {size} bytes exceeds the {limit}-byte limit for expression `{expression}`"
    )]
    CelInputTooLarge {
        policy: String,
        expression: String,
        size: usize,
        limit: usize,
    },
    /// A file could not be read or written.
    #[error("{}: {source}", path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// A policy configuration has errors; all of them are listed.
    #[error("{}: {} error(s) in the policy configuration:\n{}", path.display(), errors.len(), bullet(errors))]
    Config { path: PathBuf, errors: Vec<String> },
}

fn at(file: &Option<PathBuf>) -> String {
    file.as_ref()
        .map(|f| format!(" ({})", f.display()))
        .unwrap_or_default()
}

fn bullet(errors: &[String]) -> String {
    errors
        .iter()
        .map(|e| format!("  - {e}"))
        .collect::<Vec<_>>()
        .join("\n")
}

/// Renders a wasmtime error with its whole chain of causes on one line.
pub(crate) fn describe(error: &wasmtime::Error) -> String {
    let mut out = String::new();
    for cause in error.chain() {
        if !out.is_empty() {
            out.push_str(": ");
        }
        out.push_str(&cause.to_string());
    }
    out
}
