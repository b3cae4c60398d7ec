//! The API server's audit webhook: `audit.k8s.io/v1` EventLists, read into
//! the facts of who made which persisted change.
//!
//! Only what persisted attributes anything: the `ResponseComplete` stage
//! of a create, update, patch, delete or deletecollection that succeeded
//! (2xx) and was not a dry run. A rejected or conflicting request, a dry
//! run and a read say nothing about what Git should show.

use serde::{Deserialize, Serialize};
use serde_json::Value;

/// Who made a persisted change, and to what.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Fact {
    /// The acting user (the impersonated one when impersonating).
    pub username: String,
    /// Whether the change deleted its object (or its collection).
    pub deletion: bool,
    /// What was changed.
    pub subject: Subject,
}

/// What a fact is about.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Subject {
    /// API group; empty for the core group.
    pub group: String,
    /// Plural resource.
    pub resource: String,
    /// Namespace, for a namespaced object.
    pub namespace: Option<String>,
    /// Name; none for a deletecollection (every object of the collection).
    pub name: Option<String>,
    /// The object's uid, when the response carried it.
    pub uid: Option<String>,
    /// The object's resourceVersion after the change, when the response
    /// carried it.
    pub resource_version: Option<String>,
}

/// Why a body is not an audit EventList.
#[derive(Debug, thiserror::Error)]
#[error("not an audit.k8s.io/v1 EventList: {0}")]
pub struct AuditError(#[from] serde_json::Error);

#[derive(Deserialize)]
struct EventList {
    #[serde(default)]
    items: Vec<Event>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Event {
    #[serde(default)]
    stage: String,
    #[serde(default)]
    verb: String,
    #[serde(default, rename = "requestURI")]
    request_uri: String,
    #[serde(default)]
    user: User,
    #[serde(default)]
    impersonated_user: Option<User>,
    #[serde(default)]
    object_ref: Option<ObjectRef>,
    #[serde(default)]
    response_status: Option<ResponseStatus>,
    #[serde(default)]
    response_object: Option<Value>,
}

#[derive(Deserialize, Default)]
struct User {
    #[serde(default)]
    username: String,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct ObjectRef {
    #[serde(default)]
    resource: String,
    #[serde(default)]
    subresource: Option<String>,
    #[serde(default)]
    namespace: Option<String>,
    #[serde(default)]
    name: Option<String>,
    #[serde(default)]
    api_group: Option<String>,
}

#[derive(Deserialize)]
struct ResponseStatus {
    #[serde(default)]
    code: u16,
}

/// The facts an EventList body holds; events that attribute nothing are
/// left out.
pub fn facts(body: &[u8]) -> Result<Vec<Fact>, AuditError> {
    let list: EventList = serde_json::from_slice(body)?;
    Ok(list.items.into_iter().filter_map(fact_of).collect())
}

fn fact_of(event: Event) -> Option<Fact> {
    let writes = ["create", "update", "patch", "delete", "deletecollection"];
    if event.stage != "ResponseComplete" || !writes.contains(&event.verb.as_str()) {
        return None;
    }
    let code = event.response_status.as_ref().map_or(0, |s| s.code);
    if !(200..300).contains(&code) || is_dry_run(&event.request_uri) {
        return None;
    }
    let object = event.object_ref?;
    // A write to a subresource that does not change its object (a token
    // request, a proxy, a binding) attributes nothing; status and scale
    // do change it.
    let subresource = object.subresource.as_deref().unwrap_or_default();
    if !["", "status", "scale"].contains(&subresource) {
        return None;
    }
    let username = event
        .impersonated_user
        .map(|u| u.username)
        .filter(|u| !u.is_empty())
        .unwrap_or(event.user.username);
    if username.is_empty() || object.resource.is_empty() {
        return None;
    }
    let metadata = |field: &str| {
        event
            .response_object
            .as_ref()?
            .pointer(&format!("/metadata/{field}"))?
            .as_str()
            .filter(|v| !v.is_empty())
            .map(str::to_owned)
    };
    let collection = event.verb == "deletecollection";
    // A create's path names no object: the response does.
    let name = object
        .name
        .filter(|n| !n.is_empty())
        .or_else(|| metadata("name"))
        .filter(|_| !collection);
    let fact = Fact {
        username,
        deletion: event.verb.starts_with("delete"),
        subject: Subject {
            group: object.api_group.unwrap_or_default(),
            resource: object.resource,
            namespace: object.namespace.filter(|n| !n.is_empty()),
            name,
            uid: if collection { None } else { metadata("uid") },
            resource_version: if collection {
                None
            } else {
                metadata("resourceVersion")
            },
        },
    };
    kept(fact)
}

/// `fact`, unless a part of it is longer than Kubernetes allows.
fn kept(fact: Fact) -> Option<Fact> {
    use super::limits::{NAME, NAMESPACE, TOKEN, USERNAME};
    let subject = &fact.subject;
    let text = |o: &Option<String>| o.as_deref().unwrap_or_default().len();
    let fits = super::fits(&[
        (&fact.username, USERNAME),
        (&subject.group, NAME),
        (&subject.resource, NAME),
    ]) && text(&subject.name) <= NAME
        && text(&subject.namespace) <= NAMESPACE
        && text(&subject.uid) <= TOKEN
        && text(&subject.resource_version) <= TOKEN;
    fits.then_some(fact)
}

/// Whether the request was a dry run (`?dryRun=All`): it persisted nothing.
fn is_dry_run(uri: &str) -> bool {
    let Some((_, query)) = uri.split_once('?') else {
        return false;
    };
    url::form_urlencoded::parse(query.as_bytes()).any(|(key, _)| key == "dryRun")
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A fixture captured from a real API server, as the JSON the webhook
    /// receives (YAML fixtures are turned into JSON, one Event into a list).
    fn body(name: &str) -> Vec<u8> {
        let path = format!(
            "{}/../tests/fixtures/audit-events/{name}",
            env!("CARGO_MANIFEST_DIR")
        );
        let text = std::fs::read_to_string(&path).unwrap();
        let value: Value = if name.ends_with(".json") {
            serde_json::from_str(&text).unwrap()
        } else {
            serde_saphyr::from_str(&text).unwrap()
        };
        let list = if value["kind"] == "Event" || value.get("items").is_none() {
            serde_json::json!({"kind": "EventList", "items": [value]})
        } else {
            value
        };
        serde_json::to_vec(&list).unwrap()
    }

    #[test]
    fn a_persisted_patch_names_its_user_and_the_version_it_made() {
        let facts = facts(&body("config-update.yaml")).unwrap();
        assert_eq!(
            facts,
            [Fact {
                username: "system:admin".into(),
                deletion: false,
                subject: Subject {
                    group: String::new(),
                    resource: "configmaps".into(),
                    namespace: Some("new-config-ns".into()),
                    name: Some("test-config3".into()),
                    uid: Some("271ee126-790e-4ee3-a7f8-f8451c550e8d".into()),
                    resource_version: Some("13772844".into()),
                },
            }]
        );
    }

    #[test]
    fn a_dry_run_attributes_nothing_and_the_same_request_persisted_does() {
        assert!(
            facts(&body("flux-secret-dryrun-patch-eventlist.yaml"))
                .unwrap()
                .is_empty()
        );
        let persisted = facts(&body("flux-secret-persisted-patch-eventlist.yaml")).unwrap();
        assert_eq!(persisted.len(), 1);
        assert_eq!(
            persisted[0].username,
            "system:serviceaccount:flux-system:kustomize-controller"
        );
    }

    #[test]
    fn a_deletecollection_names_its_collection_not_an_object() {
        let facts = facts(&body("audit-deletecollection-official-raw-hollow.json")).unwrap();
        assert_eq!(facts.len(), 1);
        let subject = &facts[0].subject;
        assert_eq!(
            (subject.group.as_str(), subject.resource.as_str()),
            ("wardle.example.com", "flunders")
        );
        assert_eq!(subject.namespace.as_deref(), Some("example-raw"));
        assert_eq!(subject.name, None);
    }

    #[test]
    fn a_scale_names_the_object_it_scaled() {
        let facts = facts(&body("deployment-scale-subresource.json")).unwrap();
        let subject = &facts[0].subject;
        assert_eq!(subject.resource, "deployments");
        assert_eq!(subject.name.as_deref(), Some("scale-audit-target"));
        assert_eq!(subject.resource_version.as_deref(), Some("6977"));
    }

    #[test]
    fn rejected_reads_and_odd_bodies_attribute_nothing() {
        let rejected = serde_json::json!({"items": [
            {"stage": "ResponseComplete", "verb": "update", "user": {"username": "bob"},
             "objectRef": {"resource": "configmaps", "name": "a"}, "responseStatus": {"code": 409}},
            {"stage": "ResponseComplete", "verb": "get", "user": {"username": "bob"},
             "objectRef": {"resource": "configmaps", "name": "a"}, "responseStatus": {"code": 200}},
            {"stage": "RequestReceived", "verb": "create", "user": {"username": "bob"},
             "objectRef": {"resource": "configmaps", "name": "a"}},
        ]});
        assert!(
            facts(&serde_json::to_vec(&rejected).unwrap())
                .unwrap()
                .is_empty()
        );
        assert!(facts(b"{not json").is_err());
        assert!(facts(b"42").is_err());
    }

    #[test]
    fn ten_thousand_mangled_bodies_are_errors_or_facts_never_a_panic() {
        let bodies: Vec<Vec<u8>> = [
            "config-update.yaml",
            "flux-secret-persisted-patch-eventlist.yaml",
            "audit-deletecollection-official-raw-hollow.json",
            "deployment-scale-subresource.json",
        ]
        .iter()
        .map(|name| body(name))
        .collect();
        let seed = 0x2545_f491_4f6c_dd1d;
        for mangled in super::super::testing::mangled(&bodies, seed, 10_000) {
            let _ = facts(&mangled);
        }
    }

    #[test]
    fn a_fact_longer_than_any_real_objects_is_not_kept() {
        let list = |name: &str| {
            serde_json::json!({"items": [
                {"stage": "ResponseComplete", "verb": "delete", "user": {"username": "x"},
                 "objectRef": {"resource": "configmaps", "namespace": "shop", "name": name},
                 "responseStatus": {"code": 200}},
            ]})
            .to_string()
        };
        assert_eq!(facts(list(&"a".repeat(253)).as_bytes()).unwrap().len(), 1);
        assert!(
            facts(list(&"a".repeat(1 << 20)).as_bytes())
                .unwrap()
                .is_empty()
        );
    }

    #[test]
    fn a_write_to_a_subresource_that_changes_nothing_attributes_nothing() {
        let token = serde_json::json!({"items": [
            {"stage": "ResponseComplete", "verb": "create", "user": {"username": "system:node:n1"},
             "objectRef": {"resource": "serviceaccounts", "namespace": "shop", "name": "web", "subresource": "token"},
             "responseStatus": {"code": 201}},
        ]});
        assert!(
            facts(&serde_json::to_vec(&token).unwrap())
                .unwrap()
                .is_empty()
        );
    }
}
