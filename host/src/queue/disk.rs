//! The embedded queue: one `redb` file.
//!
//! `redb` is crash-safe (copy-on-write B-trees, a commit is durable when it
//! returns), has a stable file format and is maintained; the same store
//! will hold the catalog. Entries are keyed by (partition, sequence); each
//! partition's last appended and last acknowledged sequence numbers are
//! kept beside them, written in the same transactions, so a restart knows
//! exactly where every reader resumes.

use super::{Claim, Claims, Cursors, Entry, Partition, Position, Queue, QueueError};
use redb::{Database, ReadableDatabase, ReadableTable, TableDefinition};
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Condvar, Mutex, MutexGuard};
use std::time::Duration;

const ENTRIES: TableDefinition<(&str, u64), &[u8]> = TableDefinition::new("queue_entries");
/// Per partition: (last appended, last acknowledged).
const POSITIONS: TableDefinition<&str, (u64, u64)> = TableDefinition::new("queue_positions");
/// Per (source, key): where that feed of the source resumes.
const CURSORS: TableDefinition<(&str, &str), &str> = TableDefinition::new("source_cursors");

/// Where a partition stands: its sequence numbers, which are this
/// queue's own and handed out as opaque [`Position`]s.
#[derive(Debug, Clone, Copy, Default)]
struct Stand {
    last: u64,
    acked: u64,
}

/// A queue in one `redb` file.
pub struct DiskQueue {
    db: Database,
    path: PathBuf,
    capacity: u64,
    positions: Mutex<HashMap<String, Stand>>,
    /// Signalled on every append and acknowledgement.
    changed: Condvar,
    /// Appends waiting for room.
    waiting: AtomicUsize,
    claims: Claims,
}

/// The store at `path` failed with `error`, kept whole as the cause.
fn store_error(
    path: &Path,
    error: impl Into<Box<dyn std::error::Error + Send + Sync>>,
) -> QueueError {
    QueueError::Store {
        path: path.display().to_string(),
        source: error.into(),
    }
}

impl DiskQueue {
    /// Opens (or creates) the queue at `path`, holding at most `capacity`
    /// entries per partition before `append` waits.
    pub fn open(path: &Path, capacity: u64) -> Result<DiskQueue, QueueError> {
        // The queue holds objects before any policy redacted them: owner-only.
        if let Some(parent) = path.parent() {
            crate::state::create_dir(parent).map_err(|e| store_error(path, e))?;
        }
        crate::state::own_file(path).map_err(|e| store_error(path, e))?;
        // A small page cache: entries are written once and read once, so
        // caching them buys little, and the daemon's memory stays flat.
        // Seeding 100,000 objects, 8 MiB cost 10-13 MiB of peak RSS over
        // 2 MiB (the pages live in the appending thread's malloc arena)
        // and bought no time.
        let db = Database::builder()
            .set_cache_size(2 << 20)
            .create(path)
            .map_err(|e| store_error(path, e))?;
        let mut positions = HashMap::new();
        {
            let txn = db.begin_write().map_err(|e| store_error(path, e))?;
            {
                txn.open_table(ENTRIES).map_err(|e| store_error(path, e))?;
                txn.open_table(CURSORS).map_err(|e| store_error(path, e))?;
                let table = txn
                    .open_table(POSITIONS)
                    .map_err(|e| store_error(path, e))?;
                for row in table.iter().map_err(|e| store_error(path, e))? {
                    let (key, value) = row.map_err(|e| store_error(path, e))?;
                    let (last, acked) = value.value();
                    positions.insert(key.value().to_owned(), Stand { last, acked });
                }
            }
            txn.commit().map_err(|e| store_error(path, e))?;
        }
        Ok(DiskQueue {
            db,
            path: path.to_owned(),
            capacity: capacity.max(1),
            positions: Mutex::new(positions),
            changed: Condvar::new(),
            waiting: AtomicUsize::new(0),
            claims: Claims::default(),
        })
    }

    /// How many appends wait for room now (backpressure on the sources).
    pub fn appends_waiting(&self) -> usize {
        self.waiting.load(Ordering::Acquire)
    }

    fn error(&self, e: impl Into<Box<dyn std::error::Error + Send + Sync>>) -> QueueError {
        store_error(&self.path, e)
    }

    fn lock(&self) -> MutexGuard<'_, HashMap<String, Stand>> {
        // A panic while holding the lock leaves the positions as they were
        // last written, which is consistent: recover them.
        self.positions
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Writes `entries` after `position.last`; returns where the partition
    /// stands then.
    fn write(&self, key: &str, position: Stand, entries: &[Entry]) -> Result<Stand, QueueError> {
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
                    position: Position(seq),
                    source: e,
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
        Ok(Stand {
            last: seq,
            acked: position.acked,
        })
    }
}

impl Queue for DiskQueue {
    fn append(&self, partition: &Partition, entries: &[Entry]) -> Result<Position, QueueError> {
        let key = partition.key();
        let mut positions = self.lock();
        loop {
            let position = positions.get(&key).copied().unwrap_or_default();
            let depth = position.last - position.acked;
            // A batch larger than the whole capacity still goes in, alone.
            if depth == 0 || depth + entries.len() as u64 <= self.capacity {
                if entries.is_empty() {
                    return Ok(Position(position.last));
                }
                let position = self.write(&key, position, entries)?;
                positions.insert(key, position);
                self.changed.notify_all();
                return Ok(Position(position.last));
            }
            self.waiting.fetch_add(1, Ordering::AcqRel);
            positions = self
                .changed
                .wait(positions)
                .unwrap_or_else(std::sync::PoisonError::into_inner);
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
        let after = after.0;
        {
            let empty =
                |p: &mut HashMap<String, Stand>| p.get(&key).is_none_or(|p| p.last <= after);
            let (mut positions, _) = self
                .changed
                .wait_timeout_while(self.lock(), wait, empty)
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            if empty(&mut positions) {
                return Ok(Vec::new());
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
            let position = Position(k.value().1);
            let entry = serde_json::from_slice(v.value()).map_err(|e| QueueError::Entry {
                partition: partition.to_string(),
                position,
                source: e,
            })?;
            out.push((position, entry));
        }
        Ok(out)
    }

    fn ack(&self, partition: &Partition, through: Position) -> Result<(), QueueError> {
        let key = partition.key();
        let mut positions = self.lock();
        let position = positions.get(&key).copied().unwrap_or_default();
        let through = through.0.min(position.last);
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
            Stand {
                last: position.last,
                acked: through,
            },
        );
        self.changed.notify_all();
        Ok(())
    }

    fn acked(&self, partition: &Partition) -> Result<Position, QueueError> {
        Ok(Position(
            self.lock()
                .get(&partition.key())
                .map_or(0, |position| position.acked),
        ))
    }

    fn depth(&self, partition: &Partition) -> u64 {
        // This queue's own numbering has no gaps, so the difference is the
        // count.
        self.lock()
            .get(&partition.key())
            .map_or(0, |position| position.last - position.acked)
    }

    fn claim(&self, partition: &Partition) -> Result<Claim, QueueError> {
        self.claims.take(partition)
    }

    fn lead(&self) -> Result<Claim, QueueError> {
        self.claims.lead()
    }

    fn cursors(&self, source: &str) -> Result<Cursors, QueueError> {
        let txn = self.db.begin_read().map_err(|e| self.error(e))?;
        let table = txn.open_table(CURSORS).map_err(|e| self.error(e))?;
        let mut cursors = Cursors::new();
        let rows = table.range((source, "")..).map_err(|e| self.error(e))?;
        for row in rows {
            let (key, value) = row.map_err(|e| self.error(e))?;
            let (owner, key) = key.value();
            if owner != source {
                break;
            }
            cursors.insert(key.to_owned(), value.value().to_owned());
        }
        Ok(cursors)
    }

    fn save_cursors(
        &self,
        source: &str,
        changes: &[(String, Option<String>)],
    ) -> Result<(), QueueError> {
        if changes.is_empty() {
            return Ok(());
        }
        let txn = self.db.begin_write().map_err(|e| self.error(e))?;
        {
            let mut table = txn.open_table(CURSORS).map_err(|e| self.error(e))?;
            for (key, value) in changes {
                match value {
                    Some(value) => table.insert((source, key.as_str()), value.as_str()),
                    None => table.remove((source, key.as_str())),
                }
                .map_err(|e| self.error(e))?;
            }
        }
        txn.commit().map_err(|e| self.error(e))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::queue::testing::{change, partition};

    /// The rest of the contract is checked against every queue in
    /// `queue::contract`; durability is this one's own.
    #[test]
    fn entries_survive_a_reopen_until_acknowledged() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("queue.redb");
        let p = partition("main");
        let (first, last) = {
            let queue = DiskQueue::open(&path, 100).unwrap();
            let last = queue
                .append(&p, &[change(1), change(2), change(3)])
                .unwrap();
            let read = queue.read(&p, Position::START, 1, Duration::ZERO).unwrap();
            queue.ack(&p, read[0].0).unwrap();
            (read[0].0, last)
        };
        let queue = DiskQueue::open(&path, 100).unwrap();
        assert_eq!(queue.acked(&p).unwrap(), first);
        assert_eq!(queue.depth(&p), 2);
        let read = queue.read(&p, first, 10, Duration::ZERO).unwrap();
        assert_eq!(
            read.iter().map(|(_, e)| e.clone()).collect::<Vec<_>>(),
            [change(2), change(3)]
        );
        assert_eq!(read[1].0, last);
        queue.ack(&p, last).unwrap();
        assert_eq!(queue.depth(&p), 0);
        // Positions keep growing after a reopen with nothing left.
        drop(queue);
        let queue = DiskQueue::open(&path, 100).unwrap();
        assert!(queue.append(&p, &[change(4)]).unwrap() > last);
    }

    #[test]
    fn cursors_survive_a_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("queue.redb");
        {
            let queue = DiskQueue::open(&path, 100).unwrap();
            let saved = [("configmaps".to_owned(), Some("812".to_owned()))];
            queue.save_cursors("cluster https://a", &saved).unwrap();
        }
        let queue = DiskQueue::open(&path, 100).unwrap();
        assert_eq!(
            queue.cursors("cluster https://a").unwrap()["configmaps"],
            "812"
        );
    }
}
