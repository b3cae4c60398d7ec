//! `plumbline sanitize`: manifests in, sanitized YAML out.

use super::{GlobalArgs, load_policies};
use crate::ingest::directory::walk;
use crate::ingest::read_manifests;
use crate::layout::yaml;
use crate::policy::Decision;
use anyhow::Context as _;
use clap::Args;
use std::io::{Read, Write};
use std::path::PathBuf;
use std::process::ExitCode;

/// Arguments of `plumbline sanitize`.
#[derive(Debug, Args)]
pub struct SanitizeArgs {
    /// Manifest files or folders of them (YAML or JSON, multi-document,
    /// `List` kinds expanded); `-` reads standard input.
    #[arg(required = true, value_name = "FILE")]
    files: Vec<PathBuf>,
    /// Policy configuration; without one the built-in default chain runs
    /// (neat, then redact-secrets).
    #[arg(long, value_name = "CONFIG")]
    policy: Option<PathBuf>,
}

/// Sanitizes every object; an object that fails is reported and the rest
/// are still printed; the exit status is 1 if anything failed.
pub fn run(global: &GlobalArgs, args: SanitizeArgs) -> anyhow::Result<ExitCode> {
    match sanitize_all(global, args) {
        // The reader went away (`| head`): it has what it wanted.
        Err(error)
            if error
                .downcast_ref::<std::io::Error>()
                .is_some_and(|e| e.kind() == std::io::ErrorKind::BrokenPipe) =>
        {
            Ok(ExitCode::SUCCESS)
        }
        other => other,
    }
}

fn sanitize_all(global: &GlobalArgs, args: SanitizeArgs) -> anyhow::Result<ExitCode> {
    let policies = load_policies(global, args.policy.as_deref(), None, None)?.set;
    let chain = policies.chain(Decision::Sanitize);
    let mut failures = 0usize;
    let (mut written, mut dropped) = (0usize, 0usize);
    let mut out = std::io::stdout().lock();
    let mut first = true;
    let files = expand_folders(&args.files, &mut failures);
    for file in &files {
        let (text, origin) = match read_input(file) {
            Ok(input) => input,
            Err(error) => {
                failures += 1;
                eprintln!("error: {error:#}");
                continue;
            }
        };
        let read = read_manifests(&text, &origin);
        for error in read.errors {
            failures += 1;
            eprintln!("error: {error}");
        }
        for note in read.skipped {
            eprintln!("note: {note}; skipped");
        }
        for note in read.warnings {
            eprintln!("warning: {note}");
        }
        for manifest in read.objects {
            match chain.sanitize(&manifest.object.to_string()) {
                Ok(Some(object)) => {
                    let value: serde_json::Value = serde_json::from_str(&object)?;
                    if !first {
                        writeln!(out, "---")?;
                    }
                    first = false;
                    write!(
                        out,
                        "{}",
                        yaml::canonical(&value).map_err(anyhow::Error::msg)?
                    )?;
                    written += 1;
                }
                Ok(None) => {
                    dropped += 1;
                    tracing::info!(origin = %manifest.origin, "dropped by the sanitize chain");
                }
                Err(error) => {
                    failures += 1;
                    eprintln!("error: {}: {error}", manifest.origin);
                }
            }
        }
    }
    out.flush()?;
    let steps: Vec<&str> = chain.steps().iter().map(|s| s.name()).collect();
    eprintln!(
        "sanitized {written} object(s) from {} file(s) through {}; {dropped} dropped by policy, {failures} failed",
        files.len(),
        steps.join(" → ")
    );
    Ok(if failures == 0 {
        ExitCode::SUCCESS
    } else {
        eprintln!("{failures} object(s) could not be sanitized");
        ExitCode::FAILURE
    })
}

/// Replaces each folder by the manifest files under it, read as `run`
/// reads a folder (subfolders too, special files and links out refused),
/// sorted, so output order does not depend on the filesystem. What cannot
/// be read is reported and counted.
fn expand_folders(paths: &[PathBuf], failures: &mut usize) -> Vec<PathBuf> {
    let mut files = Vec::new();
    for path in paths {
        if !path.is_dir() {
            files.push(path.clone());
            continue;
        }
        let mut errors = Vec::new();
        files.extend(walk::manifest_files(path, &mut errors));
        for error in errors {
            *failures += 1;
            eprintln!("error: {error}");
        }
    }
    files
}

fn read_input(file: &std::path::Path) -> anyhow::Result<(String, String)> {
    if file.as_os_str() == "-" {
        let mut text = String::new();
        std::io::stdin()
            .read_to_string(&mut text)
            .context("reading standard input")?;
        return Ok((text, "<stdin>".into()));
    }
    let text = walk::read_file(file, walk::DEFAULT_MAX_FILE_BYTES)?;
    Ok((text, file.display().to_string()))
}
