//! Git: where each object's file lives, its canonical bytes, and the worker
//! that brings a branch to a desired state in batched commits and pushes.
//!
//! - [`layout`]: object identity ↔ path, refusing anything that could escape;
//! - [`yaml`]: canonical YAML;
//! - [`git`]: the `git` program, wrapped;
//! - [`worker`]: one destination's sync: write, prune, commit, push, replay.

pub mod git;
pub mod layout;
pub mod worker;
pub mod yaml;
