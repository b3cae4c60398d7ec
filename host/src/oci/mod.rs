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
use oci_client::manifest::OciDescriptor;
use oci_client::secrets::RegistryAuth;
use oci_client::{Client, Reference};
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
    /// The async runtime could not start.
    #[error("cannot start the registry client: {0}")]
    Runtime(#[source] std::io::Error),
}

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

    /// Pulls the artifact `reference` names (an index resolves to this
    /// platform's manifest), verifying every blob against its digest.
    pub fn pull(&self, reference: &str) -> Result<Artifact, OciError> {
        let parsed = parse(reference)?;
        let auth = self.auth(&parsed);
        let fail = |e| registry("pulling", reference, e);
        let (manifest, digest) = self
            .runtime
            .block_on(self.client.pull_image_manifest(&parsed, &auth))
            .map_err(fail)?;
        let config = self.blob(&parsed, &manifest.config).map_err(fail)?;
        let layers = manifest
            .layers
            .iter()
            .map(|layer| self.blob(&parsed, layer))
            .collect::<Result<_, _>>()
            .map_err(fail)?;
        Ok(Artifact {
            digest: Some(digest),
            config,
            layers,
        })
    }

    fn blob(
        &self,
        reference: &Reference,
        descriptor: &OciDescriptor,
    ) -> Result<Blob, oci_client::errors::OciDistributionError> {
        let mut data = Vec::new();
        self.runtime
            .block_on(self.client.pull_blob(reference, descriptor, &mut data))?;
        Ok(Blob {
            media_type: descriptor.media_type.clone(),
            data,
            annotations: descriptor.annotations.clone().unwrap_or_default(),
        })
    }

    /// Pushes `artifact` to `reference`; returns the manifest's digest.
    pub fn push(&self, reference: &str, artifact: &Artifact) -> Result<String, OciError> {
        let parsed = parse(reference)?;
        let auth = self.auth(&parsed);
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
        self.runtime
            .block_on(self.client.push(&parsed, &layers, config, &auth, None))
            .map_err(|e| registry("pushing", reference, e))?;
        self.resolve(reference)
    }

    fn auth(&self, reference: &Reference) -> RegistryAuth {
        self.credentials.for_registry(reference.resolve_registry())
    }
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
