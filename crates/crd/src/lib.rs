//! Plumbline's custom resources as Rust types, and the CRDs generated from
//! them (kube's `CustomResource` derive over `schemars` schemas), so that
//! the types the daemon reads and the schemas the API server enforces are
//! one definition.
//!
//! - [`mirror`]: what to mirror and where, in `mirror.plumbline.dev/v1alpha1`
//!   (`GitRepoConfig`, `GitDestination`, `WatchRule`, `ClusterWatchRule`),
//!   field for field a superset of gitops-reverser's `configbutler.ai`
//!   resources, so a user of both reads one set of documents;
//! - [`status`]: the status every resource carries (a `Ready` condition with
//!   a reason).

pub mod mirror;
pub mod status;

use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::CustomResourceExt;

/// Plumbline's API group for the mirror's resources.
pub const MIRROR_GROUP: &str = "mirror.plumbline.dev";

/// gitops-reverser's API group, whose resources of the same kinds the file
/// form reads unchanged.
pub const COMPAT_GROUP: &str = "configbutler.ai";

/// The version both groups' resources are in.
pub const VERSION: &str = "v1alpha1";

/// Every CRD Plumbline defines, in the order they should be applied
/// (what is referred to before what refers to it).
pub fn crds() -> Vec<CustomResourceDefinition> {
    vec![
        mirror::GitRepoConfig::crd(),
        mirror::GitDestination::crd(),
        mirror::WatchRule::crd(),
        mirror::ClusterWatchRule::crd(),
    ]
}
