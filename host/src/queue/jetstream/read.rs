//! Reading a partition: a pull consumer per (replica, partition), made
//! again only when the reader starts over elsewhere than where it left
//! off, and the lead epochs that tell a stale entry from a live one.

use super::{EPOCH, JetStreamQueue, subject};
use crate::queue::{Entry, Partition, Position, QueueError};
use async_nats::jetstream::consumer;
use futures_util::StreamExt as _;
use std::collections::HashMap;
use std::sync::PoisonError;
use std::time::Duration;

/// How long a reader's consumer outlives its last read (a replica that
/// died, or gave the partition up).
const READER_IDLE: Duration = Duration::from_secs(120);

/// The shortest wait a pull request asks of the server.
const MIN_EXPIRY: Duration = Duration::from_millis(100);

/// How long a pull for what is there now may take before it is given up
/// (a request lost while the client reconnects must not hang a worker).
const FETCH_EXPIRY: Duration = Duration::from_secs(5);

/// A replica's reader of one partition: its consumer, the last entry it
/// delivered, and the epochs it has seen.
pub(super) struct Reader {
    consumer: consumer::Consumer<consumer::pull::Config>,
    last: Position,
    epochs: Epochs,
}

/// The lead epochs a reader has seen in its partition.
#[derive(Debug, Default)]
struct Epochs {
    /// The largest epoch seen: an entry of a smaller one came from a lead
    /// that lapsed, after its successor's, and is dropped.
    epoch: u64,
    /// Where the epoch rose, not acknowledged yet.
    rises: Vec<(Position, u64)>,
    /// The largest epoch of what is acknowledged.
    acked_epoch: u64,
}

impl Epochs {
    /// Starting after what is acknowledged, whose largest epoch is `acked`.
    fn after(acked: u64) -> Epochs {
        Epochs {
            epoch: acked,
            rises: Vec::new(),
            acked_epoch: acked,
        }
    }

    /// Whether an entry at `position` of `epoch` (if tagged) is kept:
    /// not if a later lead's entry came before it.
    fn keeps(&mut self, position: Position, epoch: Option<u64>) -> bool {
        let Some(epoch) = epoch else { return true };
        if epoch < self.epoch {
            return false;
        }
        if epoch > self.epoch {
            self.epoch = epoch;
            self.rises.push((position, epoch));
        }
        true
    }

    /// The largest epoch of what is acknowledged, `through` now.
    fn acked(&mut self, through: Position) -> u64 {
        for (_, epoch) in self.rises.iter().filter(|(p, _)| *p <= through) {
            self.acked_epoch = self.acked_epoch.max(*epoch);
        }
        self.rises.retain(|(p, _)| *p > through);
        self.acked_epoch
    }
}

impl Reader {
    /// The largest epoch of what is acknowledged, `through` now: kept
    /// with the acknowledgement, for the next reader of the partition.
    pub(super) fn acked(&mut self, through: Position) -> u64 {
        self.epochs.acked(through)
    }
}

impl JetStreamQueue {
    /// Up to `max` entries of `partition` after `after`, waiting up to
    /// `wait` for the first: from this replica's pull consumer of the
    /// partition, made again only when the reader starts over elsewhere
    /// than where it left off (consumers are placed by the cluster's meta
    /// leader: one per read would load it).
    pub(super) async fn next(
        &self,
        partition: &Partition,
        after: Position,
        max: usize,
        wait: Duration,
    ) -> Result<Vec<(Position, Entry)>, QueueError> {
        let token = partition.token();
        let taken = self.lock_readers().remove(&token);
        let mut reader = match taken {
            Some(reader) if reader.last == after => reader,
            _ => self.reader(partition, after).await?,
        };
        let mut found = self.pull(&mut reader, partition, max, None).await;
        if matches!(&found, Ok(f) if f.is_empty()) && !wait.is_zero() {
            found = self.pull(&mut reader, partition, 1, Some(wait)).await;
            if let Ok(first) = &mut found
                && !first.is_empty()
                && max > 1
            {
                match self.pull(&mut reader, partition, max - 1, None).await {
                    Ok(more) => first.extend(more),
                    Err(error) => found = Err(error),
                }
            }
        }
        // A reader that failed is made again at the next read.
        let found = found?;
        if let Some((last, _)) = found.last() {
            reader.last = *last;
        }
        self.lock_readers().insert(token, reader);
        Ok(found)
    }

    /// A consumer of `partition` from the entry after `after`, in place of
    /// any this replica had.
    async fn reader(&self, partition: &Partition, after: Position) -> Result<Reader, QueueError> {
        let name = format!("{}-{}", self.holder, partition.token());
        // Gone already, or never made: either is fine.
        let _ = self.stream.delete_consumer(&name).await;
        let config = consumer::pull::Config {
            name: Some(name),
            filter_subject: subject(partition),
            deliver_policy: consumer::DeliverPolicy::ByStartSequence {
                start_sequence: after.0 + 1,
            },
            ack_policy: consumer::AckPolicy::None,
            replay_policy: consumer::ReplayPolicy::Instant,
            inactive_threshold: READER_IDLE,
            memory_storage: true,
            num_replicas: 1,
            ..Default::default()
        };
        let consumer = self
            .stream
            .create_consumer(config)
            .await
            .map_err(|e| self.error(e))?;
        let acked = self.number(&format!("epoch.{}", partition.token())).await?;
        Ok(Reader {
            consumer,
            last: after,
            epochs: Epochs::after(acked),
        })
    }

    /// Up to `max` entries from `reader`: those there now, or with
    /// `wait`, waiting that long for them.
    async fn pull(
        &self,
        reader: &mut Reader,
        partition: &Partition,
        max: usize,
        wait: Option<Duration>,
    ) -> Result<Vec<(Position, Entry)>, QueueError> {
        // A pull request lost with the server it went to (a node killed
        // while the client reconnects) is never answered: given up after
        // its expiry and some, and the reader made again.
        let limit = wait.unwrap_or(FETCH_EXPIRY).max(MIN_EXPIRY) + FETCH_EXPIRY;
        match tokio::time::timeout(limit, self.pull_now(reader, partition, max, wait)).await {
            Ok(pulled) => pulled,
            Err(_) => Err(self.error(format!(
                "a read of {partition} had no answer in {} s",
                limit.as_secs()
            ))),
        }
    }

    async fn pull_now(
        &self,
        reader: &mut Reader,
        partition: &Partition,
        max: usize,
        wait: Option<Duration>,
    ) -> Result<Vec<(Position, Entry)>, QueueError> {
        let mut messages = match wait {
            // No expiry: with one, the server holds an empty pull until
            // it expires (an empty read took 5 s); without, it answers
            // "no messages" at once. `pull` bounds the wait regardless.
            None => reader
                .consumer
                .fetch()
                .max_messages(max)
                .messages()
                .await
                .map_err(|e| self.error(e))?,
            Some(wait) => reader
                .consumer
                .batch()
                .max_messages(max)
                .expires(wait.max(MIN_EXPIRY))
                .messages()
                .await
                .map_err(|e| self.error(e))?,
        };
        let mut found = Vec::new();
        while let Some(message) = messages.next().await {
            let message = message.map_err(|e| self.error(e))?;
            let position = Position(message.info().map_err(|e| self.error(e))?.stream_sequence);
            let epoch = message
                .headers
                .as_ref()
                .and_then(|h| h.get(EPOCH))
                .and_then(|v| v.as_str().parse().ok());
            if !reader.epochs.keeps(position, epoch) {
                tracing::info!(%partition, %position, "dropped an entry a lapsed lead appended after its successor's");
                continue;
            }
            let entry =
                serde_json::from_slice(&message.payload).map_err(|e| QueueError::Entry {
                    partition: partition.to_string(),
                    position,
                    source: e,
                })?;
            found.push((position, entry));
        }
        Ok(found)
    }

    pub(super) fn lock_readers(&self) -> std::sync::MutexGuard<'_, HashMap<String, Reader>> {
        self.readers.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

#[cfg(test)]
#[cfg(test)]
mod tests {
    use super::{Epochs, Position};

    #[test]
    fn an_entry_of_an_older_lead_after_a_newer_ones_is_dropped_and_remembered_past_the_ack() {
        let mut epochs = Epochs::after(0);
        assert!(epochs.keeps(Position(1), None), "untagged entries all stay");
        assert!(epochs.keeps(Position(2), Some(5)));
        assert!(epochs.keeps(Position(3), Some(5)));
        assert!(epochs.keeps(Position(4), Some(9)), "a new lead");
        assert!(!epochs.keeps(Position(5), Some(5)), "the old lead, late");
        assert!(epochs.keeps(Position(6), Some(9)));
        // Acknowledged before the new lead's first entry: a reader that
        // starts there must keep the old lead's entries before it.
        assert_eq!(epochs.acked(Position(3)), 5);
        let mut again = Epochs::after(5);
        assert!(again.keeps(Position(4), Some(9)));
        assert!(!again.keeps(Position(5), Some(5)));
        assert_eq!(epochs.acked(Position(6)), 9);
        let mut later = Epochs::after(9);
        assert!(!later.keeps(Position(7), Some(5)));
    }
}
