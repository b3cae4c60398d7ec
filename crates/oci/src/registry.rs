//! The registry client itself, async: what runs on the daemon's runtime
//! (and, through [`super::OciClient`], behind the CLI's blocking calls).

use super::{
    Artifact, Blob, Credentials, Descriptor, Manifest, OciConfig, OciError, fits_in_memory, parse,
    registry,
};
use oci_client::client::{ClientConfig, ClientProtocol, Config, ImageLayer};
use oci_client::manifest::{OciDescriptor, OciImageManifest};
use oci_client::secrets::RegistryAuth;
use oci_client::{Client, Reference};
use std::io::Write;
use std::pin::Pin;
use std::task::{Context, Poll};

/// How long a connection to a registry may take.
const CONNECT_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);

/// How long a registry may go without sending anything.
const READ_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(30);

/// Tags asked for per page of a listing.
const TAGS_PAGE: usize = 1000;

/// An async registry client.
pub struct Registry {
    client: Client,
    credentials: Credentials,
}

impl Registry {
    /// A client for `config`; it needs a runtime only when it is called.
    pub fn new(config: OciConfig) -> Registry {
        // reqwest's rustls needs a process-wide crypto provider; a second
        // install (another client) is refused, which is fine.
        let _ = rustls::crypto::ring::default_provider().install_default();
        let client = Client::new(ClientConfig {
            protocol: ClientProtocol::HttpsExcept(config.insecure.clone()),
            // A registry that accepts a connection and never answers must
            // not hold a registration (and its thread) for ever.
            connect_timeout: Some(CONNECT_TIMEOUT),
            read_timeout: Some(READ_TIMEOUT),
            ..ClientConfig::default()
        });
        Registry {
            client,
            credentials: config.credentials,
        }
    }

    /// The digest `reference` (a tag or a digest) names now.
    pub async fn resolve(&self, reference: &str) -> Result<String, OciError> {
        let parsed = parse(reference)?;
        let auth = self.auth(&parsed);
        self.client
            .fetch_manifest_digest(&parsed, &auth)
            .await
            .map_err(|e| registry("resolving", reference, e))
    }

    /// The manifest `reference` names (an index resolves to this platform's
    /// manifest), with its digest.
    pub async fn manifest(&self, reference: &str) -> Result<Manifest, OciError> {
        let parsed = parse(reference)?;
        let auth = self.auth(&parsed);
        let (manifest, digest, index) = self
            .client
            .pull_image_manifest_and_list_digest(&parsed, &auth)
            .await
            .map_err(|e| registry("pulling", reference, e))?;
        Ok(Manifest {
            digest,
            index,
            config: Descriptor::from(&manifest.config),
            layers: manifest.layers.iter().map(Descriptor::from).collect(),
        })
    }

    /// Every tag of `repository` (`registry/repo`), a page at a time.
    pub async fn tags(&self, repository: &str) -> Result<Vec<String>, OciError> {
        // Any reference of the repository names it for the listing.
        let parsed = parse(&format!("{repository}:latest"))?;
        let auth = self.auth(&parsed);
        let mut tags: Vec<String> = Vec::new();
        loop {
            let last = tags.last().cloned();
            let page = self
                .client
                .list_tags(&parsed, &auth, Some(TAGS_PAGE), last.as_deref())
                .await
                .map_err(|e| registry("listing the tags of", repository, e))?;
            let full = page.tags.len() >= TAGS_PAGE;
            tags.extend(page.tags);
            // A registry that ignores `last` would send the same page again.
            if !full || tags.last() == last.as_ref() {
                return Ok(tags);
            }
        }
    }

    /// The manifests that refer to `digest` in `reference`'s repository
    /// (signatures, schemas, SBOMs) of `artifact_type`: through the
    /// registry's referrers API, or, where it has none (distribution 2.x,
    /// Debian's `docker-registry`), the `sha256-<hex>` tag that clients
    /// such as `oras attach` keep instead. None is an empty list.
    pub async fn referrers(
        &self,
        reference: &str,
        digest: &str,
        artifact_type: &str,
    ) -> Result<Vec<Descriptor>, OciError> {
        let pinned = parse(&super::at_digest(reference, digest)?)?;
        let auth = self.auth(&pinned);
        self.client
            .store_auth_if_needed(pinned.resolve_registry(), &auth)
            .await;
        let index = self
            .client
            .pull_referrers(&pinned, Some(artifact_type))
            .await
            .map_err(|e| registry("listing the referrers of", reference, e))?;
        Ok(index
            .manifests
            .iter()
            // A registry's filter is trusted no more than a tag's.
            .filter(|m| m.artifact_type.as_deref() == Some(artifact_type))
            .map(|m| Descriptor {
                media_type: m.media_type.clone(),
                digest: m.digest.clone(),
                size: m.size.max(0) as u64,
                annotations: m.annotations.clone().unwrap_or_default(),
            })
            .collect())
    }

    /// Streams the blob `descriptor` names into `out`, calling `progress`
    /// with each chunk's size; the bytes are checked against the digest as
    /// they pass, and a mismatch is an error once the blob has been read.
    /// The future is `Send` when `out` and `progress` are.
    pub async fn pull_blob<W, P>(
        &self,
        reference: &str,
        descriptor: &Descriptor,
        out: &mut W,
        progress: &mut P,
    ) -> Result<(), OciError>
    where
        W: Write + ?Sized,
        P: FnMut(u64) + ?Sized,
    {
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
        self.client
            .pull_blob(&parsed, &layer, sink)
            .await
            .map_err(|e| {
                registry(
                    "pulling",
                    &format!("{reference} blob {}", descriptor.digest),
                    e,
                )
            })
    }

    /// Pulls the artifact `reference` names, verifying every blob against
    /// its digest and telling `progress` of every chunk.
    pub async fn pull<P>(&self, reference: &str, progress: &mut P) -> Result<Artifact, OciError>
    where
        P: FnMut(u64) + ?Sized,
    {
        let manifest = self.manifest(reference).await?;
        let config = self.read(reference, &manifest.config, progress).await?;
        let mut layers = Vec::with_capacity(manifest.layers.len());
        for layer in &manifest.layers {
            layers.push(self.read(reference, layer, progress).await?);
        }
        Ok(Artifact {
            digest: Some(manifest.digest),
            config,
            layers,
        })
    }

    /// One blob, into memory within [`super::MAX_BLOB_IN_MEMORY`].
    async fn read<P>(
        &self,
        reference: &str,
        descriptor: &Descriptor,
        progress: &mut P,
    ) -> Result<Blob, OciError>
    where
        P: FnMut(u64) + ?Sized,
    {
        fits_in_memory(reference, descriptor)?;
        // What a manifest says is not believed with memory: the vector
        // grows with the bytes that really come.
        let mut data = Vec::with_capacity(descriptor.size.min(1 << 20) as usize);
        self.pull_blob(reference, descriptor, &mut data, progress)
            .await?;
        Ok(Blob {
            media_type: descriptor.media_type.clone(),
            data,
            annotations: descriptor.annotations.clone(),
        })
    }

    /// Pushes `artifact` to `reference`, blob by blob (skipping blobs the
    /// repository already holds), then its manifest; `progress` hears of
    /// every blob's size once it is stored. Returns the manifest's digest.
    pub async fn push<P>(
        &self,
        reference: &str,
        artifact: &Artifact,
        progress: &mut P,
    ) -> Result<String, OciError>
    where
        P: FnMut(u64) + ?Sized,
    {
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
        let manifest = OciImageManifest::build(&layers, &config, None);
        let blobs = layers
            .iter()
            .map(|l| &l.data)
            .zip(&manifest.layers)
            .chain(std::iter::once((&config.data, &manifest.config)));
        self.client
            .store_auth_if_needed(parsed.resolve_registry(), &auth)
            .await;
        let stored = async {
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
        };
        stored
            .await
            .map_err(|e| registry("pushing", reference, e))?;
        self.resolve(reference).await
    }

    fn auth(&self, reference: &Reference) -> RegistryAuth {
        self.credentials.for_registry(reference.resolve_registry())
    }
}

/// A blocking writer seen as an async one: the client streams a blob into
/// it chunk by chunk, so a blob is never held whole unless the caller wants
/// it so.
pub(super) struct SyncSink<'a, W: ?Sized, P: ?Sized> {
    pub(super) out: &'a mut W,
    pub(super) progress: &'a mut P,
    /// Bytes the manifest declared that have not come yet: a registry
    /// that sends more is refused before the excess is written.
    pub(super) left: u64,
}

impl<W, P> tokio::io::AsyncWrite for SyncSink<'_, W, P>
where
    W: Write + ?Sized,
    P: FnMut(u64) + ?Sized,
{
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
