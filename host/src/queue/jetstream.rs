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
use std::sync::{Mutex, PoisonError};
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

/// A replica's reader of one partition: its consumer, and the last entry
/// it delivered.
struct Reader {
    consumer: consumer::Consumer<consumer::pull::Config>,
    last: Position,
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
        let holder = holder_name();
        let present = Heartbeat::start(&handle, &claims, &format!("{ROLL}{holder}"), options.lease);
        Ok(JetStreamQueue {
            handle,
            context,
            stream,
            state,
            claims,
            capacity: options.capacity,
            lease: options.lease,
            waiting: AtomicUsize::new(0),
            published: AtomicU64::new(0),
            readers: Mutex::default(),
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

    /// Publishes `messages` (id, payload) to `subject`, every one sent
    /// before the first acknowledgement is awaited; the last position.
    async fn publish(
        &self,
        subject: &str,
        messages: &[(String, Vec<u8>)],
    ) -> Result<Position, jetstream::context::PublishError> {
        let mut acks = Vec::with_capacity(messages.len());
        for (id, payload) in messages {
            let message = jetstream::message::PublishMessage::build()
                .payload(payload.clone().into())
                .message_id(id);
            acks.push(
                self.context
                    .send_publish(subject.to_owned(), message)
                    .await?,
            );
        }
        let mut last = Position::START;
        for ack in acks {
            last = last.max(Position(ack.await?.sequence));
        }
        Ok(last)
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
        let n = self.published.fetch_add(1, Ordering::Relaxed);
        format!("{}-{n}", self.holder)
    }

    /// How many replicas share the queue now: the keys of the roll, as
    /// the claims' stream counts its subjects (no consumer made).
    async fn replicas(&self) -> Result<usize, QueueError> {
        let filter = format!("{}{ROLL}>", self.claims.prefix);
        let mut subjects = self
            .claims
            .stream
            .clone()
            .info_with_subjects(filter)
            .await
            .map_err(|e| self.error(e))?;
        let mut count = 0;
        while let Some(item) = subjects.next().await {
            let (_, messages) = item.map_err(|e| self.error(e))?;
            count += usize::from(messages > 0);
        }
        Ok(count)
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
        let mut found = self.pull(&reader, partition, max, None).await;
        if matches!(&found, Ok(f) if f.is_empty()) && !wait.is_zero() {
            found = self.pull(&reader, partition, 1, Some(wait)).await;
            if let Ok(first) = &mut found
                && !first.is_empty()
                && max > 1
            {
                match self.pull(&reader, partition, max - 1, None).await {
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
        Ok(Reader {
            consumer,
            last: after,
        })
    }

    /// Up to `max` entries from `reader`: those there now, or with
    /// `wait`, waiting that long for them.
    async fn pull(
        &self,
        reader: &Reader,
        partition: &Partition,
        max: usize,
        wait: Option<Duration>,
    ) -> Result<Vec<(Position, Entry)>, QueueError> {
        let mut messages = match wait {
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

    async fn ack_now(&self, partition: &Partition, through: Position) -> Result<(), QueueError> {
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
        // Sent again whole while the cluster cannot take it (a stream
        // leader being elected, a request lost): the ids make what went
        // in already a duplicate, which the stream acknowledges and drops.
        let started = Instant::now();
        self.run(async {
            loop {
                let tried = match self.room(partition, entries.len() as u64).await {
                    Ok(()) if messages.is_empty() => self.last(partition).await.map_err(|e| (true, e)),
                    Ok(()) => self
                        .publish(&subject(partition), &messages)
                        .await
                        .map_err(|e| (transient(&e), self.error(e))),
                    Err(e) => Err((true, e)),
                };
                match tried {
                    Ok(last) => return Ok(last),
                    Err((true, e)) if started.elapsed() < PATIENCE => {
                        tracing::warn!(error = %crate::telemetry::chain(&e), %partition, "appending again");
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
        self.lease(LEADER, "the source".into())
    }

    fn leader(&self) -> Option<String> {
        self.run(lease::holder(&self.claims, LEADER)).ok().flatten()
    }

    fn share(&self, partitions: usize) -> usize {
        // Counted afresh each time: replicas come and go.
        let live = self.run(self.replicas()).unwrap_or(1).max(1);
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
