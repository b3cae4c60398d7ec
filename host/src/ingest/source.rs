//! What a source is to the daemon: it lists (a seed, of a scope) and
//! follows (events as they happen), pushing both into the mirror's
//! [`Intake`], until the daemon's [`Control`] says stop.
//!
//! The folder of manifests ([`super::directory::DirectorySource`]) is the
//! first source; the cluster's List+Watch is the next. A source decides
//! whether its listing was complete: only a complete one prunes.

use crate::mirror::{Control, Intake, SeedScope};
use crate::queue::QueueError;
use crate::telemetry::Notices;

/// What a source works with while the daemon runs it.
pub struct Context<'a> {
    /// Where events and seeds go.
    pub intake: &'a dyn Intake,
    /// Stop, or list again.
    pub control: &'a Control,
    /// Where what the operator should read goes (bad files, refusals).
    pub notices: &'a dyn Notices,
}

/// What a seed listed.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SeedReport {
    /// Objects listed.
    pub objects: usize,
    /// Where from, for people: `12 file(s)`.
    pub from: String,
    /// Inputs that could not be read (files, documents, resources).
    pub unread: usize,
    /// Whether the listing was complete, so that orphans were pruned.
    pub complete: bool,
    /// Whether every object was routed through the policies.
    pub routed: bool,
}

/// Why a source stopped.
#[derive(Debug, thiserror::Error)]
pub enum SourceError {
    /// The mirror could not take what the source read.
    #[error("queueing what the source read")]
    Intake(#[from] QueueError),
    /// A thread to read the source on could not be started.
    #[error("starting a thread to read the source")]
    Thread(#[source] std::io::Error),
}

/// A source of objects.
pub trait Source: Send {
    /// What it is, for messages, metrics and commit trailers:
    /// `directory examples/cluster`.
    fn name(&self) -> String;

    /// Lists everything in `scope` as one seed, begun and ended in
    /// `context.intake`.
    fn seed(&mut self, scope: &SeedScope, context: &Context) -> Result<SeedReport, SourceError>;

    /// Follows changes, and lists again what the daemon asks for, until
    /// `context.control` says stop.
    fn follow(&mut self, context: &Context) -> Result<(), SourceError>;
}
