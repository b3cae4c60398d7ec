//! A workflow image's schema, from the registry: the reference resolved to
//! a digest (an index to this platform's manifest), then its layers read
//! from the top down, each downloaded only when the layers above it did
//! not hold the schema. A big base image below a small schema layer is
//! never fetched.

use crate::oci::{OciClient, OciError};
use plumbline_catalog::layers::{self, Caps, Layer, LayerError};
use std::io::{Cursor, Read};

/// A schema found in an image.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Extracted {
    /// The image's manifest digest (`sha256:…`).
    pub digest: String,
    /// The schema's path in the image.
    pub path: String,
    /// Its bytes.
    pub bytes: Vec<u8>,
    /// Layers downloaded to find it.
    pub layers_read: usize,
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

/// The schema of the image `reference`, looked for at `paths` under `caps`.
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
    let mut read = 0;
    let on_demand = manifest.layers.iter().rev().map(|descriptor| {
        read += 1;
        let mut bytes = Vec::new();
        let content: Box<dyn Read> =
            match client.pull_blob(&pinned, descriptor, &mut bytes, &mut |_| {}) {
                Ok(()) => Box::new(Cursor::new(bytes)),
                // Said as the layer's read error, with the registry's words.
                Err(error) => Box::new(Failing(Some(std::io::Error::other(error.to_string())))),
            };
        Layer {
            media_type: descriptor.media_type.clone(),
            content,
        }
    });
    let found = layers::find(on_demand, paths, caps).map_err(|source| ExtractError::Layers {
        reference: reference.to_owned(),
        source,
    })?;
    match found {
        Some(found) => Ok(Extracted {
            digest: manifest.digest,
            path: found.path,
            bytes: found.bytes,
            layers_read: read,
        }),
        None => Err(ExtractError::NotFound {
            reference: reference.to_owned(),
            digest: manifest.digest,
            paths: paths.join(", "),
        }),
    }
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
