//! The default plugins, built from `plugins/` by the host's build script and
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
