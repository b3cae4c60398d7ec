//! `rule-match`: the WatchRule rule-list semantics, one event against every
//! rule in a single call.
//!
//! A rule (JSON) has the fields of a `WatchRule`/`ClusterWatchRule` rule:
//!
//! ```json
//! { "operations": ["CREATE", "UPDATE"], "apiGroups": ["apps"], "apiVersions": ["v1"],
//!   "resources": ["deployments", "deployments/scale"], "scope": "Namespaced",
//!   "namespaces": ["payments"] }
//! ```
//!
//! - `operations`, `apiGroups`, `apiVersions`: absent or empty means all; `*`
//!   is a wildcard; the core group is `""`;
//! - `resources` (required): `deployments` selects the resource itself and
//!   none of its subresources; `deployments/status` a subresource; `*` every
//!   resource but no subresource; `*/scale` that subresource of every
//!   resource; `*/*` everything;
//! - `scope`: `Cluster` selects cluster-scoped objects only, `Namespaced`
//!   namespaced ones only, `*` or absent both;
//! - `namespaces`: when present, a namespaced object must be in one of them;
//! - `excludeResources`, `excludeApiGroups`: resources (any group) and groups
//!   that a rule never selects, so "everything but the noisy kinds" is one
//!   rule.

use serde_json::Value;

/// The parts of an event a rule looks at.
#[derive(Debug, Clone, Copy)]
pub struct Subject<'a> {
    /// `CREATE`, `UPDATE` or `DELETE`.
    pub operation: &'a str,
    pub group: &'a str,
    pub version: &'a str,
    pub resource: &'a str,
    pub subresource: Option<&'a str>,
    pub namespace: Option<&'a str>,
}

/// One rule, read from its JSON text.
#[derive(Debug, Default)]
pub struct Rule {
    operations: Vec<String>,
    api_groups: Vec<String>,
    api_versions: Vec<String>,
    resources: Vec<String>,
    scope: Option<String>,
    namespaces: Option<Vec<String>>,
    exclude_resources: Vec<String>,
    exclude_api_groups: Vec<String>,
}

fn strings(value: &Value, field: &str) -> Result<Vec<String>, String> {
    value
        .as_array()
        .and_then(|items| {
            items
                .iter()
                .map(|i| i.as_str().map(str::to_owned))
                .collect()
        })
        .ok_or_else(|| format!("`{field}` must be an array of strings"))
}

impl Rule {
    /// Reads a rule; the message names the field at fault.
    pub fn parse(text: &str) -> Result<Rule, String> {
        let value: Value = serde_json::from_str(text).map_err(|e| format!("not JSON: {e}"))?;
        let map = value.as_object().ok_or("a rule must be a JSON object")?;
        let mut rule = Rule::default();
        for (key, value) in map {
            match key.as_str() {
                "operations" => {
                    rule.operations = strings(value, key)?;
                    if let Some(bad) = rule
                        .operations
                        .iter()
                        .find(|o| !matches!(o.as_str(), "CREATE" | "UPDATE" | "DELETE" | "*"))
                    {
                        return Err(format!(
                            "unknown operation `{bad}` (known: CREATE, UPDATE, DELETE, *)"
                        ));
                    }
                }
                "apiGroups" => rule.api_groups = strings(value, key)?,
                "apiVersions" => rule.api_versions = strings(value, key)?,
                "resources" => rule.resources = strings(value, key)?,
                "scope" => {
                    let scope = value.as_str().ok_or("`scope` must be a string")?;
                    if !matches!(scope, "Cluster" | "Namespaced" | "*") {
                        return Err(format!(
                            "unknown scope `{scope}` (known: Cluster, Namespaced, *)"
                        ));
                    }
                    rule.scope = Some(scope.to_owned());
                }
                "namespaces" => rule.namespaces = Some(strings(value, key)?),
                "excludeResources" => rule.exclude_resources = strings(value, key)?,
                "excludeApiGroups" => rule.exclude_api_groups = strings(value, key)?,
                other => return Err(format!("unknown field `{other}`")),
            }
        }
        if rule.resources.is_empty() {
            return Err("`resources` must name at least one resource".to_owned());
        }
        Ok(rule)
    }

    /// Whether this rule selects `subject`.
    pub fn matches(&self, subject: &Subject<'_>) -> bool {
        any_or_empty(&self.operations, subject.operation)
            && any_or_empty(&self.api_groups, subject.group)
            && any_or_empty(&self.api_versions, subject.version)
            && self.resources.iter().any(|r| resource_matches(r, subject))
            && self.scope_matches(subject.namespace)
            && !self.exclude_resources.iter().any(|r| r == subject.resource)
            && !self.exclude_api_groups.iter().any(|g| g == subject.group)
    }

    fn scope_matches(&self, namespace: Option<&str>) -> bool {
        let scope_ok = match self.scope.as_deref() {
            Some("Cluster") => namespace.is_none(),
            Some("Namespaced") => namespace.is_some(),
            _ => true,
        };
        let namespace_ok = match (&self.namespaces, namespace) {
            (Some(allowed), Some(ns)) => allowed.iter().any(|a| a == ns),
            _ => true,
        };
        scope_ok && namespace_ok
    }
}

fn any_or_empty(list: &[String], value: &str) -> bool {
    list.is_empty() || list.iter().any(|item| item == "*" || item == value)
}

fn resource_matches(pattern: &str, subject: &Subject<'_>) -> bool {
    let (resource, sub) = match pattern.split_once('/') {
        Some((resource, sub)) => (resource, Some(sub)),
        None => (pattern, None),
    };
    let resource_ok = resource == "*" || resource == subject.resource;
    let sub_ok = match (sub, subject.subresource) {
        (None, None) => true,
        (None, Some(_)) | (Some(_), None) => false,
        (Some(pattern), Some(actual)) => pattern == "*" || pattern == actual,
    };
    resource_ok && sub_ok
}

/// Decides `subject` against every rule, answering the indexes that match.
pub fn matching(subject: &Subject<'_>, rules: &[String]) -> Result<Vec<u32>, String> {
    let mut out = Vec::new();
    for (i, text) in rules.iter().enumerate() {
        let rule = Rule::parse(text).map_err(|e| format!("rule {i}: {e}"))?;
        if rule.matches(subject) {
            out.push(i as u32);
        }
    }
    Ok(out)
}

#[cfg(target_arch = "wasm32")]
mod component {
    //! The component's export: the matcher world.
    wit_bindgen::generate!({ world: "plumbline:policy/matcher@0.1.0", path: "../../wit" });

    use plumbline::policy::types::Operation;

    struct RuleMatch;

    impl Guest for RuleMatch {
        fn matches(
            event: Event,
            rules: Vec<String>,
            _settings: String,
        ) -> Result<Vec<u32>, String> {
            let target = &event.target;
            let subject = super::Subject {
                operation: match event.operation {
                    Operation::Create => "CREATE",
                    Operation::Update => "UPDATE",
                    Operation::Delete => "DELETE",
                },
                group: &target.group,
                version: &target.version,
                resource: &target.resource,
                subresource: target.subresource.as_deref(),
                namespace: target.namespace.as_deref(),
            };
            super::matching(&subject, &rules)
        }
    }

    export!(RuleMatch);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn subject<'a>(resource: &'a str, sub: Option<&'a str>, ns: Option<&'a str>) -> Subject<'a> {
        Subject {
            operation: "UPDATE",
            group: "apps",
            version: "v1",
            resource,
            subresource: sub,
            namespace: ns,
        }
    }

    fn m(rule: &str, s: Subject<'_>) -> bool {
        Rule::parse(rule).unwrap().matches(&s)
    }

    #[test]
    fn subresources_only_when_named() {
        let r = r#"{"resources": ["deployments"]}"#;
        assert!(m(r, subject("deployments", None, Some("a"))));
        assert!(!m(r, subject("deployments", Some("status"), Some("a"))));
        assert!(m(
            r#"{"resources": ["deployments/scale"]}"#,
            subject("deployments", Some("scale"), None)
        ));
        assert!(!m(
            r#"{"resources": ["*"]}"#,
            subject("deployments", Some("scale"), None)
        ));
        assert!(m(
            r#"{"resources": ["*/scale"]}"#,
            subject("replicasets", Some("scale"), None)
        ));
        assert!(m(
            r#"{"resources": ["*/*"]}"#,
            subject("pods", Some("log"), None)
        ));
    }

    #[test]
    fn scope_and_namespaces() {
        let cluster = r#"{"resources": ["*"], "scope": "Cluster"}"#;
        assert!(m(cluster, subject("nodes", None, None)));
        assert!(!m(cluster, subject("pods", None, Some("a"))));
        let ns = r#"{"resources": ["*"], "scope": "Namespaced", "namespaces": ["a"]}"#;
        assert!(m(ns, subject("pods", None, Some("a"))));
        assert!(!m(ns, subject("pods", None, Some("b"))));
        assert!(!m(ns, subject("nodes", None, None)));
    }

    #[test]
    fn exclusions_win() {
        let r =
            r#"{"resources": ["*"], "excludeResources": ["pods"], "excludeApiGroups": ["apps"]}"#;
        assert!(!m(r, subject("pods", None, Some("a"))));
        assert!(!m(r, subject("deployments", None, Some("a"))));
        let mut core = subject("configmaps", None, Some("a"));
        core.group = "";
        assert!(m(r, core));
    }

    #[test]
    fn groups_versions_operations() {
        let r = r#"{"operations": ["CREATE"], "apiGroups": [""], "resources": ["*"]}"#;
        assert!(!m(r, subject("deployments", None, None)));
        let r = r#"{"operations": ["*"], "apiGroups": ["apps"], "apiVersions": ["v1"], "resources": ["deployments"]}"#;
        assert!(m(r, subject("deployments", None, None)));
    }

    #[test]
    fn bad_rules_are_named() {
        let err = matching(
            &subject("x", None, None),
            &[
                r#"{"resources":["*"]}"#.into(),
                r#"{"resources":[]}"#.into(),
            ],
        )
        .unwrap_err();
        assert_eq!(err, "rule 1: `resources` must name at least one resource");
        assert!(
            Rule::parse(r#"{"resources":["*"],"operations":["PATCH"]}"#)
                .unwrap_err()
                .contains("PATCH")
        );
    }
}
