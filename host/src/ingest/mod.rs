//! Where objects come from: manifest files (YAML or JSON, multi-document,
//! `List` kinds expanded), the way `kubectl get -o yaml` writes them, and
//! folders of them, followed as a [`source::Source`]; and the cluster
//! itself, listed and watched ([`cluster`]), with who made each change
//! from the API server's audit webhook ([`attribution`]).

pub mod attribution;
pub mod cluster;
pub mod directory;
pub mod manifest;
pub mod source;
pub mod yaml;

pub use manifest::{IngestError, Manifest, read_manifests};
