//! Builds Plumbline's plugins for `wasm32-wasip2` and embeds the defaults.
//!
//! The way wasmtime's `crates/test-programs/artifacts/build.rs` builds its
//! guests: a nested `cargo build` of the guest crates of this workspace, into
//! a target folder of their own (so it never contends with the outer build's
//! lock and is reused by every profile: debug, test, bench, clippy). A plain
//! `cargo build -p plumbline` therefore gives a binary that carries its
//! default plugins (this crate embeds them); nobody runs a separate plugin
//! build.
//!
//! The test-only guests under `tests/guests/` are built by the same
//! invocation but not embedded; their folder is `builtin::GUESTS_DIR`, for
//! the tests.

use std::env;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

/// (crate name, embedded in the binary).
const PLUGINS: &[(&str, bool)] = &[
    ("neat", true),
    ("redact-secrets", true),
    ("rule-match", true),
    ("schema-lint", true),
    ("digest-gate", true),
    ("misbehave", false),
    ("fs-reader", false),
    // The host's CEL sandbox, embedded by `policy/cel_sandbox.rs` (it is no
    // plugin an operator can name).
    ("cel-eval", false),
];

const TARGET: &str = "wasm32-wasip2";

fn main() {
    let manifest_dir = PathBuf::from(env::var_os("CARGO_MANIFEST_DIR").expect("set by cargo"));
    let root = manifest_dir
        .ancestors()
        .nth(2)
        .expect("crates/policy/ is inside the workspace");
    for watched in [
        "plugins",
        "crates/kinds",
        "tests/guests",
        "wit",
        "Cargo.lock",
        ".cargo/config.toml",
    ] {
        println!("cargo:rerun-if-changed={}", root.join(watched).display());
    }
    println!("cargo:rerun-if-env-changed=CARGO_TARGET_DIR");

    let target_dir = env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| root.join("target"))
        .join("wasm-plugins");
    build_plugins(root, &target_dir);

    let out_dir = PathBuf::from(env::var_os("OUT_DIR").expect("set by cargo"));
    let guests = out_dir.join("guests");
    fs::create_dir_all(&guests).expect("create OUT_DIR/guests");
    let mut embedded = String::from(
        "/// The default plugins, built from `plugins/` by the build script: (name, component).\n\
         pub const BUILTIN: &[(&str, &[u8])] = &[\n",
    );
    for (name, embed) in PLUGINS {
        let built = target_dir
            .join(TARGET)
            .join("plugin")
            .join(format!("{}.wasm", name.replace('-', "_")));
        let copy = guests.join(format!("{name}.wasm"));
        fs::copy(&built, &copy)
            .unwrap_or_else(|e| panic!("copy {} to {}: {e}", built.display(), copy.display()));
        if *embed {
            embedded.push_str(&format!(
                "    ({name:?}, include_bytes!({:?})),\n",
                copy.display().to_string()
            ));
        }
    }
    embedded.push_str("];\n");
    fs::write(out_dir.join("builtin_plugins.rs"), embedded).expect("write builtin_plugins.rs");
    println!("cargo:rustc-env=PLUMBLINE_GUESTS_DIR={}", guests.display());
}

fn build_plugins(root: &Path, target_dir: &Path) {
    let cargo = env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let mut command = Command::new(cargo);
    command
        .current_dir(root)
        .args(["build", "--profile", "plugin", "--target", TARGET])
        .env("CARGO_TARGET_DIR", target_dir)
        // The outer build's flags and wrappers (clippy, coverage, sanitizers)
        // are for the host, not for wasm guests.
        .env_remove("RUSTFLAGS")
        .env_remove("CARGO_ENCODED_RUSTFLAGS")
        .env_remove("CARGO_BUILD_RUSTFLAGS")
        .env_remove("RUSTC_WORKSPACE_WRAPPER")
        .env_remove("CARGO_BUILD_TARGET");
    for (name, _) in PLUGINS {
        command.args(["-p", name]);
    }
    let status = command
        .status()
        .unwrap_or_else(|e| panic!("could not run cargo to build the plugins: {e}"));
    if !status.success() {
        panic!(
            "building the plugins for {TARGET} failed (see the errors above). \
             If the target is missing, install it with `rustup target add {TARGET}`."
        );
    }
}
