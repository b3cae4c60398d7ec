//! `plumbline plugin new`: a ready-to-build Rust guest crate for one
//! decision, with fixtures its example passes and a `bundle.yaml`.
//!
//! The crate carries its own copy of the WIT contracts (so it builds
//! anywhere, against the contracts of the Plumbline that made it) and a
//! `.cargo/config.toml` that makes `cargo build --release` produce the
//! component.

use crate::policy::Decision;
use anyhow::{Context as _, bail};
use clap::Args;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

/// Arguments of `plumbline plugin new`.
#[derive(Debug, Args)]
pub struct PluginNewArgs {
    /// The plugin's name: lowercase words joined by hyphens (`drop-noise`).
    #[arg(value_name = "NAME")]
    name: String,
    /// The decision it answers, and so the world it implements.
    #[arg(long, value_enum)]
    decision: DecisionArg,
    /// Where to create it; default ./NAME. It must not exist or be empty.
    #[arg(long, value_name = "DIR")]
    dir: Option<PathBuf>,
}

/// The decisions, as the command line spells them.
#[derive(Debug, Clone, Copy, clap::ValueEnum)]
enum DecisionArg {
    Sanitize,
    Match,
    Schema,
    Gate,
}

impl From<DecisionArg> for Decision {
    fn from(d: DecisionArg) -> Decision {
        match d {
            DecisionArg::Sanitize => Decision::Sanitize,
            DecisionArg::Match => Decision::Match,
            DecisionArg::Schema => Decision::Schema,
            DecisionArg::Gate => Decision::Gate,
        }
    }
}

/// Files every plugin crate has: (path, template).
const COMMON: &[(&str, &str)] = &[
    (
        "Cargo.toml",
        include_str!("../../templates/plugin/Cargo.toml"),
    ),
    (
        ".cargo/config.toml",
        include_str!("../../templates/plugin/cargo-config.toml"),
    ),
    (
        ".gitignore",
        include_str!("../../templates/plugin/gitignore"),
    ),
    (
        "bundle.yaml",
        include_str!("../../templates/plugin/bundle.yaml"),
    ),
    (
        "README.md",
        include_str!("../../templates/plugin/README.md"),
    ),
    (
        "wit/plumbline.wit",
        include_str!("../../../wit/plumbline.wit"),
    ),
];

/// The files of one decision's example: (path, template).
fn example(decision: Decision) -> &'static [(&'static str, &'static str)] {
    macro_rules! files {
        ($dir:literal: $($path:literal => $file:literal),*) => {
            &[$(($path, include_str!(concat!("../../templates/plugin/", $dir, "/", $file)))),*]
        };
    }
    match decision {
        Decision::Sanitize => files!("sanitize":
            "src/lib.rs" => "lib.rs",
            "fixtures/example.input.yaml" => "example.input.yaml",
            "fixtures/example.expected.yaml" => "example.expected.yaml"),
        Decision::Match => files!("match":
            "src/lib.rs" => "lib.rs",
            "fixtures/example.input.yaml" => "example.input.yaml",
            "fixtures/example.expected.yaml" => "example.expected.yaml",
            "fixtures/selected.input.yaml" => "selected.input.yaml",
            "fixtures/selected.expected.yaml" => "selected.expected.yaml"),
        Decision::Schema => files!("schema":
            "src/lib.rs" => "lib.rs",
            "fixtures/example.input.yaml" => "example.input.yaml",
            "fixtures/example.expected.yaml" => "example.expected.yaml"),
        Decision::Gate => files!("gate":
            "src/lib.rs" => "lib.rs",
            "fixtures/example.input.yaml" => "example.input.yaml",
            "fixtures/example.expected.yaml" => "example.expected.yaml",
            "fixtures/pinned.input.yaml" => "pinned.input.yaml",
            "fixtures/pinned.expected.yaml" => "pinned.expected.yaml"),
    }
}

/// Creates the crate and says what to do next.
pub fn run(args: PluginNewArgs) -> anyhow::Result<ExitCode> {
    check_name(&args.name)?;
    let decision = Decision::from(args.decision);
    let dir = args.dir.unwrap_or_else(|| PathBuf::from(&args.name));
    if dir
        .read_dir()
        .is_ok_and(|mut entries| entries.next().is_some())
    {
        bail!("{} exists and is not empty", dir.display());
    }
    let crate_name = args.name.replace('-', "_");
    let fill = |template: &str| {
        template
            .replace("{{name}}", &args.name)
            .replace("{{crate}}", &crate_name)
            .replace("{{decision}}", decision.name())
            .replace("{{world}}", decision.world())
    };
    for (path, template) in COMMON.iter().chain(example(decision)) {
        write(&dir.join(path), &fill(template))?;
    }
    eprintln!(
        "created {} ({} plugin, world {}). Next:\n  cd {}\n  cargo build --release\n  plumbline plugin test target/wasm32-wasip2/release/{crate_name}.wasm --fixtures fixtures",
        dir.display(),
        decision.name(),
        decision.world(),
        dir.display(),
    );
    Ok(ExitCode::SUCCESS)
}

/// A name must make a crate name and a WIT package name: lowercase words
/// of letters and digits, each starting with a letter, joined by hyphens.
fn check_name(name: &str) -> anyhow::Result<()> {
    let word_ok = |w: &str| {
        w.starts_with(|c: char| c.is_ascii_lowercase())
            && w.chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit())
    };
    if name.is_empty() || !name.split('-').all(word_ok) {
        bail!(
            "`{name}` is not a plugin name: use lowercase words of letters and digits joined by hyphens, such as drop-noise"
        );
    }
    Ok(())
}

fn write(path: &Path, text: &str) -> anyhow::Result<()> {
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent)
            .with_context(|| format!("creating {}", parent.display()))?;
    }
    std::fs::write(path, text).with_context(|| format!("writing {}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_must_suit_crates_and_wit() {
        for good in ["drop-noise", "a", "v2-gate"] {
            assert!(check_name(good).is_ok(), "{good}");
        }
        for bad in [
            "",
            "Drop",
            "drop_noise",
            "-x",
            "x-",
            "2x",
            "x--y",
            "x-2",
            "../x",
        ] {
            assert!(check_name(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn every_decision_has_a_lib_and_a_passing_fixture_pair() {
        for decision in Decision::ALL {
            let files: Vec<&str> = example(decision).iter().map(|(p, _)| *p).collect();
            assert!(files.contains(&"src/lib.rs"), "{decision}");
            assert!(files.contains(&"fixtures/example.input.yaml"), "{decision}");
            assert!(
                files.contains(&"fixtures/example.expected.yaml"),
                "{decision}"
            );
        }
    }
}
