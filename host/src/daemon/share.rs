//! How many partitions this replica writes at once. Alone, all of them;
//! with replicas sharing the queue (on NATS), its even share, rounded up,
//! of the partitions the configuration has: a worker waits for a place in
//! the share before it claims its partition, and one that holds more than
//! the share (a replica joined) gives its partition up once it has pushed
//! what it read, for the newcomer to take.

use crate::queue::Queue;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

/// How long a counted share is trusted (counting asks NATS).
const FRESH: Duration = Duration::from_secs(1);

/// This replica's places.
pub struct Share {
    queue: Arc<dyn Queue>,
    /// The partitions the configuration writes to.
    partitions: AtomicUsize,
    /// The places taken: workers that claimed, or are claiming.
    held: AtomicUsize,
    counted: Mutex<Option<(Instant, usize)>>,
}

impl Share {
    /// No place taken yet.
    pub fn new(queue: Arc<dyn Queue>) -> Share {
        Share {
            queue,
            partitions: AtomicUsize::new(0),
            held: AtomicUsize::new(0),
            counted: Mutex::new(None),
        }
    }

    /// The configuration writes to `partitions` now.
    pub fn set_partitions(&self, partitions: usize) {
        self.partitions.store(partitions, Ordering::Release);
        *self.counted.lock().unwrap_or_else(PoisonError::into_inner) = None;
    }

    /// Most places this replica takes now.
    fn limit(&self) -> usize {
        let mut counted = self.counted.lock().unwrap_or_else(PoisonError::into_inner);
        match *counted {
            Some((at, limit)) if at.elapsed() < FRESH => limit,
            _ => {
                let limit = self
                    .queue
                    .share(self.partitions.load(Ordering::Acquire))
                    .max(1);
                if counted.is_some_and(|(_, before)| before != limit) {
                    let held = self.held.load(Ordering::Acquire);
                    tracing::info!(limit, held, "this replica's share changed");
                }
                *counted = Some((Instant::now(), limit));
                limit
            }
        }
    }

    /// Takes a place, if one is free in the share.
    pub fn take(&self) -> bool {
        let limit = self.limit();
        self.held
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |held| {
                (held < limit).then_some(held + 1)
            })
            .is_ok()
    }

    /// Gives a place back.
    pub fn give_back(&self) {
        let _ = self
            .held
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |held| {
                held.checked_sub(1)
            });
    }

    /// Whether a place is one too many (replicas joined): if so it is
    /// given back, and the asker gives its partition up. One asker per
    /// place too many.
    pub fn over(&self) -> bool {
        let limit = self.limit();
        self.held
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |held| {
                (held > limit).then(|| held - 1)
            })
            .is_ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::queue::memory::MemoryQueue;

    #[test]
    fn alone_every_partition_has_a_place_and_none_is_too_many() {
        let share = Share::new(Arc::new(MemoryQueue::new(10)));
        share.set_partitions(3);
        assert!(share.take() && share.take() && share.take());
        assert!(!share.take(), "a fourth place past three partitions");
        assert!(!share.over());
        share.give_back();
        assert!(share.take());
        share.set_partitions(2);
        assert!(share.over(), "three places, two partitions");
        assert!(!share.over(), "one asker per place too many");
    }
}
