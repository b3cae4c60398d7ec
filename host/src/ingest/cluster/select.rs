//! Which of the cluster's resources to follow: those the watch rules name,
//! among those discovery found that can be listed and watched.
//!
//! A rule names resources and, optionally, API groups (`*` for any). A
//! resource a rule names outright, or through the desired-state preset
//! (`@desired-state`), is followed whatever it is; one reached only through
//! `*` is not if the match chain's `rule-match` step skips it (the noisy
//! kinds by default, or what the operator's settings for that step say):
//! one list, [`plumbline_kinds::scope`], decides both what is watched and
//! what matches. A rule's own `excludeResources` and `excludeApiGroups` are
//! never followed. Subresources (`deployments/scale`) are not listed on
//! their own.

use plumbline_kinds::scope::{DESIRED_STATE_PRESET, Skip, is_desired_state, strings};
use serde_json::Value;

/// One rule, as far as discovery cares.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
struct Rule {
    /// `None`: any group.
    groups: Option<Vec<String>>,
    resources: Vec<String>,
    exclude_resources: Vec<String>,
    exclude_groups: Vec<String>,
}

/// What the rules ask to follow.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Selector {
    rules: Vec<Rule>,
    skip: Skip,
}

impl Selector {
    /// The selector of rules in the `rule-match` plugin's format, leaving
    /// out of `*` what `skip` does.
    pub fn of<'a>(rules: impl IntoIterator<Item = &'a Value>, skip: Skip) -> Selector {
        let list = |rule: &Value, field: &str| rule.get(field).and_then(|v| strings(v, field).ok());
        let rules = rules
            .into_iter()
            .filter_map(|rule| {
                Some(Rule {
                    resources: list(rule, "resources")?,
                    groups: list(rule, "apiGroups").filter(|g| !g.is_empty()),
                    exclude_resources: list(rule, "excludeResources").unwrap_or_default(),
                    exclude_groups: list(rule, "excludeApiGroups").unwrap_or_default(),
                })
            })
            .collect();
        Selector { rules, skip }
    }

    /// Whether the resource `resource` of `group` is followed.
    pub fn selects(&self, group: &str, resource: &str) -> bool {
        if resource.contains('/') {
            return false;
        }
        let mut by_wildcard = false;
        for rule in &self.rules {
            let group_ok = rule
                .groups
                .as_ref()
                .is_none_or(|g| g.iter().any(|g| g == "*" || g == group));
            let excluded = rule.exclude_resources.iter().any(|r| r == resource)
                || rule.exclude_groups.iter().any(|g| g == group);
            if !group_ok || excluded {
                continue;
            }
            let named = rule.resources.iter().any(|r| {
                r == resource || (r == DESIRED_STATE_PRESET && is_desired_state(group, resource))
            });
            if named {
                return true;
            }
            if rule.resources.iter().any(|r| r == "*") {
                // A group the rule names is named: only `*` groups skip.
                let group_named = rule
                    .groups
                    .as_ref()
                    .is_some_and(|g| g.iter().any(|g| g == group));
                by_wildcard |= group_named || !self.skip.api_groups.iter().any(|g| g == group);
            }
        }
        by_wildcard
            && !self
                .skip
                .resources
                .iter()
                .any(|n| plumbline_kinds::scope::is_resource(n, group, resource))
    }

    /// Whether any resource of `group` could be selected: the groups
    /// worth asking discovery about.
    pub fn may_select_group(&self, group: &str) -> bool {
        self.rules.iter().any(|rule| {
            let group_ok = rule
                .groups
                .as_ref()
                .is_none_or(|g| g.iter().any(|g| g == "*" || g == group));
            let named = rule.resources.iter().any(|r| r != "*");
            let group_named = rule
                .groups
                .as_ref()
                .is_some_and(|g| g.iter().any(|g| g == group));
            group_ok
                && !rule.exclude_groups.iter().any(|g| g == group)
                && (named || group_named || !self.skip.api_groups.iter().any(|g| g == group))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn a_named_resource_is_followed_in_the_groups_the_rule_allows() {
        let rules = [json!({"apiGroups": ["apps"], "resources": ["deployments"]})];
        let selector = Selector::of(&rules, Skip::default());
        assert!(selector.selects("apps", "deployments"));
        assert!(!selector.selects("extensions", "deployments"));
        assert!(!selector.selects("apps", "statefulsets"));
        assert!(!selector.selects("apps", "deployments/scale"));
    }

    #[test]
    fn a_rule_without_groups_reaches_every_group() {
        let selector = Selector::of(&[json!({"resources": ["configmaps"]})], Skip::default());
        assert!(selector.selects("", "configmaps"));
        assert!(selector.selects("example.com", "configmaps"));
    }

    #[test]
    fn a_wildcard_passes_noisy_resources_by_but_a_name_does_not() {
        let everything = [json!({"resources": ["*"]})];
        let selector = Selector::of(&everything, Skip::default());
        assert!(selector.selects("apps", "deployments"));
        assert!(selector.selects("", "secrets"));
        assert!(!selector.selects("", "pods"));
        assert!(!selector.selects("coordination.k8s.io", "leases"));
        assert!(!selector.selects("flowcontrol.apiserver.k8s.io", "flowschemas"));
        let pods = [json!({"resources": ["*"]}), json!({"resources": ["pods"]})];
        assert!(Selector::of(&pods, Skip::default()).selects("", "pods"));
    }

    #[test]
    fn only_groups_a_rule_could_select_are_asked_about() {
        let apps = Selector::of(
            &[json!({"apiGroups": ["apps"], "resources": ["deployments"]})],
            Skip::default(),
        );
        assert!(apps.may_select_group("apps"));
        assert!(!apps.may_select_group(""));
        let everything = Selector::of(&[json!({"resources": ["*"]})], Skip::default());
        assert!(everything.may_select_group(""));
        assert!(
            !everything.may_select_group("metrics.k8s.io"),
            "noisy, reached only by *"
        );
    }

    #[test]
    fn rules_that_name_no_resources_select_nothing() {
        let selector = Selector::of(
            &[json!({"apiGroups": ["*"]}), json!("odd")],
            Skip::default(),
        );
        assert!(!selector.selects("", "configmaps"));
    }

    #[test]
    fn the_preset_the_operators_skip_list_and_a_rules_exclusions_decide_too() {
        let preset = Selector::of(&[json!({"resources": ["@desired-state"]})], Skip::default());
        assert!(preset.selects("apps", "deployments"));
        assert!(preset.selects("rbac.authorization.k8s.io", "roles"));
        assert!(!preset.selects("apps", "replicasets"));
        assert!(!preset.selects("example.com", "widgets"));
        // Leases are noisy by default; an operator who wants them says so
        // in the rule-match settings, and discovery follows.
        let everything = [json!({"resources": ["*"]})];
        let leases = ("coordination.k8s.io", "leases");
        assert!(!Selector::of(&everything, Skip::default()).selects(leases.0, leases.1));
        let wanted = Skip::from_settings(r#"{"skip": {"resources": ["pods"]}}"#).unwrap();
        assert!(Selector::of(&everything, wanted).selects(leases.0, leases.1));
        let excluding = [json!({"resources": ["*"], "excludeResources": ["secrets"]})];
        assert!(!Selector::of(&excluding, Skip::default()).selects("", "secrets"));
    }
}
