//! Where bundles come from: the registry, through the store.
//!
//! A tag is resolved at the registry each time; a digest-pinned reference
//! never is. Content is pulled once per digest, verified blob by blob, and
//! kept in the store; when the registry cannot be reached, a reference
//! resolves to the digest it last had and loads from the store.

use super::format::read_artifact;
use super::{BundleError, BundleStore};
use crate::oci::{self, OciClient};
use crate::policy::bundled::BundleContent;

/// What a reference resolved to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Resolved {
    /// The manifest digest.
    pub digest: String,
    /// Why the registry was not asked or did not answer, when the digest
    /// came from the store instead.
    pub offline: Option<String>,
}

/// Bundles from a registry, kept in a store.
pub struct BundleSource {
    client: OciClient,
    store: BundleStore,
}

impl BundleSource {
    /// Bundles fetched with `client` and kept in `store`.
    pub fn new(client: OciClient, store: BundleStore) -> BundleSource {
        BundleSource { client, store }
    }

    /// The registry client.
    pub fn client(&self) -> &OciClient {
        &self.client
    }

    /// The digest `reference` names now; if the registry cannot say, the
    /// digest it last named.
    pub fn resolve(&self, reference: &str) -> Result<Resolved, BundleError> {
        if let Some(digest) = oci::pinned_digest(reference)? {
            return Ok(Resolved {
                digest,
                offline: None,
            });
        }
        match self.client.resolve(reference) {
            Ok(digest) => Ok(Resolved {
                digest,
                offline: None,
            }),
            Err(error) => match self.store.last(reference) {
                Some(digest) => Ok(Resolved {
                    digest,
                    offline: Some(error.to_string()),
                }),
                None => Err(error.into()),
            },
        }
    }

    /// The bundle `reference` names at `digest`: from the store if it holds
    /// it intact, else pulled (every blob verified) and stored.
    pub fn fetch(
        &self,
        reference: &str,
        digest: &str,
        progress: &mut dyn FnMut(u64),
    ) -> Result<BundleContent, BundleError> {
        if let Some(artifact) = self.store.load(digest) {
            return read_artifact(reference, &artifact);
        }
        let pinned = oci::at_digest(reference, digest)?;
        let artifact = self.client.pull_with_progress(&pinned, progress)?;
        // Only a bundle that reads is kept, so a broken one is pulled (and
        // refused) again rather than trusted later.
        let content = read_artifact(reference, &artifact)?;
        if let Err(error) = self.store.save(&artifact) {
            tracing::warn!(store = %self.store.dir().display(), %error, "cannot keep the bundle on disk");
        }
        Ok(content)
    }

    /// The digest `reference` last loaded at, if it did.
    pub fn confirmed(&self, reference: &str) -> Option<String> {
        self.store.last(reference)
    }

    /// Notes that `reference` at `digest` loaded, so that a start without
    /// the registry loads it again.
    pub fn confirm(&self, reference: &str, digest: &str) {
        if let Err(error) = self.store.remember(reference, digest) {
            tracing::warn!(%error, "cannot note the bundle's digest");
        }
    }
}
