//! Helpers shared by the tests: where the built guests and fixtures are,
//! and how to load a plugin.

use plumbline::policy::capability::Grants;
use plumbline::policy::{Decision, Limits, Plugin, PluginSource, Runtime, RuntimeConfig};
use std::path::{Path, PathBuf};
use std::time::Duration;

/// The folder holding every component the build script built.
pub fn guest(name: &str) -> Vec<u8> {
    let path = Path::new(env!("PLUMBLINE_GUESTS_DIR")).join(format!("{name}.wasm"));
    std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// The repository's root.
pub fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_owned()
}

/// A file under `tests/fixtures/`.
pub fn fixture(path: &str) -> PathBuf {
    root().join("tests/fixtures").join(path)
}

/// The `plumbline` binary built for these tests.
pub fn binary() -> &'static str {
    env!("CARGO_BIN_EXE_plumbline")
}

/// A runtime with a short deadline and a small memory cap. Its component
/// cache is shared by the tests, so each component compiles once per run.
pub fn runtime() -> Runtime {
    Runtime::new(&RuntimeConfig {
        limits: Limits {
            deadline: Duration::from_millis(200),
            memory: 32 << 20,
        },
        max_instances: 16,
        cache_dir: Some(Path::new(env!("CARGO_TARGET_TMPDIR")).join("component-cache")),
    })
    .expect("runtime")
}

/// Loads `guest` for `decision` with `settings` and no grants.
pub fn load(runtime: &Runtime, guest_name: &str, decision: Decision, settings: &str) -> Plugin {
    try_load(runtime, guest_name, decision, settings, Grants::default()).expect("plugin loads")
}

/// Loads `guest` for `decision`, returning the error if it does not load.
pub fn try_load(
    runtime: &Runtime,
    guest_name: &str,
    decision: Decision,
    settings: &str,
    grants: Grants,
) -> Result<Plugin, plumbline::policy::PolicyError> {
    let bytes = guest(guest_name);
    runtime.load(PluginSource {
        name: guest_name,
        decision,
        bytes: &bytes,
        settings: settings.to_owned(),
        grants,
    })
}

/// Reads a YAML or JSON file into JSON text.
pub fn json_of(path: &Path) -> String {
    let text = std::fs::read_to_string(path).unwrap();
    let value: serde_json::Value = serde_saphyr::from_str(&text).unwrap();
    value.to_string()
}
