//! The embedded queue: one `redb` file.
//!
//! `redb` is crash-safe (copy-on-write B-trees, a commit is durable when it
//! returns), has a stable file format and is maintained; the same store
//! will hold the catalog. Entries are keyed by (partition, sequence); each
//! partition's last appended and last acknowledged sequence numbers are
//! kept beside them, written in the same transactions, so a restart knows
//! exactly where every reader resumes.

use super::{Entry, Partition, Queue, QueueError, Seq};
use redb::{Database, ReadableDatabase, ReadableTable, TableDefinition};
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant};

const ENTRIES: TableDefinition<(&str, u64), &[u8]> = TableDefinition::new("queue_entries");
/// Per partition: (last appended, last acknowledged).
const POSITIONS: TableDefinition<&str, (u64, u64)> = TableDefinition::new("queue_positions");

/// Where a partition stands.
#[derive(Debug, Clone, Copy, Default)]
struct Position {
    last: Seq,
    acked: Seq,
}

/// A queue in one `redb` file.
pub struct DiskQueue {
    db: Database,
    path: PathBuf,
    capacity: u64,
    positions: Mutex<HashMap<String, Position>>,
    /// Signalled on every append and acknowledgement.
    changed: Condvar,
}

impl DiskQueue {
    /// Opens (or creates) the queue at `path`, holding at most `capacity`
    /// entries per partition before `append` waits.
    pub fn open(path: &Path, capacity: u64) -> Result<DiskQueue, QueueError> {
        let store = |e: &dyn std::fmt::Display| QueueError::Store {
            path: path.display().to_string(),
            message: e.to_string(),
        };
        // The queue holds objects before any policy redacted them: owner-only.
        if let Some(parent) = path.parent() {
            crate::state::create_dir(parent).map_err(|e| store(&e))?;
        }
        crate::state::own_file(path).map_err(|e| store(&e))?;
        // A small page cache: entries are written once and read once, so
        // caching them buys little, and the daemon's memory stays flat.
        let db = Database::builder()
            .set_cache_size(8 << 20)
            .create(path)
            .map_err(|e| store(&e))?;
        let mut positions = HashMap::new();
        {
            let txn = db.begin_write().map_err(|e| store(&e))?;
            {
                txn.open_table(ENTRIES).map_err(|e| store(&e))?;
                let table = txn.open_table(POSITIONS).map_err(|e| store(&e))?;
                for row in table.iter().map_err(|e| store(&e))? {
                    let (key, value) = row.map_err(|e| store(&e))?;
                    let (last, acked) = value.value();
                    positions.insert(key.value().to_owned(), Position { last, acked });
                }
            }
            txn.commit().map_err(|e| store(&e))?;
        }
        Ok(DiskQueue {
            db,
            path: path.to_owned(),
            capacity: capacity.max(1),
            positions: Mutex::new(positions),
            changed: Condvar::new(),
        })
    }

    fn error(&self, e: impl std::fmt::Display) -> QueueError {
        QueueError::Store {
            path: self.path.display().to_string(),
            message: e.to_string(),
        }
    }

    fn lock(&self) -> MutexGuard<'_, HashMap<String, Position>> {
        // A panic while holding the lock leaves the positions as they were
        // last written, which is consistent: recover them.
        self.positions
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Writes `entries` after `position.last`; returns the new position.
    fn write(
        &self,
        key: &str,
        position: Position,
        entries: &[Entry],
    ) -> Result<Position, QueueError> {
        let txn = self.db.begin_write().map_err(|e| self.error(e))?;
        let mut seq = position.last;
        {
            let mut table = txn.open_table(ENTRIES).map_err(|e| self.error(e))?;
            for entry in entries {
                seq += 1;
                let bytes = serde_json::to_vec(entry).map_err(|e| QueueError::Entry {
                    // The key holds the URL as configured: show it redacted.
                    partition: match key.split_once('\n') {
                        Some((repo, branch)) => {
                            format!("{} ({branch})", crate::model::url::redact(repo))
                        }
                        None => crate::model::url::redact(key),
                    },
                    seq,
                    message: e.to_string(),
                })?;
                table
                    .insert((key, seq), bytes.as_slice())
                    .map_err(|e| self.error(e))?;
            }
            let mut positions = txn.open_table(POSITIONS).map_err(|e| self.error(e))?;
            positions
                .insert(key, (seq, position.acked))
                .map_err(|e| self.error(e))?;
        }
        txn.commit().map_err(|e| self.error(e))?;
        Ok(Position {
            last: seq,
            acked: position.acked,
        })
    }
}

impl Queue for DiskQueue {
    fn append(&self, partition: &Partition, entries: &[Entry]) -> Result<Seq, QueueError> {
        let key = partition.key();
        let mut positions = self.lock();
        loop {
            let position = positions.get(&key).copied().unwrap_or_default();
            let depth = position.last - position.acked;
            // A batch larger than the whole capacity still goes in, alone.
            if depth == 0 || depth + entries.len() as u64 <= self.capacity {
                if entries.is_empty() {
                    return Ok(position.last);
                }
                let position = self.write(&key, position, entries)?;
                positions.insert(key, position);
                self.changed.notify_all();
                return Ok(position.last);
            }
            positions = self
                .changed
                .wait(positions)
                .unwrap_or_else(std::sync::PoisonError::into_inner);
        }
    }

    fn read(
        &self,
        partition: &Partition,
        after: Seq,
        max: usize,
        wait: Duration,
    ) -> Result<Vec<(Seq, Entry)>, QueueError> {
        let key = partition.key();
        let deadline = Instant::now() + wait;
        {
            let mut positions = self.lock();
            while positions.get(&key).is_none_or(|p| p.last <= after) {
                let left = deadline.saturating_duration_since(Instant::now());
                if left.is_zero() {
                    return Ok(Vec::new());
                }
                positions = self
                    .changed
                    .wait_timeout(positions, left)
                    .unwrap_or_else(std::sync::PoisonError::into_inner)
                    .0;
            }
        }
        let txn = self.db.begin_read().map_err(|e| self.error(e))?;
        let table = txn.open_table(ENTRIES).map_err(|e| self.error(e))?;
        let mut out = Vec::new();
        let range = table
            .range((key.as_str(), after + 1)..=(key.as_str(), u64::MAX))
            .map_err(|e| self.error(e))?;
        for row in range.take(max) {
            let (k, v) = row.map_err(|e| self.error(e))?;
            let seq = k.value().1;
            let entry = serde_json::from_slice(v.value()).map_err(|e| QueueError::Entry {
                partition: partition.to_string(),
                seq,
                message: e.to_string(),
            })?;
            out.push((seq, entry));
        }
        Ok(out)
    }

    fn ack(&self, partition: &Partition, through: Seq) -> Result<(), QueueError> {
        let key = partition.key();
        let mut positions = self.lock();
        let position = positions.get(&key).copied().unwrap_or_default();
        let through = through.min(position.last);
        if through <= position.acked {
            return Ok(());
        }
        let txn = self.db.begin_write().map_err(|e| self.error(e))?;
        {
            let mut table = txn.open_table(ENTRIES).map_err(|e| self.error(e))?;
            table
                .retain_in(
                    (key.as_str(), position.acked + 1)..=(key.as_str(), through),
                    |_, _| false,
                )
                .map_err(|e| self.error(e))?;
            let mut table = txn.open_table(POSITIONS).map_err(|e| self.error(e))?;
            table
                .insert(key.as_str(), (position.last, through))
                .map_err(|e| self.error(e))?;
        }
        txn.commit().map_err(|e| self.error(e))?;
        positions.insert(
            key,
            Position {
                last: position.last,
                acked: through,
            },
        );
        self.changed.notify_all();
        Ok(())
    }

    fn acked(&self, partition: &Partition) -> Result<Seq, QueueError> {
        Ok(self
            .lock()
            .get(&partition.key())
            .map_or(0, |position| position.acked))
    }

    fn depth(&self, partition: &Partition) -> u64 {
        self.lock()
            .get(&partition.key())
            .map_or(0, |position| position.last - position.acked)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::Operation;
    use crate::queue::FileChange;
    use std::sync::Arc;

    fn change(n: usize) -> Entry {
        Entry::File(FileChange {
            destination: "d".into(),
            path: format!("ns/core/configmaps/cm-{n}.yaml"),
            content: Some(format!("n: {n}\n")),
            operation: Operation::Update,
            actor: None,
            resource: "configmaps".into(),
        })
    }

    fn partition() -> Partition {
        Partition {
            repo: "git://example/r.git".into(),
            branch: "main".into(),
        }
    }

    #[test]
    fn entries_survive_a_reopen_until_acknowledged() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("queue.redb");
        let p = partition();
        {
            let queue = DiskQueue::open(&path, 100).unwrap();
            assert_eq!(
                queue
                    .append(&p, &[change(1), change(2), change(3)])
                    .unwrap(),
                3
            );
            queue.ack(&p, 1).unwrap();
        }
        let queue = DiskQueue::open(&path, 100).unwrap();
        assert_eq!(queue.acked(&p).unwrap(), 1);
        assert_eq!(queue.depth(&p), 2);
        let read = queue.read(&p, 1, 10, Duration::ZERO).unwrap();
        assert_eq!(read, vec![(2, change(2)), (3, change(3))]);
        queue.ack(&p, 3).unwrap();
        assert_eq!(queue.depth(&p), 0);
        // Sequence numbers keep increasing after everything was acknowledged.
        assert_eq!(queue.append(&p, &[change(4)]).unwrap(), 4);
    }

    #[test]
    fn a_full_partition_makes_append_wait_instead_of_dropping() {
        let dir = tempfile::tempdir().unwrap();
        let queue = Arc::new(DiskQueue::open(&dir.path().join("q.redb"), 2).unwrap());
        let p = partition();
        queue.append(&p, &[change(1), change(2)]).unwrap();
        let writer = {
            let (queue, p) = (queue.clone(), p.clone());
            std::thread::spawn(move || queue.append(&p, &[change(3)]).unwrap())
        };
        std::thread::sleep(Duration::from_millis(100));
        assert!(
            !writer.is_finished(),
            "append must wait while the partition is full"
        );
        queue.ack(&p, 1).unwrap();
        assert_eq!(writer.join().unwrap(), 3);
        let read = queue.read(&p, 1, 10, Duration::ZERO).unwrap();
        assert_eq!(read.iter().map(|(s, _)| *s).collect::<Vec<_>>(), [2, 3]);
    }

    #[test]
    fn a_reader_waits_for_the_next_entry() {
        let dir = tempfile::tempdir().unwrap();
        let queue = Arc::new(DiskQueue::open(&dir.path().join("q.redb"), 10).unwrap());
        let p = partition();
        assert!(queue.read(&p, 0, 10, Duration::ZERO).unwrap().is_empty());
        let reader = {
            let (queue, p) = (queue.clone(), p.clone());
            std::thread::spawn(move || queue.read(&p, 0, 10, Duration::from_secs(10)).unwrap())
        };
        queue.append(&p, &[change(1)]).unwrap();
        assert_eq!(reader.join().unwrap(), vec![(1, change(1))]);
    }
}
