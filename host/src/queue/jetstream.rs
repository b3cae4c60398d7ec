//! The queue on NATS JetStream, for several replicas (the scale-out
//! issue, part 1): one stream, a subject per partition, what a replica
//! acknowledged and where each source resumes in a key-value bucket, and
//! partition claims as leases in another.
//!
//! - An entry is a message on `plumbline.queue.<partition token>`, its
//!   position the stream's sequence (shared by every subject, so positions
//!   of one partition grow but are not consecutive: the contract keeps
//!   them opaque). Appends are acknowledged by the stream before `append`
//!   returns: durable on as many servers as the stream has copies.
//! - Acknowledging records the position (`acked.<token>`) and purges the
//!   partition's subject up to it; a partition's depth is what its subject
//!   holds.
//! - A full partition makes `append` wait (polled every 50 ms), never drop.
//! - A claim is the key `<token>` of the claims bucket, created only if
//!   absent and renewed while held; the bucket's age limit ends the claim
//!   of a replica that died (or stopped renewing) within its lease
//!   ([`LEASE`] by default).
//!
//! Calls block, as the catalog's store's do (see
//! [`crate::catalog::store::jetstream`]).

use super::{Claim, Cursors, Entry, Partition, Position, Queue, QueueError};
use async_nats::jetstream::{self, consumer, kv, stream};
use futures_util::StreamExt as _;
use std::future::Future;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};
use tokio::runtime::{Handle, RuntimeFlavor};

/// The stream entries are kept in.
pub const STREAM: &str = "PLUMBLINE_QUEUE";
const SUBJECTS: &str = "plumbline.queue";
/// The bucket of acknowledged positions and cursors.
pub const STATE: &str = "plumbline-queue";
/// The bucket of partition claims.
pub const CLAIMS: &str = "plumbline-claims";
/// How long a claim lasts without renewal, by default.
pub const LEASE: Duration = Duration::from_secs(15);

/// How a queue on JetStream is made.
#[derive(Debug, Clone, Copy)]
pub struct Options {
    /// Copies JetStream keeps of the stream and buckets it creates.
    pub replicas: usize,
    /// Entries a partition holds at most.
    pub capacity: u64,
    /// How long a claim lasts without renewal (set when the claims'
    /// bucket is created): a replica that dies lets its partitions go
    /// within it.
    pub lease: Duration,
}
/// How often a full partition or an empty read looks again.
const POLL: Duration = Duration::from_millis(50);

/// The queue on JetStream.
pub struct JetStreamQueue {
    handle: Handle,
    context: jetstream::Context,
    stream: stream::Stream,
    state: kv::Store,
    claims: kv::Store,
    capacity: u64,
    lease: Duration,
    waiting: AtomicUsize,
    /// Who this replica is, in its claims.
    holder: String,
    place: String,
}

impl JetStreamQueue {
    /// Connects to NATS at `url` (several URLs comma-separated) and opens
    /// or creates the stream and buckets as `options` say.
    pub fn connect(
        handle: Handle,
        url: &str,
        options: Options,
    ) -> Result<JetStreamQueue, QueueError> {
        let place = format!("NATS {url}, stream {STREAM}");
        let error = |e: Box<dyn std::error::Error + Send + Sync>| QueueError::Store {
            path: place.clone(),
            source: e,
        };
        if handle.runtime_flavor() != RuntimeFlavor::MultiThread {
            return Err(error("the runtime must be multi-threaded".into()));
        }
        let (context, stream, state, claims) = handle
            .block_on(open(url, options.replicas, options.lease))
            .map_err(error)?;
        let started = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default()
            .as_nanos();
        let holder = format!(
            "{}-{}-{started}",
            std::env::var("HOSTNAME").unwrap_or_else(|_| "plumbline".into()),
            std::process::id(),
        );
        Ok(JetStreamQueue {
            handle,
            context,
            stream,
            state,
            claims,
            capacity: options.capacity,
            lease: options.lease,
            waiting: AtomicUsize::new(0),
            holder,
            place,
        })
    }

    /// How many appends wait for room now.
    pub fn appends_waiting(&self) -> usize {
        self.waiting.load(Ordering::Acquire)
    }

    fn error(&self, e: impl Into<Box<dyn std::error::Error + Send + Sync>>) -> QueueError {
        QueueError::Store {
            path: self.place.clone(),
            source: e.into(),
        }
    }

    /// Runs `future` to its end, off the worker if called from one.
    fn run<F: Future>(&self, future: F) -> F::Output {
        crate::nats::block_on(&self.handle, future)
    }

    /// Up to `max` entries of the partition after `after`: one ordered
    /// consumer from there, the entries streamed to it (not a request per
    /// entry).
    async fn next(
        &self,
        partition: &Partition,
        after: Position,
        max: usize,
    ) -> Result<Vec<(Position, Entry)>, QueueError> {
        // Nothing new: said by one direct get, no consumer made (a reader
        // waiting on an empty partition asks every 50 ms).
        if self.last(partition).await? <= after {
            return Ok(Vec::new());
        }
        let config = consumer::push::OrderedConfig {
            deliver_subject: self.context.client().new_inbox(),
            filter_subject: subject(partition),
            deliver_policy: consumer::DeliverPolicy::ByStartSequence {
                start_sequence: after.0 + 1,
            },
            replay_policy: consumer::ReplayPolicy::Instant,
            ..Default::default()
        };
        let ordered = self
            .stream
            .create_consumer(config)
            .await
            .map_err(|e| self.error(e))?;
        let pending = usize::try_from(ordered.cached_info().num_pending).unwrap_or(usize::MAX);
        let wanted = pending.min(max);
        let mut found = Vec::with_capacity(wanted);
        if wanted == 0 {
            return Ok(found);
        }
        let mut messages = ordered.messages().await.map_err(|e| self.error(e))?;
        while found.len() < wanted {
            let Some(message) = messages.next().await else {
                break;
            };
            let message = message.map_err(|e| self.error(e))?;
            let sequence = message.info().map_err(|e| self.error(e))?.stream_sequence;
            let position = Position(sequence);
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

    async fn count(&self, partition: &Partition) -> Result<u64, QueueError> {
        let subject = subject(partition);
        let mut subjects = self
            .stream
            .info_with_subjects(&subject)
            .await
            .map_err(|e| self.error(e))?;
        let mut count = 0;
        while let Some(item) = subjects.next().await {
            let (name, messages) = item.map_err(|e| self.error(e))?;
            if name == subject {
                count += messages as u64;
            }
        }
        Ok(count)
    }

    /// The last entry's position, or the last acknowledged when none waits.
    async fn last(&self, partition: &Partition) -> Result<Position, QueueError> {
        match self
            .stream
            .direct_get_last_for_subject(subject(partition))
            .await
        {
            Ok(message) => Ok(Position(message.sequence)),
            Err(e) if e.kind() == stream::DirectGetErrorKind::NotFound => {
                self.acked_now(partition).await
            }
            Err(e) => Err(self.error(e)),
        }
    }

    async fn acked_now(&self, partition: &Partition) -> Result<Position, QueueError> {
        let value = self
            .state
            .get(format!("acked.{}", partition.token()))
            .await
            .map_err(|e| self.error(e))?;
        let position = value
            .and_then(|v| std::str::from_utf8(&v).ok()?.parse().ok())
            .unwrap_or(0);
        Ok(Position(position))
    }
}

/// The stream and buckets at `url`, created if missing.
async fn open(
    url: &str,
    replicas: usize,
    lease: Duration,
) -> Result<
    (jetstream::Context, stream::Stream, kv::Store, kv::Store),
    Box<dyn std::error::Error + Send + Sync>,
> {
    let context = crate::nats::connect(url).await?;
    let replicas = replicas.max(1);
    let stream = context
        .get_or_create_stream(stream::Config {
            name: STREAM.into(),
            description: Some("Plumbline's queue: a subject per (repository, branch)".into()),
            subjects: vec![format!("{SUBJECTS}.*")],
            num_replicas: replicas,
            allow_direct: true,
            ..Default::default()
        })
        .await?;
    let state = bucket(&context, STATE, replicas, Duration::ZERO).await?;
    let claims = bucket(&context, CLAIMS, replicas, lease).await?;
    Ok((context, stream, state, claims))
}

/// The bucket `name`, created (with entries living `max_age`, or for ever
/// with zero) if missing.
async fn bucket(
    context: &jetstream::Context,
    name: &str,
    replicas: usize,
    max_age: Duration,
) -> Result<kv::Store, crate::nats::Error> {
    let config = kv::Config {
        bucket: name.into(),
        history: 1,
        max_age,
        num_replicas: replicas,
        ..Default::default()
    };
    crate::nats::bucket(context, config).await
}

fn subject(partition: &Partition) -> String {
    format!("{SUBJECTS}.{}", partition.token())
}

/// A source's key in the state bucket: its name in hex (any text).
fn cursors_key(source: &str) -> String {
    format!("cursors.{}", hex::encode(source))
}

impl Queue for JetStreamQueue {
    fn append(&self, partition: &Partition, entries: &[Entry]) -> Result<Position, QueueError> {
        self.run(async {
            loop {
                let depth = self.count(partition).await?;
                // A batch larger than the whole capacity still goes in, alone.
                if depth == 0 || depth + entries.len() as u64 <= self.capacity {
                    break;
                }
                self.waiting.fetch_add(1, Ordering::AcqRel);
                tokio::time::sleep(POLL).await;
                self.waiting.fetch_sub(1, Ordering::AcqRel);
            }
            let subject = subject(partition);
            if entries.is_empty() {
                return self.last(partition).await;
            }
            let mut acks = Vec::with_capacity(entries.len());
            for entry in entries {
                let bytes = serde_json::to_vec(entry).map_err(|e| self.error(e))?;
                let ack = self
                    .context
                    .publish(subject.clone(), bytes.into())
                    .await
                    .map_err(|e| self.error(e))?;
                acks.push(ack);
            }
            let mut last = Position::START;
            for ack in acks {
                last = Position(ack.await.map_err(|e| self.error(e))?.sequence);
            }
            Ok(last)
        })
    }

    fn read(
        &self,
        partition: &Partition,
        after: Position,
        max: usize,
        wait: Duration,
    ) -> Result<Vec<(Position, Entry)>, QueueError> {
        let until = Instant::now() + wait;
        self.run(async {
            loop {
                let found = self.next(partition, after, max).await?;
                let left = until.saturating_duration_since(Instant::now());
                if !found.is_empty() || left.is_zero() {
                    return Ok(found);
                }
                tokio::time::sleep(POLL.min(left)).await;
            }
        })
    }

    fn ack(&self, partition: &Partition, through: Position) -> Result<(), QueueError> {
        self.run(async {
            if through <= self.acked_now(partition).await? {
                return Ok(());
            }
            let key = format!("acked.{}", partition.token());
            self.state
                .put(key, through.0.to_string().into())
                .await
                .map_err(|e| self.error(e))?;
            self.stream
                .purge()
                .filter(subject(partition))
                .sequence(through.0 + 1)
                .await
                .map_err(|e| self.error(e))?;
            Ok(())
        })
    }

    fn acked(&self, partition: &Partition) -> Result<Position, QueueError> {
        self.run(self.acked_now(partition))
    }

    fn depth(&self, partition: &Partition) -> u64 {
        self.run(self.count(partition)).unwrap_or(0)
    }

    fn claim(&self, partition: &Partition) -> Result<Claim, QueueError> {
        let key = partition.token();
        let created = self.run(self.claims.create(&key, self.holder.clone().into()));
        let revision = match created {
            Ok(revision) => revision,
            Err(e) if e.kind() == kv::CreateErrorKind::AlreadyExists => {
                return Err(QueueError::Claimed {
                    partition: partition.to_string(),
                });
            }
            Err(e) => return Err(self.error(e)),
        };
        // Renewed well within the lease while held; let go when dropped.
        let (claims, holder, lease) = (self.claims.clone(), self.holder.clone(), self.lease);
        let renewing = self.handle.spawn({
            let key = key.clone();
            async move {
                let mut revision = revision;
                loop {
                    tokio::time::sleep(lease / 3).await;
                    match claims.update(&key, holder.clone().into(), revision).await {
                        Ok(next) => revision = next,
                        Err(error) => {
                            tracing::warn!(%error, key, "a partition claim could not be renewed");
                            return;
                        }
                    }
                }
            }
        });
        let (claims, handle) = (self.claims.clone(), self.handle.clone());
        Ok(Claim::new(move || {
            renewing.abort();
            // Let go before the drop returns: a claim taken right after
            // must find the partition free.
            if let Err(error) = crate::nats::block_on(&handle, claims.purge(&key)) {
                tracing::warn!(%error, key, "a partition claim could not be let go; it lapses with its lease");
            }
        }))
    }

    fn cursors(&self, source: &str) -> Result<Cursors, QueueError> {
        let value = self
            .run(self.state.get(cursors_key(source)))
            .map_err(|e| self.error(e))?;
        match value {
            Some(bytes) if !bytes.is_empty() => {
                serde_json::from_slice(&bytes).map_err(|e| self.error(e))
            }
            _ => Ok(Cursors::new()),
        }
    }

    fn save_cursors(
        &self,
        source: &str,
        changes: &[(String, Option<String>)],
    ) -> Result<(), QueueError> {
        if changes.is_empty() {
            return Ok(());
        }
        let key = cursors_key(source);
        self.run(async {
            loop {
                let entry = self.state.entry(&key).await.map_err(|e| self.error(e))?;
                let (mut cursors, revision): (Cursors, u64) = match &entry {
                    Some(e) if !e.value.is_empty() => (
                        serde_json::from_slice(&e.value).map_err(|e| self.error(e))?,
                        e.revision,
                    ),
                    Some(e) => (Cursors::new(), e.revision),
                    None => (Cursors::new(), 0),
                };
                for (name, value) in changes {
                    match value {
                        Some(value) => cursors.insert(name.clone(), value.clone()),
                        None => cursors.remove(name),
                    };
                }
                let bytes = serde_json::to_vec(&cursors).map_err(|e| self.error(e))?;
                // Written over the revision read, or created if none was:
                // a concurrent save makes this one read again.
                if entry.is_some() {
                    match self.state.update(&key, bytes.into(), revision).await {
                        Ok(_) => return Ok(()),
                        Err(e) if e.kind() == kv::UpdateErrorKind::WrongLastRevision => continue,
                        Err(e) => return Err(self.error(e)),
                    }
                }
                match self.state.create(&key, bytes.into()).await {
                    Ok(_) => return Ok(()),
                    Err(e) if e.kind() == kv::CreateErrorKind::AlreadyExists => continue,
                    Err(e) => return Err(self.error(e)),
                }
            }
        })
    }
}
