//! The policy configuration file as written (serde, unknown fields
//! refused): what [`super::config`] loads and [`super::shape`] checks for
//! every error at once, so that neither needs the other's types.

use super::Decision;
use super::capability::Grants;
use super::cel::RawCel;
use super::chain::FailureMode;
use serde::Deserialize;
use std::collections::BTreeMap;
use std::path::PathBuf;

/// A policy configuration file, as written.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct RawConfig {
    /// Per-call limits.
    #[serde(default)]
    pub limits: RawLimits,
    /// The chain of each decision.
    #[serde(default)]
    pub decisions: BTreeMap<Decision, RawChain>,
    /// Bundles from OCI registries, by the name `bundle:` steps use.
    #[serde(default)]
    pub bundles: BTreeMap<String, RawBundle>,
    /// Seconds between resolutions of the bundles' tags (default 30); a tag
    /// that moved is loaded and swapped in.
    pub bundle_refresh_seconds: Option<u64>,
}

/// A bundle as referenced in the configuration.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct RawBundle {
    /// `registry/repository:tag` or `registry/repository@sha256:…`.
    pub reference: String,
    /// What each of the bundle's plugins (by name) is granted; a plugin
    /// asking for more does not load.
    #[serde(default)]
    pub grants: BTreeMap<String, Grants>,
    /// Append the bundle's steps to the end of every chain it has steps for,
    /// instead of placing them with `bundle:` steps.
    #[serde(default)]
    pub append: bool,
    /// Load the bundle only if a cosign signature of its digest verifies
    /// with one of these keys.
    #[serde(default)]
    pub verify: Option<RawVerify>,
}

/// What a bundle must be signed with.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawVerify {
    /// PEM public keys (ECDSA P-256, as `cosign public-key` prints them),
    /// relative to the configuration file.
    pub keys: Vec<PathBuf>,
}

/// Limits as written; absent fields keep their defaults.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct RawLimits {
    /// How long one plugin call may run, in milliseconds (default 100).
    pub deadline_ms: Option<u64>,
    /// The most memory one plugin instance may use, in MiB (default 64).
    #[serde(rename = "memoryMiB")]
    pub memory_mib: Option<u64>,
    /// How long a CEL expression with comprehensions may run, in
    /// milliseconds (default 50).
    pub cel_deadline_ms: Option<u64>,
    /// The largest input handed to a CEL expression, in bytes (default 1 MiB).
    pub cel_max_input_bytes: Option<usize>,
}

/// One decision's chain as written.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct RawChain {
    /// What happens when a step fails (default: closed).
    #[serde(default)]
    pub failure: FailureMode,
    /// The steps, run in order.
    #[serde(default)]
    pub steps: Vec<RawStep>,
}

/// One step as written: exactly one of `plugin`, `cel`, `celFile`, `bundle`,
/// `sops`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct RawStep {
    /// A built-in plugin's name, or a path to a component (`.wasm`).
    pub plugin: Option<String>,
    /// The plugin's name in messages; defaults to `plugin`'s file stem.
    pub name: Option<String>,
    /// The plugin's settings, handed to it as JSON.
    pub settings: Option<serde_json::Value>,
    /// Capabilities granted to the plugin.
    pub grants: Option<Grants>,
    /// An inline CEL policy.
    pub cel: Option<RawCel>,
    /// A CEL policy file.
    pub cel_file: Option<PathBuf>,
    /// The steps of this decision from the bundle of that name.
    pub bundle: Option<String>,
    /// SOPS encryption for age recipients (a sanitize step; for Secrets
    /// unless `kinds` says otherwise).
    pub sops: Option<crate::sops::RawSops>,
    /// Only objects of these kinds go through the step (match and sanitize
    /// steps); others skip it. Compared trimmed and without regard to
    /// case, in any API group.
    pub kinds: Option<Vec<String>>,
}
