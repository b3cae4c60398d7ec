//! What a plugin may touch beyond its own memory, and how the host decides.
//!
//! A component's imports are what it can ask for: a plugin that imports
//! `wasi:sockets/tcp` can open connections if the host lets it. So the host
//! reads the asks from the component itself, compares them with what the
//! operator's configuration grants, and refuses to load a plugin that asks
//! for more. Everything a guest gets without a grant is inert: no
//! environment variables, no preopened folders, a clock fixed at the epoch,
//! and randomness from a fixed seed (so a plugin's output depends on its
//! input alone).
//!
//! Environment variables are a grant but not an ask: the standard library
//! of every Rust guest imports `wasi:cli/environment` whether or not it reads
//! a variable, so that import says nothing. A guest simply sees an empty
//! environment unless variables are granted.

use serde::Deserialize;
use std::path::PathBuf;

/// A capability the operator can grant a plugin.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Capability {
    /// Host folders (`grants.filesystem`).
    Filesystem,
    /// Sockets and HTTP (`grants.network`).
    Network,
}

impl Capability {
    /// The name used in configuration and messages.
    pub fn name(self) -> &'static str {
        match self {
            Capability::Filesystem => "filesystem",
            Capability::Network => "network",
        }
    }

    /// The capability an import needs, if any. Interfaces every guest may
    /// import (streams, stdio, clocks, random, exit) need none: the host
    /// answers them harmlessly.
    pub fn needed_by(import: &str) -> Option<Capability> {
        let interface = import.split('@').next().unwrap_or(import);
        if interface.starts_with("wasi:sockets/") || interface.starts_with("wasi:http/") {
            Some(Capability::Network)
        } else if interface == "wasi:filesystem/preopens" {
            Some(Capability::Filesystem)
        } else {
            None
        }
    }
}

/// What the operator grants one plugin. Nothing by default.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Grants {
    /// Names of host environment variables the plugin may read.
    #[serde(default)]
    pub environment: Vec<String>,
    /// Host folders the plugin may read, each at a path inside the guest.
    #[serde(default)]
    pub filesystem: Vec<Preopen>,
    /// Whether the plugin may open network connections.
    #[serde(default)]
    pub network: bool,
    /// The real wall and monotonic clocks instead of a fixed one.
    #[serde(default)]
    pub real_clock: bool,
    /// Unpredictable randomness instead of a fixed seed.
    #[serde(default)]
    pub real_random: bool,
}

/// A host folder offered read-only to a plugin.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Preopen {
    /// The folder on the host.
    pub host: PathBuf,
    /// Where the guest sees it.
    pub guest: String,
}

impl Grants {
    /// Whether `capability` is granted.
    pub fn allows(&self, capability: Capability) -> bool {
        match capability {
            Capability::Filesystem => !self.filesystem.is_empty(),
            Capability::Network => self.network,
        }
    }

    /// The first import that needs a capability not granted, with that capability.
    pub fn first_refused<'a>(
        &self,
        imports: impl IntoIterator<Item = &'a str>,
    ) -> Option<(Capability, &'a str)> {
        imports.into_iter().find_map(|import| {
            Capability::needed_by(import)
                .filter(|c| !self.allows(*c))
                .map(|c| (c, import))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn imports_map_to_capabilities() {
        use Capability::*;
        assert_eq!(
            Capability::needed_by("wasi:sockets/tcp@0.2.6"),
            Some(Network)
        );
        assert_eq!(
            Capability::needed_by("wasi:http/outgoing-handler@0.2.0"),
            Some(Network)
        );
        assert_eq!(
            Capability::needed_by("wasi:filesystem/preopens@0.2.6"),
            Some(Filesystem)
        );
        assert_eq!(Capability::needed_by("wasi:cli/environment@0.2.6"), None);
        assert_eq!(Capability::needed_by("wasi:io/streams@0.2.6"), None);
        assert_eq!(Capability::needed_by("wasi:clocks/wall-clock@0.2.6"), None);
    }

    #[test]
    fn nothing_is_granted_by_default() {
        let refused =
            Grants::default().first_refused(["wasi:io/streams@0.2.6", "wasi:sockets/tcp@0.2.6"]);
        assert_eq!(
            refused,
            Some((Capability::Network, "wasi:sockets/tcp@0.2.6"))
        );
        let grants = Grants {
            network: true,
            ..Grants::default()
        };
        assert_eq!(grants.first_refused(["wasi:sockets/tcp@0.2.6"]), None);
    }
}
