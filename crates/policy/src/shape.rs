//! Every error in a policy configuration's shape, at once.
//!
//! serde stops at the first unknown field or wrong type, so a file with
//! three typos took three rounds of `policy check`. When the typed read
//! fails, the file is read again as plain data and checked part by part
//! (the limits, each chain, each step, each bundle), each struct's fields
//! compared with the ones its type declares (asked of the type itself, so
//! the lists cannot drift), and each part's own type errors kept. The CEL
//! of every well-formed step is compiled on the way, so a bad expression is
//! listed with the typos rather than after them. Plugins are loaded only
//! once the whole file reads (that needs the runtime).

use super::Decision;
use super::capability::{Grants, Preopen};
use super::cel::RawCel;
use super::cel::{CelLimits, CelPolicy, CelSource};
use super::raw::{RawBundle, RawChain, RawConfig, RawLimits, RawStep};
use serde::de::{self, DeserializeOwned, Visitor};
use serde_json::{Map, Value as Json};
use std::path::Path;

/// Every shape error of `text` (YAML), each prefixed with where it is
/// (`decisions.sanitize.steps[2]: …`). `first` is the error of the typed
/// read, reported alone if the text is not even YAML. CEL files are read
/// relative to `base`.
pub(crate) fn every_error(text: &str, base: &Path, first: String) -> Vec<String> {
    let value: Json = match serde_saphyr::from_str(text) {
        Ok(value) => value,
        // A syntax error: nothing after it can be read.
        Err(_) => return vec![first],
    };
    let mut errors = Vec::new();
    let Some(top) = known_fields::<RawConfig>(&value, "", &mut errors) else {
        return errors;
    };
    for (key, value) in &top {
        match key.as_str() {
            "limits" => {
                typed::<RawLimits>(
                    known_fields::<RawLimits>(value, key, &mut errors),
                    key,
                    &mut errors,
                );
            }
            "decisions" => decisions(value, base, &mut errors),
            "bundles" => bundles(value, &mut errors),
            _ => {
                let one = Map::from_iter([(key.clone(), value.clone())]);
                typed::<RawConfig>(Some(one), "", &mut errors);
            }
        }
    }
    if errors.is_empty() {
        // The parts read on their own but not together: say what serde said.
        errors.push(first);
    } else {
        with_location(&mut errors, &first);
    }
    errors
}

/// Gives the error the typed read stopped at its line and column: the
/// YAML parser knows them; the plain data read here does not.
fn with_location(errors: &mut [String], first: &str) {
    let head = first.lines().next().unwrap_or(first);
    let Some(location) = head
        .split_once("line ")
        .and_then(|(_, rest)| rest.split(':').next())
    else {
        return;
    };
    for error in errors.iter_mut() {
        let message = error.split_once(": ").map_or(error.as_str(), |(_, m)| m);
        let gist = message.split(',').next().unwrap_or(message);
        if head.contains(gist) {
            error.push_str(&format!(" (line {location})"));
            return;
        }
    }
}

fn decisions(value: &Json, base: &Path, errors: &mut Vec<String>) {
    let Some(map) = value.as_object() else {
        errors.push("decisions: expected a map from decision to chain".into());
        return;
    };
    for (name, chain) in map {
        let at = format!("decisions.{name}");
        let Ok(decision) = serde_json::from_value::<Decision>(Json::String(name.clone())) else {
            let all: Vec<&str> = Decision::ALL.iter().map(|d| d.name()).collect();
            errors.push(format!(
                "{at}: unknown decision (known: {})",
                all.join(", ")
            ));
            continue;
        };
        let Some(mut fields) = known_fields::<RawChain>(chain, &at, errors) else {
            continue;
        };
        if let Some(steps) = fields.remove("steps") {
            match steps.as_array() {
                Some(steps) => {
                    for (i, step) in steps.iter().enumerate() {
                        self::step(step, decision, &format!("{at}.steps[{i}]"), base, errors);
                    }
                }
                None => errors.push(format!("{at}.steps: expected a list of steps")),
            }
        }
        typed::<RawChain>(Some(fields), &at, errors);
    }
}

fn step(value: &Json, decision: Decision, at: &str, base: &Path, errors: &mut Vec<String>) {
    let Some(mut fields) = known_fields::<RawStep>(value, at, errors) else {
        return;
    };
    if let Some(cel) = fields.get_mut("cel") {
        let at = format!("{at}.cel");
        *cel = known_fields::<RawCel>(cel, &at, errors).map_or(Json::Null, Json::Object);
    }
    if let Some(grants) = fields.get_mut("grants") {
        *grants = checked_grants(grants, &format!("{at}.grants"), errors);
    }
    let Some(step) = typed::<RawStep>(Some(fields), at, errors) else {
        return;
    };
    // Compile the CEL now, as loading would: a bad expression is listed
    // with the shape errors, not after they are fixed.
    let (cel, file) = match (&step.cel, &step.cel_file) {
        (Some(cel), None) => (cel.clone(), None),
        (None, Some(file)) => {
            let path = base.join(file);
            let read = std::fs::read_to_string(&path)
                .map_err(|e| e.to_string())
                .and_then(|text| {
                    serde_saphyr::from_str::<RawCel>(&text).map_err(|e| e.to_string())
                });
            match read {
                Ok(cel) => (cel, Some(path)),
                Err(e) => {
                    errors.push(format!("{at}: {}: {e}", path.display()));
                    return;
                }
            }
        }
        _ => return,
    };
    let source = CelSource {
        name: cel.name,
        expression: cel.expression,
        message: cel.message,
        path: cel.path,
        file,
    };
    if let Err(e) = CelPolicy::compile(source, decision, CelLimits::default()) {
        errors.push(format!("{at}: {e}"));
    }
}

fn bundles(value: &Json, errors: &mut Vec<String>) {
    let Some(map) = value.as_object() else {
        errors.push("bundles: expected a map from name to bundle".into());
        return;
    };
    for (name, bundle) in map {
        let at = format!("bundles.{name}");
        let Some(mut fields) = known_fields::<RawBundle>(bundle, &at, errors) else {
            continue;
        };
        if let Some(Json::Object(grants)) = fields.get_mut("grants") {
            for (plugin, grant) in grants.iter_mut() {
                *grant = checked_grants(grant, &format!("{at}.grants.{plugin}"), errors);
            }
        }
        typed::<RawBundle>(Some(fields), &at, errors);
    }
}

/// `grants` with its unknown fields (and those of its folders) reported and
/// removed.
fn checked_grants(value: &Json, at: &str, errors: &mut Vec<String>) -> Json {
    let Some(mut fields) = known_fields::<Grants>(value, at, errors) else {
        return Json::Null;
    };
    if let Some(Json::Array(folders)) = fields.get_mut("filesystem") {
        for (i, folder) in folders.iter_mut().enumerate() {
            let at = format!("{at}.filesystem[{i}]");
            *folder = known_fields::<Preopen>(folder, &at, errors).map_or(Json::Null, Json::Object);
        }
    }
    Json::Object(fields)
}

/// The fields of map `value` that `T` declares; each other one is an error
/// naming it and the fields that exist.
fn known_fields<T: DeserializeOwned>(
    value: &Json,
    at: &str,
    errors: &mut Vec<String>,
) -> Option<Map<String, Json>> {
    let prefix = if at.is_empty() {
        String::new()
    } else {
        format!("{at}: ")
    };
    let Some(map) = value.as_object() else {
        // `null` for an absent part reads as its default.
        if !value.is_null() {
            errors.push(format!("{prefix}expected a map, found {}", kind(value)));
        }
        return (value.is_null()).then(Map::new);
    };
    let fields = fields_of::<T>();
    let mut kept = Map::new();
    for (key, value) in map {
        if fields.contains(&key.as_str()) {
            kept.insert(key.clone(), value.clone());
        } else {
            let expected: Vec<String> = fields.iter().map(|f| format!("`{f}`")).collect();
            errors.push(format!(
                "{prefix}unknown field `{key}`, expected one of {}",
                expected.join(", ")
            ));
        }
    }
    Some(kept)
}

/// `fields` read as a `T`; its type errors are recorded.
fn typed<T: DeserializeOwned>(
    fields: Option<Map<String, Json>>,
    at: &str,
    errors: &mut Vec<String>,
) -> Option<T> {
    let fields = fields?;
    match serde_json::from_value(Json::Object(fields)) {
        Ok(value) => Some(value),
        Err(e) if at.is_empty() => {
            errors.push(e.to_string());
            None
        }
        Err(e) => {
            errors.push(format!("{at}: {e}"));
            None
        }
    }
}

fn kind(value: &Json) -> &'static str {
    match value {
        Json::Null => "nothing",
        Json::Bool(_) => "a boolean",
        Json::Number(_) => "a number",
        Json::String(_) => "a string",
        Json::Array(_) => "a list",
        Json::Object(_) => "a map",
    }
}

/// The field names a struct's `Deserialize` declares (after renaming), asked
/// of the type itself: serde hands them to `deserialize_struct`.
fn fields_of<T: DeserializeOwned>() -> &'static [&'static str] {
    struct Probe<'a>(&'a mut &'static [&'static str]);
    #[derive(Debug)]
    struct Stop;
    impl std::fmt::Display for Stop {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.write_str("stop")
        }
    }
    impl std::error::Error for Stop {}
    impl de::Error for Stop {
        fn custom<M: std::fmt::Display>(_: M) -> Self {
            Stop
        }
    }
    impl<'de> de::Deserializer<'de> for Probe<'_> {
        type Error = Stop;
        fn deserialize_any<V: Visitor<'de>>(self, _: V) -> Result<V::Value, Stop> {
            Err(Stop)
        }
        fn deserialize_struct<V: Visitor<'de>>(
            self,
            _name: &'static str,
            fields: &'static [&'static str],
            _visitor: V,
        ) -> Result<V::Value, Stop> {
            *self.0 = fields;
            Err(Stop)
        }
        serde::forward_to_deserialize_any! {
            bool i8 i16 i32 i64 i128 u8 u16 u32 u64 u128 f32 f64 char str string
            bytes byte_buf option unit unit_struct newtype_struct seq tuple
            tuple_struct map enum identifier ignored_any
        }
    }
    let mut fields: &'static [&'static str] = &[];
    let _ = T::deserialize(Probe(&mut fields));
    fields
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn asks_each_type_for_its_fields() {
        assert_eq!(
            fields_of::<RawConfig>(),
            ["limits", "decisions", "bundles", "bundleRefreshSeconds"]
        );
        assert!(fields_of::<RawStep>().contains(&"celFile"));
    }

    #[test]
    fn lists_every_unknown_field_bad_step_and_cel_error() {
        let text = "
limts: {}
limits: { deadlineMs: fast }
decisions:
  sanitize:
    failur: open
    steps:
      - plugin: neat
        setings: {}
      - cel: { name: sum, expression: '1 + 1', mesage: x }
      - cel: { name: broken, expression: 'object.kind ==' }
      - celFile: missing.yaml
  gate:
    steps:
      - plugin: digest-gate
        grants: { network: true, enviroment: [HOME], filesystem: [{ host: ., guset: /d }] }
  matsh: {}
bundles:
  team: { reference: r/x:1, apend: true }
";
        let errors = every_error(text, Path::new("/nonexistent"), "first".into());
        assert!(!errors.iter().any(|e| e.contains("first")));
        let expected = [
            "unknown field `limts`",
            "limits: invalid type: string \"fast\"",
            "decisions.sanitize: unknown field `failur`",
            "decisions.sanitize.steps[0]: unknown field `setings`",
            "decisions.sanitize.steps[1].cel: unknown field `mesage`",
            "decisions.sanitize.steps[1]: CEL policy `sum`: expression `1 + 1`: its result is of type int",
            "decisions.sanitize.steps[2]: CEL policy `broken`: expression `object.kind ==` does not compile",
            "decisions.sanitize.steps[3]: /nonexistent/missing.yaml: ",
            "decisions.gate.steps[0].grants: unknown field `enviroment`",
            "decisions.gate.steps[0].grants.filesystem[0]: unknown field `guset`",
            // What the typo leaves out is missing, and said so too.
            "decisions.gate.steps[0]: missing field `guest`",
            "decisions.matsh: unknown decision",
            "bundles.team: unknown field `apend`",
        ];
        for want in expected {
            assert!(
                errors.iter().any(|e| e.starts_with(want)),
                "missing `{want}` in:\n{}",
                errors.join("\n")
            );
        }
        assert_eq!(errors.len(), expected.len(), "{}", errors.join("\n"));
    }

    #[test]
    fn the_error_the_parser_stopped_at_keeps_its_line() {
        let text = "decisions:\n  sanitize:\n    failur: open\n";
        let first = serde_saphyr::from_str::<RawConfig>(text)
            .unwrap_err()
            .to_string();
        let errors = every_error(text, Path::new("."), first.clone());
        assert_eq!(
            errors,
            [
                "decisions.sanitize: unknown field `failur`, expected one of `failure`, `steps` (line 3 column 5)"
            ]
        );
    }
}
