//! What a wildcard rule reaches: the kinds that are not desired state (left
//! out of `*` unless an operator says otherwise), and the desired-state
//! preset a rule can name. One list for the `rule-match` plugin, which
//! decides what a rule matches, and for the host's discovery, which decides
//! what is watched, so that the two never disagree.

use serde_json::Value;

/// Resources that are not desired state: runtime instances, records the
/// cluster keeps about itself, and objects components register or compute.
/// `resource.group`, no group for the core group.
///
/// Jobs and CronJobs are not here, though the design lists them: a CronJob
/// is written by a person, and so is a Job run by hand (a migration); the
/// Jobs a CronJob makes are controlled objects, which a wildcard skips
/// anyway.
pub const NOISY_RESOURCES: &[&str] = &[
    "pods",
    "events",
    "events.events.k8s.io",
    "endpoints",
    "endpointslices.discovery.k8s.io",
    "nodes",
    "componentstatuses",
    "leases.coordination.k8s.io",
    "leasecandidates.coordination.k8s.io",
    "controllerrevisions.apps",
    "csinodes.storage.k8s.io",
    "csistoragecapacities.storage.k8s.io",
    "volumeattachments.storage.k8s.io",
    "ipaddresses.networking.k8s.io",
    "resourceslices.resource.k8s.io",
];

/// API groups whose objects are measurements or the API server's own
/// bookkeeping.
pub const NOISY_GROUPS: &[&str] = &[
    "metrics.k8s.io",
    "custom.metrics.k8s.io",
    "external.metrics.k8s.io",
    "flowcontrol.apiserver.k8s.io",
    "authentication.k8s.io",
    "authorization.k8s.io",
];

/// What a rule names in `resources` to select the desired-state preset.
pub const DESIRED_STATE_PRESET: &str = "@desired-state";

/// The desired-state preset: what a platform team writes and restores from
/// Git. `resource.group`, no group for the core group.
pub const DESIRED_STATE: &[&str] = &[
    "deployments.apps",
    "statefulsets.apps",
    "daemonsets.apps",
    "services",
    "configmaps",
    "secrets",
    "serviceaccounts",
    "resourcequotas",
    "limitranges",
    "namespaces",
    "persistentvolumeclaims",
    "ingresses.networking.k8s.io",
    "ingressclasses.networking.k8s.io",
    "networkpolicies.networking.k8s.io",
    "roles.rbac.authorization.k8s.io",
    "rolebindings.rbac.authorization.k8s.io",
    "clusterroles.rbac.authorization.k8s.io",
    "clusterrolebindings.rbac.authorization.k8s.io",
    "poddisruptionbudgets.policy",
    "customresourcedefinitions.apiextensions.k8s.io",
    "apiservices.apiregistration.k8s.io",
    "priorityclasses.scheduling.k8s.io",
    "storageclasses.storage.k8s.io",
    "horizontalpodautoscalers.autoscaling",
    "mutatingwebhookconfigurations.admissionregistration.k8s.io",
    "validatingwebhookconfigurations.admissionregistration.k8s.io",
];

/// Whether `name` (`resource.group`, or `resource` for the core group) is
/// the resource `resource` of `group`.
pub fn is_resource(name: &str, group: &str, resource: &str) -> bool {
    let (named, named_group) = name.split_once('.').unwrap_or((name, ""));
    named == resource && named_group == group
}

/// Whether the resource `resource` of `group` is in the desired-state
/// preset.
pub fn is_desired_state(group: &str, resource: &str) -> bool {
    DESIRED_STATE
        .iter()
        .any(|name| is_resource(name, group, resource))
}

/// What a wildcard leaves out: the `rule-match` plugin's settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Skip {
    /// `resource.group` (core: `resource`).
    pub resources: Vec<String>,
    /// API groups.
    pub api_groups: Vec<String>,
    /// Objects with an `ownerReferences` entry with `controller: true`.
    pub controlled: bool,
}

impl Default for Skip {
    fn default() -> Skip {
        let owned = |list: &[&str]| list.iter().map(|s| (*s).to_owned()).collect();
        Skip {
            resources: owned(NOISY_RESOURCES),
            api_groups: owned(NOISY_GROUPS),
            controlled: true,
        }
    }
}

impl Skip {
    /// Reads the plugin's settings (JSON text; empty or `{}` is the
    /// default); the message names the setting at fault.
    pub fn from_settings(text: &str) -> Result<Skip, String> {
        let mut skip = Skip::default();
        if text.trim().is_empty() {
            return Ok(skip);
        }
        let value: Value =
            serde_json::from_str(text).map_err(|e| format!("settings are not JSON: {e}"))?;
        let map = value.as_object().ok_or("settings must be a JSON object")?;
        for (key, value) in map {
            if key != "skip" {
                return Err(format!("unknown setting `{key}` (known: `skip`)"));
            }
            let fields = value.as_object().ok_or("`skip` must be an object")?;
            for (field, value) in fields {
                let path = format!("skip.{field}");
                match field.as_str() {
                    "resources" => skip.resources = names(value, &path)?,
                    "apiGroups" => skip.api_groups = strings(value, &path)?,
                    "controlled" => {
                        skip.controlled = value
                            .as_bool()
                            .ok_or(format!("`{path}` must be true or false"))?
                    }
                    other => {
                        return Err(format!(
                            "unknown setting `skip.{other}` (known: resources, apiGroups, controlled)"
                        ));
                    }
                }
            }
        }
        Ok(skip)
    }

    /// Whether a wildcard leaves out the resource `resource` of `group`
    /// (by its name or its group; controlled objects are a matter of the
    /// object, not the resource).
    pub fn skips_resource(&self, group: &str, resource: &str) -> bool {
        self.resources
            .iter()
            .any(|name| is_resource(name, group, resource))
            || self.api_groups.iter().any(|g| g == group)
    }
}

/// A JSON array of strings, or an error naming `field`.
pub fn strings(value: &Value, field: &str) -> Result<Vec<String>, String> {
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

fn names(value: &Value, field: &str) -> Result<Vec<String>, String> {
    let names = strings(value, field)?;
    if let Some(bad) = names
        .iter()
        .find(|n| n.is_empty() || n.starts_with('.') || n.contains('/') || n.contains('*'))
    {
        return Err(format!(
            "`{field}`: `{bad}` is not `resource` or `resource.group`"
        ));
    }
    Ok(names)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_noisy_kinds_and_the_preset_do_not_overlap() {
        for name in DESIRED_STATE {
            let (resource, group) = name.split_once('.').unwrap_or((name, ""));
            assert!(!Skip::default().skips_resource(group, resource), "{name}");
        }
        assert!(is_desired_state("apps", "deployments"));
        assert!(!is_desired_state("", "deployments"));
        assert!(Skip::default().skips_resource("apps", "controllerrevisions"));
        assert!(Skip::default().skips_resource("flowcontrol.apiserver.k8s.io", "flowschemas"));
    }

    #[test]
    fn settings_replace_each_part_and_name_what_is_wrong() {
        let skip = Skip::from_settings(r#"{"skip": {"resources": ["pods"]}}"#).unwrap();
        assert!(skip.skips_resource("", "pods") && !skip.skips_resource("", "events"));
        assert!(skip.controlled, "the rest stays default");
        let error = Skip::from_settings(r#"{"skip": {"resources": ["*"]}}"#).unwrap_err();
        assert!(error.contains("`skip.resources`: `*`"), "{error}");
    }
}
