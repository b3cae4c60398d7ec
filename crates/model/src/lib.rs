//! The plain data every stage shares. Stages hand each other these values,
//! never their own internals.
//!
//! - [`url`]: repository URLs as they may be shown (credentials hidden);
//! - [`digest`]: content digests, as OCI spells them, and short ones for state per object.

pub mod auth;
pub mod digest;
mod event;
pub mod url;

pub use event::{Event, GroupResource, ObjectKey, Operation, Target};
pub use url::RepoUrl;

/// What a destination does about files no live object produces.
#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    Default,
    serde::Deserialize,
    serde::Serialize,
    schemars::JsonSchema,
    clap::ValueEnum,
)]
pub enum Prune {
    /// Delete them after every complete snapshot.
    #[default]
    Always,
    /// Delete only on delete events, never from a snapshot.
    OnDelete,
    /// Never delete.
    Never,
}
