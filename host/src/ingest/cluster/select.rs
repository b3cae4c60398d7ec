//! Which of the cluster's resources to follow: those the watch rules name,
//! among those discovery found that can be listed and watched.
//!
//! A rule names resources and, optionally, API groups (`*` for any). A
//! resource a rule names outright is followed whatever it is; one reached
//! only through `*` is not if it is noisy: objects that change all the
//! time and that no one restores from Git (pods, events, leases, …), as
//! in the design's desired-state preset. Subresources (`deployments/scale`)
//! are not listed on their own.

use serde_json::Value;

/// Resources that `*` does not reach, by (group, resource): they change
/// constantly and are made by controllers from what is mirrored already.
pub const NOISY: &[(&str, &str)] = &[
    ("", "pods"),
    ("", "events"),
    ("events.k8s.io", "events"),
    ("", "endpoints"),
    ("discovery.k8s.io", "endpointslices"),
    ("coordination.k8s.io", "leases"),
    ("apps", "controllerrevisions"),
    ("batch", "jobs"),
    ("batch", "cronjobs"),
    ("", "componentstatuses"),
    ("", "bindings"),
];

/// Groups whose every resource is noisy.
const NOISY_GROUPS: &[&str] = &[
    "flowcontrol.apiserver.k8s.io",
    "metrics.k8s.io",
    "authentication.k8s.io",
    "authorization.k8s.io",
];

/// What the rules ask to follow.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Selector {
    /// (groups, resources) of each rule; `None` groups mean any.
    rules: Vec<(Option<Vec<String>>, Vec<String>)>,
}

impl Selector {
    /// The selector of rules in the `rule-match` plugin's format.
    pub fn of<'a>(rules: impl IntoIterator<Item = &'a Value>) -> Selector {
        let strings = |value: Option<&Value>| -> Option<Vec<String>> {
            let list = value?.as_array()?;
            Some(
                list.iter()
                    .filter_map(Value::as_str)
                    .map(str::to_owned)
                    .collect(),
            )
        };
        let rules = rules
            .into_iter()
            .filter_map(|rule| {
                let resources = strings(rule.get("resources"))?;
                Some((strings(rule.get("apiGroups")), resources))
            })
            .collect();
        Selector { rules }
    }

    /// Whether the resource `resource` of `group` is followed.
    pub fn selects(&self, group: &str, resource: &str) -> bool {
        if resource.contains('/') {
            return false;
        }
        let mut by_wildcard = false;
        for (groups, resources) in &self.rules {
            let group_ok = groups
                .as_ref()
                .is_none_or(|g| g.iter().any(|g| g == "*" || g == group));
            if !group_ok {
                continue;
            }
            if resources.iter().any(|r| r == resource) {
                return true;
            }
            by_wildcard |= resources.iter().any(|r| r == "*");
        }
        by_wildcard && !is_noisy(group, resource)
    }
}

impl Selector {
    /// Whether any resource of `group` could be selected: the groups
    /// worth asking discovery about.
    pub fn may_select_group(&self, group: &str) -> bool {
        self.rules.iter().any(|(groups, resources)| {
            let group_ok = groups
                .as_ref()
                .is_none_or(|g| g.iter().any(|g| g == "*" || g == group));
            let named = resources.iter().any(|r| r != "*");
            group_ok && (named || !NOISY_GROUPS.contains(&group))
        })
    }
}

/// Whether `*` passes the resource by.
pub fn is_noisy(group: &str, resource: &str) -> bool {
    NOISY_GROUPS.contains(&group) || NOISY.contains(&(group, resource))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn a_named_resource_is_followed_in_the_groups_the_rule_allows() {
        let rules = [json!({"apiGroups": ["apps"], "resources": ["deployments"]})];
        let selector = Selector::of(&rules);
        assert!(selector.selects("apps", "deployments"));
        assert!(!selector.selects("extensions", "deployments"));
        assert!(!selector.selects("apps", "statefulsets"));
        assert!(!selector.selects("apps", "deployments/scale"));
    }

    #[test]
    fn a_rule_without_groups_reaches_every_group() {
        let selector = Selector::of(&[json!({"resources": ["configmaps"]})]);
        assert!(selector.selects("", "configmaps"));
        assert!(selector.selects("example.com", "configmaps"));
    }

    #[test]
    fn a_wildcard_passes_noisy_resources_by_but_a_name_does_not() {
        let everything = [json!({"resources": ["*"]})];
        let selector = Selector::of(&everything);
        assert!(selector.selects("apps", "deployments"));
        assert!(selector.selects("", "secrets"));
        assert!(!selector.selects("", "pods"));
        assert!(!selector.selects("coordination.k8s.io", "leases"));
        assert!(!selector.selects("flowcontrol.apiserver.k8s.io", "flowschemas"));
        let pods = [json!({"resources": ["*"]}), json!({"resources": ["pods"]})];
        assert!(Selector::of(&pods).selects("", "pods"));
    }

    #[test]
    fn only_groups_a_rule_could_select_are_asked_about() {
        let apps = Selector::of(&[json!({"apiGroups": ["apps"], "resources": ["deployments"]})]);
        assert!(apps.may_select_group("apps"));
        assert!(!apps.may_select_group(""));
        let everything = Selector::of(&[json!({"resources": ["*"]})]);
        assert!(everything.may_select_group(""));
        assert!(
            !everything.may_select_group("metrics.k8s.io"),
            "noisy, reached only by *"
        );
    }

    #[test]
    fn rules_that_name_no_resources_select_nothing() {
        let selector = Selector::of(&[json!({"apiGroups": ["*"]}), json!("odd")]);
        assert!(!selector.selects("", "configmaps"));
    }
}
