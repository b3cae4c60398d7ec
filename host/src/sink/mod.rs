//! Git: the worker that brings a branch along with the queue in batched
//! commits and pushes. It reads only the queue's entries and its own
//! description of each folder it writes ([`Folder`]); where files go and
//! what they hold ([`crate::layout`]) was decided upstream.
//!
//! - [`store`]: the local repository through `gix`: trees, blobs, commits;
//! - [`remote`]: fetch and push through the `git` program;
//! - [`batch`]: what the next commit holds, when it is due, its message;
//! - [`cursor`]: where a worker stands in the queue, what it may acknowledge;
//! - [`seeds`]: the seeds under way, and which files are their orphans;
//! - [`prune`]: what a seed's end deletes;
//! - [`pushing`]: a push under way while the worker goes on committing;
//! - [`retry`]: waiting after a failure, replaying a rejection, giving up;
//! - [`worker`]: one (repository, branch): batch, commit, push, acknowledge.

pub mod batch;
pub mod cursor;
pub mod prune;
pub mod pushing;
pub mod remote;
pub mod retry;
pub mod sealed;
pub mod seeds;
pub mod store;
pub mod worker;

use crate::layout::BaseFolder;
use crate::model::Prune;

/// One folder of a branch the sink writes: a destination, as the sink
/// sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Folder {
    /// The destination's name, in entries, messages and trailers.
    pub name: String,
    /// The folder of the repository it owns.
    pub base_folder: BaseFolder,
    /// What it does about files no live object produces.
    pub prune: Prune,
}
