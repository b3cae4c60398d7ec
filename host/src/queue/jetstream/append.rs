//! Appending: message ids that make a replay or a retry a duplicate,
//! pipelined publishes sent again from the first that failed, and room
//! waited for.

use super::{EPOCH, JetStreamQueue, POLL};
use crate::queue::{Entry, Partition, Position, QueueError};
use async_nats::jetstream;
use std::sync::atomic::Ordering;

/// Whether a publish failed because the cluster was briefly unable to
/// take it (no stream leader, an acknowledgement lost), not for good.
fn transient(error: &jetstream::context::PublishError) -> bool {
    use jetstream::context::PublishErrorKind as Kind;
    matches!(
        error.kind(),
        Kind::StreamNotFound | Kind::TimedOut | Kind::BrokenPipe | Kind::MaxAckPending
    )
}

impl JetStreamQueue {
    /// Waits while `partition` has no room for `more` entries (a batch
    /// larger than the whole capacity still goes in, alone). The stream
    /// is asked only when what this replica appended since it last asked
    /// could have filled it: the source's one reader is the only writer,
    /// and acknowledgements only make room.
    pub(super) async fn room(&self, partition: &Partition, more: u64) -> Result<(), QueueError> {
        let token = partition.token();
        if self.reserve(&token, more) {
            return Ok(());
        }
        loop {
            let depth = self.count(partition).await?;
            if depth == 0 || depth + more <= self.capacity {
                self.lock_bounds().insert(token, depth + more);
                return Ok(());
            }
            self.waiting.fetch_add(1, Ordering::AcqRel);
            tokio::time::sleep(POLL).await;
            self.waiting.fetch_sub(1, Ordering::AcqRel);
        }
    }

    /// Counts `more` entries into `token`'s bound if it stays within the
    /// capacity; whether it did.
    fn reserve(&self, token: &str, more: u64) -> bool {
        let mut bounds = self.lock_bounds();
        match bounds.get_mut(token) {
            Some(bound) if *bound + more <= self.capacity => {
                *bound += more;
                true
            }
            _ => false,
        }
    }

    /// Publishes `messages` (id, payload) to `subject`, tagged with
    /// `epoch`, every one sent before the first acknowledgement is
    /// awaited; the last position. On a failure (with whether it may pass),
    /// `messages` keeps what must be sent again: from the first message
    /// not acknowledged, and those after it with new ids. Some of those
    /// may have been stored already, before the one that failed: sent
    /// again after it, the partition's last word is still its last entry.
    pub(super) async fn publish(
        &self,
        subject: &str,
        messages: &mut Vec<(String, Vec<u8>)>,
        epoch: Option<u64>,
    ) -> Result<Position, (bool, QueueError)> {
        let failed = |at: usize, e: jetstream::context::PublishError| (at, e);
        let mut acks = Vec::with_capacity(messages.len());
        let mut outcome = Ok(Position::START);
        for (at, (id, payload)) in messages.iter().enumerate() {
            let mut message = jetstream::message::PublishMessage::build()
                .payload(payload.clone().into())
                .message_id(id);
            if let Some(epoch) = epoch {
                message = message.header(EPOCH, epoch.to_string().as_str());
            }
            match self.context.send_publish(subject.to_owned(), message).await {
                Ok(ack) => acks.push(ack),
                Err(e) => {
                    outcome = Err(failed(at, e));
                    break;
                }
            }
        }
        for (at, ack) in acks.into_iter().enumerate() {
            if outcome.as_ref().is_err_and(|(failed, _)| *failed <= at) {
                break;
            }
            match ack.await {
                Ok(ack) => {
                    if let Ok(last) = &mut outcome {
                        *last = Position(ack.sequence).max(*last);
                    }
                }
                Err(e) => outcome = Err(failed(at, e)),
            }
        }
        outcome.map_err(|(at, e)| {
            messages.drain(..at);
            for (id, _) in messages.iter_mut().skip(1) {
                *id = self.unique_id();
            }
            (transient(&e), self.error(e))
        })
    }

    /// A message id no other append has.
    fn unique_id(&self) -> String {
        let n = self.published.fetch_add(1, Ordering::Relaxed);
        format!("{}-{n}", self.holder)
    }

    /// An entry's message id: from the event it records when a restart
    /// replays that event the same (so the replay is dropped as a
    /// duplicate), else unique to this append (so that only sending it
    /// again is).
    pub(super) fn message_id(&self, token: &str, entry: &Entry) -> String {
        if let Entry::File(change) = entry
            && let Some(replay) = &change.replay
        {
            let what = format!("{}\n{}\n{replay}", change.destination, change.path);
            let digest = crate::model::digest::content_digest(what.as_bytes());
            return format!("{token}-{}", &digest["sha256:".len()..]);
        }
        self.unique_id()
    }
}
