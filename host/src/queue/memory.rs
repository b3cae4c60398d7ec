//! A queue in memory: the same contract as [`super::disk::DiskQueue`]
//! (ordered, bounded, acknowledged, claimed), without the durability. For
//! tests of what consumes a queue, and for a mirror that can list its
//! source again after a restart instead of keeping a state folder.

use super::{Claim, Claims, Cursors, Entry, Partition, Position, Queue, QueueError};
use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Condvar, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

/// A queue in memory.
#[derive(Debug)]
pub struct MemoryQueue {
    capacity: u64,
    partitions: Mutex<HashMap<String, Held>>,
    /// Signalled on every append and acknowledgement.
    changed: Condvar,
    claims: Claims,
    /// Appends waiting for room.
    waiting: AtomicUsize,
    /// Each source's cursors.
    cursors: Mutex<HashMap<String, Cursors>>,
}

/// One partition's entries not acknowledged, and where it stands.
#[derive(Debug, Default)]
struct Held {
    entries: BTreeMap<u64, Entry>,
    last: u64,
    acked: u64,
}

impl MemoryQueue {
    /// A queue holding at most `capacity` entries per partition before
    /// `append` waits.
    pub fn new(capacity: u64) -> MemoryQueue {
        MemoryQueue {
            capacity: capacity.max(1),
            partitions: Mutex::default(),
            changed: Condvar::new(),
            claims: Claims::default(),
            waiting: AtomicUsize::new(0),
            cursors: Mutex::default(),
        }
    }

    /// How many appends wait for room now.
    pub fn appends_waiting(&self) -> usize {
        self.waiting.load(Ordering::Acquire)
    }

    fn lock(&self) -> MutexGuard<'_, HashMap<String, Held>> {
        self.partitions
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }
}

impl Queue for MemoryQueue {
    fn append(&self, partition: &Partition, entries: &[Entry]) -> Result<Position, QueueError> {
        let key = partition.key();
        let mut partitions = self.lock();
        loop {
            let held = partitions.entry(key.clone()).or_default();
            let depth = held.entries.len() as u64;
            // A batch larger than the whole capacity still goes in, alone.
            if depth == 0 || depth + entries.len() as u64 <= self.capacity {
                for entry in entries {
                    held.last += 1;
                    held.entries.insert(held.last, entry.clone());
                }
                let last = Position(held.last);
                self.changed.notify_all();
                return Ok(last);
            }
            self.waiting.fetch_add(1, Ordering::AcqRel);
            partitions = self
                .changed
                .wait(partitions)
                .unwrap_or_else(PoisonError::into_inner);
            self.waiting.fetch_sub(1, Ordering::AcqRel);
        }
    }

    fn read(
        &self,
        partition: &Partition,
        after: Position,
        max: usize,
        wait: Duration,
    ) -> Result<Vec<(Position, Entry)>, QueueError> {
        let key = partition.key();
        let empty = |p: &mut HashMap<String, Held>| p.get(&key).is_none_or(|h| h.last <= after.0);
        let (mut partitions, _) = self
            .changed
            .wait_timeout_while(self.lock(), wait, empty)
            .unwrap_or_else(PoisonError::into_inner);
        if empty(&mut partitions) {
            return Ok(Vec::new());
        }
        let held = &partitions[&key];
        Ok(held
            .entries
            .range(after.0 + 1..)
            .take(max)
            .map(|(seq, entry)| (Position(*seq), entry.clone()))
            .collect())
    }

    fn ack(&self, partition: &Partition, through: Position) -> Result<(), QueueError> {
        let mut partitions = self.lock();
        if let Some(held) = partitions.get_mut(&partition.key()) {
            let through = through.0.min(held.last);
            if through > held.acked {
                held.entries = held.entries.split_off(&(through + 1));
                held.acked = through;
                self.changed.notify_all();
            }
        }
        Ok(())
    }

    fn acked(&self, partition: &Partition) -> Result<Position, QueueError> {
        Ok(Position(
            self.lock().get(&partition.key()).map_or(0, |h| h.acked),
        ))
    }

    fn depth(&self, partition: &Partition) -> u64 {
        self.lock()
            .get(&partition.key())
            .map_or(0, |h| h.entries.len() as u64)
    }

    fn claim(&self, partition: &Partition) -> Result<Claim, QueueError> {
        self.claims.take(partition)
    }

    fn lead(&self) -> Result<Claim, QueueError> {
        self.claims.lead()
    }

    fn cursors(&self, source: &str) -> Result<Cursors, QueueError> {
        let cursors = self.cursors.lock().unwrap_or_else(PoisonError::into_inner);
        Ok(cursors.get(source).cloned().unwrap_or_default())
    }

    fn save_cursors(
        &self,
        source: &str,
        changes: &[(String, Option<String>)],
    ) -> Result<(), QueueError> {
        let mut cursors = self.cursors.lock().unwrap_or_else(PoisonError::into_inner);
        let saved = cursors.entry(source.to_owned()).or_default();
        for (key, value) in changes {
            match value {
                Some(value) => saved.insert(key.clone(), value.clone()),
                None => saved.remove(key),
            };
        }
        Ok(())
    }
}
