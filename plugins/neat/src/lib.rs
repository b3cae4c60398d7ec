//! `neat`: removes from a Kubernetes object what the API server and the
//! cluster's controllers added and Git should not hold, and keeps what a
//! person wrote, except values equal to the API server's defaults, which go
//! as they do with kubectl-neat (Git cannot tell a written default from a
//! filled-in one, and the server puts it back either way).
//!
//! It is a deny-list: [`rules::DEFAULT_RULES`] name server state (`status`,
//! `metadata.managedFields`, `uid`, the `creationTimestamp: null` of every
//! embedded template, …), annotations controllers write
//! ([`rules::SERVER_ANNOTATIONS`]), fields the server assigns, and fields
//! equal to the API server's defaults; an operator adds rules through the
//! settings. A field no rule names is always kept.
//!
//! The logic is plain Rust on `serde_json::Value`, so it runs natively too
//! (the benchmarks compare the component against it); the component export
//! lives in [`component`], built only for wasm32.

pub mod path;
pub mod rules;

use path::Segment;
use rules::{DEFAULT_RULES, Lit, Rule, When};
use serde_json::{Map, Value};
use std::borrow::Cow;

/// The plugin's settings, read from its JSON settings.
///
/// ```json
/// { "defaults": true,
///   "rules": [ { "kinds": ["ConfigMap"], "path": "metadata.labels['ci-run']" },
///              { "path": "spec.replicas", "when": { "equals": 1 } } ] }
/// ```
#[derive(Debug, Default)]
pub struct Settings<'a> {
    /// Skip the built-in rules (`"defaults": false`).
    pub skip_defaults: bool,
    /// The operator's rules, applied after the built-in ones.
    pub rules: Vec<Rule<'a>>,
}

impl<'a> Settings<'a> {
    /// Reads settings; every problem is reported with the rule's index.
    pub fn parse(settings: &'a Value) -> Result<Self, String> {
        let Some(map) = settings.as_object() else {
            return Err("settings must be a JSON object".to_owned());
        };
        let mut out = Settings::default();
        for (key, value) in map {
            match key.as_str() {
                "defaults" => {
                    out.skip_defaults =
                        !value.as_bool().ok_or("`defaults` must be true or false")?
                }
                "rules" => {
                    let rules = value.as_array().ok_or("`rules` must be an array")?;
                    for (i, rule) in rules.iter().enumerate() {
                        out.rules
                            .push(parse_rule(rule).map_err(|e| format!("rules[{i}]: {e}"))?);
                    }
                }
                other => {
                    return Err(format!(
                        "unknown setting `{other}` (known: `defaults`, `rules`)"
                    ));
                }
            }
        }
        Ok(out)
    }
}

fn strings<'a>(value: &'a Value, what: &str) -> Result<Vec<&'a str>, String> {
    value
        .as_array()
        .and_then(|items| items.iter().map(Value::as_str).collect())
        .ok_or_else(|| format!("`{what}` must be an array of strings"))
}

fn parse_rule(rule: &Value) -> Result<Rule<'_>, String> {
    let map = rule.as_object().ok_or("a rule must be an object")?;
    let mut kinds = Vec::new();
    let mut path = None;
    let mut when = When::Always;
    for (key, value) in map {
        match key.as_str() {
            "kinds" => kinds = strings(value, "kinds")?,
            "path" => path = Some(value.as_str().ok_or("`path` must be a string")?),
            "when" => when = parse_when(value)?,
            other => {
                return Err(format!(
                    "unknown field `{other}` (known: kinds, path, when)"
                ));
            }
        }
    }
    let path = path.ok_or("a rule needs a `path`")?;
    path::validate(path.strip_prefix("@podSpec").unwrap_or(path))?;
    Ok(Rule {
        kinds: Cow::Owned(kinds),
        path,
        when,
    })
}

fn parse_when(value: &Value) -> Result<When<'_>, String> {
    if let Some(word) = value.as_str() {
        return match word {
            "always" => Ok(When::Always),
            "defaultPullPolicy" => Ok(When::DefaultPullPolicy),
            "sameAsName" => Ok(When::SameAsName),
            other => Err(format!(
                "unknown `when` `{other}` (known: always, defaultPullPolicy, sameAsName, {{equals}}, {{unless}}, {{sameAs}}, {{namePrefix}}, {{named}}, {{annotated}})"
            )),
        };
    }
    let map = value.as_object().filter(|m| m.len() == 1).ok_or(
        "`when` must be a word or an object with one of equals, unless, sameAs, namePrefix, named, annotated",
    )?;
    let (key, arg) = map.iter().next().expect("one entry");
    match key.as_str() {
        "equals" => Ok(When::Equals(Lit::Json(arg))),
        "unless" => Ok(When::Unless(Lit::Json(arg))),
        "sameAs" => Ok(When::SameAs(
            arg.as_str().ok_or("`sameAs` must be a string")?,
        )),
        "namePrefix" => Ok(When::NamePrefix(Cow::Owned(strings(arg, "namePrefix")?))),
        "named" => Ok(When::Named(Cow::Owned(strings(arg, "named")?))),
        "annotated" => {
            let (key, value) = arg
                .as_object()
                .filter(|m| m.len() == 1)
                .and_then(|m| m.iter().next())
                .and_then(|(k, v)| Some((k.as_str(), v.as_str()?)))
                .ok_or("`annotated` must be an object with one annotation and its string value")?;
            Ok(When::Annotated(key, value))
        }
        other => Err(format!("unknown `when` condition `{other}`")),
    }
}

/// Applies the built-in rules (unless skipped) and the operator's rules.
pub fn neaten(object: &mut Value, settings: &Settings<'_>) {
    let kind = object
        .get("kind")
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_owned();
    let original = Original::of(object, settings);
    if !settings.skip_defaults {
        for rule in DEFAULT_RULES {
            apply(object, &kind, &original, rule);
        }
    }
    for rule in &settings.rules {
        apply(object, &kind, &original, rule);
    }
}

/// Sanitizes one object given as JSON text: what the component exports.
pub fn sanitize_json(object: &str, settings: &str) -> Result<String, String> {
    let settings: Value = parse_settings_text(settings)?;
    let settings = Settings::parse(&settings)?;
    let mut object: Value =
        serde_json::from_str(object).map_err(|e| format!("object is not JSON: {e}"))?;
    if !object.is_object() {
        return Err("object is not a JSON object".to_owned());
    }
    neaten(&mut object, &settings);
    serde_json::to_string(&object).map_err(|e| e.to_string())
}

/// Reads the settings text; empty text means no settings.
pub fn parse_settings_text(settings: &str) -> Result<Value, String> {
    if settings.trim().is_empty() {
        return Ok(Value::Object(Map::new()));
    }
    serde_json::from_str(settings).map_err(|e| format!("settings are not JSON: {e}"))
}

/// What rules may look at of the object as it came in, before any rule
/// dropped a part of it.
struct Original {
    name: Value,
    annotations: Map<String, Value>,
}

impl Original {
    fn of(object: &Value, settings: &Settings<'_>) -> Original {
        let meta = object.get("metadata");
        let name = meta.and_then(|m| m.get("name")).cloned();
        // Only the annotations a rule asks about are kept: cloning
        // last-applied-configuration for every object would cost more than
        // all the rules.
        let annotations = meta
            .and_then(|m| m.get("annotations"))
            .and_then(Value::as_object)
            .map(|all| {
                all.iter()
                    .filter(|(key, _)| {
                        (!settings.skip_defaults && DEFAULT_RULES.iter().any(|r| r.asks_about(key)))
                            || settings.rules.iter().any(|r| r.asks_about(key))
                    })
                    .map(|(k, v)| (k.clone(), v.clone()))
                    .collect()
            })
            .unwrap_or_default();
        Original {
            name: name.unwrap_or(Value::Null),
            annotations,
        }
    }
}

fn apply(object: &mut Value, kind: &str, original: &Original, rule: &Rule<'_>) {
    if !rule.kinds.is_empty() && !rule.kinds.contains(&kind) {
        return;
    }
    // Conditions on the whole object are decided here, once, so the walk
    // only ever compares a field with its siblings.
    match &rule.when {
        When::Annotated(key, value) => {
            let annotation = original.annotations.get(*key).and_then(Value::as_str);
            if annotation == Some(*value) {
                walk(object, kind, rule.path, &When::Always);
            }
        }
        When::SameAsName => {
            if !original.name.is_null() {
                walk(
                    object,
                    kind,
                    rule.path,
                    &When::Equals(Lit::Json(&original.name)),
                );
            }
        }
        when => walk(object, kind, rule.path, when),
    }
}

fn walk(object: &mut Value, kind: &str, path: &str, when: &When<'_>) {
    match path.strip_prefix("@podSpec") {
        Some(rest) => {
            let Some(prefix) = rules::pod_spec_prefix(kind) else {
                return;
            };
            let spec = prefix
                .split('.')
                .try_fold(&mut *object, |value, key| value.get_mut(key));
            if let Some(spec) = spec {
                apply_path(spec, rest, when);
            }
        }
        None => apply_path(object, path, when),
    }
}

/// Applies `rest` at `value` and at every value under it (a `**` path).
fn apply_deep(value: &mut Value, rest: &str, when: &When<'_>) {
    apply_path(value, rest, when);
    match value {
        Value::Object(map) => map.values_mut().for_each(|v| apply_deep(v, rest, when)),
        Value::Array(items) => items.iter_mut().for_each(|v| apply_deep(v, rest, when)),
        _ => {}
    }
}

fn apply_path(value: &mut Value, path: &str, when: &When<'_>) {
    let Ok(Some((segment, rest))) = path::next(path) else {
        return;
    };
    match segment {
        Segment::Deep => apply_deep(value, rest, when),
        Segment::Each => {
            if let Value::Array(items) = value {
                for item in items {
                    apply_path(item, rest, when);
                }
            }
        }
        Segment::Key(key) => {
            let Value::Object(map) = value else {
                return;
            };
            match path::next(rest) {
                Ok(None) => {
                    if map.get(key).is_some_and(|field| drops(when, field, map)) {
                        map.remove(key);
                    }
                }
                Ok(Some((Segment::Each, tail))) if matches!(path::next(tail), Ok(None)) => {
                    filter_items(map, key, when)
                }
                _ => {
                    if let Some(child) = map.get_mut(key) {
                        apply_path(child, rest, when);
                    }
                }
            }
        }
    }
}

/// Drops the items of `map[key]` that `when` names (the elements of an
/// array, the entries of a map by their key); an array or map emptied this
/// way goes too, since it held only server additions.
fn filter_items(map: &mut Map<String, Value>, key: &str, when: &When<'_>) {
    let emptied = match map.get_mut(key) {
        Some(Value::Array(items)) if !items.is_empty() => {
            items.retain(|item| !drops_item(when, item));
            items.is_empty()
        }
        Some(Value::Object(entries)) if !entries.is_empty() => {
            entries.retain(|name, value| !drops_entry(when, name, value));
            entries.is_empty()
        }
        _ => false,
    };
    if emptied {
        map.remove(key);
    }
}

fn drops_entry(when: &When<'_>, name: &str, value: &Value) -> bool {
    match when {
        When::NamePrefix(prefixes) => prefixes.iter().any(|p| name.starts_with(p)),
        When::Named(names) => names.contains(&name),
        other => drops_item(other, value),
    }
}

fn drops(when: &When<'_>, field: &Value, siblings: &Map<String, Value>) -> bool {
    match when {
        When::Always => true,
        When::Equals(lit) => lit.matches(field),
        When::Unless(lit) => !lit.matches(field),
        When::SameAs(other) => siblings.get(*other) == Some(field),
        // Resolved in `apply`; item filters never drop a whole field.
        When::NamePrefix(_) | When::Named(_) | When::Annotated(..) | When::SameAsName => false,
        When::DefaultPullPolicy => {
            let image = siblings.get("image").and_then(Value::as_str);
            image.is_some_and(|image| field.as_str() == Some(default_pull_policy(image)))
        }
    }
}

fn drops_item(when: &When<'_>, item: &Value) -> bool {
    match when {
        When::NamePrefix(prefixes) => {
            let name = item
                .as_str()
                .or_else(|| item.get("name").and_then(Value::as_str));
            name.is_some_and(|name| prefixes.iter().any(|p| name.starts_with(p)))
        }
        When::Named(names) => {
            let name = item
                .as_str()
                .or_else(|| item.get("name").and_then(Value::as_str));
            name.is_some_and(|name| names.contains(&name))
        }
        When::Always => true,
        When::Equals(lit) => lit.matches(item),
        When::Unless(lit) => !lit.matches(item),
        When::SameAs(_) | When::DefaultPullPolicy | When::Annotated(..) | When::SameAsName => false,
    }
}

/// The pull policy the API server fills in for `image`: `Always` for an
/// untagged or `:latest` image, `IfNotPresent` otherwise.
fn default_pull_policy(image: &str) -> &'static str {
    if image.contains('@') {
        return "IfNotPresent";
    }
    let last = image.rsplit('/').next().unwrap_or(image);
    match last.split_once(':') {
        Some((_, tag)) if tag != "latest" => "IfNotPresent",
        _ => "Always",
    }
}

#[cfg(target_arch = "wasm32")]
mod component {
    //! The component's exports: the sanitizer world plus a settings check.
    wit_bindgen::generate!({
        inline: "
            package plumbline:neat;
            world neat {
                include plumbline:policy/sanitizer@0.1.0;
                export plumbline:policy/settings@0.1.0;
            }
        ",
        path: "../../wit",
        generate_all,
    });

    struct Neat;

    impl Guest for Neat {
        fn sanitize(object: String, settings: String) -> Result<Option<String>, String> {
            super::sanitize_json(&object, &settings).map(Some)
        }
    }

    impl exports::plumbline::policy::settings::Guest for Neat {
        fn validate_settings(settings: String) -> Result<(), String> {
            let value = super::parse_settings_text(&settings)?;
            super::Settings::parse(&value).map(drop)
        }
    }

    export!(Neat);
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn neat(mut object: Value, settings: Value) -> Value {
        neaten(&mut object, &Settings::parse(&settings).unwrap());
        object
    }

    #[test]
    fn keeps_what_no_rule_names() {
        let object = json!({"apiVersion": "example.com/v1", "kind": "Widget",
            "metadata": {"name": "w", "uid": "u", "labels": {"a": "b"}},
            "spec": {"anything": [1, 2, {"deep": true}]}, "status": {"ready": true}});
        assert_eq!(
            neat(object, json!({})),
            json!({"apiVersion": "example.com/v1", "kind": "Widget",
                "metadata": {"name": "w", "labels": {"a": "b"}},
                "spec": {"anything": [1, 2, {"deep": true}]}})
        );
    }

    #[test]
    fn embedded_metadata_loses_only_the_zero_time_at_any_depth() {
        let rollout = json!({"apiVersion": "argoproj.io/v1alpha1", "kind": "Rollout",
            "metadata": {"name": "r"},
            "spec": {"template": {"metadata": {"creationTimestamp": null, "labels": {"a": "b"}}},
                     "steps": [{"pause": {"metadata": {"creationTimestamp": null}}},
                               {"record": {"metadata": {"creationTimestamp": "2024-01-01T00:00:00Z"}}}]}});
        assert_eq!(
            neat(rollout, json!({})),
            json!({"apiVersion": "argoproj.io/v1alpha1", "kind": "Rollout",
                "metadata": {"name": "r"},
                "spec": {"template": {"metadata": {"labels": {"a": "b"}}},
                         "steps": [{"pause": {}},
                                   {"record": {"metadata": {"creationTimestamp": "2024-01-01T00:00:00Z"}}}]}})
        );
    }

    #[test]
    fn operator_rules_name_map_keys_and_read_annotations() {
        let cm = json!({"kind": "ConfigMap", "metadata": {"name": "a",
            "annotations": {"ci.example.com/run": "7", "ci.example.com/by": "bot", "keep": "x"}},
            "data": {"generated": "1", "k": "v"}});
        let settings = json!({"rules": [
            {"path": "metadata.annotations[*]", "when": {"namePrefix": ["ci.example.com/"]}},
            {"path": "data.generated", "when": {"annotated": {"ci.example.com/by": "bot"}}}]});
        assert_eq!(
            neat(cm, settings),
            json!({"kind": "ConfigMap", "metadata": {"name": "a", "annotations": {"keep": "x"}},
                "data": {"k": "v"}})
        );
        let err = Settings::parse(&json!({"rules": [{"path": "a", "when": {"annotated": "x"}}]}))
            .unwrap_err();
        assert!(err.starts_with("rules[0]: `annotated`"), "{err}");
    }

    #[test]
    fn headless_service_keeps_its_cluster_ip() {
        let svc = json!({"kind": "Service", "spec": {"clusterIP": "None", "clusterIPs": ["None"]}});
        assert_eq!(neat(svc.clone(), json!({})), svc);
        let svc = json!({"kind": "Service", "spec": {"clusterIP": "10.0.0.1", "clusterIPs": ["10.0.0.1"]}});
        assert_eq!(neat(svc, json!({})), json!({"kind": "Service", "spec": {}}));
    }

    #[test]
    fn operator_rules_extend_the_defaults() {
        let cm = json!({"kind": "ConfigMap", "metadata": {"labels": {"ci-run": "7", "app": "x"}}, "data": {"k": ""}});
        let settings =
            json!({"rules": [{"kinds": ["ConfigMap"], "path": "metadata.labels['ci-run']"}]});
        assert_eq!(
            neat(cm, settings),
            json!({"kind": "ConfigMap", "metadata": {"labels": {"app": "x"}}, "data": {"k": ""}})
        );
    }

    #[test]
    fn bad_settings_name_the_rule() {
        let err =
            Settings::parse(&json!({"rules": [{"path": "a"}, {"when": "always"}]})).unwrap_err();
        assert_eq!(err, "rules[1]: a rule needs a `path`");
        let err = Settings::parse(&json!({"rulez": []})).unwrap_err();
        assert!(err.contains("unknown setting `rulez`"), "{err}");
    }

    #[test]
    fn pull_policy_default_follows_the_tag() {
        assert_eq!(default_pull_policy("nginx"), "Always");
        assert_eq!(default_pull_policy("nginx:latest"), "Always");
        assert_eq!(default_pull_policy("nginx:1.27"), "IfNotPresent");
        assert_eq!(default_pull_policy("localhost:5000/nginx"), "Always");
        assert_eq!(default_pull_policy("nginx@sha256:abc"), "IfNotPresent");
    }
}
