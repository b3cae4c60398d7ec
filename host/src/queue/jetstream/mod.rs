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
//!   `replica.<name>` ([`Heartbeat`]), by which replicas count each other
//!   to share the partitions evenly.
//!
//! `append` sends (message ids, retries), `read` reads (a consumer
//! per reader, lead epochs), `open` makes the stream and buckets.
//!
//! Calls block, as the catalog's store's do (see
//! [`crate::catalog::store::jetstream`]).

use super::{Claim, Cursors, Entry, Partition, Position, Queue, QueueError};
use crate::nats::lease::{self, Heartbeat, Lease};
use async_nats::jetstream::{self, kv, stream};
use futures_util::StreamExt as _;
use std::collections::HashMap;
use std::future::Future;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};
use tokio::runtime::{Handle, RuntimeFlavor};

mod append;
mod open;
mod read;

use open::{bucket_lease, holder_name, open_patiently};
use read::Reader;

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

/// The header tagging an entry with the epoch of the lead that appended
/// it (the lead's revision in the claims' bucket: a later lead's is
/// larger).
const EPOCH: &str = "Plumbline-Epoch";

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
    /// Set once the process stops ([`Queue::hurry`]): failures are not
    /// tried again.
    hurried: AtomicBool,
    /// Each partition's reader, by token.
    readers: Mutex<HashMap<String, Reader>>,
    /// The lead this replica took last, if any.
    leading: Mutex<Option<Leading>>,
    /// Most entries each partition (by token) may hold: its depth when
    /// last counted, and what this replica appended since.
    bounds: Mutex<HashMap<String, u64>>,
    /// The live replicas, as last counted.
    live: AtomicUsize,
    /// Appends so far: with the holder, a message id no other has.
    published: AtomicU64,
    /// Who this replica is, in its claims.
    holder: String,
    place: String,
    /// This replica's key in the roll, written while it lives.
    present: Heartbeat,
}

impl JetStreamQueue {
    /// Connects to NATS at `url` (several URLs comma-separated) and opens
    /// or creates the stream and buckets as `options` say.
    pub fn connect(
        handle: Handle,
        url: &str,
        options: Options,
    ) -> Result<JetStreamQueue, QueueError> {
        let place = format!("NATS {}, stream {STREAM}", crate::nats::shown(url));
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
            hurried: AtomicBool::new(false),
            published: AtomicU64::new(0),
            readers: Mutex::default(),
            leading: Mutex::default(),
            bounds: Mutex::default(),
            live: AtomicUsize::new(1),
            holder,
            place,
            present,
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
        match self.call(self.patiently("claiming", take))? {
            Some(lease) => {
                let held = lease.checker();
                Ok(Claim::leased(move || drop(lease), held))
            }
            None => Err(QueueError::Claimed { partition: name }),
        }
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

    /// Runs `call` to its end, unless the process stops while NATS is out
    /// of reach: then it is abandoned (a request to a server that is gone
    /// waits out its timeout, several for a call that makes a few), and
    /// what it was to do is done again by whoever comes next, as after a
    /// timeout.
    fn call<T>(&self, call: impl Future<Output = Result<T, QueueError>>) -> Result<T, QueueError> {
        self.run(async {
            tokio::select! {
                done = call => done,
                () = self.abandoned() => Err(QueueError::Abandoned {
                    path: self.place.clone(),
                }),
            }
        })
    }

    /// Ends once the process stops while NATS is out of reach.
    async fn abandoned(&self) {
        while !(self.hurried.load(Ordering::Acquire) && self.present.failing().is_some()) {
            tokio::time::sleep(POLL * 5).await;
        }
    }

    fn lock_leading(&self) -> std::sync::MutexGuard<'_, Option<Leading>> {
        self.leading.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn lock_bounds(&self) -> std::sync::MutexGuard<'_, HashMap<String, u64>> {
        self.bounds.lock().unwrap_or_else(PoisonError::into_inner)
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
            .map(|r| r.acked(through));
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

    /// Whether a call that started at `started` and failed tries again:
    /// for [`PATIENCE`], unless the process stops.
    fn patient(&self, started: Instant) -> bool {
        started.elapsed() < PATIENCE && !self.hurried.load(Ordering::Acquire)
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
                Err(error @ QueueError::Store { .. }) if self.patient(started) => {
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
        self.call(async {
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
                    Err((true, e)) if self.patient(started) => {
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
        self.call(self.next(partition, after, max, wait))
    }

    fn ack(&self, partition: &Partition, through: Position) -> Result<(), QueueError> {
        self.call(self.patiently("acknowledging", || self.ack_now(partition, through)))
    }

    fn acked(&self, partition: &Partition) -> Result<Position, QueueError> {
        self.call(self.patiently("reading what was acknowledged", || {
            self.acked_now(partition)
        }))
    }

    fn depth(&self, partition: &Partition) -> u64 {
        self.call(self.count(partition)).unwrap_or(0)
    }

    fn claim(&self, partition: &Partition) -> Result<Claim, QueueError> {
        self.lease(&partition.token(), partition.to_string())
    }

    fn lead(&self) -> Result<Claim, QueueError> {
        // Tried once: a follower asks again soon, and must hear a stop.
        let take = Lease::take(&self.handle, &self.claims, LEADER, &self.holder, self.lease);
        let Some(lease) = self.call(async { take.await.map_err(|e| self.error(e)) })? else {
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
        // Another leader appended since this one last did.
        self.lock_bounds().clear();
        Ok(Claim::leased(move || drop(lease), move || held()))
    }

    fn leader(&self) -> Option<String> {
        // The replica's name, without which of its takes it is.
        let holder = self
            .call(async {
                let holder = lease::holder(&self.claims, LEADER).await;
                holder.map_err(|e| self.error(e))
            })
            .ok()??;
        Some(holder.split('#').next().unwrap_or_default().to_owned())
    }

    fn unreachable(&self) -> Option<String> {
        let failing = self.present.failing()?;
        Some(format!("{}: {failing}", self.place))
    }

    fn share(&self, partitions: usize) -> usize {
        // Counted afresh each time: replicas come and go. While NATS
        // cannot say, the last count stands (not "alone", which would
        // have this replica take every partition).
        let live = match self.call(self.replicas()) {
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

    fn hurry(&self) {
        self.hurried.store(true, Ordering::Release);
    }

    fn cursors(&self, source: &str) -> Result<Cursors, QueueError> {
        let get = || async {
            let key = cursors_key(source);
            self.state.get(key).await.map_err(|e| self.error(e))
        };
        let value = self.call(self.patiently("reading cursors", get))?;
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
        self.call(self.patiently("saving cursors", || self.save_now(&key, changes)))
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
