//! Git: where each object's file lives, its canonical bytes, and the worker
//! that brings a branch along with the queue in batched commits and pushes.
//!
//! - [`layout`]: object identity ↔ path, refusing anything that could escape;
//! - [`yaml`]: canonical YAML;
//! - [`store`]: the local repository through `gix`: trees, blobs, commits;
//! - [`remote`]: fetch and push through the `git` program;
//! - [`redact`]: credentials out of every repository URL that is shown;
//! - [`worker`]: one (repository, branch): batch, commit, push, acknowledge.

pub mod layout;
pub mod redact;
pub mod remote;
pub mod store;
pub mod worker;
pub mod yaml;
