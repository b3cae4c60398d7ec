//! What the follower keeps of each object between polls, kept small: a
//! folder of 100,000 objects holds 100,000 of these for as long as it is
//! followed.
//!
//! Of an object's copy only a digest is kept (to tell an edit from a
//! touch), and of the object itself only what its delete event needs when
//! its file goes: the apiVersion and kind, shared by every object of the
//! kind, and the labels, which rules select by. Its name and namespace are
//! in its identity already.

use crate::model::digest::{ShortDigest, short_digest};
use serde_json::Value;
use std::collections::HashSet;
use std::sync::Arc;

/// The digest of an object's copy, to tell an edit from a touch.
pub type CopyDigest = ShortDigest;

/// The digest of `text`, an object's JSON.
pub fn digest_of(text: &str) -> CopyDigest {
    short_digest(text.as_bytes())
}

/// An apiVersion and kind, as the object spelled them.
#[derive(Debug, PartialEq, Eq, Hash)]
pub struct Kind {
    /// The object's `apiVersion`.
    pub api_version: Box<str>,
    /// The object's `kind`.
    pub kind: Box<str>,
}

/// What a delete event needs beyond the object's identity.
#[derive(Debug)]
pub struct Stub {
    kind: Arc<Kind>,
    /// `metadata.labels` as JSON text, if the object had any.
    labels: Option<Box<str>>,
}

impl Stub {
    /// The object's apiVersion and kind.
    pub fn kind(&self) -> &Kind {
        &self.kind
    }

    /// The object a rule sees in the delete event of the object `name` in
    /// `namespace`: apiVersion, kind, name, namespace and labels.
    pub fn object(&self, name: &str, namespace: Option<&str>) -> Value {
        let mut metadata = serde_json::Map::new();
        metadata.insert("name".into(), name.into());
        if let Some(namespace) = namespace {
            metadata.insert("namespace".into(), namespace.into());
        }
        if let Some(labels) = &self.labels {
            let labels = serde_json::from_str(labels).unwrap_or_default();
            metadata.insert("labels".into(), labels);
        }
        serde_json::json!({
            "apiVersion": &*self.kind.api_version,
            "kind": &*self.kind.kind,
            "metadata": metadata,
        })
    }
}

/// The kinds seen, each kept once and shared by its objects' stubs.
#[derive(Debug, Default)]
pub struct Kinds(HashSet<Arc<Kind>>);

impl Kinds {
    /// The stub of `object`.
    pub fn stub_of(&mut self, object: &Value) -> Stub {
        let text = |field: &str| object.get(field).and_then(Value::as_str).unwrap_or("");
        let kind = Kind {
            api_version: text("apiVersion").into(),
            kind: text("kind").into(),
        };
        let kind = match self.0.get(&kind) {
            Some(shared) => shared.clone(),
            None => {
                let shared = Arc::new(kind);
                self.0.insert(shared.clone());
                shared
            }
        };
        let labels = object
            .pointer("/metadata/labels")
            .map(|labels| labels.to_string().into_boxed_str());
        Stub { kind, labels }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn a_stub_gives_back_what_a_rule_selects_by() {
        let mut kinds = Kinds::default();
        let object = json!({"apiVersion": "apps/v1", "kind": "Deployment",
            "metadata": {"name": "web", "namespace": "shop", "labels": {"tier": "two"}, "uid": "u"},
            "spec": {"replicas": 3}});
        let stub = kinds.stub_of(&object);
        assert_eq!(
            stub.object("web", Some("shop")),
            json!({"apiVersion": "apps/v1", "kind": "Deployment",
                "metadata": {"name": "web", "namespace": "shop", "labels": {"tier": "two"}}})
        );
        let bare = kinds.stub_of(
            &json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "shop"}}),
        );
        assert_eq!(
            bare.object("shop", None),
            json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "shop"}})
        );
    }

    #[test]
    fn objects_of_one_kind_share_it() {
        let mut kinds = Kinds::default();
        let a = kinds.stub_of(&json!({"apiVersion": "v1", "kind": "ConfigMap"}));
        let b = kinds.stub_of(&json!({"apiVersion": "v1", "kind": "ConfigMap"}));
        let c = kinds.stub_of(&json!({"apiVersion": "v1", "kind": "Secret"}));
        assert!(Arc::ptr_eq(&a.kind, &b.kind));
        assert!(!Arc::ptr_eq(&a.kind, &c.kind));
        assert_eq!(kinds.0.len(), 2);
    }
}
