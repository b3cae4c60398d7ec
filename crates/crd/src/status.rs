//! The status of every Plumbline resource: conditions in the Kubernetes
//! convention (a `Ready` one with a machine-readable reason and a message a
//! person can act on) and the generation they describe.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// The condition type that says whether a resource takes effect.
pub const READY: &str = "Ready";

/// The condition type, on a watch rule, that says whether the resources it
/// selects can be read: one the daemon may not list (403) is mirrored by
/// no rule, whatever `Ready` says of the rule itself.
pub const READABLE: &str = "Readable";

/// Why a resource is or is not ready: the `reason` of its `Ready` condition.
pub mod reason {
    /// Accepted: the resource takes effect.
    pub const ACCEPTED: &str = "Accepted";
    /// The spec could not be read (a field of the wrong type, say).
    pub const INVALID_SPEC: &str = "InvalidSpec";
    /// A reference names no resource of the kind it should.
    pub const UNKNOWN_REFERENCE: &str = "UnknownReference";
    /// The branch is not among the repository's `allowedBranches`.
    pub const BRANCH_NOT_ALLOWED: &str = "BranchNotAllowed";
    /// The base folder is absolute, climbs out with `..`, or is not a
    /// plain relative path.
    pub const BASE_FOLDER_ESCAPES: &str = "BaseFolderEscapes";
    /// Two destinations write one folder of one branch.
    pub const OVERLAPPING_DESTINATION: &str = "OverlappingDestination";
    /// A rule's CEL `condition` does not compile.
    pub const INVALID_CONDITION: &str = "InvalidCondition";
    /// The Secret `secretRef` names is missing or lacks the keys needed.
    pub const CREDENTIALS_MISSING: &str = "CredentialsMissing";
    /// The signing key `commit.signingKeyRef` names cannot be read or used.
    pub const SIGNING_KEY_UNUSABLE: &str = "SigningKeyUnusable";
    /// The referenced resource exists but is not ready itself.
    pub const REFERENCE_NOT_READY: &str = "ReferenceNotReady";
    /// `Readable`: no resource the rule selects fails to be read.
    pub const LISTED: &str = "Listed";
    /// `Readable`: the API server refuses the daemon a resource the rule
    /// selects (its RBAC must grant list and watch).
    pub const FORBIDDEN: &str = "Forbidden";
    /// `Readable`: a resource the rule selects cannot be read for another
    /// reason (the server fails, or went away).
    pub const UNREADABLE: &str = "Unreadable";
}

/// What Plumbline reports on a resource it read.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Status {
    /// The resource's conditions; `Ready` says whether it takes effect.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub conditions: Vec<Condition>,
    /// The `metadata.generation` these conditions describe.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// A `GitRepoConfig`'s: the public key its commits are signed with
    /// (OpenSSH format, from `spec.commit.signingKeyRef`), to add to the
    /// forge so that it shows them as verified.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub signing_key: Option<String>,
}
