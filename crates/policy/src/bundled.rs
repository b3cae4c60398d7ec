//! Steps that arrive in a bundle rather than in the operator's file.
//!
//! The bundle module fetches and verifies bundles; what it hands the policy
//! configuration is this: for each step, its decision and either a
//! component with its settings and the capabilities it asks for, or a CEL
//! policy. The configuration places them (`bundle:` steps), and grants
//! capabilities: a plugin whose asks the operator did not grant does not
//! load.

use super::Decision;
use super::capability::Grants;
use super::cel::RawCel;
use serde::{Deserialize, Serialize};
use std::sync::Arc;

/// What one bundle holds, verified and ready to load.
#[derive(Debug, Clone)]
pub struct BundleContent {
    /// The reference the operator wrote (a tag or a digest).
    pub reference: String,
    /// The manifest digest it resolved to.
    pub digest: String,
    /// The steps, in the bundle's order.
    pub steps: Vec<BundleStep>,
}

/// One step of a bundle.
#[derive(Debug, Clone)]
pub struct BundleStep {
    /// The decision it answers.
    pub decision: Decision,
    /// A plugin or a CEL policy.
    pub kind: BundleStepKind,
}

/// What a bundle step is.
#[derive(Debug, Clone)]
pub enum BundleStepKind {
    /// A component.
    Plugin {
        /// The plugin's name in the bundle.
        name: String,
        /// The component's bytes.
        component: Arc<[u8]>,
        /// Its settings.
        settings: serde_json::Value,
        /// What it asks the operator to grant.
        asks: Asks,
    },
    /// A CEL policy.
    Cel(RawCel),
}

/// The capabilities a bundled plugin asks for. The operator's grants must
/// cover them; the bundle cannot name host folders, only where the guest
/// expects one.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Asks {
    /// Environment variables it reads.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub environment: Vec<String>,
    /// Guest paths where it expects a read-only folder.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub filesystem: Vec<String>,
    /// Network connections.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub network: bool,
    /// The real clocks.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub real_clock: bool,
    /// Unpredictable randomness.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub real_random: bool,
}

impl Asks {
    /// The asks `grants` leave ungranted, named as in the configuration.
    pub fn not_granted(&self, grants: &Grants) -> Vec<String> {
        let mut missing: Vec<String> = Vec::new();
        for name in &self.environment {
            if !grants.environment.contains(name) {
                missing.push(format!("environment {name}"));
            }
        }
        for guest in &self.filesystem {
            if !grants.filesystem.iter().any(|p| &p.guest == guest) {
                missing.push(format!("filesystem {guest}"));
            }
        }
        for (asked, granted, name) in [
            (self.network, grants.network, "network"),
            (self.real_clock, grants.real_clock, "realClock"),
            (self.real_random, grants.real_random, "realRandom"),
        ] {
            if asked && !granted {
                missing.push(name.to_owned());
            }
        }
        missing
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::capability::Preopen;

    #[test]
    fn asks_must_be_covered_by_grants() {
        let asks = Asks {
            environment: vec!["HOME".into()],
            filesystem: vec!["/data".into()],
            network: true,
            ..Asks::default()
        };
        assert_eq!(
            asks.not_granted(&Grants::default()),
            ["environment HOME", "filesystem /data", "network"]
        );
        let grants = Grants {
            environment: vec!["HOME".into(), "USER".into()],
            filesystem: vec![Preopen {
                host: "/srv/data".into(),
                guest: "/data".into(),
            }],
            network: true,
            ..Grants::default()
        };
        assert!(asks.not_granted(&grants).is_empty());
        assert!(Asks::default().not_granted(&Grants::default()).is_empty());
    }
}
