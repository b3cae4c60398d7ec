//! Where an object from a file belongs: its canonical kind and resource,
//! and its namespace.
//!
//! `kubectl apply` puts a namespaced object without a namespace into the
//! default namespace, and the API server drops a namespace given to a
//! cluster-scoped one. A folder has no API server to ask which kinds are
//! which, so the built-in kinds come from [`plumbline_kinds`] and custom
//! kinds from the CustomResourceDefinitions met in the folder (their
//! `spec.scope`); a kind neither knows, without a namespace, is filed as
//! cluster-scoped, with a warning.

use crate::model::Target;
use serde_json::Value;
use std::collections::HashMap;

/// A custom kind, as its CRD declares it.
#[derive(Debug, Clone)]
struct Custom {
    kind: String,
    plural: String,
    namespaced: bool,
}

/// The kinds known so far: built-in ones, and CRDs met.
#[derive(Debug, Default)]
pub struct Scopes {
    /// By (group, kind in lower case).
    custom: HashMap<(String, String), Custom>,
}

/// An object placed: its target, and whether its scope was a guess.
#[derive(Debug)]
pub struct Placed {
    /// What identifies it.
    pub target: Target,
    /// True when the kind is unknown and it had no namespace.
    pub guessed: bool,
}

impl Scopes {
    /// Learns the kind a CRD defines; other objects are ignored.
    pub fn learn(&mut self, object: &Value) {
        let api_version = object.get("apiVersion").and_then(Value::as_str);
        let is_crd = api_version.is_some_and(|v| v.starts_with("apiextensions.k8s.io/"))
            && object.get("kind").and_then(Value::as_str) == Some("CustomResourceDefinition");
        if !is_crd {
            return;
        }
        let text = |pointer| object.pointer(pointer).and_then(Value::as_str);
        let (Some(group), Some(kind)) = (text("/spec/group"), text("/spec/names/kind")) else {
            return;
        };
        let custom = Custom {
            kind: kind.to_owned(),
            plural: text("/spec/names/plural")
                .map_or_else(|| plumbline_kinds::guess_resource(kind), str::to_owned),
            namespaced: text("/spec/scope") != Some("Cluster"),
        };
        self.custom.insert(
            (group.to_ascii_lowercase(), kind.to_ascii_lowercase()),
            custom,
        );
    }

    /// Whether the scope of an object of this kind is known.
    pub fn knows(&self, object: &Value) -> bool {
        let (group, _) = split(object);
        let kind = text(object, "/kind");
        plumbline_kinds::built_in(&group, &kind).is_some()
            || self
                .custom
                .contains_key(&(group, kind.trim().to_ascii_lowercase()))
    }

    /// Places `object`, setting or clearing its `metadata.namespace` as the
    /// API server would.
    pub fn place(&self, object: &mut Value, default_namespace: &str) -> Placed {
        let (group, version) = split(object);
        let written = text(object, "/kind");
        let known = plumbline_kinds::built_in(&group, &written)
            .map(|b| (b.kind.to_owned(), b.resource.to_owned(), b.namespaced))
            .or_else(|| {
                self.custom
                    .get(&(group.clone(), written.trim().to_ascii_lowercase()))
                    .map(|c| (c.kind.clone(), c.plural.clone(), c.namespaced))
            });
        let namespace = Some(text(object, "/metadata/namespace")).filter(|n| !n.is_empty());
        let (kind, resource, namespace, guessed) = match known {
            Some((kind, resource, true)) => {
                let namespace = namespace.unwrap_or_else(|| default_namespace.to_owned());
                set_namespace(object, Some(&namespace));
                (kind, resource, Some(namespace), false)
            }
            Some((kind, resource, false)) => {
                set_namespace(object, None);
                (kind, resource, None, false)
            }
            None => {
                let guessed = namespace.is_none();
                let resource = plumbline_kinds::guess_resource(&written);
                (written.trim().to_owned(), resource, namespace, guessed)
            }
        };
        Placed {
            target: Target {
                group,
                version,
                kind,
                resource,
                subresource: None,
                namespace,
                name: text(object, "/metadata/name"),
            },
            guessed,
        }
    }
}

fn text(object: &Value, pointer: &str) -> String {
    object
        .pointer(pointer)
        .and_then(Value::as_str)
        .unwrap_or_default()
        .trim()
        .to_owned()
}

fn split(object: &Value) -> (String, String) {
    plumbline_kinds::split_api_version(&text(object, "/apiVersion"))
}

fn set_namespace(object: &mut Value, namespace: Option<&str>) {
    let Some(metadata) = object.get_mut("metadata").and_then(Value::as_object_mut) else {
        return;
    };
    match namespace {
        Some(namespace) => {
            metadata.insert("namespace".into(), Value::String(namespace.to_owned()));
        }
        None => {
            metadata.remove("namespace");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn namespaced_objects_without_a_namespace_go_to_the_default_one() {
        let scopes = Scopes::default();
        let mut deployment =
            json!({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "web"}});
        let placed = scopes.place(&mut deployment, "default");
        assert_eq!(placed.target.namespace.as_deref(), Some("default"));
        assert_eq!(deployment["metadata"]["namespace"], "default");
        let mut role = json!({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRole", "metadata": {"name": "r", "namespace": "x"}});
        assert_eq!(scopes.place(&mut role, "default").target.namespace, None);
        assert!(role["metadata"].get("namespace").is_none());
    }

    #[test]
    fn crds_in_the_folder_give_their_kinds_scope_and_plural() {
        let mut scopes = Scopes::default();
        let mut app = json!({"apiVersion": "argoproj.io/v1alpha1", "kind": "AppProject", "metadata": {"name": "p"}});
        assert!(!scopes.knows(&app));
        let placed = scopes.place(&mut app.clone(), "argocd");
        assert!(placed.guessed);
        scopes.learn(&json!({
            "apiVersion": "apiextensions.k8s.io/v1", "kind": "CustomResourceDefinition",
            "metadata": {"name": "appprojects.argoproj.io"},
            "spec": {"group": "argoproj.io", "scope": "Namespaced", "names": {"kind": "AppProject", "plural": "appprojects"}}
        }));
        assert!(scopes.knows(&app));
        let placed = scopes.place(&mut app, "argocd");
        assert!(!placed.guessed);
        assert_eq!(placed.target.namespace.as_deref(), Some("argocd"));
        assert_eq!(placed.target.resource, "appprojects");
    }

    #[test]
    fn kinds_and_groups_in_another_case_are_the_canonical_ones() {
        let scopes = Scopes::default();
        let mut secret = json!({"apiVersion": "V1", "kind": "secret", "metadata": {"name": "s", "namespace": "n"}});
        let target = scopes.place(&mut secret, "default").target;
        assert_eq!(
            (
                target.group.as_str(),
                target.kind.as_str(),
                target.resource.as_str()
            ),
            ("", "Secret", "secrets")
        );
    }
}
