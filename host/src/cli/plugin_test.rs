//! `plumbline plugin test`: how a plugin author unit-tests a plugin through
//! wasmtime, against fixture pairs.
//!
//! A fixtures folder holds `NAME.input.(json|yaml)` and
//! `NAME.expected.(json|yaml)` pairs, and optionally `settings.(json|yaml)`.
//! What an input and an expectation hold depends on the plugin's decision,
//! found from the world the component implements:
//!
//! | decision | input | expected |
//! |---|---|---|
//! | sanitize | an object | the sanitized object, or `null` for "do not write" |
//! | match | `{event: {operation, group, version, kind, resource, namespace, name, …}, rules: […]}` | the matching rule indexes |
//! | schema | `{schema: …, context: …}` | the violations, `[{path, message}]` |
//! | gate | the request | `allow`, or `{deny: [reasons]}` |
//!
//! An expectation `{error: "text"}` passes when the plugin fails with a
//! message containing that text.

use super::GlobalArgs;
use crate::layout::yaml;
use crate::model::{Event, Operation, Target};
use crate::policy::bindings::Verdict;
use crate::policy::capability::Grants;
use crate::policy::{Decision, Plugin, PluginSource, PolicyError, Runtime, RuntimeConfig};
use anyhow::{Context as _, bail};
use clap::Args;
use serde_json::{Value, json};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

/// Arguments of `plumbline plugin test`.
#[derive(Debug, Args)]
pub struct PluginTestArgs {
    /// The component to test (a `.wasm` file).
    #[arg(value_name = "COMPONENT")]
    component: PathBuf,
    /// Folder of `NAME.input.*` / `NAME.expected.*` pairs.
    #[arg(long, value_name = "DIR")]
    fixtures: PathBuf,
    /// The plugin's settings as JSON; overrides the folder's `settings.*`.
    #[arg(long, value_name = "JSON")]
    settings: Option<String>,
}

/// Runs every fixture; the exit status is 1 if any fails.
pub fn run(global: &GlobalArgs, args: PluginTestArgs) -> anyhow::Result<ExitCode> {
    let bytes = std::fs::read(&args.component)
        .with_context(|| format!("reading {}", args.component.display()))?;
    let settings = match &args.settings {
        Some(text) => serde_json::from_str::<Value>(text).context("--settings is not JSON")?,
        None => read_optional(&args.fixtures, "settings")?.unwrap_or_else(|| json!({})),
    };
    let runtime = Runtime::new(&RuntimeConfig {
        cache_dir: global.cache_dir(),
        ..RuntimeConfig::default()
    })?;
    let name = args
        .component
        .file_stem()
        .map_or_else(|| "plugin".to_owned(), |s| s.to_string_lossy().into_owned());
    let plugin = load_any_world(&runtime, &name, &bytes, &settings.to_string())?;
    println!("{name}: a {} plugin", plugin.decision());
    let fixtures = fixture_names(&args.fixtures)?;
    if fixtures.is_empty() {
        bail!(
            "{}: no NAME.input.(json|yaml) fixtures",
            args.fixtures.display()
        );
    }
    let mut failed = 0;
    for fixture in &fixtures {
        let input = read_optional(&args.fixtures, &format!("{fixture}.input"))?.expect("listed");
        let expected = read_optional(&args.fixtures, &format!("{fixture}.expected"))?
            .with_context(|| format!("{fixture}: no {fixture}.expected.(json|yaml)"))?;
        let actual = run_one(&plugin, &input).unwrap_or_else(|e| json!({"error": e.to_string()}));
        if passes(&actual, &expected) {
            println!("PASS {fixture}");
        } else {
            failed += 1;
            println!("FAIL {fixture}");
            print!("{}", diff(&expected, &actual)?);
        }
    }
    println!("{} passed, {failed} failed", fixtures.len() - failed);
    Ok(if failed == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

/// Loads the component for whichever decision's world it implements.
fn load_any_world(
    runtime: &Runtime,
    name: &str,
    bytes: &[u8],
    settings: &str,
) -> anyhow::Result<Plugin> {
    let mut mismatches = Vec::new();
    for decision in Decision::ALL {
        let source = PluginSource {
            name,
            decision,
            bytes,
            settings: settings.to_owned(),
            grants: Grants::default(),
        };
        match runtime.load(source) {
            Ok(plugin) => return Ok(plugin),
            Err(error @ PolicyError::WrongWorld { .. }) => mismatches.push(error.to_string()),
            Err(error) => return Err(error.into()),
        }
    }
    bail!(
        "{name} implements none of the worlds sanitizer, matcher, schema-rule, drift-gate:\n  {}",
        mismatches.join("\n  ")
    )
}

fn run_one(plugin: &Plugin, input: &Value) -> Result<Value, PolicyError> {
    Ok(match plugin.decision() {
        Decision::Sanitize => match plugin.sanitize(&input.to_string())? {
            Some(text) => {
                serde_json::from_str(&text).expect("the plugin checks its output is JSON")
            }
            None => Value::Null,
        },
        Decision::Match => {
            let event = event_from(&input["event"]);
            let rules: Vec<String> = input["rules"]
                .as_array()
                .map(|r| r.iter().map(Value::to_string).collect())
                .unwrap_or_default();
            json!(plugin.matches(&event, &rules)?)
        }
        Decision::Schema => {
            let context = input.get("context").cloned().unwrap_or_else(|| json!({}));
            let found = plugin.check(&input["schema"].to_string(), &context.to_string())?;
            json!(
                found
                    .iter()
                    .map(|v| json!({"path": v.path, "message": v.message}))
                    .collect::<Vec<_>>()
            )
        }
        Decision::Gate => match plugin.decide(&input.to_string())? {
            Verdict::Allow => json!("allow"),
            Verdict::Deny(reasons) => json!({"deny": reasons}),
        },
    })
}

fn event_from(event: &Value) -> Event {
    let text = |key: &str| {
        event
            .get(key)
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_owned()
    };
    let optional = |key: &str| event.get(key).and_then(Value::as_str).map(str::to_owned);
    Event {
        operation: match event.get("operation").and_then(Value::as_str) {
            Some("CREATE") => Operation::Create,
            Some("DELETE") => Operation::Delete,
            _ => Operation::Update,
        },
        target: Target {
            group: text("group"),
            version: text("version"),
            kind: text("kind"),
            resource: text("resource"),
            subresource: optional("subresource"),
            namespace: optional("namespace"),
            name: text("name"),
        },
        object: event
            .get("object")
            .cloned()
            .unwrap_or_else(|| json!({}))
            .to_string(),
        username: optional("username"),
        uid: optional("uid"),
        resource_version: optional("resourceVersion"),
        watched: false,
    }
}

fn passes(actual: &Value, expected: &Value) -> bool {
    match (
        expected.get("error").and_then(Value::as_str),
        actual.get("error").and_then(Value::as_str),
    ) {
        (Some(want), Some(got)) if expected.as_object().is_some_and(|m| m.len() == 1) => {
            got.contains(want)
        }
        _ => actual == expected,
    }
}

fn diff(expected: &Value, actual: &Value) -> anyhow::Result<String> {
    let (expected, actual) = (
        yaml::canonical(expected).map_err(anyhow::Error::msg)?,
        yaml::canonical(actual).map_err(anyhow::Error::msg)?,
    );
    let diff = similar::TextDiff::from_lines(&expected, &actual);
    Ok(diff
        .unified_diff()
        .context_radius(3)
        .header("expected", "actual")
        .to_string())
}

/// The fixture names in `dir`: every `NAME.input.json|yaml|yml`, sorted.
fn fixture_names(dir: &Path) -> anyhow::Result<Vec<String>> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .with_context(|| format!("reading {}", dir.display()))?
        .filter_map(|entry| {
            let name = entry.ok()?.file_name().to_string_lossy().into_owned();
            ["json", "yaml", "yml"].iter().find_map(|ext| {
                name.strip_suffix(&format!(".input.{ext}"))
                    .map(str::to_owned)
            })
        })
        .collect();
    names.sort();
    Ok(names)
}

/// Reads `dir/stem.json`, `.yaml` or `.yml`, if one exists.
fn read_optional(dir: &Path, stem: &str) -> anyhow::Result<Option<Value>> {
    for ext in ["json", "yaml", "yml"] {
        let path = dir.join(format!("{stem}.{ext}"));
        if path.exists() {
            let text = std::fs::read_to_string(&path)
                .with_context(|| format!("reading {}", path.display()))?;
            let value = serde_saphyr::from_str(&text)
                .with_context(|| format!("parsing {}", path.display()))?;
            return Ok(Some(value));
        }
    }
    Ok(None)
}
