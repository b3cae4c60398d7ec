//! The policy runtime: every decision Plumbline makes is answered here, by
//! sandboxed WebAssembly components and CEL expressions, never by code of the
//! stages that ask.
//!
//! - [`bindings`]: the host side of the WIT contracts in `wit/`;
//! - [`runtime`]: the one engine, its linker, epoch clock and [`cache`];
//! - [`store`]: the state and limits of one call;
//! - [`capability`]: what a plugin asks for and what the operator grants;
//! - [`plugin`]: a loaded component, answering its decision;
//! - [`cel`]: CEL expressions, checked at load, bounded at run time;
//! - [`cel_sandbox`]: the Wasm sandbox where CEL that can loop runs;
//! - [`chain`]: an ordered list of plugins and CEL policies for one decision;
//! - [`config`]: the operator's policy configuration, raw → validated;
//!   `shape` lists every error of a file that does not read;
//! - [`builtin`]: the default plugins embedded in the binary;
//! - [`bundled`]: steps that arrive in a bundle from a registry.

pub mod bindings;
pub mod builtin;
pub mod bundled;
pub mod cache;
pub mod capability;
pub mod cel;
pub mod cel_sandbox;
pub mod chain;
pub mod config;
mod decision;
pub mod error;
pub mod plugin;
mod raw;
pub mod runtime;
mod shape;
pub mod sops;
pub mod store;

pub use chain::{Chain, FailureMode, PolicySet};
pub use decision::Decision;
pub use error::PolicyError;
pub use plugin::Plugin;
pub use runtime::{PluginSource, Runtime, RuntimeConfig};
pub use store::Limits;
