//! Where a worker stands in its partition of the queue, and what it may
//! acknowledge.
//!
//! Three positions, in order: every entry through `done` is in a local
//! commit or changed nothing; `current` is the entry being applied;
//! `last_read` is the last entry read. Only `done` may be acknowledged
//! after a push (a staged change is in no commit yet), and everything read
//! once nothing is staged. A restart reads again from the first entry not
//! acknowledged, which is how a crash or a rejected push loses nothing.

use crate::queue::{Entry, Partition, Position, Queue, QueueError};
use std::sync::Arc;
use std::time::Duration;

/// One worker's position in its partition.
pub struct Cursor {
    queue: Arc<dyn Queue>,
    partition: Partition,
    last_read: Position,
    current: Position,
    done: Position,
}

impl Cursor {
    /// A cursor on `partition`, reading from its first entry not
    /// acknowledged.
    pub fn new(queue: Arc<dyn Queue>, partition: Partition) -> Result<Cursor, QueueError> {
        let mut cursor = Cursor {
            queue,
            partition,
            last_read: Position::START,
            current: Position::START,
            done: Position::START,
        };
        cursor.restart()?;
        Ok(cursor)
    }

    /// Forgets what was read and not acknowledged: it is read again.
    pub fn restart(&mut self) -> Result<(), QueueError> {
        let acked = self.queue.acked(&self.partition)?;
        (self.last_read, self.current, self.done) = (acked, acked, acked);
        Ok(())
    }

    /// Up to `max` entries after the last one read, waiting up to `wait`.
    pub fn read(&self, max: usize, wait: Duration) -> Result<Vec<(Position, Entry)>, QueueError> {
        self.queue.read(&self.partition, self.last_read, max, wait)
    }

    /// The entry at `position` is being applied.
    pub fn applying(&mut self, position: Position) {
        self.current = position;
    }

    /// The entry being applied was; with `nothing_staged`, everything
    /// through it is done.
    pub fn applied(&mut self, nothing_staged: bool) {
        self.last_read = self.current;
        if nothing_staged {
            self.done = self.current;
        }
    }

    /// The last entry read (before the one being applied).
    pub fn last_read(&self) -> Position {
        self.last_read
    }

    /// The entry being applied.
    pub fn current(&self) -> Position {
        self.current
    }

    /// Everything through `through` is in a local commit.
    pub fn committed(&mut self, through: Position) {
        self.done = self.done.max(through);
    }

    /// Every entry through this one is in a local commit (or changed
    /// nothing): what a push of the commits made so far acknowledges.
    pub fn done(&self) -> Position {
        self.done
    }

    /// With nothing staged and nothing unpushed: acknowledges everything
    /// read.
    pub fn ack_read(&self) -> Result<(), QueueError> {
        self.ack(self.last_read)
    }

    /// Entries waiting in the partition.
    pub fn depth(&self) -> u64 {
        self.queue.depth(&self.partition)
    }

    /// After a push: acknowledges every entry through `through`, a
    /// [`Cursor::done`] of before it.
    pub fn ack(&self, through: Position) -> Result<(), QueueError> {
        if self.queue.acked(&self.partition)? < through {
            self.queue.ack(&self.partition, through)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::queue::testing::{change, each_queue, partition};

    fn positions(cursor: &Cursor) -> Vec<Position> {
        let read = cursor.read(10, Duration::ZERO).unwrap();
        read.into_iter().map(|(p, _)| p).collect()
    }

    /// Applies every entry it reads, staging each if `stage`.
    fn apply_all(cursor: &mut Cursor, stage: bool) -> Vec<Position> {
        let read = positions(cursor);
        for &position in &read {
            cursor.applying(position);
            cursor.applied(!stage);
        }
        read
    }

    #[test]
    fn a_new_cursor_reads_from_the_first_entry_not_acknowledged() {
        each_queue(100, |queue| {
            let p = partition("main");
            queue
                .append(&p, &[change(1), change(2), change(3)])
                .unwrap();
            let mut cursor = Cursor::new(queue.clone(), p.clone()).unwrap();
            let all = apply_all(&mut cursor, false);
            queue.ack(&p, all[0]).unwrap();
            let again = Cursor::new(queue.clone(), p.clone()).unwrap();
            assert_eq!(positions(&again), all[1..]);
        });
    }

    #[test]
    fn only_what_is_in_a_commit_is_acknowledged_after_a_push() {
        each_queue(100, |queue| {
            let p = partition("main");
            queue
                .append(&p, &[change(1), change(2), change(3)])
                .unwrap();
            let mut cursor = Cursor::new(queue.clone(), p.clone()).unwrap();
            let all = apply_all(&mut cursor, true);
            assert_eq!(cursor.last_read(), all[2]);
            cursor.ack(cursor.done()).unwrap();
            assert_eq!(queue.acked(&p).unwrap(), Position::START, "all staged");
            cursor.committed(all[1]);
            cursor.ack(cursor.done()).unwrap();
            assert_eq!(queue.acked(&p).unwrap(), all[1]);
            assert_eq!(cursor.depth(), 1, "the staged third entry waits");
            cursor.restart().unwrap();
            assert_eq!(positions(&cursor), all[2..], "read again after a restart");
        });
    }

    #[test]
    fn entries_that_change_nothing_are_done_as_they_are_read() {
        each_queue(100, |queue| {
            let p = partition("main");
            queue.append(&p, &[change(1), change(2)]).unwrap();
            let mut cursor = Cursor::new(queue.clone(), p.clone()).unwrap();
            let all = apply_all(&mut cursor, false);
            cursor.ack(cursor.done()).unwrap();
            assert_eq!(queue.acked(&p).unwrap(), all[1]);
            assert_eq!(cursor.depth(), 0);
        });
    }

    #[test]
    fn acknowledging_never_goes_back() {
        each_queue(100, |queue| {
            let p = partition("main");
            queue.append(&p, &[change(1), change(2)]).unwrap();
            let mut cursor = Cursor::new(queue.clone(), p.clone()).unwrap();
            let all = apply_all(&mut cursor, true);
            cursor.ack_read().unwrap();
            assert_eq!(queue.acked(&p).unwrap(), all[1]);
            cursor.committed(all[0]);
            cursor.ack(cursor.done()).unwrap();
            assert_eq!(queue.acked(&p).unwrap(), all[1]);
            assert_eq!(cursor.depth(), 0);
        });
    }
}
