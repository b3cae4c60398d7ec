//! The admission webhook: `admission.k8s.io/v1` AdmissionReviews, read
//! into the facts of who is about to make which change, for clusters
//! whose API server flags cannot be set (a managed control plane has no
//! audit webhook, but takes a ValidatingWebhookConfiguration).
//!
//! A validating webhook is called before the write persists, so it cannot
//! know the resourceVersion the write will make. What joins its fact to
//! the watch event is the object itself: a [`fingerprint`] of what the
//! request would store, leaving out what the server sets as it stores
//! (the resourceVersion and its bookkeeping) and the status. A delete is
//! found by the object it deletes, since an object is deleted once.
//!
//! The webhook always allows: it watches, it never decides.

use crate::model::Operation;
use crate::model::digest::{ShortDigest, short_digest};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

/// Who is about to make which change.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Admitted {
    /// The requesting user.
    pub username: String,
    /// The change's identity, with the object's fingerprint.
    pub key: AdmittedKey,
}

/// What a watch event is looked up by.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct AdmittedKey {
    /// API group; empty for the core group.
    pub group: String,
    /// Plural resource.
    pub resource: String,
    /// Namespace, for a namespaced object.
    pub namespace: Option<String>,
    /// Name.
    pub name: String,
    /// Created, updated or deleted.
    pub operation: Operation,
    /// The object's [`fingerprint`]; none for a delete.
    pub fingerprint: Option<ShortDigest>,
}

/// Why a body is not an AdmissionReview.
#[derive(Debug, thiserror::Error)]
pub enum AdmissionError {
    /// Not JSON of the AdmissionReview's shape.
    #[error("not an admission.k8s.io/v1 AdmissionReview: {0}")]
    Shape(#[from] serde_json::Error),
    /// An AdmissionReview without a request.
    #[error("an AdmissionReview without a request (or a request without a uid)")]
    NoRequest,
}

#[derive(Deserialize)]
struct Review {
    request: Option<Request>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Request {
    uid: String,
    #[serde(default)]
    resource: Resource,
    #[serde(default)]
    sub_resource: String,
    #[serde(default)]
    name: String,
    #[serde(default)]
    namespace: String,
    #[serde(default)]
    operation: String,
    #[serde(default)]
    user_info: UserInfo,
    #[serde(default)]
    object: Option<Value>,
    #[serde(default)]
    old_object: Option<Value>,
    #[serde(default)]
    dry_run: Option<bool>,
}

#[derive(Deserialize, Default)]
struct Resource {
    #[serde(default)]
    group: String,
    #[serde(default)]
    resource: String,
}

#[derive(Deserialize, Default)]
struct UserInfo {
    #[serde(default)]
    username: String,
}

/// What a review body says: the answer to send (always allowing, for the
/// request's uid) and the fact it holds, if it attributes anything.
pub fn review(body: &[u8]) -> Result<(Value, Option<Admitted>), AdmissionError> {
    let review: Review = serde_json::from_slice(body)?;
    let request = review
        .request
        .filter(|r| !r.uid.is_empty())
        .ok_or(AdmissionError::NoRequest)?;
    let answer = json!({
        "apiVersion": "admission.k8s.io/v1",
        "kind": "AdmissionReview",
        "response": {"uid": request.uid, "allowed": true},
    });
    Ok((answer, admitted(request)))
}

fn admitted(request: Request) -> Option<Admitted> {
    // A dry run persists nothing; a subresource write (status, scale,
    // a binding) does not carry the object the watch will show, and a
    // status change is no change Git shows.
    if request.dry_run == Some(true) || !request.sub_resource.is_empty() {
        return None;
    }
    let operation = match request.operation.as_str() {
        "CREATE" => Operation::Create,
        "UPDATE" => Operation::Update,
        "DELETE" => Operation::Delete,
        _ => return None,
    };
    // A create with generateName is named by the object the server is
    // about to store, and each delete of a deletecollection by the object
    // it deletes: neither request names one.
    let name_in = |object: &Option<Value>| {
        object
            .as_ref()?
            .pointer("/metadata/name")?
            .as_str()
            .map(str::to_owned)
    };
    let name = Some(request.name.clone())
        .filter(|n| !n.is_empty())
        .or_else(|| name_in(&request.object))
        .or_else(|| name_in(&request.old_object))?;
    let fingerprint = match operation {
        Operation::Delete => None,
        _ => Some(fingerprint(request.object.as_ref()?)),
    };
    if request.user_info.username.is_empty() || request.resource.resource.is_empty() {
        return None;
    }
    // Longer than any real object's: not kept (see `limits`).
    use super::limits::{NAME, NAMESPACE, USERNAME};
    let fits = super::fits(&[
        (&request.user_info.username, USERNAME),
        (&request.resource.group, NAME),
        (&request.resource.resource, NAME),
        (&name, NAME),
        (&request.namespace, NAMESPACE),
    ]);
    if !fits {
        return None;
    }
    Some(Admitted {
        username: request.user_info.username,
        key: AdmittedKey {
            group: request.resource.group,
            resource: request.resource.resource,
            namespace: Some(request.namespace).filter(|n| !n.is_empty()),
            name,
            operation,
            fingerprint,
        },
    })
}

/// Fields of `metadata` the server sets as it stores an object, after
/// validating admission has seen it (or that a real server fills in at
/// times a webhook cannot rely on).
const SERVER_SET: &[&str] = &[
    "resourceVersion",
    "managedFields",
    "generation",
    "uid",
    "creationTimestamp",
    "selfLink",
];

/// A digest of what an object holds, the same whether it is read from the
/// admission request or from the watch event its write makes: its fields
/// in sorted order (whatever order the JSON had), without the status and
/// without [`SERVER_SET`] metadata.
pub fn fingerprint(object: &Value) -> ShortDigest {
    let mut text = Vec::new();
    canonical(object, 0, &mut text);
    short_digest(&text)
}

fn canonical(value: &Value, depth: usize, out: &mut Vec<u8>) {
    match value {
        Value::Object(map) => {
            let mut keys: Vec<&String> = map.keys().collect();
            keys.sort_unstable();
            out.push(b'{');
            for key in keys {
                if depth == 0 && key == "status" {
                    continue;
                }
                let mut inner = &map[key];
                let pruned;
                if depth == 0 && key == "metadata" {
                    pruned = without_server_set(inner);
                    inner = &pruned;
                }
                canonical(&Value::String(key.clone()), depth + 1, out);
                out.push(b':');
                canonical(inner, depth + 1, out);
                out.push(b',');
            }
            out.push(b'}');
        }
        Value::Array(items) => {
            out.push(b'[');
            for item in items {
                canonical(item, depth + 1, out);
                out.push(b',');
            }
            out.push(b']');
        }
        scalar => out.extend_from_slice(scalar.to_string().as_bytes()),
    }
}

fn without_server_set(metadata: &Value) -> Value {
    let mut metadata = metadata.clone();
    if let Some(map) = metadata.as_object_mut() {
        for field in SERVER_SET {
            map.remove(*field);
        }
    }
    metadata
}

#[cfg(test)]
mod tests {
    use super::*;

    fn body(operation: &str, object: Value, extra: Value) -> Vec<u8> {
        let mut review = json!({
            "kind": "AdmissionReview", "apiVersion": "admission.k8s.io/v1",
            "request": {
                "uid": "705ab4f5-6393-11e8-b7cc-42010a800002",
                "kind": {"group": "", "version": "v1", "kind": "ConfigMap"},
                "resource": {"group": "", "version": "v1", "resource": "configmaps"},
                "name": "a", "namespace": "shop", "operation": operation,
                "userInfo": {"username": "alice", "groups": ["system:authenticated"]},
                "object": object, "oldObject": null, "dryRun": false,
            }
        });
        for (key, value) in extra.as_object().unwrap() {
            review["request"][key] = value.clone();
        }
        serde_json::to_vec(&review).unwrap()
    }

    fn config_map(data: &str) -> Value {
        json!({"apiVersion": "v1", "kind": "ConfigMap",
            "metadata": {"name": "a", "namespace": "shop"}, "data": {"k": data}})
    }

    #[test]
    fn a_real_review_is_allowed_and_names_its_user() {
        let path = concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../tests/fixtures/k8s-admission/admissionreview-v1-gke-pod-create.json"
        );
        let (answer, fact) = review(&std::fs::read(path).unwrap()).unwrap();
        assert_eq!(answer["response"]["allowed"], true);
        assert_eq!(
            answer["response"]["uid"],
            "0c9a8d74-9cb7-44dd-b98e-09fd62def2f4"
        );
        let fact = fact.expect("a create attributes");
        assert_eq!(fact.username, "colin@coder.com");
        assert_eq!(
            (fact.key.resource.as_str(), fact.key.name.as_str()),
            ("pods", "echo-pod")
        );
        assert_eq!(fact.key.namespace.as_deref(), Some("colin-coder"));
        assert_eq!(fact.key.operation, Operation::Create);
    }

    #[test]
    fn the_fingerprint_is_the_stored_object_s_whatever_the_server_adds() {
        let admitted = config_map("1");
        let mut stored = admitted.clone();
        stored["metadata"]["resourceVersion"] = json!("812");
        stored["metadata"]["uid"] = json!("u-1");
        stored["metadata"]["managedFields"] = json!([{"manager": "kubectl"}]);
        stored["status"] = json!({"phase": "x"});
        assert_eq!(fingerprint(&admitted), fingerprint(&stored));
        // Key order does not matter; content does.
        let reordered: Value =
            serde_json::from_str(r#"{"data":{"k":"1"},"metadata":{"namespace":"shop","name":"a"},"kind":"ConfigMap","apiVersion":"v1"}"#).unwrap();
        assert_eq!(fingerprint(&admitted), fingerprint(&reordered));
        assert_ne!(fingerprint(&admitted), fingerprint(&config_map("2")));
        // A string that looks like another value is not that value.
        let mut number = config_map("1");
        number["data"]["k"] = json!(1);
        assert_ne!(fingerprint(&admitted), fingerprint(&number));
    }

    #[test]
    fn dry_runs_subresources_and_connects_attribute_nothing_but_are_allowed() {
        for extra in [
            json!({"dryRun": true}),
            json!({"subResource": "status"}),
            json!({"operation": "CONNECT"}),
        ] {
            let (answer, fact) = review(&body("UPDATE", config_map("1"), extra.clone())).unwrap();
            assert_eq!(answer["response"]["allowed"], true, "{extra}");
            assert_eq!(fact, None, "{extra}");
        }
    }

    #[test]
    fn a_delete_is_found_by_its_object_and_a_generated_name_by_the_object() {
        let (_, fact) = review(&body("DELETE", Value::Null, json!({}))).unwrap();
        let fact = fact.unwrap();
        assert_eq!(fact.key.operation, Operation::Delete);
        assert_eq!(fact.key.fingerprint, None);
        let mut generated = config_map("1");
        generated["metadata"]["name"] = json!("job-x7k2p");
        let (_, fact) = review(&body("CREATE", generated, json!({"name": ""}))).unwrap();
        assert_eq!(fact.unwrap().key.name, "job-x7k2p");
    }

    #[test]
    fn a_review_longer_than_any_real_objects_is_allowed_and_not_kept() {
        let long = |name: &str| body("DELETE", Value::Null, json!({"name": name}));
        assert!(review(&long(&"a".repeat(253))).unwrap().1.is_some());
        let (answer, fact) = review(&long(&"a".repeat(7 << 20))).unwrap();
        assert_eq!(
            (answer["response"]["allowed"].clone(), fact),
            (json!(true), None)
        );
    }

    #[test]
    fn what_is_no_review_is_refused_with_why() {
        for text in [&b"{"[..], b"[]", b"{\"request\": {\"uid\": 3}}"] {
            let error = review(text).unwrap_err().to_string();
            assert!(
                error.starts_with("not an admission.k8s.io/v1 AdmissionReview"),
                "{error}"
            );
        }
        let error = review(b"{\"kind\": \"AdmissionReview\"}").unwrap_err();
        assert!(matches!(error, AdmissionError::NoRequest), "{error}");
    }

    /// A file of the mutationlab corpus: writes recorded on a real API
    /// server, each with its AdmissionRequest and the watch event it made.
    fn corpus(path: &str) -> Value {
        let path = format!(
            "{}/../tests/fixtures/mutationlab/{path}",
            env!("CARGO_MANIFEST_DIR")
        );
        serde_saphyr::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap()
    }

    fn corpus_review(path: &str) -> Option<Admitted> {
        let mut body = corpus(path);
        body["apiVersion"] = json!("admission.k8s.io/v1");
        body["kind"] = json!("AdmissionReview");
        review(&serde_json::to_vec(&body).unwrap()).unwrap().1
    }

    #[test]
    fn each_recorded_write_is_found_by_the_watch_event_it_made() {
        for (scenario, admission, watch, operation) in [
            (
                "configmap/create-succeeds",
                "create",
                "added",
                Operation::Create,
            ),
            (
                "configmap/generate-name-create",
                "create",
                "added",
                Operation::Create,
            ),
            ("configmap/update", "update", "modified", Operation::Update),
            (
                "configmap/server-side-apply",
                "update",
                "modified",
                Operation::Update,
            ),
        ] {
            let fact = corpus_review(&format!("{scenario}/admission.{admission}.yaml"))
                .unwrap_or_else(|| panic!("{scenario}: no fact"));
            let watched = corpus(&format!("{scenario}/watch.{watch}.yaml"));
            let object = &watched["object"];
            assert_eq!(fact.key.operation, operation, "{scenario}");
            assert_eq!(fact.key.name, object["metadata"]["name"], "{scenario}");
            assert_eq!(
                fact.key.fingerprint,
                Some(fingerprint(object)),
                "{scenario}: the admitted object is not the stored one"
            );
        }
        // A delete of a collection is reviewed object by object.
        for name in ["cm-a", "cm-b", "cm-c"] {
            let fact = corpus_review(&format!(
                "configmap/deletecollection/admission.delete.{name}.yaml"
            ))
            .unwrap();
            assert_eq!(
                (fact.key.operation, fact.key.name.as_str()),
                (Operation::Delete, name)
            );
        }
        // An object admitted in one version of its CRD and watched in
        // another is another text: the webhook must be registered for the
        // versions the daemon watches (matchPolicy: Equivalent, and the
        // API server converts), as the README says.
        let admitted = corpus_review("widget/crd-conversion/admission.create.yaml").unwrap();
        let watched = corpus("widget/crd-conversion/watch.added.yaml");
        assert_ne!(
            watched["object"]["apiVersion"],
            "mutationlab.configbutler.ai/v1"
        );
        assert_ne!(
            admitted.key.fingerprint,
            Some(fingerprint(&watched["object"]))
        );
        // A dry run persists nothing, and says so.
        assert_eq!(
            corpus_review("configmap/dry-run-create/admission.create.yaml"),
            None
        );
    }

    #[test]
    fn ten_thousand_mangled_reviews_are_answered_or_refused_never_a_panic() {
        let mut bodies: Vec<Vec<u8>> = [
            "configmap/update/admission.update.yaml",
            "configmap/deletecollection/admission.delete.cm-a.yaml",
            "widget/crd-conversion/admission.create.yaml",
        ]
        .iter()
        .map(|path| {
            let mut review = corpus(path);
            review["apiVersion"] = json!("admission.k8s.io/v1");
            serde_json::to_vec(&review).unwrap()
        })
        .collect();
        bodies.push(
            std::fs::read(concat!(
                env!("CARGO_MANIFEST_DIR"),
                "/../tests/fixtures/k8s-admission/admissionreview-v1-gke-pod-create.json"
            ))
            .unwrap(),
        );
        let (mut answered, mut refused) = (0, 0);
        let seed = 0x9e37_79b9_7f4a_7c15;
        for mangled in super::super::testing::mangled(&bodies, seed, 10_000) {
            match review(&mangled) {
                // Whatever reads is allowed, for the uid it gave.
                Ok((answer, _)) => {
                    assert_eq!(answer["response"]["allowed"], true);
                    assert!(
                        answer["response"]["uid"]
                            .as_str()
                            .is_some_and(|u| !u.is_empty())
                    );
                    answered += 1;
                }
                Err(_) => refused += 1,
            }
        }
        assert!(
            answered > 0 && refused > 0,
            "{answered} answered, {refused} refused"
        );
    }
}
