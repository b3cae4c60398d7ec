//! A Job against the action contract of the workflow it runs: its first
//! container's requests and limits within the contract's (quantities
//! compared as Kubernetes reads them, `kube_quantity`), and its security
//! context (the container's, else the pod's) keeping what the contract
//! demands. Every breach is said.

use kube_quantity::ParsedQuantity;
use plumbline_catalog::formats::Contract;
use serde_json::Value;
use std::collections::BTreeMap;

/// Every way the Job whose pod `spec` this is breaks `contract`.
pub fn breaches(contract: &Contract, spec: &Value) -> Vec<String> {
    let container = &spec["containers"][0];
    let mut found = Vec::new();
    let resources = &contract.resources;
    within(
        &resources.requests,
        &container["resources"]["requests"],
        "request",
        false,
        &mut found,
    );
    within(
        &resources.limits,
        &container["resources"]["limits"],
        "limit",
        true,
        &mut found,
    );
    security(
        contract,
        &container["securityContext"],
        &spec["securityContext"],
        &mut found,
    );
    found
}

/// Each of `bounds` against what the Job `given`; `required`: a bounded
/// resource must be given.
fn within(
    bounds: &BTreeMap<String, String>,
    given: &Value,
    what: &str,
    required: bool,
    found: &mut Vec<String>,
) {
    for (resource, bound) in bounds {
        let Some(value) = given.get(resource).and_then(quantity_text) else {
            if required {
                found.push(format!(
                    "the Job sets no {what} of {resource}; the action contract allows at most {bound}"
                ));
            }
            continue;
        };
        match (ParsedQuantity::try_from(value.as_str()), ParsedQuantity::try_from(bound.as_str())) {
            (Ok(value_q), Ok(bound_q)) if value_q > bound_q => found.push(format!(
                "the Job's {what} of {resource} is {value}; the action contract allows at most {bound}"
            )),
            (Err(_), _) => found.push(format!("the Job's {what} of {resource}, `{value}`, is no quantity")),
            (_, Err(_)) => found.push(format!("the action contract's {what} of {resource}, `{bound}`, is no quantity")),
            _ => {}
        }
    }
}

/// A quantity as Kubernetes writes it: text, or a bare number.
fn quantity_text(value: &Value) -> Option<String> {
    match value {
        Value::String(text) => Some(text.clone()),
        Value::Number(n) => Some(n.to_string()),
        _ => None,
    }
}

fn security(contract: &Contract, container: &Value, pod: &Value, found: &mut Vec<String>) {
    let bounds = &contract.security_context;
    // The container's setting wins over the pod's, as the kubelet reads it.
    let flag = |name: &str| {
        container
            .get(name)
            .or_else(|| pod.get(name))
            .and_then(Value::as_bool)
    };
    let mut demand = |wanted: Option<bool>, name: &str, only_container: bool| {
        let set = if only_container {
            container.get(name).and_then(Value::as_bool)
        } else {
            flag(name)
        };
        match wanted {
            Some(true) if set != Some(true) => {
                found.push(format!(
                    "the action contract demands {name}: true; the Job does not set it"
                ));
            }
            Some(false) if set == Some(true) => {
                found.push(format!(
                    "the action contract forbids {name}; the Job sets it"
                ));
            }
            _ => {}
        }
    };
    demand(bounds.run_as_non_root, "runAsNonRoot", false);
    demand(
        bounds.read_only_root_filesystem,
        "readOnlyRootFilesystem",
        true,
    );
    demand(bounds.privileged, "privileged", true);
    // Escalation is allowed unless set false: demanding false means the
    // Job must say false.
    if bounds.allow_privilege_escalation == Some(false)
        && container
            .get("allowPrivilegeEscalation")
            .and_then(Value::as_bool)
            != Some(false)
    {
        found.push(
            "the action contract demands allowPrivilegeEscalation: false; the Job does not set it"
                .into(),
        );
    }
    if let Some(allowed) = &bounds.capabilities {
        let added = container["capabilities"]["add"]
            .as_array()
            .into_iter()
            .flatten();
        for capability in added.filter_map(Value::as_str) {
            if !allowed.add.iter().any(|a| a == capability) {
                found.push(format!("the Job adds the capability {capability}, which the action contract does not allow"));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn contract() -> Contract {
        serde_json::from_value(json!({
            "resources": {"limits": {"cpu": "500m", "memory": "256Mi"}},
            "securityContext": {"runAsNonRoot": true, "allowPrivilegeEscalation": false,
                                "privileged": false, "capabilities": {"add": ["NET_BIND_SERVICE"]}}
        }))
        .unwrap()
    }

    #[test]
    fn a_job_within_its_contract_passes() {
        let spec = json!({"securityContext": {"runAsNonRoot": true}, "containers": [{
            "resources": {"limits": {"cpu": "0.25", "memory": "128Mi"}},
            "securityContext": {"allowPrivilegeEscalation": false, "capabilities": {"add": ["NET_BIND_SERVICE"]}}}]});
        assert_eq!(breaches(&contract(), &spec), Vec::<String>::new());
    }

    #[test]
    fn every_breach_is_said() {
        let spec = json!({"containers": [{
            "resources": {"limits": {"cpu": "2", "memory": "1e3"}},
            "securityContext": {"privileged": true, "runAsNonRoot": false, "capabilities": {"add": ["SYS_ADMIN"]}}}]});
        let found = breaches(&contract(), &spec);
        for expected in [
            "limit of cpu is 2",
            "runAsNonRoot: true",
            "allowPrivilegeEscalation",
            "forbids privileged",
            "SYS_ADMIN",
        ] {
            assert!(
                found.iter().any(|f| f.contains(expected)),
                "{expected} in {found:?}"
            );
        }
        assert!(
            !found.iter().any(|f| f.contains("memory")),
            "1e3 bytes is within 256Mi: {found:?}"
        );
        let bare = json!({"containers": [{}]});
        let found = breaches(&contract(), &bare);
        assert!(
            found.iter().any(|f| f.contains("sets no limit of memory")),
            "{found:?}"
        );
    }
}
