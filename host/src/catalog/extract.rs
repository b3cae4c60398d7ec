//! A workflow image's schema, from the registry: the reference resolved to
//! a digest (an index to this platform's manifest); then a **schema
//! artifact** attached to the image (an OCI referrer of
//! [`SCHEMA_ARTIFACT_TYPE`], found through the referrers API or its
//! `sha256-<hex>` tag), which wins; else the image's layers, read from the
//! top down, each downloaded only when the layers above it did not hold
//! the schema. A big base image below a small schema layer is never
//! fetched. The image config's labels are read (they are small), and the
//! label [`SCHEMA_PATH_LABEL`] names a path looked for first.

use crate::oci::{Descriptor, OciClient, OciError};
use plumbline_catalog::layers::{self, Caps, Layer, LayerError};
use std::collections::BTreeMap;
use std::io::{Cursor, Read};

/// The artifact type of a workflow schema attached to its image
/// (`oras attach --artifact-type …`).
pub const SCHEMA_ARTIFACT_TYPE: &str = "application/vnd.plumbline.workflow.schema.v1";

/// The image label that names where the schema is in the image.
pub const SCHEMA_PATH_LABEL: &str = "dev.plumbline.workflow.schema-path";

/// The largest image config read for its labels.
const MAX_CONFIG_BYTES: u64 = 1 << 20;

/// A schema found in an image.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Extracted {
    /// The image's manifest digest (`sha256:…`).
    pub digest: String,
    /// Where the schema was: its path in the image, or `artifact
    /// sha256:…` for an attached one.
    pub path: String,
    /// Its bytes.
    pub bytes: Vec<u8>,
    /// Layers downloaded to find it.
    pub layers_read: usize,
    /// The image config's labels.
    pub labels: BTreeMap<String, String>,
}

/// Why no schema came out of an image.
#[derive(Debug, thiserror::Error)]
pub enum ExtractError {
    /// The registry refused or failed (down, no such image, no access).
    #[error("{reference}: {source}")]
    Registry {
        /// The image.
        reference: String,
        /// What the registry client said.
        #[source]
        source: OciError,
    },
    /// A layer could not be searched, or a cap was reached.
    #[error("{reference}: {source}")]
    Layers {
        /// The image.
        reference: String,
        /// Why.
        #[source]
        source: LayerError,
    },
    /// A schema artifact holds no layer.
    #[error("{reference}: the schema artifact {digest} attached to it holds no file")]
    EmptyArtifact {
        /// The image.
        reference: String,
        /// The artifact.
        digest: String,
    },
    /// No layer holds any of the paths.
    #[error("{reference} ({digest}) holds none of {paths}")]
    NotFound {
        /// The image.
        reference: String,
        /// Its digest.
        digest: String,
        /// The paths looked for.
        paths: String,
    },
}

/// The schema of the image `reference`: an attached schema artifact, else
/// the first of `paths` in its layers, under `caps`.
pub fn schema_of(
    client: &OciClient,
    reference: &str,
    paths: &[&str],
    caps: Caps,
) -> Result<Extracted, ExtractError> {
    let registry = |source| ExtractError::Registry {
        reference: reference.to_owned(),
        source,
    };
    let manifest = client.manifest(reference).map_err(registry)?;
    let pinned = crate::oci::at_digest(reference, &manifest.digest).map_err(registry)?;
    let labels = labels(client, &pinned, &manifest.config).map_err(registry)?;
    let found = |path: String, bytes: Vec<u8>, layers_read: usize| Extracted {
        digest: manifest.digest.clone(),
        path,
        bytes,
        layers_read,
        labels: labels.clone(),
    };
    // Attached to the index a tag names, or to this platform's image.
    let subjects = manifest.index.iter().chain([&manifest.digest]);
    for subject in subjects {
        if let Some((digest, bytes)) = attached(client, reference, subject, caps)? {
            return Ok(found(format!("artifact {digest}"), bytes, 0));
        }
    }
    let labelled = labels.get(SCHEMA_PATH_LABEL).map(String::as_str);
    let paths: Vec<&str> = labelled.into_iter().chain(paths.iter().copied()).collect();
    let mut read = 0;
    // What stopped a layer before it was read: a cap its declared size
    // would pass (then it is not downloaded), or the registry's failure.
    let mut stopped: Option<ExtractError> = None;
    let mut declared = 0u64;
    let on_demand = manifest.layers.iter().rev().map(|descriptor| {
        read += 1;
        declared = declared.saturating_add(descriptor.size);
        let outcome = if declared > caps.max_read_bytes {
            Err(ExtractError::Layers {
                reference: reference.to_owned(),
                source: LayerError::Cap(format!(
                    "layer {} declares {} bytes, past the cap of {} bytes read from all layers; it was not downloaded",
                    descriptor.digest, descriptor.size, caps.max_read_bytes
                )),
            })
        } else {
            let mut bytes = Vec::new();
            client
                .pull_blob(&pinned, descriptor, &mut bytes, &mut |_| {})
                .map(|()| bytes)
                .map_err(|source| ExtractError::Registry {
                    reference: reference.to_owned(),
                    source,
                })
        };
        let content: Box<dyn Read> = match outcome {
            Ok(bytes) => Box::new(Cursor::new(bytes)),
            Err(cause) => {
                stopped = Some(cause);
                Box::new(Failing(Some(std::io::Error::other("not read"))))
            }
        };
        Layer {
            media_type: descriptor.media_type.clone(),
            content,
        }
    });
    let searched = layers::find(on_demand, &paths, caps);
    let in_layers = match (searched, stopped) {
        // The layer failed for what stopped it: that is the cause.
        (Err(_), Some(cause)) => return Err(cause),
        (searched, _) => searched.map_err(|source| ExtractError::Layers {
            reference: reference.to_owned(),
            source,
        })?,
    };
    match in_layers {
        Some(schema) => Ok(found(schema.path, schema.bytes, read)),
        None => Err(ExtractError::NotFound {
            reference: reference.to_owned(),
            digest: manifest.digest.clone(),
            paths: paths.join(", "),
        }),
    }
}

/// The labels of the image config `config` describes (none if it holds
/// none, or is no image config).
fn labels(
    client: &OciClient,
    pinned: &str,
    config: &Descriptor,
) -> Result<BTreeMap<String, String>, OciError> {
    if config.size > MAX_CONFIG_BYTES {
        return Ok(BTreeMap::new());
    }
    let mut bytes = Vec::new();
    client.pull_blob(pinned, config, &mut bytes, &mut |_| {})?;
    let value: serde_json::Value = serde_json::from_slice(&bytes).unwrap_or_default();
    let labels = value.pointer("/config/Labels").cloned().unwrap_or_default();
    Ok(serde_json::from_value(labels).unwrap_or_default())
}

/// The schema attached to `subject` as an artifact: its digest and the
/// bytes of its first layer; the newest when there are several (by their
/// `org.opencontainers.image.created` annotations).
fn attached(
    client: &OciClient,
    reference: &str,
    subject: &str,
    caps: Caps,
) -> Result<Option<(String, Vec<u8>)>, ExtractError> {
    let registry = |source| ExtractError::Registry {
        reference: reference.to_owned(),
        source,
    };
    let mut referrers = client
        .referrers(reference, subject, SCHEMA_ARTIFACT_TYPE)
        .map_err(registry)?;
    let created = |d: &Descriptor| {
        d.annotations
            .get("org.opencontainers.image.created")
            .cloned()
    };
    referrers.sort_by_key(created);
    let Some(newest) = referrers.pop() else {
        return Ok(None);
    };
    let pinned = crate::oci::at_digest(reference, &newest.digest).map_err(registry)?;
    let artifact = client.manifest(&pinned).map_err(registry)?;
    let Some(layer) = artifact.layers.first() else {
        return Err(ExtractError::EmptyArtifact {
            reference: reference.to_owned(),
            digest: newest.digest,
        });
    };
    if layer.size > caps.max_file_bytes {
        let message = format!(
            "the schema artifact {} declares {} bytes, above the {}-byte cap of a schema file",
            newest.digest, layer.size, caps.max_file_bytes
        );
        return Err(ExtractError::Layers {
            reference: reference.to_owned(),
            source: LayerError::Cap(message),
        });
    }
    let mut bytes = Vec::new();
    client
        .pull_blob(&pinned, layer, &mut bytes, &mut |_| {})
        .map_err(registry)?;
    Ok(Some((newest.digest, bytes)))
}

/// A reader whose first read fails with the error it holds.
struct Failing(Option<std::io::Error>);

impl Read for Failing {
    fn read(&mut self, _: &mut [u8]) -> std::io::Result<usize> {
        Err(self
            .0
            .take()
            .unwrap_or_else(|| std::io::Error::other("failed before")))
    }
}
