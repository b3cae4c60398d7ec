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
    /// The resource the object is of, versionless: what a scoped seed
    /// lists.
    pub fn group_resource(&self) -> GroupResource {
        GroupResource::new(&self.group, &self.resource)
    }

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

/// A resource, versionless (`deployments.apps`, `configmaps` for the core
/// group): the unit a source lists, and a seed's scope is made of.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct GroupResource {
    /// API group; empty for the core group.
    pub group: String,
    /// Plural resource.
    pub resource: String,
}

impl GroupResource {
    /// The resource `resource` of `group` (empty for the core group).
    pub fn new(group: &str, resource: &str) -> GroupResource {
        GroupResource {
            group: group.to_owned(),
            resource: resource.to_owned(),
        }
    }
}

/// `resource.group`, or `resource` for the core group, as kubectl spells it.
impl fmt::Display for GroupResource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.group.is_empty() {
            f.write_str(&self.resource)
        } else {
            write!(f, "{}.{}", self.resource, self.group)
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
    /// The object's `metadata.uid`, when the source knows it: what
    /// attribution joins an audit or admission record on.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub uid: Option<String>,
    /// The object's `metadata.resourceVersion`, when the source knows it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub resource_version: Option<String>,
    /// Whether a watch delivered it (not a listing): a watch resumed
    /// after a crash delivers it again, the same, and the queue knows it
    /// by its object's `uid` and `resourceVersion`.
    #[serde(skip)]
    pub watched: bool,
}

impl Event {
    /// An event of unknown author, `uid` and `resourceVersion`.
    pub fn new(operation: Operation, target: Target, object: String) -> Event {
        Event {
            operation,
            target,
            object,
            username: None,
            uid: None,
            resource_version: None,
            watched: false,
        }
    }

    /// What tells this event from every other of the cluster, if it came
    /// from a watch that a restart replays: its object's `uid` and
    /// `resourceVersion` (one per write), and the operation.
    pub fn replay_key(&self) -> Option<String> {
        if !self.watched {
            return None;
        }
        let (uid, version) = (self.uid.as_deref()?, self.resource_version.as_deref()?);
        Some(format!("{uid}/{version}/{}", self.operation))
    }

    /// The same event, by `username`.
    pub fn by(mut self, username: Option<&str>) -> Event {
        self.username = username.map(str::to_owned);
        self
    }
}
