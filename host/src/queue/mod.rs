//! The durable queue between routing and the Git sinks.
//!
//! Routed changes are appended, durably, before the source is told they
//! were taken; a sink reads them in order and acknowledges them only after
//! the push that contains them succeeded, so a crash or a remote that is
//! down loses nothing: a restart reads again from the first change not
//! acknowledged. The queue is partitioned by (repository, branch), the unit
//! one sink worker owns, and is bounded: a full partition makes `append`
//! wait (backpressure), it never drops.
//!
//! [`Queue`] is the small interface a second backend (NATS JetStream, for
//! several replicas) implements; [`disk::DiskQueue`] is the embedded one.

#[cfg(test)]
mod contract;
pub mod disk;
pub mod jetstream;
pub mod memory;
#[cfg(test)]
pub(crate) mod testing;

use crate::model::{GroupResource, Operation, RepoUrl};
use serde::{Deserialize, Serialize};
use std::fmt;
use std::time::Duration;

/// One branch of one repository: the unit of ordering and of ownership.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Partition {
    /// The repository URL, as configured (printed without credentials).
    pub repo: RepoUrl,
    /// The branch.
    pub branch: String,
}

impl Partition {
    /// The partition's key in a store: both parts, unambiguously joined.
    pub fn key(&self) -> String {
        format!("{}\n{}", self.repo.as_str(), self.branch)
    }

    /// A name for the partition made of lower-case hex digits only (the
    /// start of its key's digest): safe as a NATS subject token and as a
    /// file name, whatever the URL and branch hold.
    pub fn token(&self) -> String {
        let digest = crate::model::digest::content_digest(self.key().as_bytes());
        digest["sha256:".len()..].chars().take(16).collect()
    }
}

impl fmt::Display for Partition {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} ({})", self.repo, self.branch)
    }
}

/// One file to write or remove, as routing decided it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FileChange {
    /// The destination (its name) the file belongs to.
    pub destination: String,
    /// The file's path in the repository.
    pub path: String,
    /// Canonical YAML, or `None` when the file must go.
    pub content: Option<String>,
    /// What happened to the object.
    pub operation: Operation,
    /// Who made the change, when known.
    pub actor: Option<String>,
    /// The object's resource, for commit trailers.
    pub resource: String,
    /// The event's identity when a restart replays it the same (a watch
    /// event's `uid`, `resourceVersion` and operation): a queue that
    /// deduplicates drops it appended twice.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub replay: Option<String>,
    /// The change's trace ([`crate::telemetry::CHANGES`]): what its log
    /// lines share from routing to the push, on whichever replica.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub trace: Option<String>,
}

/// An entry of the queue.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Entry {
    /// A file to write or remove.
    File(FileChange),
    /// A listing begins for a destination: the files it produces until
    /// the matching [`Entry::SeedEnd`] are the live ones, and only files
    /// of the resources listed can be its orphans.
    SeedStart {
        /// The destination.
        destination: String,
        /// Tells this seed from others.
        seed: u64,
        /// The resources listed; `None` for every resource. (A watch that
        /// expired lists its one resource again: the files of others are
        /// not its orphans.)
        #[serde(default, skip_serializing_if = "Option::is_none")]
        resources: Option<Vec<GroupResource>>,
    },
    /// A file the seed under way must not prune, though no live object
    /// produced it: its object could not be read or routed this time, so
    /// what it should hold is unknown and the file stays as it is.
    Keep {
        /// The destination.
        destination: String,
        /// The file's path in the repository.
        path: String,
    },
    /// The listing ended; files no live object produced are orphans, and
    /// may be pruned only if the listing was complete.
    SeedEnd {
        /// The destination.
        destination: String,
        /// The seed this ends.
        seed: u64,
        /// Whether every source was read and every object routed.
        complete: bool,
        /// Who deleted the orphans' objects, when the source knows.
        deleted_by: Option<String>,
    },
}

/// Where an entry stands in its partition: ordered, and opaque. Only the
/// queue that handed a position out makes new ones; a consumer compares
/// them and hands them back, nothing more (a JetStream sequence is shared
/// by every subject of a stream, so there is no arithmetic to do on it).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Position(u64);

impl Position {
    /// Before the first entry a partition ever held.
    pub const START: Position = Position(0);
}

impl fmt::Display for Position {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "#{}", self.0)
    }
}

/// Why the queue failed.
#[derive(Debug, thiserror::Error)]
pub enum QueueError {
    /// The store could not be opened, read or written.
    #[error("queue {path}")]
    Store {
        /// The store.
        path: String,
        /// What failed.
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    /// An entry could not be encoded or decoded.
    #[error("queue entry {position} of {partition}")]
    Entry {
        /// The partition.
        partition: String,
        /// The entry.
        position: Position,
        /// Why.
        #[source]
        source: serde_json::Error,
    },
    /// The process stops while the store is out of reach
    /// ([`Queue::hurry`]): the call was given up, its work left to whoever
    /// comes next.
    #[error("queue {path}: out of reach as the process stops; given up")]
    Abandoned {
        /// The store.
        path: String,
    },
    /// Another consumer holds the partition.
    #[error("{partition} is claimed by another consumer")]
    Claimed {
        /// The partition.
        partition: String,
    },
}

/// A partition claimed for writing (or the source, for reading): while it
/// is held, no other consumer writes to the partition's branch. Released
/// when dropped.
pub struct Claim {
    release: Option<Box<dyn FnOnce() + Send + Sync>>,
    held: Held,
}

/// Whether a claim surely still holds.
pub type Held = std::sync::Arc<dyn Fn() -> bool + Send + Sync>;

impl Claim {
    /// A claim that `release` gives up, held until then (one process
    /// keeps it in memory).
    pub fn new(release: impl FnOnce() + Send + Sync + 'static) -> Claim {
        Claim::leased(release, || true)
    }

    /// A claim that can lapse (a lease that was not renewed in time):
    /// `held` says whether it surely still holds.
    pub fn leased(
        release: impl FnOnce() + Send + Sync + 'static,
        held: impl Fn() -> bool + Send + Sync + 'static,
    ) -> Claim {
        Claim {
            release: Some(Box::new(release)),
            held: std::sync::Arc::new(held),
        }
    }

    /// Whether the claim surely still holds. A holder checks it before
    /// each step that writes (a push): once false, another may hold it.
    pub fn held(&self) -> bool {
        (self.held)()
    }

    /// [`Claim::held`], as a check that outlives the claim and does not
    /// keep it: false once the claim is given up or lapsed.
    pub fn checker(&self) -> Held {
        self.held.clone()
    }
}

impl Drop for Claim {
    fn drop(&mut self) {
        if let Some(release) = self.release.take() {
            release();
        }
    }
}

impl fmt::Debug for Claim {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Claim")
    }
}

/// A durable, bounded, partitioned queue with acknowledgement.
pub trait Queue: Send + Sync {
    /// Appends `entries` to `partition`, durably, in order, waiting while
    /// the partition is full. Returns the last entry's position.
    fn append(&self, partition: &Partition, entries: &[Entry]) -> Result<Position, QueueError>;

    /// Up to `max` entries after `after`, oldest first, waiting up to `wait`
    /// for the first one.
    fn read(
        &self,
        partition: &Partition,
        after: Position,
        max: usize,
        wait: Duration,
    ) -> Result<Vec<(Position, Entry)>, QueueError>;

    /// Removes every entry up to and including `through`.
    fn ack(&self, partition: &Partition, through: Position) -> Result<(), QueueError>;

    /// The position of the last entry acknowledged: a reader starts after
    /// it.
    fn acked(&self, partition: &Partition) -> Result<Position, QueueError>;

    /// How many entries wait in `partition`.
    fn depth(&self, partition: &Partition) -> u64;

    /// Claims `partition` for the caller, who writes to its branch while
    /// the claim is held; [`QueueError::Claimed`] while another holds it.
    fn claim(&self, partition: &Partition) -> Result<Claim, QueueError>;

    /// Claims the source: where several replicas share the queue, one at
    /// a time reads the source and appends (seeding, pruning orphans and
    /// following); [`QueueError::Claimed`] while another does.
    fn lead(&self) -> Result<Claim, QueueError>;

    /// Who leads now, if known (for a message while waiting).
    fn leader(&self) -> Option<String> {
        None
    }

    /// How many of `partitions` this consumer should hold: all of them
    /// when it is alone; its even share, rounded up, when replicas share
    /// the queue.
    fn share(&self, partitions: usize) -> usize {
        partitions
    }

    /// Why the queue cannot be reached now, while it cannot (a shared
    /// queue whose servers are out of reach); none for a local one.
    fn unreachable(&self) -> Option<String> {
        None
    }

    /// The process is stopping: from now on a call whose store cannot be
    /// reached fails at once instead of trying again. Nothing is lost by
    /// it: what was not acknowledged is read again by the next holder
    /// (and finds its files as they are), and a source resumes from the
    /// cursors it saved last.
    fn hurry(&self) {}

    /// Where each feed of `source` resumes (a watch's resourceVersion, by
    /// resource), as [`Queue::save_cursors`] left it.
    fn cursors(&self, source: &str) -> Result<Cursors, QueueError>;

    /// Sets (`Some`) or forgets (`None`) cursors of `source`, durably. A
    /// source saves a cursor only once the events before it were
    /// appended, so a restart that resumes from it loses nothing, and
    /// replays at most the events appended since the last save.
    fn save_cursors(
        &self,
        source: &str,
        changes: &[(String, Option<String>)],
    ) -> Result<(), QueueError>;
}

/// A source's cursors, by key.
pub type Cursors = std::collections::BTreeMap<String, String>;

/// The claims of a queue whose consumers all live in this process.
#[derive(Debug, Default, Clone)]
struct Claims(std::sync::Arc<std::sync::Mutex<std::collections::HashSet<String>>>);

impl Claims {
    fn take(&self, partition: &Partition) -> Result<Claim, QueueError> {
        self.take_key(partition.key(), partition.to_string())
    }

    /// The source's claim: a key no partition has (theirs hold a newline).
    fn lead(&self) -> Result<Claim, QueueError> {
        self.take_key("source".into(), "the source".into())
    }

    fn take_key(&self, key: String, name: String) -> Result<Claim, QueueError> {
        let mut held = self
            .0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if !held.insert(key.clone()) {
            return Err(QueueError::Claimed { partition: name });
        }
        let claims = self.0.clone();
        Ok(Claim::new(move || {
            claims
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .remove(&key);
        }))
    }
}
