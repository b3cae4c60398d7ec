//! Where objects come from. For now: manifest files (YAML or JSON,
//! multi-document, `List` kinds expanded), the way `kubectl get -o yaml`
//! writes them.

pub mod manifest;

pub use manifest::{IngestError, Manifest, read_manifests};
