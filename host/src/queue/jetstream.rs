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
//! - A claim is the lease `<token>` of the claims bucket ([`Lease`]): the
//!   bucket's age limit ends the claim of a replica that died (or stopped
//!   renewing) within its lease ([`LEASE`] by default). The source's
//!   leader holds the lease `leader`, and each live replica beats a key
//!   `replica.<name>` ([`Heartbeat`]), by which replicas count each other to share the
//!   partitions evenly.
//!
//! Calls block, as the catalog's store's do (see
//! [`crate::catalog::store::jetstream`]).

use super::{Claim, Cursors, Entry, Partition, Position, Queue, QueueError};
use crate::nats::lease::{self, Heartbeat, Lease};
use async_nats::jetstream::{self, consumer, kv, stream};
use futures_util::StreamExt as _;
use std::collections::HashMap;
use std::future::Future;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
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
/// The source's claim in the claims' bucket (partitions' keys are hex).
const LEADER: &str = "leader";
/// Where each live replica keeps a lease in the claims' bucket, by name.
const ROLL: &str = "replica.";

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
/// How long an append keeps trying while the cluster cannot take it.
const PATIENCE: Duration = Duration::from_secs(60);
/// How long the stream remembers a message id (a replay within it is a
/// duplicate): longer than a crashed replica takes to come back.
const DUPLICATES: Duration = Duration::from_secs(600);

/// Whether a publish failed because the cluster was briefly unable to
/// take it (no stream leader, an acknowledgement lost), not for good.
fn transient(error: &jetstream::context::PublishError) -> bool {
    use jetstream::context::PublishErrorKind as Kind;
    matches!(
        error.kind(),
        Kind::StreamNotFound | Kind::TimedOut | Kind::BrokenPipe | Kind::MaxAckPending
    )
}

/// How long a reader's consumer outlives its last read (a replica that
/// died, or gave the partition up).
const READER_IDLE: Duration = Duration::from_secs(120);
/// The shortest wait a pull request asks of the server.
const MIN_EXPIRY: Duration = Duration::from_millis(100);

/// The header tagging an entry with the epoch of the lead that appended
/// it (the lead's revision in the claims' bucket: a later lead's is
/// larger).
const EPOCH: &str = "Plumbline-Epoch";
/// How long a pull for what is there now may take before it is given up
/// (a request lost while the client reconnects must not hang a worker).
const FETCH_EXPIRY: Duration = Duration::from_secs(5);

/// A replica's reader of one partition: its consumer, the last entry it
/// delivered, and the epochs it has seen.
struct Reader {
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

/// The lead this replica took, to fence and tag its appends.
#[derive(Clone)]
struct Leading {
    epoch: u64,
    held: super::Held,
}

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
    /// Each partition's reader, by token.
    readers: Mutex<HashMap<String, Reader>>,
    /// The lead this replica took last, if any.
    leading: Mutex<Option<Leading>>,
    /// The live replicas, as last counted.
    live: AtomicUsize,
    /// Appends so far: with the holder, a message id no other has.
    published: AtomicU64,
    /// Who this replica is, in its claims.
    holder: String,
    place: String,
    /// This replica's key in the roll, written while it lives.
    _present: Heartbeat,
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
            .block_on(open_patiently(url, options.replicas, options.lease))
            .map_err(error)?;
        let lease = handle
            .block_on(bucket_lease(&claims, options.lease))
            .map_err(error)?;
        let holder = holder_name();
        let present = Heartbeat::start(&handle, &claims, &format!("{ROLL}{holder}"), lease);
        Ok(JetStreamQueue {
            handle,
            context,
            stream,
            state,
            claims,
            capacity: options.capacity,
            lease,
            waiting: AtomicUsize::new(0),
            published: AtomicU64::new(0),
            readers: Mutex::default(),
            leading: Mutex::default(),
            live: AtomicUsize::new(1),
            holder,
            place,
            _present: present,
        })
    }

    /// This replica's name in its leases.
    pub fn holder(&self) -> &str {
        &self.holder
    }

    /// How many appends wait for room now.
    pub fn appends_waiting(&self) -> usize {
        self.waiting.load(Ordering::Acquire)
    }

    /// Takes the lease `key` of the claims' bucket, for `name`.
    fn lease(&self, key: &str, name: String) -> Result<Claim, QueueError> {
        let take = || async {
            Lease::take(&self.handle, &self.claims, key, &self.holder, self.lease)
                .await
                .map_err(|e| self.error(e))
        };
        match self.run(self.patiently("claiming", take))? {
            Some(lease) => {
                let held = lease.checker();
                Ok(Claim::leased(move || drop(lease), held))
            }
            None => Err(QueueError::Claimed { partition: name }),
        }
    }

    /// Waits while `partition` has no room for `more` entries (a batch
    /// larger than the whole capacity still goes in, alone).
    async fn room(&self, partition: &Partition, more: u64) -> Result<(), QueueError> {
        loop {
            let depth = self.count(partition).await?;
            if depth == 0 || depth + more <= self.capacity {
                return Ok(());
            }
            self.waiting.fetch_add(1, Ordering::AcqRel);
            tokio::time::sleep(POLL).await;
            self.waiting.fetch_sub(1, Ordering::AcqRel);
        }
    }

    /// Publishes `messages` (id, payload) to `subject`, tagged with
    /// `epoch`, every one sent before the first acknowledgement is
    /// awaited; the last position. On a failure (with whether it may pass),
    /// `messages` keeps what must be sent again: from the first message
    /// not acknowledged, and those after it with new ids. Some of those
    /// may have been stored already, before the one that failed: sent
    /// again after it, the partition's last word is still its last entry.
    async fn publish(
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
    fn message_id(&self, token: &str, entry: &Entry) -> String {
        if let Entry::File(change) = entry
            && let Some(replay) = &change.replay
        {
            let what = format!("{}\n{}\n{replay}", change.destination, change.path);
            let digest = crate::model::digest::content_digest(what.as_bytes());
            return format!("{token}-{}", &digest["sha256:".len()..]);
        }
        self.unique_id()
    }

    /// How many replicas share the queue now: the live heartbeats of the
    /// roll (its subjects, as the claims' stream counts them, each read:
    /// one that stopped leaves a purge marker until it ages out).
    async fn replicas(&self) -> Result<usize, QueueError> {
        let prefix = self.claims.prefix.clone();
        let filter = format!("{prefix}{ROLL}>");
        let mut subjects = self
            .claims
            .stream
            .info_with_subjects(filter)
            .await
            .map_err(|e| self.error(e))?;
        let mut keys = Vec::new();
        while let Some(item) = subjects.next().await {
            let (subject, _) = item.map_err(|e| self.error(e))?;
            keys.extend(subject.strip_prefix(&prefix).map(str::to_owned));
        }
        let mut live = 0;
        for key in keys {
            let value = self.claims.get(&key).await.map_err(|e| self.error(e))?;
            live += usize::from(value.is_some_and(|v| v == lease::ALIVE.as_bytes()));
        }
        Ok(live)
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

    /// Up to `max` entries of `partition` after `after`, waiting up to
    /// `wait` for the first: from this replica's pull consumer of the
    /// partition, made again only when the reader starts over elsewhere
    /// than where it left off (consumers are placed by the cluster's meta
    /// leader: one per read would load it).
    async fn next(
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
            None => reader
                .consumer
                .fetch()
                .max_messages(max)
                .expires(FETCH_EXPIRY)
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

    fn lock_readers(&self) -> std::sync::MutexGuard<'_, HashMap<String, Reader>> {
        self.readers.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn lock_leading(&self) -> std::sync::MutexGuard<'_, Option<Leading>> {
        self.leading.lock().unwrap_or_else(PoisonError::into_inner)
    }

    async fn ack_now(&self, partition: &Partition, through: Position) -> Result<(), QueueError> {
        if through <= self.acked_now(partition).await? {
            return Ok(());
        }
        let token = partition.token();
        // The epoch first: a reader that starts after `through` must
        // know which lead's entries may follow.
        let epoch = self
            .lock_readers()
            .get_mut(&token)
            .map(|r| r.epochs.acked(through));
        if let Some(epoch) = epoch.filter(|e| *e > 0) {
            self.state
                .put(format!("epoch.{token}"), epoch.to_string().into())
                .await
                .map_err(|e| self.error(e))?;
        }
        self.state
            .put(format!("acked.{token}"), through.0.to_string().into())
            .await
            .map_err(|e| self.error(e))?;
        self.stream
            .purge()
            .filter(subject(partition))
            .sequence(through.0 + 1)
            .await
            .map_err(|e| self.error(e))?;
        Ok(())
    }

    /// Runs `attempt` until it succeeds, or until it has failed for
    /// [`PATIENCE`]: the cluster answers nothing about a stream while it
    /// elects the stream's leader.
    async fn patiently<T, F, Fut>(&self, what: &str, mut attempt: F) -> Result<T, QueueError>
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = Result<T, QueueError>>,
    {
        let started = Instant::now();
        loop {
            match attempt().await {
                Err(error @ QueueError::Store { .. }) if started.elapsed() < PATIENCE => {
                    let error = crate::telemetry::chain(&error);
                    tracing::warn!(error, "{what} on NATS failed; trying again");
                    tokio::time::sleep(POLL * 10).await;
                }
                done => return done,
            }
        }
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
        let key = format!("acked.{}", partition.token());
        Ok(Position(self.number(&key).await?))
    }

    /// The number kept at `key` of the state bucket; 0 if none.
    async fn number(&self, key: &str) -> Result<u64, QueueError> {
        let value = self.state.get(key).await.map_err(|e| self.error(e))?;
        Ok(value
            .and_then(|v| std::str::from_utf8(&v).ok()?.parse().ok())
            .unwrap_or(0))
    }
}

/// Connects, and [`open`]s, tried again for a while when it fails: a
/// cluster that lost a node answers nothing about a stream until its new
/// leader is elected.
async fn open_patiently(
    url: &str,
    replicas: usize,
    lease: Duration,
) -> Result<
    (jetstream::Context, stream::Stream, kv::Store, kv::Store),
    Box<dyn std::error::Error + Send + Sync>,
> {
    let context = crate::nats::connect(url).await?;
    let started = Instant::now();
    loop {
        match open(&context, replicas, lease).await {
            Err(error) if started.elapsed() < PATIENCE => {
                tracing::warn!(%error, "opening the queue on NATS; trying again");
                tokio::time::sleep(POLL * 20).await;
            }
            opened => return opened.map(|(s, q, c)| (context, s, q, c)),
        }
    }
}

/// The stream and buckets of `context`, created if missing.
async fn open(
    context: &jetstream::Context,
    replicas: usize,
    lease: Duration,
) -> Result<(stream::Stream, kv::Store, kv::Store), crate::nats::Error> {
    let replicas = replicas.max(1);
    let stream = context
        .get_or_create_stream(stream::Config {
            name: STREAM.into(),
            description: Some("Plumbline's queue: a subject per (repository, branch)".into()),
            subjects: vec![format!("{SUBJECTS}.*")],
            num_replicas: replicas,
            allow_direct: true,
            duplicate_window: DUPLICATES,
            ..Default::default()
        })
        .await?;
    let state = bucket(context, STATE, replicas, Duration::ZERO).await?;
    let claims = bucket(context, CLAIMS, replicas, lease).await?;
    Ok((stream, state, claims))
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

/// How long claims last: the claims' bucket's age limit, set by the
/// replica that made it. Every replica must renew by the same measure, or
/// one would think itself holding what the bucket already let go of.
async fn bucket_lease(claims: &kv::Store, asked: Duration) -> Result<Duration, crate::nats::Error> {
    let kept = claims.status().await?.max_age();
    if kept.is_zero() {
        return Err(format!(
            "the bucket {CLAIMS} keeps claims for ever: it was not made by Plumbline"
        )
        .into());
    }
    if kept != asked {
        tracing::warn!(
            "the bucket {CLAIMS} keeps claims for {} s, not the {} s asked (it was made so): leases last {} s",
            kept.as_secs_f64(),
            asked.as_secs_f64(),
            kept.as_secs_f64()
        );
    }
    Ok(kept)
}

/// This replica's name in leases: its host (the pod's name), process and
/// start, in the characters a key may hold.
fn holder_name() -> String {
    let started = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default()
        .as_nanos();
    let host = std::env::var("HOSTNAME").unwrap_or_else(|_| "plumbline".into());
    let host: String = host
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' {
                c
            } else {
                '_'
            }
        })
        .collect();
    format!("{host}-{}-{started}", std::process::id())
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
        let token = partition.token();
        let mut messages = Vec::with_capacity(entries.len());
        for entry in entries {
            let bytes = serde_json::to_vec(entry).map_err(|e| self.error(e))?;
            messages.push((self.message_id(&token, entry), bytes));
        }
        let leading = self.lock_leading().clone();
        let started = Instant::now();
        self.run(async {
            loop {
                // Checked before every attempt: a lead that lapsed while
                // this append waited appends nothing more.
                if leading.as_ref().is_some_and(|l| !(l.held)()) {
                    return Err(QueueError::Claimed {
                        partition: "the source (this replica's lead lapsed)".into(),
                    });
                }
                let epoch = leading.as_ref().map(|l| l.epoch);
                let tried = match self.room(partition, messages.len() as u64).await {
                    Ok(()) if messages.is_empty() => {
                        self.last(partition).await.map_err(|e| (true, e))
                    }
                    Ok(()) => {
                        self.publish(&subject(partition), &mut messages, epoch)
                            .await
                    }
                    Err(e) => Err((true, e)),
                };
                match tried {
                    Ok(last) => return Ok(last),
                    Err((true, e)) if started.elapsed() < PATIENCE => {
                        let error = crate::telemetry::chain(&e);
                        tracing::warn!(error, %partition, "appending again");
                        tokio::time::sleep(POLL * 10).await;
                    }
                    Err((_, e)) => return Err(e),
                }
            }
        })
    }

    fn read(
        &self,
        partition: &Partition,
        after: Position,
        max: usize,
        wait: Duration,
    ) -> Result<Vec<(Position, Entry)>, QueueError> {
        self.run(self.next(partition, after, max, wait))
    }

    fn ack(&self, partition: &Partition, through: Position) -> Result<(), QueueError> {
        self.run(self.patiently("acknowledging", || self.ack_now(partition, through)))
    }

    fn acked(&self, partition: &Partition) -> Result<Position, QueueError> {
        self.run(self.patiently("reading what was acknowledged", || {
            self.acked_now(partition)
        }))
    }

    fn depth(&self, partition: &Partition) -> u64 {
        self.run(self.count(partition)).unwrap_or(0)
    }

    fn claim(&self, partition: &Partition) -> Result<Claim, QueueError> {
        self.lease(&partition.token(), partition.to_string())
    }

    fn lead(&self) -> Result<Claim, QueueError> {
        // Tried once: a follower asks again soon, and must hear a stop.
        let take = Lease::take(&self.handle, &self.claims, LEADER, &self.holder, self.lease);
        let Some(lease) = self.run(take).map_err(|e| self.error(e))? else {
            return Err(QueueError::Claimed {
                partition: "the source".into(),
            });
        };
        let held: super::Held = Arc::new(lease.checker());
        let leading = Leading {
            epoch: lease.epoch(),
            held: held.clone(),
        };
        *self.lock_leading() = Some(leading);
        Ok(Claim::leased(move || drop(lease), move || held()))
    }

    fn leader(&self) -> Option<String> {
        // The replica's name, without which of its takes it is.
        let holder = self.run(lease::holder(&self.claims, LEADER)).ok()??;
        Some(holder.split('#').next().unwrap_or_default().to_owned())
    }

    fn share(&self, partitions: usize) -> usize {
        // Counted afresh each time: replicas come and go. While NATS
        // cannot say, the last count stands (not "alone", which would
        // have this replica take every partition).
        let live = match self.run(self.replicas()) {
            Ok(live) => {
                let before = self.live.swap(live.max(1), Ordering::AcqRel);
                if before != live.max(1) {
                    tracing::info!(live, before, "live replicas counted");
                }
                live.max(1)
            }
            Err(error) => {
                let error = crate::telemetry::chain(&error);
                tracing::warn!(error, "counting the live replicas; the last count stands");
                self.live.load(Ordering::Acquire)
            }
        };
        partitions.div_ceil(live)
    }

    fn cursors(&self, source: &str) -> Result<Cursors, QueueError> {
        let get = || async {
            let key = cursors_key(source);
            self.state.get(key).await.map_err(|e| self.error(e))
        };
        let value = self.run(self.patiently("reading cursors", get))?;
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
        self.run(self.patiently("saving cursors", || self.save_now(&key, changes)))
    }
}

impl JetStreamQueue {
    /// Saves `changes` into the cursors at `key`.
    async fn save_now(
        &self,
        key: &str,
        changes: &[(String, Option<String>)],
    ) -> Result<(), QueueError> {
        loop {
            let entry = self.state.entry(key).await.map_err(|e| self.error(e))?;
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
                match self.state.update(key, bytes.into(), revision).await {
                    Ok(_) => return Ok(()),
                    Err(e) if e.kind() == kv::UpdateErrorKind::WrongLastRevision => continue,
                    Err(e) => return Err(self.error(e)),
                }
            }
            match self.state.create(key, bytes.into()).await {
                Ok(_) => return Ok(()),
                Err(e) if e.kind() == kv::CreateErrorKind::AlreadyExists => continue,
                Err(e) => return Err(self.error(e)),
            }
        }
    }
}

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
