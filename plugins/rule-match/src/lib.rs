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
//!   that a rule never selects.
//!
//! What a rule selects through a wildcard (`*` in `resources`, an absent or
//! `*` `apiGroups`) leaves out what the plugin's settings skip: by default
//! the kinds that are not desired state ([`NOISY_RESOURCES`],
//! [`NOISY_GROUPS`]) and objects another object controls (an
//! `ownerReferences` entry with `controller: true`: a Deployment's
//! ReplicaSets, a CronJob's Jobs, every controller's Pods), since their
//! owner is what a person wrote. A rule that names a resource or a group
//! selects it anyway, controlled objects included: `resources: [pods]`
//! mirrors pods. The settings replace each part of the default:
//!
//! ```json
//! { "skip": { "resources": ["pods", "leases.coordination.k8s.io"],
//!             "apiGroups": ["metrics.k8s.io"], "controlled": false } }
//! ```
//!
//! `resources` are written as kubectl writes them, `resource.group`, with no
//! group for the core group (`events` is the core group's,
//! `events.events.k8s.io` the other).

use plumbline_kinds::scope::strings;
pub use plumbline_kinds::scope::{
    DESIRED_STATE, DESIRED_STATE_PRESET, NOISY_GROUPS, NOISY_RESOURCES, Skip, is_desired_state,
    is_resource,
};
use serde_json::Value;

/// Whether `subject`, selected by `rule`, is left out by `skip`.
fn skips(skip: &Skip, rule: &Rule, subject: &Subject<'_>, object: &mut Object<'_>) -> bool {
    let named_resource = rule.resources.iter().any(|r| {
        r.split_once('/')
            .map_or(r.as_str(), |(resource, _)| resource)
            == subject.resource
            || (r == DESIRED_STATE_PRESET && is_desired_state(subject.group, subject.resource))
    });
    let named_group = rule.api_groups.iter().any(|g| g == subject.group);
    let noisy = |name: &String| is_resource(name, subject.group, subject.resource);
    if !named_resource && skip.resources.iter().any(noisy) {
        return true;
    }
    if !named_group && skip.api_groups.iter().any(|g| g == subject.group) {
        return true;
    }
    !named_resource && skip.controlled && object.is_controlled()
}

/// The event's object, read only when a decision needs it and then once.
struct Object<'a> {
    text: &'a str,
    controlled: Option<bool>,
}

impl Object<'_> {
    /// Whether an `ownerReferences` entry says another object controls this
    /// one. An object that does not parse is not controlled: the sanitize
    /// chain reports it with its name, which this answer cannot.
    fn is_controlled(&mut self) -> bool {
        *self.controlled.get_or_insert_with(|| {
            #[derive(serde::Deserialize)]
            struct Meta {
                #[serde(default, rename = "ownerReferences")]
                owner_references: Vec<Owner>,
            }
            #[derive(serde::Deserialize)]
            struct Owner {
                #[serde(default)]
                controller: Option<bool>,
            }
            #[derive(serde::Deserialize)]
            struct Head {
                #[serde(default)]
                metadata: Option<Meta>,
            }
            serde_json::from_str::<Head>(self.text)
                .ok()
                .and_then(|head| head.metadata)
                .is_some_and(|meta| {
                    meta.owner_references
                        .iter()
                        .any(|o| o.controller == Some(true))
                })
        })
    }
}

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
    let resource_ok = resource == "*"
        || resource == subject.resource
        || (resource == DESIRED_STATE_PRESET && is_desired_state(subject.group, subject.resource));
    let sub_ok = match (sub, subject.subresource) {
        (None, None) => true,
        (None, Some(_)) | (Some(_), None) => false,
        (Some(pattern), Some(actual)) => pattern == "*" || pattern == actual,
    };
    resource_ok && sub_ok
}

/// Decides `subject` (whose object is the JSON text `object`) against every
/// rule, answering the indexes that match and are not skipped.
pub fn matching(
    subject: &Subject<'_>,
    object: &str,
    rules: &[String],
    skip: &Skip,
) -> Result<Vec<u32>, String> {
    let mut object = Object {
        text: object,
        controlled: None,
    };
    let mut out = Vec::new();
    for (i, text) in rules.iter().enumerate() {
        let rule = Rule::parse(text).map_err(|e| format!("rule {i}: {e}"))?;
        if rule.matches(subject) && !skips(skip, &rule, subject, &mut object) {
            out.push(i as u32);
        }
    }
    Ok(out)
}

#[cfg(target_arch = "wasm32")]
mod component {
    //! The component's exports: the matcher world plus a settings check.
    wit_bindgen::generate!({
        inline: "
            package plumbline:rule-match;
            world rule-match {
                include plumbline:policy/matcher@0.1.0;
                export plumbline:policy/settings@0.1.0;
            }
        ",
        path: "../../wit",
        generate_all,
    });

    use plumbline::policy::types::Operation;

    struct RuleMatch;

    impl Guest for RuleMatch {
        fn matches(event: Event, rules: Vec<String>, settings: String) -> Result<Vec<u32>, String> {
            let skip = super::Skip::from_settings(&settings)?;
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
            super::matching(&subject, &event.object, &rules, &skip)
        }
    }

    impl exports::plumbline::policy::settings::Guest for RuleMatch {
        fn validate_settings(settings: String) -> Result<(), String> {
            super::Skip::from_settings(&settings).map(drop)
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
            "{}",
            &[
                r#"{"resources":["*"]}"#.into(),
                r#"{"resources":[]}"#.into(),
            ],
            &Skip::default(),
        )
        .unwrap_err();
        assert_eq!(err, "rule 1: `resources` must name at least one resource");
        assert!(
            Rule::parse(r#"{"resources":["*"],"operations":["PATCH"]}"#)
                .unwrap_err()
                .contains("PATCH")
        );
    }

    fn selected(rule: &str, s: Subject<'_>, object: &str, skip: &Skip) -> bool {
        matching(&s, object, &[rule.to_owned()], skip).unwrap() == [0]
    }

    fn in_group<'a>(group: &'a str, resource: &'a str, ns: Option<&'a str>) -> Subject<'a> {
        Subject {
            group,
            ..subject(resource, None, ns)
        }
    }

    const OWNED: &str = r#"{"metadata": {"ownerReferences": [
        {"apiVersion": "apps/v1", "kind": "Deployment", "name": "web", "uid": "u", "controller": true}]}}"#;
    const REFERENCED: &str = r#"{"metadata": {"ownerReferences": [
        {"apiVersion": "v1", "kind": "ConfigMap", "name": "parent", "uid": "u"}]}}"#;

    #[test]
    fn a_wildcard_skips_the_noisy_kinds_by_resource_and_group() {
        let all = r#"{"resources": ["*"]}"#;
        let skip = Skip::default();
        assert!(!selected(all, in_group("", "pods", Some("a")), "{}", &skip));
        assert!(!selected(all, in_group("", "nodes", None), "{}", &skip));
        assert!(!selected(
            all,
            in_group("metrics.k8s.io", "nodes", None),
            "{}",
            &skip
        ));
        assert!(!selected(
            all,
            in_group("metrics.k8s.io", "pods", Some("a")),
            "{}",
            &skip
        ));
        assert!(!selected(
            all,
            in_group("coordination.k8s.io", "leases", Some("a")),
            "{}",
            &skip
        ));
        assert!(!selected(
            all,
            in_group("events.k8s.io", "events", Some("a")),
            "{}",
            &skip
        ));
        // Only the group named: another group's `nodes` or `leases` is desired state.
        assert!(selected(
            all,
            in_group("example.com", "nodes", None),
            "{}",
            &skip
        ));
        assert!(selected(
            all,
            in_group("example.com", "leases", Some("a")),
            "{}",
            &skip
        ));
        assert!(selected(
            all,
            in_group("apps", "deployments", Some("a")),
            "{}",
            &skip
        ));
        // A CronJob is written by a person; the Jobs it makes are
        // controlled, and skipped as such.
        assert!(selected(
            all,
            in_group("batch", "cronjobs", Some("a")),
            "{}",
            &skip
        ));
        assert!(!selected(
            all,
            in_group("batch", "jobs", Some("a")),
            OWNED,
            &skip
        ));
    }

    #[test]
    fn the_desired_state_preset_selects_what_a_team_writes_and_no_more() {
        let skip = Skip::default();
        let preset = r#"{"resources": ["@desired-state"]}"#;
        for (group, resource) in [
            ("apps", "deployments"),
            ("", "configmaps"),
            ("networking.k8s.io", "networkpolicies"),
            ("rbac.authorization.k8s.io", "clusterroles"),
        ] {
            let namespace = (resource != "clusterroles").then_some("a");
            assert!(
                selected(preset, in_group(group, resource, namespace), "{}", &skip),
                "{group}/{resource}"
            );
        }
        for (group, resource) in [
            ("", "pods"),
            ("apps", "replicasets"),
            ("example.com", "widgets"),
        ] {
            assert!(
                !selected(preset, in_group(group, resource, Some("a")), "{}", &skip),
                "{group}/{resource}"
            );
        }
        // What the preset names is named: a controlled object is kept.
        assert!(selected(
            preset,
            in_group("apps", "deployments", Some("a")),
            OWNED,
            &skip
        ));
    }

    #[test]
    fn a_rule_that_names_a_noisy_kind_selects_it() {
        let skip = Skip::default();
        let pods = r#"{"resources": ["pods"]}"#;
        assert!(selected(
            pods,
            in_group("", "pods", Some("a")),
            OWNED,
            &skip
        ));
        let metrics = r#"{"apiGroups": ["metrics.k8s.io"], "resources": ["*"]}"#;
        assert!(selected(
            metrics,
            in_group("metrics.k8s.io", "nodes", None),
            "{}",
            &skip
        ));
        let replicasets = r#"{"resources": ["replicasets"]}"#;
        assert!(selected(
            replicasets,
            in_group("apps", "replicasets", Some("a")),
            OWNED,
            &skip
        ));
    }

    #[test]
    fn a_wildcard_skips_only_what_a_controller_owns() {
        let all = r#"{"resources": ["*"]}"#;
        let rs = in_group("apps", "replicasets", Some("a"));
        let skip = Skip::default();
        assert!(!selected(all, rs, OWNED, &skip));
        assert!(
            selected(all, rs, REFERENCED, &skip),
            "an owner that is not a controller"
        );
        assert!(selected(all, rs, "{}", &skip));
        assert!(
            selected(all, rs, "not json", &skip),
            "left to the sanitizer to report"
        );
        let keep = Skip {
            controlled: false,
            ..Skip::default()
        };
        assert!(selected(all, rs, OWNED, &keep));
    }

    #[test]
    fn settings_replace_each_part_of_the_default() {
        assert_eq!(Skip::from_settings("").unwrap(), Skip::default());
        assert_eq!(Skip::from_settings("{}").unwrap(), Skip::default());
        let skip = Skip::from_settings(r#"{"skip": {"resources": ["configmaps"]}}"#).unwrap();
        assert_eq!(skip.resources, ["configmaps"]);
        assert_eq!(skip.api_groups, Skip::default().api_groups);
        assert!(skip.controlled);
        let all = r#"{"resources": ["*"]}"#;
        assert!(selected(all, in_group("", "pods", Some("a")), "{}", &skip));
        assert!(!selected(
            all,
            in_group("", "configmaps", Some("a")),
            "{}",
            &skip
        ));
        let skip =
            Skip::from_settings(r#"{"skip": {"apiGroups": [], "controlled": false}}"#).unwrap();
        assert!(skip.api_groups.is_empty() && !skip.controlled);
    }

    #[test]
    fn bad_settings_are_named() {
        let err = |text: &str| Skip::from_settings(text).unwrap_err();
        assert!(err(r#"{"skips": {}}"#).contains("unknown setting `skips`"));
        assert!(err(r#"{"skip": {"kinds": []}}"#).contains("unknown setting `skip.kinds`"));
        assert!(err(r#"{"skip": {"resources": ["pods/log"]}}"#).contains("`pods/log`"));
        assert!(err(r#"{"skip": {"resources": "pods"}}"#).contains("`skip.resources` must be"));
        assert!(err(r#"{"skip": {"controlled": "yes"}}"#).contains("`skip.controlled`"));
        assert!(err("[").contains("not JSON"));
    }
}
