//! Registry access: resolve a reference to a digest, pull a manifest and
//! its blobs (every blob checked against its digest), push an artifact.
//! It knows nothing of policies or catalogs; both build on it.
//!
//! Built on `oci-client`, the ORAS project's maintained distribution
//! client. [`Registry`] is async and runs on the daemon's runtime;
//! [`OciClient`] is its blocking face, for the CLI and for stages on
//! threads of their own.
//! Plain HTTP is used only for registries the configuration names as
//! insecure; credentials come from a Docker `config.json`, as every
//! registry tool reads them, and never appear in errors or logs.

mod auth;
mod blocking;
pub mod cosign;
mod registry;

pub use auth::Credentials;
pub use blocking::OciClient;
pub use registry::Registry;

use oci_client::Reference;
use oci_client::manifest::OciDescriptor;
use std::collections::BTreeMap;

/// How to reach registries.
#[derive(Debug, Clone, Default)]
pub struct OciConfig {
    /// Registries (`host:port`) spoken to over plain HTTP.
    pub insecure: Vec<String>,
    /// Credentials per registry.
    pub credentials: Credentials,
}

/// A blob with its media type: an artifact's config or one of its layers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Blob {
    /// The media type.
    pub media_type: String,
    /// The bytes.
    pub data: Vec<u8>,
    /// Annotations (such as `org.opencontainers.image.title`).
    pub annotations: BTreeMap<String, String>,
}

/// An artifact: a config and layers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Artifact {
    /// The manifest's digest (`sha256:…`), once pushed or pulled.
    pub digest: Option<String>,
    /// The config blob.
    pub config: Blob,
    /// The layers, in manifest order.
    pub layers: Vec<Blob>,
}

/// What a manifest says of one blob.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Descriptor {
    /// The media type.
    pub media_type: String,
    /// The digest (`sha256:…`).
    pub digest: String,
    /// The size in bytes.
    pub size: u64,
    /// Annotations.
    pub annotations: BTreeMap<String, String>,
}

impl From<&OciDescriptor> for Descriptor {
    fn from(d: &OciDescriptor) -> Self {
        Descriptor {
            media_type: d.media_type.clone(),
            digest: d.digest.clone(),
            size: d.size.max(0) as u64,
            annotations: d.annotations.clone().unwrap_or_default(),
        }
    }
}

/// An image manifest: a config and layers, named by its digest.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Manifest {
    /// The manifest's digest.
    pub digest: String,
    /// The digest of the index the reference named, when it named one
    /// (and this is the manifest of this platform within it).
    pub index: Option<String>,
    /// The config blob.
    pub config: Descriptor,
    /// The layers, in order.
    pub layers: Vec<Descriptor>,
}

/// Why a registry operation failed.
#[derive(Debug, thiserror::Error)]
pub enum OciError {
    /// The reference is not a valid OCI reference.
    #[error("`{reference}` is not a valid image reference: {message}")]
    Reference {
        /// The reference as given.
        reference: String,
        /// Why.
        message: String,
    },
    /// The registry refused or could not be reached.
    ///
    /// The client's error is kept as it came (digest mismatches included)
    /// and shown once, in this message; it is not also a `source()`, which
    /// would print it twice in a chain of causes.
    #[error("{operation} {reference}: {error}")]
    Registry {
        /// What was being done.
        operation: &'static str,
        /// The reference.
        reference: String,
        /// The client's error.
        error: Box<oci_client::errors::OciDistributionError>,
    },
    /// A manifest declares a blob larger than may be read into memory, or
    /// the registry sent more bytes than the manifest declared.
    #[error("{reference}: blob {digest}: {message}")]
    TooLarge {
        /// The reference.
        reference: String,
        /// The blob.
        digest: String,
        /// Which cap, and by how much.
        message: String,
    },
    /// The async runtime could not start.
    #[error("cannot start the registry client")]
    Runtime(#[source] std::io::Error),
    /// The blocking client was asked to wait where waiting would stop
    /// every other task: inside a single-threaded async runtime.
    #[error(
        "the blocking registry client cannot wait inside a single-threaded async runtime; \
         call it from a thread of its own, or use oci::Registry's async calls"
    )]
    Blocking,
}

impl OciError {
    /// Whether the registry answered that the image or its repository is
    /// not there (a tag never pushed, a typo): the registry works, the
    /// reference is wrong.
    pub fn is_not_found(&self) -> bool {
        use oci_client::errors::{OciDistributionError as E, OciErrorCode as Code};
        let OciError::Registry { error, .. } = self else {
            return false;
        };
        match error.as_ref() {
            E::ImageManifestNotFoundError(_) => true,
            E::RegistryError { envelope, .. } => envelope
                .errors
                .iter()
                .any(|e| matches!(e.code, Code::ManifestUnknown | Code::NameUnknown)),
            _ => false,
        }
    }
}

/// The largest blob [`OciClient::pull`] holds in memory (bundles and
/// schema files are far smaller; a manifest that says more is refused
/// before anything is allocated).
pub const MAX_BLOB_IN_MEMORY: u64 = 256 << 20;

/// Refuses a blob whose declared size is past [`MAX_BLOB_IN_MEMORY`].
fn fits_in_memory(reference: &str, descriptor: &Descriptor) -> Result<(), OciError> {
    if descriptor.size <= MAX_BLOB_IN_MEMORY {
        return Ok(());
    }
    Err(OciError::TooLarge {
        reference: reference.to_owned(),
        digest: descriptor.digest.clone(),
        message: format!(
            "the manifest declares {} bytes, above the {MAX_BLOB_IN_MEMORY}-byte cap of a blob read into memory",
            descriptor.size
        ),
    })
}

/// The digest a reference pins (`repo@sha256:…`), if it pins one.
pub fn pinned_digest(reference: &str) -> Result<Option<String>, OciError> {
    Ok(parse(reference)?.digest().map(str::to_owned))
}

/// `reference`'s repository at `digest`, whatever tag it named.
pub fn at_digest(reference: &str, digest: &str) -> Result<String, OciError> {
    let parsed = parse(reference)?;
    Ok(format!(
        "{}/{}@{digest}",
        parsed.registry(),
        parsed.repository()
    ))
}

fn parse(reference: &str) -> Result<Reference, OciError> {
    reference
        .parse()
        .map_err(|e: oci_client::ParseError| OciError::Reference {
            reference: reference.to_owned(),
            message: e.to_string(),
        })
}

fn registry(
    operation: &'static str,
    reference: &str,
    error: oci_client::errors::OciDistributionError,
) -> OciError {
    OciError::Registry {
        operation,
        reference: reference.to_owned(),
        error: Box::new(error),
    }
}

#[cfg(test)]
mod tests {
    use super::registry::SyncSink;
    use super::*;
    use tokio::io::AsyncWriteExt as _;

    fn descriptor(size: u64) -> Descriptor {
        Descriptor {
            media_type: "application/octet-stream".into(),
            digest: "sha256:00".into(),
            size,
            annotations: BTreeMap::new(),
        }
    }

    #[test]
    fn a_manifest_that_declares_a_huge_blob_is_refused_before_anything_is_allocated() {
        let error = fits_in_memory("r/x:1", &descriptor(u64::MAX)).unwrap_err();
        assert!(matches!(error, OciError::TooLarge { .. }), "{error}");
        assert!(error.to_string().contains("sha256:00"), "{error}");
        assert!(fits_in_memory("r/x:1", &descriptor(MAX_BLOB_IN_MEMORY)).is_ok());
    }

    #[test]
    fn a_registry_sending_more_than_the_manifest_declares_is_refused() {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        let (mut out, mut seen) = (Vec::new(), 0);
        let mut progress = |n| seen += n;
        let mut sink = SyncSink {
            out: &mut out,
            progress: &mut progress,
            left: 4,
        };
        runtime.block_on(async {
            sink.write_all(b"abc").await.unwrap();
            let error = sink.write_all(b"de").await.unwrap_err();
            assert!(
                error
                    .to_string()
                    .contains("more bytes than the manifest declares")
            );
        });
        assert_eq!(out, b"abc", "nothing past the declared size is written");
    }
}
