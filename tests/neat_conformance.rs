//! Conformance with kubectl-neat's golden pairs (raw as the API server
//! returned it → what kubectl-neat keeps), run through the `neat` component.
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
