//! What to mirror and where: a repository (`GitRepoConfig`), a folder of one
//! of its branches (`GitDestination`), and the rules that route objects
//! there (`WatchRule` for its own namespace, `ClusterWatchRule` for the
//! cluster). Every field of gitops-reverser's resources of these kinds is
//! here with its meaning, so its documents read unchanged; Plumbline adds
//! `prune`, a rule's CEL `condition`, and the repository's `commit`.
//!
//! Unknown fields are refused when a file is read (a typo is an error, not
//! a silently ignored setting); the API server prunes them by the CRD's
//! structural schema.

// kube's `printcolumn(…)` attributes repeat `type_ = "string"`; clippy reads
// the repetition inside the derive's arguments as a duplicated attribute.
#![allow(clippy::duplicated_attributes)]

use crate::status::Status;
use kube::CustomResource;
use plumbline_model::Prune;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// A Git repository objects are mirrored to.
#[derive(CustomResource, Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[kube(
    group = "mirror.plumbline.dev",
    version = "v1alpha1",
    kind = "GitRepoConfig",
    namespaced,
    status = "Status",
    shortname = "gitrepo",
    category = "plumbline",
    printcolumn(name = "URL", type_ = "string", json_path = ".spec.repoUrl"),
    printcolumn(
        name = "Ready",
        type_ = "string",
        json_path = ".status.conditions[?(@.type==\"Ready\")].status"
    ),
    printcolumn(
        name = "Reason",
        type_ = "string",
        json_path = ".status.conditions[?(@.type==\"Ready\")].reason"
    ),
    printcolumn(
        name = "Age",
        type_ = "date",
        json_path = ".metadata.creationTimestamp"
    )
)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct GitRepoConfigSpec {
    /// The repository: any URL git takes (`https://`, `ssh://`, `git://`,
    /// scp-like `user@host:path`) or, outside a cluster, a local path.
    /// Credentials belong in the Secret `secretRef` names, not here.
    #[schemars(length(min = 1))]
    pub repo_url: String,
    /// The branches a destination may write; `*` matches any run of
    /// characters. Empty allows every branch.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub allowed_branches: Vec<String>,
    /// The Secret, in this resource's namespace, holding the credentials:
    /// `username` and `password` (or `token`) for HTTPS; `ssh-privatekey`
    /// and `known_hosts` for SSH.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secret_ref: Option<SecretRef>,
    /// Who commits, and how commit messages read.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub commit: Option<CommitSpec>,
    /// gitops-reverser's push settings, read so that its resources apply
    /// unchanged. Plumbline batches by its own settings (`--batch-*`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub push: Option<PushSpec>,
}

/// A Secret in the referring resource's namespace.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct SecretRef {
    /// The Secret's name.
    #[schemars(length(min = 1))]
    pub name: String,
}

/// The commits written to a repository.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct CommitSpec {
    /// The committer of every commit (the author is the person who made
    /// the change). Default: the daemon's `--committer-*` settings.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub committer: Option<Identity>,
    /// The author of a change whose author is unknown: a visible sentinel,
    /// never the committer. Default: the daemon's `--unknown-*` settings.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub unknown_author: Option<Identity>,
    /// The first line of a commit message: `{operation}`, `{count}`,
    /// `{destination}` and `{resources}` are replaced. Default: the
    /// daemon's `--message`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    /// Signs every commit with the OpenSSH private key (no passphrase) in
    /// this Secret of the resource's namespace. A key that cannot be read
    /// keeps the repository not ready: nothing is written unsigned.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub signing_key_ref: Option<SecretKeyRef>,
}

/// A key of a Secret in the referring resource's namespace.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct SecretKeyRef {
    /// The Secret's name.
    #[schemars(length(min = 1))]
    pub name: String,
    /// The key in its data; `signing-key` when not given.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1))]
    pub key: Option<String>,
}

/// A name and an email, as Git records them.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Identity {
    /// The name.
    #[schemars(length(min = 1))]
    pub name: String,
    /// The email.
    #[schemars(length(min = 1))]
    pub email: String,
}

/// gitops-reverser's push settings.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct PushSpec {
    /// How long gitops-reverser waits before pushing (a Go duration).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub interval: Option<String>,
    /// How many commits gitops-reverser pushes at most at once.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_commits: Option<i64>,
}

/// A folder of one branch of a repository, which Plumbline owns: it writes
/// the objects routed here under it and prunes what no live object produces.
#[derive(CustomResource, Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[kube(
    group = "mirror.plumbline.dev",
    version = "v1alpha1",
    kind = "GitDestination",
    namespaced,
    status = "Status",
    shortname = "gitdest",
    category = "plumbline",
    printcolumn(name = "Repo", type_ = "string", json_path = ".spec.repoRef.name"),
    printcolumn(name = "Branch", type_ = "string", json_path = ".spec.branch"),
    printcolumn(name = "BaseFolder", type_ = "string", json_path = ".spec.baseFolder"),
    printcolumn(
        name = "Ready",
        type_ = "string",
        json_path = ".status.conditions[?(@.type==\"Ready\")].status"
    ),
    printcolumn(
        name = "Age",
        type_ = "date",
        json_path = ".metadata.creationTimestamp"
    )
)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct GitDestinationSpec {
    /// The `GitRepoConfig`; its namespace defaults to this resource's.
    pub repo_ref: NamespacedRef,
    /// The branch; it must be among the repository's `allowedBranches`.
    #[schemars(length(min = 1))]
    pub branch: String,
    /// The folder of the branch this destination owns: a relative path
    /// that stays inside the repository. Empty is the whole branch.
    #[serde(default)]
    pub base_folder: String,
    /// What happens to files no live object produces: `Always` deletes them
    /// after every complete listing, `OnDelete` only on delete events,
    /// `Never` keeps them.
    #[serde(default)]
    pub prune: Prune,
}

/// A resource by name, in the referring resource's namespace unless
/// `namespace` says otherwise.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct NamespacedRef {
    /// The name.
    #[schemars(length(min = 1))]
    pub name: String,
    /// The namespace; default: the referring resource's.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub namespace: Option<String>,
}

/// Rules routing the objects of this resource's own namespace to a
/// destination.
#[derive(CustomResource, Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[kube(
    group = "mirror.plumbline.dev",
    version = "v1alpha1",
    kind = "WatchRule",
    namespaced,
    status = "Status",
    category = "plumbline",
    printcolumn(
        name = "Destination",
        type_ = "string",
        json_path = ".spec.destinationRef.name"
    ),
    printcolumn(
        name = "Ready",
        type_ = "string",
        json_path = ".status.conditions[?(@.type==\"Ready\")].status"
    ),
    printcolumn(
        name = "Age",
        type_ = "date",
        json_path = ".metadata.creationTimestamp"
    )
)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct WatchRuleSpec {
    /// The `GitDestination`; its namespace defaults to this resource's.
    pub destination_ref: NamespacedRef,
    /// The rules; an object any rule selects is routed.
    #[schemars(length(min = 1))]
    pub rules: Vec<ResourceRule>,
}

/// Rules routing objects anywhere in the cluster to a destination.
#[derive(CustomResource, Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[kube(
    group = "mirror.plumbline.dev",
    version = "v1alpha1",
    kind = "ClusterWatchRule",
    status = "Status",
    category = "plumbline",
    printcolumn(
        name = "Destination",
        type_ = "string",
        json_path = ".spec.destinationRef.name"
    ),
    printcolumn(
        name = "Ready",
        type_ = "string",
        json_path = ".status.conditions[?(@.type==\"Ready\")].status"
    ),
    printcolumn(
        name = "Age",
        type_ = "date",
        json_path = ".metadata.creationTimestamp"
    )
)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ClusterWatchRuleSpec {
    /// The `GitDestination` (a cluster-scoped rule names its namespace).
    pub destination_ref: NamespacedRef,
    /// The rules; an object any rule selects is routed.
    #[schemars(length(min = 1))]
    pub rules: Vec<ClusterResourceRule>,
}

/// Which objects a `WatchRule` selects: an empty list matches anything.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ResourceRule {
    /// The changes selected.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub operations: Vec<Operation>,
    /// API groups (`""` is the core group; `*` any).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub api_groups: Vec<String>,
    /// API versions (`*` any).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub api_versions: Vec<String>,
    /// Resources by plural name (`deployments`, `*`), a subresource after
    /// a slash (`deployments/scale`).
    #[schemars(length(min = 1))]
    pub resources: Vec<String>,
    /// A CEL expression over `object` (the live object, labels, owner
    /// references and managed fields included) and `event` (operation,
    /// user, resource) that must also hold.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub condition: Option<String>,
}

/// Which objects a `ClusterWatchRule` selects.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ClusterResourceRule {
    /// The changes selected.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub operations: Vec<Operation>,
    /// API groups (`""` is the core group; `*` any).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub api_groups: Vec<String>,
    /// API versions (`*` any).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub api_versions: Vec<String>,
    /// Resources by plural name (`deployments`, `*`), a subresource after
    /// a slash (`deployments/scale`).
    #[schemars(length(min = 1))]
    pub resources: Vec<String>,
    /// Cluster-scoped objects, or namespaced ones in every namespace.
    pub scope: Scope,
    /// A CEL expression over `object` and `event` that must also hold.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub condition: Option<String>,
}

/// A change to an object.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, JsonSchema)]
pub enum Operation {
    /// Created.
    #[serde(rename = "CREATE")]
    Create,
    /// Updated (patched, applied, replaced).
    #[serde(rename = "UPDATE")]
    Update,
    /// Deleted.
    #[serde(rename = "DELETE")]
    Delete,
    /// Any of them.
    #[serde(rename = "*")]
    Any,
}

/// Where a cluster rule's resources live.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, JsonSchema)]
pub enum Scope {
    /// Cluster-scoped resources (namespaces, CRDs, cluster roles).
    Cluster,
    /// Namespaced resources, in every namespace.
    Namespaced,
}

#[cfg(test)]
mod tests {
    use super::*;
    use kube::CustomResourceExt;

    #[test]
    fn the_crds_are_in_plumblines_group_and_scoped_as_declared() {
        let crds = crate::crds();
        let names: Vec<_> = crds
            .iter()
            .map(|c| (c.spec.names.kind.as_str(), c.spec.scope.as_str()))
            .collect();
        assert_eq!(
            names,
            [
                ("GitRepoConfig", "Namespaced"),
                ("GitDestination", "Namespaced"),
                ("WatchRule", "Namespaced"),
                ("ClusterWatchRule", "Cluster"),
            ]
        );
        for crd in &crds {
            assert_eq!(crd.spec.group, crate::MIRROR_GROUP);
            let version = &crd.spec.versions[0];
            assert_eq!(version.name, crate::VERSION);
            assert!(
                version.subresources.as_ref().unwrap().status.is_some(),
                "{}: status is a subresource",
                crd.spec.names.kind
            );
        }
    }

    /// A structural schema has no `additionalProperties: false` beside
    /// `properties` (the API server refuses the CRD), however strict the
    /// file form is.
    #[test]
    fn the_schemas_are_structural() {
        for crd in crate::crds() {
            let schema = serde_json::to_string(&crd.spec.versions[0].schema).unwrap();
            assert!(
                !schema.contains("\"additionalProperties\":false"),
                "{}",
                crd.spec.names.kind
            );
        }
        let rule = serde_json::to_value(WatchRule::crd()).unwrap();
        let operations = &rule["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["spec"]
            ["properties"]["rules"]["items"]["properties"]["operations"]["items"];
        assert_eq!(
            operations["enum"],
            serde_json::json!(["CREATE", "UPDATE", "DELETE", "*"])
        );
    }

    #[test]
    fn an_unknown_field_is_refused() {
        let spec =
            serde_json::json!({"repoRef": {"name": "r"}, "branch": "main", "baseFolders": "x"});
        let error = serde_json::from_value::<GitDestinationSpec>(spec).unwrap_err();
        assert!(
            error.to_string().contains("unknown field `baseFolders`"),
            "{error}"
        );
    }
}
