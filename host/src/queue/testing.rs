//! What tests of the queue's users share: both embedded queues, and
//! entries and partitions to put in them.

use super::disk::DiskQueue;
use super::memory::MemoryQueue;
use super::{Entry, FileChange, Partition, Queue};
use crate::model::Operation;
use std::sync::Arc;

/// Runs `check` against a fresh disk queue, then a fresh memory queue, of
/// `capacity` entries per partition.
pub(crate) fn each_queue(capacity: u64, check: impl Fn(Arc<dyn Queue>)) {
    let dir = tempfile::tempdir().unwrap();
    let disk = DiskQueue::open(&dir.path().join("queue.redb"), capacity).unwrap();
    check(Arc::new(disk));
    check(Arc::new(MemoryQueue::new(capacity)));
}

/// The `n`th config map of destination `d`.
pub(crate) fn change(n: usize) -> Entry {
    Entry::File(FileChange {
        destination: "d".into(),
        path: format!("ns/core/configmaps/cm-{n}.yaml"),
        content: Some(format!("n: {n}\n")),
        operation: Operation::Update,
        actor: None,
        resource: "configmaps".into(),
        replay: None,
        trace: None,
    })
}

/// `branch` of a repository nobody serves.
pub(crate) fn partition(branch: &str) -> Partition {
    Partition {
        repo: "git://example/r.git".into(),
        branch: branch.into(),
    }
}
