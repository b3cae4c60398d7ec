//! `plumbline catalog lint FILE…`: every check a workflow schema must pass
//! before the catalog takes it, run locally (a pre-commit hook, a CI
//! step), with every violation and its path.

use super::{GlobalArgs, load_policies};
use crate::catalog::{check, parameters_schema, read};
use crate::policy::Decision;
use clap::{Args, Subcommand};
use serde_json::json;
use std::path::PathBuf;
use std::process::ExitCode;

/// `plumbline catalog …`.
#[derive(Debug, Subcommand)]
pub enum CatalogCommand {
    /// Checks workflow schema files (the flat workflow-schema format or a
    /// RemediationWorkflow) as registration would: their shape, what
    /// every schema must be, and the policies' schema rules.
    Lint(LintArgs),
}

/// Arguments of `plumbline catalog lint`.
#[derive(Debug, Args)]
pub struct LintArgs {
    /// Workflow schema files (YAML or JSON).
    #[arg(required = true, value_name = "FILE")]
    files: Vec<PathBuf>,
    /// Policy configuration whose schema chain runs; without one the
    /// built-in one (schema-lint).
    #[arg(long, value_name = "CONFIG")]
    policy: Option<PathBuf>,
}

/// Runs the command.
pub fn run(global: &GlobalArgs, command: CatalogCommand) -> anyhow::Result<ExitCode> {
    let CatalogCommand::Lint(args) = command;
    let loaded = load_policies(global, args.policy.as_deref(), None, None)?;
    let chain = loaded.set.chain(Decision::Schema);
    let mut failed = 0;
    for file in &args.files {
        let found = lint(file, |schema, context| {
            chain
                .check(schema, context)
                .into_iter()
                .map(|v| (v.path, v.message))
                .collect()
        });
        for line in &found {
            println!("{}: {line}", file.display());
        }
        if found.is_empty() {
            println!("{}: ok", file.display());
        } else {
            failed += 1;
        }
    }
    eprintln!(
        "{} schema(s) linted, {failed} with violations",
        args.files.len()
    );
    Ok(if failed == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

/// Every problem of the schema in `file`, each `path: message`; `rules`
/// runs the schema chain over the parameters' JSON Schema and a context.
fn lint(
    file: &std::path::Path,
    rules: impl Fn(&str, &str) -> Vec<(String, String)>,
) -> Vec<String> {
    let text = match crate::ingest::directory::walk::read_file(file, 4 << 20) {
        Ok(text) => text,
        Err(error) => return vec![error.to_string()],
    };
    let workflow = match read(&text) {
        Ok(workflow) => workflow,
        Err(error) => return vec![error.to_string()],
    };
    let mut found: Vec<String> = check(&workflow)
        .into_iter()
        .map(|v| format!("{}: {}", v.path, v.message))
        .collect();
    let schema = parameters_schema(&workflow).to_string();
    let context = json!({
        "workflowId": workflow.workflow_id,
        "version": workflow.version,
        "engine": workflow.execution.engine,
        "actionType": workflow.action_type,
    })
    .to_string();
    found.extend(
        rules(&schema, &context)
            .into_iter()
            .map(|(path, message)| format!("parameters schema {path}: {message}")),
    );
    found
}
