//! What a workflow's schema must be before it is registered, beyond its
//! shape: every problem at once, each with the path of what is wrong.
//!
//! The schema-rule chain (the `schema-lint` plugin and CEL rules) runs
//! after these; these are what no operator can turn off: an id and a
//! version the catalog can key by, parameters an execution can be checked
//! against, and regular expressions that cannot be made to explode.

use crate::workflow::{Parameter, ParameterType, Workflow};
use serde::Serialize;
use serde_json::Value;
use std::collections::BTreeSet;

/// The most a `pattern`'s compiled program may take: a regular expression
/// from an image is input like any other.
pub const PATTERN_SIZE_LIMIT: usize = 1 << 20;

/// The longest `pattern` read.
pub const PATTERN_MAX_LEN: usize = 4096;

/// One thing wrong with a schema.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Violation {
    /// Where: `parameters[2].default`, `metadata.version`, ….
    pub path: String,
    /// What is wrong.
    pub message: String,
}

/// Every violation in `workflow`; none means it may be registered.
pub fn check(workflow: &Workflow) -> Vec<Violation> {
    let mut found = Vec::new();
    let mut say = |path: String, message: String| found.push(Violation { path, message });
    if !is_id(&workflow.workflow_id) {
        say(
            "metadata.workflowId".into(),
            format!(
                "`{}` is not a DNS label-like id (lower-case letters, digits, `-` and `.`, at most 253)",
                workflow.workflow_id
            ),
        );
    }
    match version(&workflow.version) {
        _ if workflow.version.len() > VERSION_MAX_LEN => say(
            "metadata.version".into(),
            format!("longer than {VERSION_MAX_LEN} characters"),
        ),
        Err(error) => say(
            "metadata.version".into(),
            format!("`{}` is not a semantic version: {error}", workflow.version),
        ),
        // Build metadata does not make another version (semver: it is
        // ignored in precedence), so it cannot key a different content.
        Ok(v) if !v.build.is_empty() => say(
            "metadata.version".into(),
            format!(
                "`{}` carries build metadata (`+{}`): versions that differ only in it are one version",
                workflow.version, v.build
            ),
        ),
        Ok(_) => {}
    }
    if workflow.description.what.trim().is_empty() {
        say(
            "metadata.description.what".into(),
            "is empty: say what the workflow does".into(),
        );
    }
    let names: Vec<&str> = workflow
        .parameters
        .iter()
        .map(|p| p.name.as_str())
        .collect();
    let mut seen = BTreeSet::new();
    for (i, parameter) in workflow.parameters.iter().enumerate() {
        let at = format!("parameters[{i}]");
        if !seen.insert(parameter.name.as_str()) {
            say(
                format!("{at}.name"),
                format!("`{}` is named twice", parameter.name),
            );
        }
        for (path, message) in check_parameter(parameter, &names) {
            say(format!("{at}{path}"), message);
        }
    }
    found
}

/// `text` as a semantic version; a leading `v` (as kubernaut's `v1.1.0`,
/// and Go's modules) is read too.
pub fn version(text: &str) -> Result<semver::Version, semver::Error> {
    semver::Version::parse(text.strip_prefix('v').unwrap_or(text))
}

/// An id the catalog keys by and a URL path can carry: DNS labels
/// (lower-case letters, digits, `-` inside) joined by single dots.
fn is_id(id: &str) -> bool {
    id.len() <= 253
        && id.split('.').all(|label| {
            !label.is_empty()
                && label.len() <= 63
                && label
                    .chars()
                    .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
                && !label.starts_with('-')
                && !label.ends_with('-')
        })
}

/// The longest parameter name taken (an environment variable's name, or a
/// Tekton param's, in practice far shorter).
pub const NAME_MAX_LEN: usize = 128;

/// The longest version taken.
pub const VERSION_MAX_LEN: usize = 64;

/// A parameter name an execution can pass as a Tekton param and as an
/// environment variable: letters, digits, `_`, `-` and `.`, not too long.
fn is_parameter_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= NAME_MAX_LEN
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.'))
}

fn check_parameter(p: &Parameter, names: &[&str]) -> Vec<(String, String)> {
    let mut found = Vec::new();
    if !is_parameter_name(&p.name) {
        let shown: String = p.name.chars().take(64).collect();
        found.push((
            ".name".into(),
            format!(
                "`{}` is no parameter name (letters, digits, `_`, `-` and `.`, at most {NAME_MAX_LEN})",
                shown.escape_debug()
            ),
        ));
    }
    let numeric = matches!(p.kind, ParameterType::Integer | ParameterType::Number);
    if (p.minimum.is_some() || p.maximum.is_some()) && !numeric {
        found.push((
            ".minimum".into(),
            format!("bounds on a {} parameter", p.kind.json_type()),
        ));
    }
    if let (Some(min), Some(max)) = (p.minimum, p.maximum)
        && min > max
    {
        found.push((
            ".minimum".into(),
            format!("{min} is above the maximum {max}"),
        ));
    }
    let mut compiled = None;
    if let Some(pattern) = &p.pattern {
        if p.kind != ParameterType::String {
            found.push((
                ".pattern".into(),
                format!("a pattern on a {} parameter", p.kind.json_type()),
            ));
        }
        match compile(pattern) {
            Ok(re) => compiled = Some(re),
            Err(message) => found.push((".pattern".into(), message)),
        }
    }
    // The pattern is compiled once for every value checked against it.
    let fit = |value: &Value| misfit_with(p, value, compiled.as_ref());
    if let Some(allowed) = &p.allowed {
        if allowed.is_empty() {
            found.push((".enum".into(), "is empty: no value could be passed".into()));
        }
        for (j, value) in allowed.iter().enumerate() {
            if let Some(message) = fit(value) {
                found.push((format!(".enum[{j}]"), message));
            }
        }
    }
    if let Some(default) = &p.default
        && let Some(message) = fit(default)
    {
        found.push((".default".into(), message));
    }
    for (j, other) in p.depends_on.iter().enumerate() {
        if !names.contains(&other.as_str()) {
            found.push((
                format!(".dependsOn[{j}]"),
                format!("`{other}` is no parameter of this workflow"),
            ));
        }
    }
    found
}

/// `pattern` compiled under [`PATTERN_SIZE_LIMIT`], or why not.
pub fn compile(pattern: &str) -> Result<regex::Regex, String> {
    if pattern.len() > PATTERN_MAX_LEN {
        return Err(format!("longer than {PATTERN_MAX_LEN} characters"));
    }
    regex::RegexBuilder::new(pattern)
        .size_limit(PATTERN_SIZE_LIMIT)
        .dfa_size_limit(PATTERN_SIZE_LIMIT)
        .build()
        .map_err(|e| format!("does not compile: {e}"))
}

/// Why `value` cannot be a value of `p`; `None` if it can.
pub(crate) fn misfit(p: &Parameter, value: &Value) -> Option<String> {
    let compiled = p
        .pattern
        .as_deref()
        .and_then(|pattern| compile(pattern).ok());
    misfit_with(p, value, compiled.as_ref())
}

/// [`misfit`], with `p`'s pattern compiled already.
fn misfit_with(p: &Parameter, value: &Value, pattern: Option<&regex::Regex>) -> Option<String> {
    let fits = match p.kind {
        ParameterType::String => value.is_string(),
        ParameterType::Integer => value.is_i64() || value.is_u64(),
        ParameterType::Number => value.is_number(),
        ParameterType::Boolean => value.is_boolean(),
        ParameterType::Array => value.is_array(),
    };
    if !fits {
        return Some(format!("{value} is not of type {}", p.kind.json_type()));
    }
    if let Some(number) = value.as_f64()
        && (p.minimum.is_some_and(|min| number < min) || p.maximum.is_some_and(|max| number > max))
    {
        let bound = |b: Option<f64>| b.map_or_else(|| "…".to_owned(), |b| b.to_string());
        return Some(format!(
            "{value} is out of the bounds [{}, {}]",
            bound(p.minimum),
            bound(p.maximum)
        ));
    }
    if let (Some(text), Some(re)) = (value.as_str(), pattern)
        && !re.is_match(text)
    {
        let shown: String = text.chars().take(64).collect();
        return Some(format!("`{shown}` does not match the pattern"));
    }
    None
}
