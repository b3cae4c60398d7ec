//! Policy bundles: OCI artifacts that carry plugins and CEL policies, so an
//! operator changes what Plumbline decides by pushing to a registry.
//!
//! - [`format`]: the artifact's shape (config, layers) and `bundle.yaml`,
//!   the folder an author builds one from;
//! - [`store`]: verified bundles on disk, by digest, and the digest each
//!   reference last resolved to (so a start without the registry works);
//! - [`source`]: resolve, pull and verify, falling back to the store;
//! - [`reload`]: the policy set built from a configuration and its bundles,
//!   rebuilt when a tag moves;
//! - [`follow`]: the tags resolved again while the daemon runs, and a
//!   set built from moved ones swapped in;
//! - [`serving`]: the one handle to the set serving now, which every user
//!   of a decision reads and a reload swaps.
//!
//! A bundle's config is `application/vnd.plumbline.bundle.config.v1+json`;
//! its layers are components (`application/wasm`) and CEL policy files
//! (`application/vnd.plumbline.policy.cel.v1+yaml`), each titled with
//! `org.opencontainers.image.title` so that `oras pull` writes them as
//! files.

pub mod follow;
pub mod format;
pub mod reload;
pub mod serving;
pub mod source;
pub mod store;

pub use format::{BundleConfig, CEL_MEDIA_TYPE, CONFIG_MEDIA_TYPE, WASM_MEDIA_TYPE};
pub use reload::PolicyLoader;
pub use serving::{Served, Serving};
pub use source::BundleSource;
pub use store::BundleStore;

use crate::oci::OciError;
use std::path::PathBuf;

/// Why a bundle could not be built, fetched or read.
#[derive(Debug, thiserror::Error)]
pub enum BundleError {
    /// A file of the bundle's folder could not be read.
    #[error("{}: {error}", path.display())]
    Io {
        /// The file.
        path: PathBuf,
        /// Why.
        error: std::io::Error,
    },
    /// `bundle.yaml` or the bundle's config is not what it must be.
    #[error("{origin}: {message}")]
    Invalid {
        /// Which bundle or file.
        origin: String,
        /// What is wrong.
        message: String,
    },
    /// The registry failed.
    #[error(transparent)]
    Registry(#[from] OciError),
    /// The bundle's policies do not load.
    #[error(transparent)]
    Policy(#[from] crate::policy::PolicyError),
    /// The bundle must be signed, and is not by a trusted key.
    #[error("bundle `{name}`: {source}")]
    Unverified {
        /// The bundle's name in the configuration.
        name: String,
        /// Why.
        #[source]
        source: crate::oci::cosign::CosignError,
    },
}
