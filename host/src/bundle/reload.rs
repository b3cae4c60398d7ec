//! The policy set of a configuration with bundles, and its renewal.
//!
//! A new set is built completely (every bundle resolved, pulled, verified,
//! every component compiled into the cache, every setting and CEL
//! expression checked) before anyone sees it; the caller swaps it in whole.
//! A set that fails to build changes nothing, and the same digests are not
//! tried again until a tag moves.

use super::BundleError;
use super::source::BundleSource;
use crate::oci::cosign;
use crate::policy::bundled::BundleContent;
use crate::policy::config::{PolicyConfig, RawVerify};
use crate::policy::{PolicySet, Runtime};
use std::collections::BTreeMap;

/// Bundle name → manifest digest.
pub type Digests = BTreeMap<String, String>;

/// A policy set ready to swap in, and what it was built from.
pub struct Loaded {
    /// The set.
    pub set: PolicySet,
    /// The digest of each bundle in it.
    pub digests: Digests,
    /// Bundles whose digest came from the store because the registry did
    /// not answer, with the registry's error.
    pub offline: Vec<String>,
}

/// A check a new set must pass before it may serve (the mirror's: every
/// watch rule must be readable by the new match chain).
pub type SetCheck = Box<dyn Fn(&PolicySet) -> Result<(), String> + Send>;

/// What a refresh found.
pub struct Refresh {
    /// A new set, if a tag moved and its bundles loaded.
    pub loaded: Option<Loaded>,
    /// Bundles whose registry did not answer (their stored digest stands).
    pub offline: Vec<String>,
}

/// Builds policy sets from a configuration and the bundles it references.
pub struct PolicyLoader {
    config: PolicyConfig,
    runtime: Runtime,
    source: BundleSource,
    check: Option<SetCheck>,
    serving: Option<Digests>,
    failed: Option<Digests>,
}

impl PolicyLoader {
    /// A loader for `config`, compiling with `runtime`, fetching from `source`.
    pub fn new(config: PolicyConfig, runtime: Runtime, source: BundleSource) -> PolicyLoader {
        PolicyLoader {
            config,
            runtime,
            source,
            check: None,
            serving: None,
            failed: None,
        }
    }

    /// Refuses any later set that `check` refuses.
    pub fn set_check(&mut self, check: SetCheck) {
        self.check = Some(check);
    }

    /// The configuration.
    pub fn config(&self) -> &PolicyConfig {
        &self.config
    }

    /// Builds the set as the registry (or, without it, the store) has it now.
    pub fn load(&mut self) -> Result<Loaded, BundleError> {
        let (digests, offline) = self.resolve()?;
        self.build(digests, offline)
    }

    /// Resolves every tag again: a new set if one moved and the new
    /// bundles load, none if nothing moved (or moved to digests that
    /// already failed), an error if they do not load. Either way, which
    /// bundles the registry did not answer for.
    pub fn refresh(&mut self) -> Result<Refresh, BundleError> {
        let (digests, offline) = self.resolve()?;
        if self.serving.as_ref() == Some(&digests) || self.failed.as_ref() == Some(&digests) {
            return Ok(Refresh {
                loaded: None,
                offline,
            });
        }
        let loaded = self.build(digests, offline.clone())?;
        Ok(Refresh {
            loaded: Some(loaded),
            offline,
        })
    }

    fn resolve(&self) -> Result<(Digests, Vec<String>), BundleError> {
        let mut digests = Digests::new();
        let mut offline = Vec::new();
        for (name, bundle) in self.config.bundles() {
            let resolved = self.source.resolve(&bundle.reference)?;
            if let Some(why) = resolved.offline {
                offline.push(format!(
                    "bundle `{name}`: the registry did not answer ({why}); using {} from the store",
                    resolved.digest
                ));
            }
            digests.insert(name.clone(), resolved.digest);
        }
        Ok((digests, offline))
    }

    fn build(&mut self, digests: Digests, offline: Vec<String>) -> Result<Loaded, BundleError> {
        let result = self.fetch_and_load(&digests);
        match &result {
            Ok(_) => {
                for (name, bundle) in self.config.bundles() {
                    self.source.confirm(&bundle.reference, &digests[name]);
                }
                self.serving = Some(digests.clone());
                self.failed = None;
            }
            Err(_) => self.failed = Some(digests.clone()),
        }
        result.map(|set| Loaded {
            set,
            digests,
            offline,
        })
    }

    fn fetch_and_load(&self, digests: &Digests) -> Result<PolicySet, BundleError> {
        let mut contents: BTreeMap<String, BundleContent> = BTreeMap::new();
        for (name, bundle) in self.config.bundles() {
            if let Some(verify) = &bundle.verify {
                self.verify(name, &bundle.reference, &digests[name], verify)?;
            }
            let content = self
                .source
                .fetch(&bundle.reference, &digests[name], &mut |_| {})?;
            contents.insert(name.clone(), content);
        }
        let set = self.config.load_with_bundles(&self.runtime, &contents)?;
        if let Some(check) = &self.check {
            check(&set).map_err(|message| BundleError::Invalid {
                origin: describe(digests),
                message,
            })?;
        }
        Ok(set)
    }
}

impl PolicyLoader {
    /// Checks that bundle `name` (`reference` at `digest`) carries a
    /// cosign signature by one of the keys `verify` names (read each time:
    /// a key file replaced takes effect at the next refresh).
    fn verify(
        &self,
        name: &str,
        reference: &str,
        digest: &str,
        verify: &RawVerify,
    ) -> Result<(), BundleError> {
        let failed = |source| BundleError::Unverified {
            name: name.to_owned(),
            source,
        };
        let base = self.config.base();
        let paths: Vec<_> = verify.keys.iter().map(|k| base.join(k)).collect();
        let keys = cosign::TrustedKeys::read(&paths).map_err(failed)?;
        if keys.is_empty() {
            return Err(BundleError::Invalid {
                origin: format!("bundle `{name}`"),
                message: "`verify.keys` names no key: nothing could be trusted".into(),
            });
        }
        match cosign::verify(self.source.client(), reference, digest, &keys) {
            Ok(key) => {
                tracing::info!(bundle = name, %digest, key, "signature verified");
                Ok(())
            }
            // The registry is out of reach, and this digest loaded before
            // (verified then): a start without the registry still serves.
            Err(cosign::CosignError::Registry(error))
                if self.source.confirmed(reference).as_deref() == Some(digest) =>
            {
                tracing::warn!(bundle = name, %digest, %error, "the registry did not answer; the signature was verified when this digest first loaded");
                Ok(())
            }
            Err(error) => Err(failed(error)),
        }
    }
}

/// `name@digest, …`, for messages.
pub fn describe(digests: &Digests) -> String {
    let all: Vec<String> = digests.iter().map(|(n, d)| format!("{n}@{d}")).collect();
    all.join(", ")
}
