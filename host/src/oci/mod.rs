//! Registry access: resolve a reference to a digest, pull a manifest and
//! its blobs (every blob checked against its digest), push an artifact.
//! It knows nothing of policies or catalogs; both build on it.
//!
//! Built on `oci-client`, the ORAS project's maintained distribution
//! client. The client is async; Plumbline's stages are threads, so this
//! module owns a small current-thread runtime and offers blocking calls.
//! Plain HTTP is used only for registries the configuration names as
//! insecure; credentials come from a Docker `config.json`, as every
//! registry tool reads them, and never appear in errors or logs.

mod auth;

pub use auth::Credentials;

use oci_client::client::{ClientConfig, ClientProtocol, Config, ImageLayer};
use oci_client::manifest::{OciDescriptor, OciImageManifest};
use oci_client::secrets::RegistryAuth;
use oci_client::{Client, Reference};
use std::collections::BTreeMap;
use std::io::Write;
use std::pin::Pin;
use std::task::{Context, Poll};

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
    #[error("{operation} {reference}: {message}")]
    Registry {
        /// What was being done.
        operation: &'static str,
        /// The reference.
        reference: String,
        /// The client's message (digest mismatches included).
        message: String,
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
    #[error("cannot start the registry client: {0}")]
    Runtime(#[source] std::io::Error),
}

/// The largest blob [`OciClient::pull`] holds in memory (bundles and
/// schema files are far smaller; a manifest that says more is refused
/// before anything is allocated).
pub const MAX_BLOB_IN_MEMORY: u64 = 256 << 20;

/// A blocking registry client.
pub struct OciClient {
    client: Client,
    credentials: Credentials,
    runtime: tokio::runtime::Runtime,
}

impl OciClient {
    /// A client for `config`.
    pub fn new(config: OciConfig) -> Result<OciClient, OciError> {
        // reqwest's rustls needs a process-wide crypto provider; a second
        // install (another client) is refused, which is fine.
        let _ = rustls::crypto::ring::default_provider().install_default();
        let client = Client::new(ClientConfig {
            protocol: ClientProtocol::HttpsExcept(config.insecure.clone()),
            ..ClientConfig::default()
        });
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(OciError::Runtime)?;
        Ok(OciClient {
            client,
            credentials: config.credentials,
            runtime,
        })
    }

    /// The digest `reference` (a tag or a digest) names now.
    pub fn resolve(&self, reference: &str) -> Result<String, OciError> {
        let parsed = parse(reference)?;
        let auth = self.auth(&parsed);
        self.runtime
            .block_on(self.client.fetch_manifest_digest(&parsed, &auth))
            .map_err(|e| registry("resolving", reference, e))
    }

    /// The manifest `reference` names (an index resolves to this platform's
    /// manifest), with its digest.
    pub fn manifest(&self, reference: &str) -> Result<Manifest, OciError> {
        let parsed = parse(reference)?;
        let auth = self.auth(&parsed);
        let (manifest, digest) = self
            .runtime
            .block_on(self.client.pull_image_manifest(&parsed, &auth))
            .map_err(|e| registry("pulling", reference, e))?;
        Ok(Manifest {
            digest,
            config: Descriptor::from(&manifest.config),
            layers: manifest.layers.iter().map(Descriptor::from).collect(),
        })
    }

    /// Streams the blob `descriptor` names into `out`, calling `progress`
    /// with each chunk's size; the bytes are checked against the digest as
    /// they pass, and a mismatch is an error once the blob has been read.
    pub fn pull_blob(
        &self,
        reference: &str,
        descriptor: &Descriptor,
        out: &mut dyn Write,
        progress: &mut dyn FnMut(u64),
    ) -> Result<(), OciError> {
        let parsed = parse(reference)?;
        let layer = OciDescriptor {
            media_type: descriptor.media_type.clone(),
            digest: descriptor.digest.clone(),
            size: descriptor.size as i64,
            ..OciDescriptor::default()
        };
        let sink = SyncSink {
            out,
            progress,
            left: descriptor.size,
        };
        self.runtime
            .block_on(self.client.pull_blob(&parsed, &layer, sink))
            .map_err(|e| {
                registry(
                    "pulling",
                    &format!("{reference} blob {}", descriptor.digest),
                    e,
                )
            })
    }

    /// Pulls the artifact `reference` names, verifying every blob against
    /// its digest.
    pub fn pull(&self, reference: &str) -> Result<Artifact, OciError> {
        self.pull_with_progress(reference, &mut |_| {})
    }

    /// [`OciClient::pull`], telling `progress` of every chunk.
    pub fn pull_with_progress(
        &self,
        reference: &str,
        progress: &mut dyn FnMut(u64),
    ) -> Result<Artifact, OciError> {
        let manifest = self.manifest(reference)?;
        let mut read = |descriptor: &Descriptor| -> Result<Blob, OciError> {
            fits_in_memory(reference, descriptor)?;
            // What a manifest says is not believed with memory: the vector
            // grows with the bytes that really come.
            let mut data = Vec::with_capacity(descriptor.size.min(1 << 20) as usize);
            self.pull_blob(reference, descriptor, &mut data, progress)?;
            Ok(Blob {
                media_type: descriptor.media_type.clone(),
                data,
                annotations: descriptor.annotations.clone(),
            })
        };
        let config = read(&manifest.config)?;
        let layers = manifest
            .layers
            .iter()
            .map(&mut read)
            .collect::<Result<_, _>>()?;
        Ok(Artifact {
            digest: Some(manifest.digest),
            config,
            layers,
        })
    }

    /// Pushes `artifact` to `reference`; returns the manifest's digest.
    pub fn push(&self, reference: &str, artifact: &Artifact) -> Result<String, OciError> {
        self.push_with_progress(reference, artifact, &mut |_| {})
    }

    /// Pushes `artifact` to `reference`, blob by blob (skipping blobs the
    /// repository already holds), then its manifest; `progress` hears of
    /// every blob's size once it is stored. Returns the manifest's digest.
    pub fn push_with_progress(
        &self,
        reference: &str,
        artifact: &Artifact,
        progress: &mut dyn FnMut(u64),
    ) -> Result<String, OciError> {
        let parsed = parse(reference)?;
        let auth = self.auth(&parsed);
        let fail = |e| registry("pushing", reference, e);
        let annotations = |blob: &Blob| Some(blob.annotations.clone()).filter(|a| !a.is_empty());
        let layers: Vec<ImageLayer> = artifact
            .layers
            .iter()
            .map(|b| ImageLayer::new(b.data.clone(), b.media_type.clone(), annotations(b)))
            .collect();
        let config = Config::new(
            artifact.config.data.clone(),
            artifact.config.media_type.clone(),
            annotations(&artifact.config),
        );
        let manifest = OciImageManifest::build(&layers, &config, None);
        let blobs = layers
            .iter()
            .map(|l| &l.data)
            .zip(&manifest.layers)
            .chain(std::iter::once((&config.data, &manifest.config)));
        self.runtime
            .block_on(async {
                self.client
                    .store_auth_if_needed(parsed.resolve_registry(), &auth)
                    .await;
                for (data, descriptor) in blobs {
                    if !self.client.blob_exists(&parsed, &descriptor.digest).await? {
                        self.client
                            .push_blob(&parsed, data.clone(), &descriptor.digest)
                            .await?;
                    }
                    progress(data.len() as u64);
                }
                self.client
                    .push_manifest(&parsed, &manifest.clone().into())
                    .await
            })
            .map_err(fail)?;
        self.resolve(reference)
    }

    fn auth(&self, reference: &Reference) -> RegistryAuth {
        self.credentials.for_registry(reference.resolve_registry())
    }
}

/// A blocking writer seen as an async one: the client streams a blob into
/// it chunk by chunk, so a blob is never held whole unless the caller wants
/// it so.
struct SyncSink<'a> {
    out: &'a mut dyn Write,
    progress: &'a mut dyn FnMut(u64),
    /// Bytes the manifest declared that have not come yet: a registry
    /// that sends more is refused before the excess is written.
    left: u64,
}

impl tokio::io::AsyncWrite for SyncSink<'_> {
    fn poll_write(
        self: Pin<&mut Self>,
        _: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        let this = self.get_mut();
        this.left = this.left.checked_sub(buf.len() as u64).ok_or_else(|| {
            std::io::Error::other("the registry sent more bytes than the manifest declares")
        })?;
        this.out.write_all(buf)?;
        (this.progress)(buf.len() as u64);
        Poll::Ready(Ok(buf.len()))
    }

    fn poll_flush(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Poll::Ready(self.get_mut().out.flush())
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        self.poll_flush(cx)
    }
}

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
        message: error.to_string(),
    }
}

#[cfg(test)]
mod tests {
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
