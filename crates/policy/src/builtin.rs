//! The default plugins, built from `plugins/` by this crate's build script and
//! embedded in the binary, and the default policy configuration.

include!(concat!(env!("OUT_DIR"), "/builtin_plugins.rs"));

/// The component of the built-in plugin `name`.
pub fn component(name: &str) -> Option<&'static [u8]> {
    BUILTIN
        .iter()
        .find(|(builtin, _)| *builtin == name)
        .map(|(_, bytes)| *bytes)
}

/// The names of the built-in plugins.
pub fn names() -> impl Iterator<Item = &'static str> {
    BUILTIN.iter().map(|(name, _)| *name)
}

/// The policy configuration used when the operator gives none.
pub const DEFAULT_CONFIG: &str = include_str!("../../../policies/default.yaml");

/// The folder where the build script put every component it built: the
/// default plugins, the CEL sandbox and the test-only guests of
/// `tests/guests/` (which the end-to-end tests load from here).
pub const GUESTS_DIR: &str = env!("PLUMBLINE_GUESTS_DIR");
