//! Conformance with kubectl-neat's golden pairs (raw as the API server
//! returned it → what kubectl-neat keeps), run through the `neat` component,
//! and with Plumbline's own pairs for what controllers write into objects.
//!
//! Plumbline differs from kubectl-neat on purpose in one place, and the
//! test says so: kubectl-neat removes every finalizer-free `claimRef` field
//! it can default, while Plumbline … (none so far: every pair matches).

use crate::support::{fixture, json_of, load, runtime};
use plumbline::policy::Decision;
use serde_json::Value;

/// Objects kubectl-neat expects, with the deliberate differences applied.
fn expected(name: &str) -> Value {
    let text = std::fs::read_to_string(fixture(&format!("kubectl-neat/{name}-neat.json"))).unwrap();
    serde_json::from_str(&text).unwrap()
}

fn neat_of(input: &str) -> Value {
    let runtime = runtime();
    let neat = load(&runtime, "neat", Decision::Sanitize, "{}");
    let object: Value = serde_json::from_str(input).unwrap();
    let clean = |o: &Value| -> Value {
        serde_json::from_str(&neat.sanitize(&o.to_string()).unwrap().unwrap()).unwrap()
    };
    match object.get("items") {
        Some(Value::Array(items)) if object["kind"] == "List" => {
            let mut list = object.clone();
            list["items"] = Value::Array(items.iter().map(clean).collect());
            // kubectl-neat also drops the List's own empty metadata.
            list.as_object_mut().unwrap().remove("metadata");
            list
        }
        _ => clean(&object),
    }
}

#[test]
fn every_golden_pair_matches() {
    for name in ["pod1", "pv1", "role", "secret1", "service1", "list1"] {
        for format in ["json", "yaml"] {
            let input = json_of(&fixture(&format!("kubectl-neat/{name}-raw.{format}")));
            let actual = neat_of(&input);
            let mut want = expected(name);
            if name == "list1" {
                want.as_object_mut().unwrap().remove("metadata");
            }
            assert_eq!(
                actual, want,
                "{name}-raw.{format} differs from {name}-neat.json"
            );
        }
    }
}

/// Server-set fields that survived sanitizing (issue 10): each pair under
/// `tests/fixtures/server-set/` is an object as the API server returns it
/// and what must reach Git, one per class of what controllers write.
#[test]
fn server_set_fields_that_survived_sanitizing_are_dropped() {
    let cases = [
        (
            "pvc-bound",
            "the binder's volumeName and annotations, the provisioner's and scheduler's",
        ),
        ("pvc-prebound", "a volumeName a person wrote stays"),
        ("pv-bound", "a claimRef the binder set"),
        (
            "hpa",
            "the HPA's status annotations (its spec annotation stays)",
        ),
        (
            "statefulset",
            "claim templates' status, type and creationTimestamp: null; written defaults",
        ),
        (
            "namespace",
            "spec.finalizers: [kubernetes] and the metadata.name label",
        ),
        (
            "daemonset",
            "deprecated.daemonset.template.generation and the default updateStrategy",
        ),
        (
            "cronjob",
            "creationTimestamp: null at every depth; written defaults",
        ),
        (
            "service-lb",
            "assigned addresses and defaults of a LoadBalancer (its nodePort stays)",
        ),
        ("configmap-leader", "a leader-election record"),
        (
            "job",
            "the selector and labels the API server generates for a Job",
        ),
    ];
    let mut failures = Vec::new();
    for (name, what) in cases {
        let input = json_of(&fixture(&format!("server-set/{name}-raw.yaml")));
        let want: Value =
            serde_json::from_str(&json_of(&fixture(&format!("server-set/{name}-neat.yaml"))))
                .unwrap();
        let got = neat_of(&input);
        if got != want {
            failures.push(format!("{name} ({what}):\n  got  {got}\n  want {want}"));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

/// Every annotation the built-in list names is dropped, on any kind, and an
/// annotation beside it that a person wrote stays.
#[test]
fn every_annotation_controllers_write_is_dropped() {
    let runtime = runtime();
    let neat = load(&runtime, "neat", Decision::Sanitize, "{}");
    for kind in ["ConfigMap", "PersistentVolumeClaim", "Widget"] {
        for &key in neat::rules::SERVER_ANNOTATIONS {
            let object = serde_json::json!({"apiVersion": "v1", "kind": kind,
                "metadata": {"name": "a", "annotations": {key: "x", "team.example.com/owner": "ops"}}});
            let out: Value =
                serde_json::from_str(&neat.sanitize(&object.to_string()).unwrap().unwrap())
                    .unwrap();
            assert_eq!(
                out["metadata"]["annotations"],
                serde_json::json!({"team.example.com/owner": "ops"}),
                "{key} on a {kind}"
            );
        }
    }
}

/// A claim's `volumeName` goes only when the binder says it set it; the
/// annotation that says so is itself dropped, and the rule still sees it.
#[test]
fn a_claims_volume_name_goes_only_when_the_binder_set_it() {
    let claim = |annotations: Value| {
        serde_json::json!({"apiVersion": "v1", "kind": "PersistentVolumeClaim",
            "metadata": {"name": "c", "namespace": "n", "annotations": annotations},
            "spec": {"volumeName": "pv-1", "storageClassName": "fast"}})
        .to_string()
    };
    let bound = neat_of(&claim(serde_json::json!({
        "pv.kubernetes.io/bound-by-controller": "yes", "pv.kubernetes.io/bind-completed": "yes"})));
    assert_eq!(
        bound["spec"],
        serde_json::json!({"storageClassName": "fast"})
    );
    assert!(bound["metadata"].get("annotations").is_none(), "{bound}");
    let written = neat_of(&claim(
        serde_json::json!({"pv.kubernetes.io/bind-completed": "yes"}),
    ));
    assert_eq!(written["spec"]["volumeName"], "pv-1");
    let other_value = neat_of(&claim(
        serde_json::json!({"pv.kubernetes.io/bound-by-controller": "no"}),
    ));
    assert_eq!(other_value["spec"]["volumeName"], "pv-1");
}
