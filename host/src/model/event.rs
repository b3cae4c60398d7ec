//! A change to a Kubernetes object, as every source reports it.

use serde::{Deserialize, Serialize};
use std::fmt;

/// What happened to an object.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "UPPERCASE")]
pub enum Operation {
    /// The object was created.
    Create,
    /// The object was changed.
    Update,
    /// The object was deleted.
    Delete,
}

impl fmt::Display for Operation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Operation::Create => "CREATE",
            Operation::Update => "UPDATE",
            Operation::Delete => "DELETE",
        })
    }
}

/// Which object an event is about.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize)]
pub struct Target {
    /// API group; empty for the core group.
    pub group: String,
    /// API version, such as `v1`.
    pub version: String,
    /// Kind, such as `Deployment`.
    pub kind: String,
    /// Plural resource, such as `deployments`.
    pub resource: String,
    /// Subresource (`status`, `scale`) when the change came through one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub subresource: Option<String>,
    /// Namespace; none for cluster-scoped objects.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub namespace: Option<String>,
    /// Object name.
    pub name: String,
}

/// `resource.group namespace/name`, as messages name an object.
impl fmt::Display for Target {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.key().fmt(f)
    }
}

impl Target {
    /// The object's identity, without the version or kind: what names its
    /// file, and what stays when an API's preferred version changes.
    pub fn key(&self) -> ObjectKey {
        ObjectKey {
            namespace: self.namespace.clone(),
            group: self.group.clone(),
            resource: self.resource.clone(),
            name: self.name.clone(),
        }
    }
}

/// What identifies an object, versionless: the one identity every stage
/// uses (the layout names its file by it).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ObjectKey {
    /// Namespace; none for a cluster-scoped object.
    pub namespace: Option<String>,
    /// API group; empty for the core group.
    pub group: String,
    /// Plural resource.
    pub resource: String,
    /// Object name.
    pub name: String,
}

/// `resource.group namespace/name`, as messages name an object.
impl fmt::Display for ObjectKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let group = if self.group.is_empty() {
            "core"
        } else {
            &self.group
        };
        match &self.namespace {
            Some(ns) => write!(f, "{}.{group} {ns}/{}", self.resource, self.name),
            None => write!(f, "{}.{group} {}", self.resource, self.name),
        }
    }
}

/// A change to an object.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Event {
    /// What happened.
    pub operation: Operation,
    /// To which object.
    pub target: Target,
    /// The object as JSON text: the new state, or the last known one for a delete.
    pub object: String,
    /// Who made the change, when known.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub username: Option<String>,
}
