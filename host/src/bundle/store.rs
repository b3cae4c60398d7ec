//! Bundles kept on disk, so that a start with the registry down still
//! loads the policies that last served.
//!
//! ```text
//! DIR/blobs/sha256/<hex>         every config and layer, by digest
//! DIR/manifests/<hex>.json       what a manifest digest holds
//! DIR/refs/<hex of reference>    the digest a reference last resolved to
//! ```
//!
//! Every file is written to a temporary name and renamed, and every blob
//! is checked against its digest again when read: the store is a cache, so
//! anything missing or corrupt is simply fetched again.

use crate::model::digest::content_digest;
use crate::oci::{Artifact, Blob};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};

/// The on-disk bundle store.
#[derive(Debug, Clone)]
pub struct BundleStore {
    dir: PathBuf,
}

#[derive(Serialize, Deserialize)]
struct StoredManifest {
    config: StoredBlob,
    layers: Vec<StoredBlob>,
}

#[derive(Serialize, Deserialize)]
struct StoredBlob {
    media_type: String,
    digest: String,
    annotations: BTreeMap<String, String>,
}

impl BundleStore {
    /// A store in `dir` (created when first written).
    pub fn new(dir: impl Into<PathBuf>) -> BundleStore {
        BundleStore { dir: dir.into() }
    }

    /// The store's folder.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Keeps `artifact` (which has its digest).
    pub fn save(&self, artifact: &Artifact) -> std::io::Result<()> {
        let digest = artifact
            .digest
            .as_deref()
            .ok_or_else(|| std::io::Error::other("an artifact without a digest"))?;
        let mut stored = |blob: &Blob| -> std::io::Result<StoredBlob> {
            let digest = content_digest(&blob.data);
            let path = self.blob_path(&digest);
            if !path.exists() {
                write_atomically(&path, &blob.data)?;
            }
            Ok(StoredBlob {
                media_type: blob.media_type.clone(),
                digest,
                annotations: blob.annotations.clone(),
            })
        };
        let manifest = StoredManifest {
            config: stored(&artifact.config)?,
            layers: artifact
                .layers
                .iter()
                .map(&mut stored)
                .collect::<Result<_, _>>()?,
        };
        let json = serde_json::to_vec(&manifest).expect("a manifest serializes");
        write_atomically(&self.manifest_path(digest), &json)
    }

    /// The artifact `digest` names, if the store holds all of it intact.
    pub fn load(&self, digest: &str) -> Option<Artifact> {
        let json = std::fs::read(self.manifest_path(digest)).ok()?;
        let manifest: StoredManifest = serde_json::from_slice(&json).ok()?;
        let read = |stored: &StoredBlob| -> Option<Blob> {
            let data = std::fs::read(self.blob_path(&stored.digest)).ok()?;
            if content_digest(&data) != stored.digest {
                tracing::warn!(digest = %stored.digest, "a stored bundle blob is corrupt; fetching it again");
                return None;
            }
            Some(Blob {
                media_type: stored.media_type.clone(),
                data,
                annotations: stored.annotations.clone(),
            })
        };
        Some(Artifact {
            digest: Some(digest.to_owned()),
            config: read(&manifest.config)?,
            layers: manifest.layers.iter().map(read).collect::<Option<_>>()?,
        })
    }

    /// Notes that `reference` resolved to `digest` (and loaded).
    pub fn remember(&self, reference: &str, digest: &str) -> std::io::Result<()> {
        write_atomically(
            &self.ref_path(reference),
            format!("{digest}\n{reference}\n").as_bytes(),
        )
    }

    /// The digest `reference` last resolved to.
    pub fn last(&self, reference: &str) -> Option<String> {
        let text = std::fs::read_to_string(self.ref_path(reference)).ok()?;
        let mut lines = text.lines();
        let digest = lines.next()?;
        (lines.next() == Some(reference)).then(|| digest.to_owned())
    }

    fn blob_path(&self, digest: &str) -> PathBuf {
        self.dir.join("blobs/sha256").join(hex_of(digest))
    }

    fn manifest_path(&self, digest: &str) -> PathBuf {
        self.dir
            .join("manifests")
            .join(format!("{}.json", hex_of(digest)))
    }

    fn ref_path(&self, reference: &str) -> PathBuf {
        self.dir
            .join("refs")
            .join(hex_of(&content_digest(reference.as_bytes())))
    }
}

/// The hex part of a digest, with nothing that could leave a folder.
fn hex_of(digest: &str) -> String {
    let hex = digest.strip_prefix("sha256:").unwrap_or(digest);
    hex.chars().filter(char::is_ascii_hexdigit).collect()
}

fn write_atomically(path: &Path, data: &[u8]) -> std::io::Result<()> {
    let dir = path.parent().expect("store files live in a folder");
    std::fs::create_dir_all(dir)?;
    let mut tmp = tempfile::NamedTempFile::new_in(dir)?;
    tmp.write_all(data)?;
    tmp.persist(path).map_err(|e| e.error)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn artifact() -> Artifact {
        let blob = |media_type: &str, data: &[u8]| Blob {
            media_type: media_type.into(),
            data: data.to_vec(),
            annotations: BTreeMap::new(),
        };
        Artifact {
            digest: Some("sha256:00ff".into()),
            config: blob("application/json", b"{}"),
            layers: vec![blob("application/wasm", b"\0asm")],
        }
    }

    #[test]
    fn keeps_artifacts_and_references_and_refuses_corrupt_blobs() {
        let dir = tempfile::tempdir().unwrap();
        let store = BundleStore::new(dir.path());
        assert_eq!(store.last("r/x:v1"), None);
        assert!(store.load("sha256:00ff").is_none());
        store.save(&artifact()).unwrap();
        assert_eq!(store.last("r/x:v1"), None);
        store.remember("r/x:v1", "sha256:00ff").unwrap();
        assert_eq!(store.last("r/x:v1").as_deref(), Some("sha256:00ff"));
        assert_eq!(store.last("r/x:v2"), None);
        assert_eq!(store.load("sha256:00ff"), Some(artifact()));

        let layer = store.blob_path(&content_digest(b"\0asm"));
        std::fs::write(layer, b"\0asn").unwrap();
        assert!(
            store.load("sha256:00ff").is_none(),
            "a corrupt blob is refused"
        );
    }
}
