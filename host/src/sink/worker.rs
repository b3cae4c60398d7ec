//! One worker per (repository, branch): reads its partition of the queue,
//! commits in batches, pushes, and only then acknowledges.
//!
//! Every commit is built on the remote's tip from entries still in the
//! queue, so each failure has one answer. A push rejected because another
//! writer moved the branch: fetch, start over from the new tip and read the
//! unacknowledged entries again (both writers' commits survive, nothing is
//! committed twice). A remote that is down: keep the local commits, retry
//! with backoff, while routing keeps appending (until the partition is full,
//! when it waits). A crash: the next start reads from the first entry not
//! acknowledged. An entry that changes nothing (same bytes as the tip) costs
//! a hash and produces no commit. A change the sink cannot write (a path
//! Git refuses, say, queued by an older version) is set aside: reported
//! with the object and the cause, counted, and acknowledged with the rest,
//! so that one bad entry never holds back its partition.

use super::Folder;
use super::batch::Batch;
pub use super::batch::BatchLimits;
use super::cursor::Cursor;
use super::prune::{Pruning, plan};
use super::pushing::{InFlight, Totals};
use super::remote::{GitError, Push, Remote};
pub use super::retry::FINISH_RETRY;
use super::retry::{Next, Replay, Retry};
use super::sealed;
use super::seeds::Seeds;
use super::store::{Person, Store};
use crate::layout;
use crate::model::Operation;
use crate::model::Prune;
use crate::queue::{Claim, Entry, FileChange, Partition, Position, Queue, QueueError};
use crate::telemetry::CHANGES;
use crate::telemetry::health::Status;
use crate::telemetry::{Health, Metrics, RepoLabels};
use std::collections::BTreeSet;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

/// How a worker behaves.
#[derive(Debug, Clone)]
pub struct SinkOptions {
    /// Batch sizes of changes followed one by one.
    pub batch: BatchLimits,
    /// Batch sizes while a seed of the change's destination is under way.
    pub seed_batch: BatchLimits,
    /// Who commits (the daemon).
    pub committer: Person,
    /// Who authors changes whose actor is unknown.
    pub unknown_actor: Person,
    /// The commit message's first line; `{operation}`, `{count}`,
    /// `{destination}` and `{resources}` are replaced.
    pub message_template: String,
    /// Where the changes came from, for the `Plumbline-Source` trailer.
    pub source: String,
    /// How long a remote may keep failing before the worker gives up;
    /// `None` to retry for ever (a daemon following its source).
    pub retry_for: Option<Duration>,
    /// Push after this many local commits even when more entries wait, so
    /// that progress reaches the remote during a long seed.
    pub push_every: usize,
    /// Credentials for the remote, from the repository's `secretRef`.
    pub credentials: Option<std::sync::Arc<crate::model::auth::GitAuth>>,
    /// Signs every commit, when set (never unsigned then).
    pub signing: Option<std::sync::Arc<crate::signing::Signer>>,
}

impl SinkOptions {
    /// Defaults for a source described by `source`.
    pub fn new(source: impl Into<String>) -> SinkOptions {
        SinkOptions {
            batch: BatchLimits::default(),
            seed_batch: BatchLimits::seed(),
            committer: Person {
                name: "Plumbline".into(),
                email: "plumbline@plumbline.invalid".into(),
            },
            unknown_actor: Person {
                name: "Unknown actor".into(),
                email: "unknown-actor@plumbline.invalid".into(),
            },
            message_template: DEFAULT_MESSAGE.into(),
            source: source.into(),
            retry_for: None,
            push_every: 25,
            credentials: None,
            signing: None,
        }
    }
}

/// Packs the local repository may hold before they are merged.
const MAX_PACKS: usize = 16;

/// The default commit subject.
/// Not `in {destination}`: a destination's name (`default` without
/// `--config`) read as a namespace; it is in the `Plumbline-Destination`
/// trailer instead.
pub const DEFAULT_MESSAGE: &str = "{operation}: {count} file(s) of {resources}";

/// What a worker pushed.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SyncReport {
    /// Files written (created or changed).
    pub written: usize,
    /// Files deleted.
    pub deleted: usize,
    /// Commits pushed.
    pub commits: usize,
    /// Bytes written.
    pub bytes: u64,
    /// Pushes retried (rejections and failures).
    pub push_retries: u32,
    /// Orphans kept because a seed was incomplete.
    pub orphans_kept: usize,
    /// Files the branch holds under the worker's destinations.
    pub files: usize,
    /// Changes set aside because the sink cannot write them.
    pub set_aside: usize,
    /// Changes discarded because their destination is no longer
    /// configured (routed before it was removed).
    pub discarded: usize,
}

/// When a worker ends.
#[derive(Clone, Default)]
pub struct Signals {
    /// Finish: push everything queued, then return (a run `--once`, when
    /// the source was read).
    pub finish: Arc<AtomicBool>,
    /// Stop at the next step: what is not pushed stays in the queue, for
    /// the next worker of the partition (its destinations changed).
    pub stop: Arc<AtomicBool>,
    /// With [`Signals::finish`]: push what is staged and give the
    /// partition up, not everything queued. Other replicas share the
    /// queue, and another may be appending to it; they push the rest.
    pub hand_over: bool,
    /// Asked between batches: true when it should give its partition up to another replica (this one holds
    /// more than its share); it returns [`SinkError::GaveUp`] then.
    pub give_up: Option<Arc<dyn Fn() -> bool + Send + Sync>>,
}

impl std::fmt::Debug for Signals {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Signals")
            .field("finish", &self.finish)
            .field("stop", &self.stop)
            .field("hand_over", &self.hand_over)
            .field("give_up", &self.give_up.is_some())
            .finish()
    }
}

/// Why a worker stopped.
#[derive(Debug, thiserror::Error)]
pub enum SinkError {
    /// It was told to stop ([`Signals::stop`]).
    #[error("stopped")]
    Stopped,
    /// It gave its partition up, caught up, for another replica to take
    /// ([`Signals::give_up`]).
    #[error("gave {partition} up to another replica")]
    GaveUp {
        /// The partition.
        partition: String,
    },
    /// Its claim on the partition lapsed (not renewed in time: the
    /// process was paused, or NATS was out of reach): another replica may
    /// write the branch now, so it pushes nothing more.
    #[error("the claim on {partition} lapsed; another replica may hold it")]
    ClaimLapsed {
        /// The partition.
        partition: String,
    },
    /// Every push was rejected (the branch kept moving) until the retry
    /// budget ran out.
    #[error(
        "destination `{destination}`: the push was rejected {attempts} times; the branch keeps moving"
    )]
    Rejected {
        /// The destination(s).
        destination: String,
        /// How many pushes were rejected.
        attempts: u32,
    },
    /// Git failed, and kept failing until the retry budget ran out.
    #[error("destination `{destination}` could not be synced")]
    Git {
        /// The destination(s).
        destination: String,
        /// The last failure.
        #[source]
        source: GitError,
    },
    /// The queue failed.
    #[error(transparent)]
    Queue(#[from] QueueError),
}

/// The sink of one partition.
pub struct Worker {
    partition: Partition,
    destinations: Vec<Folder>,
    remote: Arc<Remote>,
    store: Store,
    options: SinkOptions,
    metrics: Arc<Metrics>,
    health: Arc<Health>,
    labels: RepoLabels,
    /// Held while the worker runs: no other consumer writes the branch.
    claim: Claim,
    cursor: Cursor,
    staged: Batch,
    /// Committed locally, not pushed.
    unpushed: Totals,
    /// The push under way, if any.
    in_flight: Option<InFlight>,
    seeds: Seeds,
    signals: Signals,
    /// Destinations no longer configured whose entries were discarded.
    discarding: BTreeSet<String>,
    /// Asked to give the partition up: it reads nothing more, and gives
    /// it up once what it staged is pushed.
    giving_up: bool,
    retry: Retry,
    report: SyncReport,
}

impl Drop for Worker {
    fn drop(&mut self) {
        // Its claim goes with it.
        self.metrics
            .partition_held
            .get_or_create(&self.labels)
            .set(0);
    }
}

impl Worker {
    /// A worker for `destinations` (all in `partition`), keeping its
    /// repository in `gitdir`.
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        partition: Partition,
        destinations: Vec<Folder>,
        queue: Arc<dyn Queue>,
        gitdir: &Path,
        options: SinkOptions,
        metrics: Arc<Metrics>,
        health: Arc<Health>,
    ) -> Result<Worker, SinkError> {
        let names = names(&destinations);
        let git = |source| SinkError::Git {
            destination: names.clone(),
            source,
        };
        // Before anything touches the branch or the local repository.
        let claim = queue.claim(&partition)?;
        let mut remote = Remote::new(&partition.repo, &partition.branch, gitdir).map_err(git)?;
        if let Some(credentials) = &options.credentials {
            remote.authenticate(credentials).map_err(git)?;
        }
        let remote = Arc::new(remote);
        let mut store = Store::open(gitdir).map_err(git)?;
        if let Some(signer) = &options.signing {
            store.sign_with(signer.clone());
        }
        let labels = RepoLabels::new(&partition.repo, &partition.branch);
        let cursor = Cursor::new(queue, partition.clone())?;
        metrics.partition_held.get_or_create(&labels).set(1);
        Ok(Worker {
            partition,
            destinations,
            remote,
            store,
            retry: Retry::new(options.retry_for),
            options,
            metrics,
            health,
            labels,
            claim,
            cursor,
            staged: Batch::default(),
            unpushed: Totals::default(),
            in_flight: None,
            seeds: Seeds::default(),
            signals: Signals::default(),
            discarding: BTreeSet::new(),
            giving_up: false,
            report: SyncReport::default(),
        })
    }

    fn part(&self) -> String {
        format!("sink {}", self.partition)
    }

    /// Runs until [`Signals::finish`] is set and every entry is pushed,
    /// or [`Signals::stop`] is set, or for ever.
    pub fn run(&mut self, signals: &Signals) -> Result<SyncReport, SinkError> {
        let outcome = self.follow(signals);
        // A worker that stops leaves no push behind it, writing the branch
        // after its claim is gone.
        if let Some(push) = self.in_flight.take() {
            let _ = push.finish();
        }
        outcome
    }

    fn follow(&mut self, signals: &Signals) -> Result<SyncReport, SinkError> {
        self.signals = signals.clone();
        self.health
            .set(&self.part(), Status::NotReady("starting".into()));
        self.start_over()?;
        loop {
            self.check_stop()?;
            self.check_give_up()?;
            // Read first, then check: `finish` is set after the last
            // append, so an empty read after seeing it means the end.
            let done = signals.finish.load(Ordering::Acquire);
            if done {
                self.retry.finishing();
            }
            let limits = self.options.batch;
            let wait = match self.staged.wait_left(&limits, Instant::now()) {
                Some(left) => left,
                None if done => Duration::ZERO,
                None => Duration::from_millis(500),
            };
            let entries = self
                .cursor
                .read(limits.files, wait.min(Duration::from_millis(500)))?;
            self.record_depth();
            if entries.is_empty() {
                if done || self.staged.is_due(&limits, Instant::now()) {
                    self.commit(self.cursor.last_read())?;
                }
                if self.unpushed.commits > 0 || self.in_flight.is_some() {
                    self.push()?;
                } else if self.staged.is_empty() {
                    self.caught_up()?;
                    if done {
                        self.report.files = self.held_files();
                        return Ok(self.report.clone());
                    }
                }
                continue;
            }
            for (position, entry) in entries {
                self.cursor.applying(position);
                self.apply(entry)?;
                self.cursor.applied(self.staged.is_empty());
            }
            if self.unpushed.commits >= self.options.push_every {
                self.push()?;
            } else {
                self.push_soon()?;
            }
        }
    }

    fn record_depth(&self) {
        self.metrics
            .queue_depth
            .get_or_create(&self.labels)
            .set(self.cursor.depth() as i64);
    }

    /// Nothing waits: everything read is pushed (or changed nothing).
    fn caught_up(&mut self) -> Result<(), SinkError> {
        // What a lapsed claim's worker found unchanged, it judged by a tip
        // another replica may have moved: not for it to acknowledge.
        self.fenced()?;
        self.cursor.ack_read()?;
        self.record_depth();
        self.health.set(&self.part(), Status::Ready);
        Ok(())
    }

    /// Gives the partition up if this replica holds more than its share:
    /// once asked, it reads nothing more, commits what it staged and
    /// pushes, then gives up (what it read and did not push is read again
    /// by the next holder). Waiting for a moment with nothing staged would
    /// never come while changes keep arriving: the next batch is read
    /// while the last one is pushed.
    fn check_give_up(&mut self) -> Result<(), SinkError> {
        let finishing = self.signals.finish.load(Ordering::Acquire);
        if finishing && self.signals.hand_over {
            self.giving_up = true;
        }
        if !self.giving_up && !finishing {
            self.giving_up = self
                .signals
                .give_up
                .as_ref()
                .is_some_and(|give_up| give_up());
        }
        if !self.giving_up {
            return Ok(());
        }
        self.commit(self.cursor.last_read())?;
        self.push()?;
        Err(SinkError::GaveUp {
            partition: self.partition.to_string(),
        })
    }

    /// Fetches the remote's tip (retrying while it fails) and reads again
    /// from the first entry not acknowledged.
    fn start_over(&mut self) -> Result<(), SinkError> {
        let tip = loop {
            match self.remote.fetch() {
                Ok(tip) => break tip,
                Err(error) => self.failed(error)?,
            }
        };
        self.retry.reached();
        self.store.reset(tip).map_err(|source| self.git(source))?;
        self.cursor.restart()?;
        self.staged = Batch::default();
        self.unpushed = Totals::default();
        Ok(())
    }

    /// Records a failure of the remote: an error once it has failed for
    /// longer than the retry budget, else waits before the next attempt.
    fn failed(&mut self, error: GitError) -> Result<(), SinkError> {
        self.report.push_retries += 1;
        self.metrics.push_retries.get_or_create(&self.labels).inc();
        // A remote that was never reached still has a backlog to show.
        self.record_depth();
        self.health
            .set(&self.part(), Status::NotReady(format!("{error}")));
        // Told to finish (a signal): failures now have a budget, even
        // before the remote was ever reached.
        if self.signals.finish.load(Ordering::Acquire) {
            self.retry.finishing();
        }
        match self.retry.failed(Instant::now()) {
            Next::GiveUp => Err(self.git(error)),
            Next::Wait(backoff) => {
                tracing::warn!(partition = %self.partition, %error, retry_in = ?backoff, "git failed; retrying");
                self.pause(backoff)
            }
        }
    }

    /// Waits `length`, unless told to stop.
    fn pause(&self, length: Duration) -> Result<(), SinkError> {
        let until = Instant::now() + length;
        loop {
            self.check_stop()?;
            let left = until.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Ok(());
            }
            std::thread::sleep(left.min(Duration::from_millis(100)));
        }
    }

    /// A worker whose claim may have gone to another replica (it woke
    /// from a pause past its lease) writes the branch, and acknowledges,
    /// no more.
    fn fenced(&self) -> Result<(), SinkError> {
        if self.claim.held() {
            Ok(())
        } else {
            Err(SinkError::ClaimLapsed {
                partition: self.partition.to_string(),
            })
        }
    }

    fn check_stop(&self) -> Result<(), SinkError> {
        if self.signals.stop.load(Ordering::Acquire) {
            Err(SinkError::Stopped)
        } else {
            Ok(())
        }
    }

    fn git(&self, source: GitError) -> SinkError {
        SinkError::Git {
            destination: names(&self.destinations),
            source,
        }
    }

    fn apply(&mut self, entry: Entry) -> Result<(), SinkError> {
        match entry {
            Entry::File(change) => self.apply_file(change),
            Entry::SeedStart {
                destination,
                seed,
                resources,
            } => {
                self.seeds.start(&destination, seed, resources);
                Ok(())
            }
            Entry::Keep { destination, path } => {
                self.seeds.live(&destination, &path);
                Ok(())
            }
            Entry::SeedEnd {
                destination,
                seed,
                complete,
                deleted_by,
            } => self.end_seed(&destination, seed, complete, deleted_by),
        }
    }

    fn apply_file(&mut self, change: FileChange) -> Result<(), SinkError> {
        // What is said of the change while it is applied (set aside,
        // discarded) carries its trace.
        let _change =
            tracing::debug_span!(target: CHANGES, "change", trace = change.trace).entered();
        let Some(destination) = self.destination(&change.destination) else {
            self.discard(&change.destination, "is no longer configured");
            return Ok(());
        };
        // Routing refuses such paths now; the queue may still hold some
        // from before, and they must not stop everything behind them.
        if let Err(error) = layout::check_path(&change.path) {
            self.set_aside(&change.destination, &change.path, &error);
            return Ok(());
        }
        // Routed while the destination wrote to another folder (its base
        // folder changed while the entry waited): the listing that follows
        // every configuration change writes the object in its new folder,
        // and this copy would stay in the old one for ever, outside what
        // any prune looks at.
        // (Not only "under the folder": a move to an enclosing folder keeps
        // the old paths under the new one, at another depth.)
        if layout::key_of(&destination.base_folder, &change.path).is_none() {
            self.discard(
                &change.destination,
                "writes to another base folder since these were routed",
            );
            return Ok(());
        }
        let prune = destination.prune;
        if change.content.is_some() {
            self.seeds.live(&change.destination, &change.path);
        }
        if self.staged.breaks_for(&change.actor) {
            // Everything before this entry is in the batch.
            self.commit(self.cursor.last_read())?;
        }
        let changed = match &change.content {
            Some(content) if sealed::unchanged(|| self.store.read(&change.path), content) => false,
            Some(content) => match self.store.write(&change.path, content.as_bytes()) {
                Ok(changed) => changed,
                // Nothing but this entry's bytes are involved.
                Err(error) => {
                    self.set_aside(&change.destination, &change.path, &error);
                    return Ok(());
                }
            },
            // `Never` keeps files even when their object is deleted.
            None if prune == Prune::Never => false,
            None => self.store.remove(&change.path),
        };
        tracing::debug!(target: CHANGES, path = change.path, changed, "applied");
        if changed {
            self.staged.stage(&change, Instant::now());
        }
        // New blobs go to disk as they come, not with the commit: a seed's
        // batch is large, and its contents need not all be in memory.
        if self.store.should_persist() {
            self.store.persist().map_err(|source| self.git(source))?;
        }
        let limits = if self.seeds.under_way(&change.destination) {
            &self.options.seed_batch
        } else {
            &self.options.batch
        };
        if self.staged.is_full(limits) {
            self.commit(self.cursor.current())?;
        }
        Ok(())
    }

    /// Drops a change routed to a destination that was removed or moved
    /// since: the operator no longer wants it written there, and the files
    /// in Git stay as they are. Said once per destination, counted always.
    fn discard(&mut self, destination: &str, why: &str) {
        self.report.discarded += 1;
        self.metrics
            .files_discarded
            .get_or_create(&self.labels)
            .inc();
        if self.discarding.insert(destination.to_owned()) {
            tracing::warn!(
                partition = %self.partition,
                destination,
                "changes for destination `{destination}`, which {why}, are discarded; its files stay as they are"
            );
        }
    }

    /// Reports, counts and skips a change the sink cannot write; it is
    /// acknowledged with the entries around it.
    fn set_aside(&mut self, destination: &str, path: &str, cause: &dyn std::error::Error) {
        let object = self
            .destination(destination)
            .and_then(|d| layout::key_of(&d.base_folder, path))
            .and_then(|key| key.identity(None))
            .map_or_else(|| path.escape_debug().to_string(), |key| key.to_string());
        tracing::error!(
            partition = %self.partition,
            destination,
            path = %path.escape_debug(),
            "object {object}: set aside, the sink cannot write it: {cause}"
        );
        self.report.set_aside += 1;
        self.metrics
            .files_rejected
            .get_or_create(&self.labels)
            .inc();
    }

    /// Ends a seed: files under the destination that no live object
    /// produced are deleted, if the seed was complete and pruning allowed.
    fn end_seed(
        &mut self,
        name: &str,
        id: u64,
        complete: bool,
        deleted_by: Option<String>,
    ) -> Result<(), SinkError> {
        self.prune(name, id, complete, deleted_by)?;
        // The seed's last changes go out now, not when their batch would
        // have filled.
        self.commit(self.cursor.current())
    }

    fn prune(
        &mut self,
        name: &str,
        id: u64,
        complete: bool,
        deleted_by: Option<String>,
    ) -> Result<(), SinkError> {
        let ended = self.seeds.end(name, id);
        let Some(destination) = self.destination(name) else {
            return Ok(());
        };
        let Some(seed) = ended else {
            // The seed began before this worker started (a restart, or a
            // configuration change that replaced its predecessor): its live
            // set is unknown, so its orphans wait for the next seed.
            tracing::info!(
                destination = name,
                "seed began before this worker started (a restart or a configuration change); orphans wait for the next seed"
            );
            return Ok(());
        };
        let orphans = match plan(&seed, destination, self.store.paths(), complete) {
            Pruning::Keep(kept) => {
                self.report.orphans_kept = kept;
                return Ok(());
            }
            Pruning::Delete(orphans) => orphans,
        };
        self.report.orphans_kept = 0;
        for path in orphans {
            let resource = path.rsplit('/').nth(1).unwrap_or_default().to_owned();
            self.apply_file(FileChange {
                destination: name.to_owned(),
                path,
                content: None,
                operation: Operation::Delete,
                actor: deleted_by.clone(),
                resource,
                replay: None,
                trace: None,
            })?;
        }
        Ok(())
    }

    fn destination(&self, name: &str) -> Option<&Folder> {
        self.destinations.iter().find(|d| d.name == name)
    }

    /// Files the branch holds under this worker's destinations.
    fn held_files(&self) -> usize {
        self.store
            .paths()
            .filter(|p| {
                self.destinations
                    .iter()
                    .any(|d| layout::key_of(&d.base_folder, p).is_some())
            })
            .count()
    }

    /// Commits what is staged: every entry through `through`.
    fn commit(&mut self, through: Position) -> Result<(), SinkError> {
        let batch = std::mem::take(&mut self.staged);
        if !self.store.has_staged() {
            return Ok(());
        }
        self.cursor.committed(through);
        let author = batch.author(&self.options.unknown_actor);
        let (template, source) = (&self.options.message_template, &self.options.source);
        let committed = self
            .store
            .commit(
                |changed| batch.message(template, source, changed),
                &author,
                &self.options.committer,
            )
            .map_err(|source| self.git(source))?;
        for (path, error) in &committed.refused {
            let destination = batch.destination_of(path).unwrap_or_default();
            self.set_aside(destination, path, error);
        }
        if self.store.should_persist() {
            self.store.persist().map_err(|source| self.git(source))?;
        }
        if let Some(id) = committed.id {
            let partition = &self.partition;
            let traces = batch.traces();
            tracing::debug!(target: CHANGES, %partition, commit = %id, ?traces, "committed");
            let u = &mut self.unpushed;
            u.commits += 1;
            for change in &committed.changed {
                if change.written {
                    u.written += 1;
                    u.bytes += batch.bytes_of(&change.path);
                } else {
                    u.deleted += 1;
                }
            }
        }
        Ok(())
    }

    /// Starts pushing the local commits, unless a push is under way (they
    /// go with the next).
    fn push_soon(&mut self) -> Result<(), SinkError> {
        self.settle(false)?;
        if self.in_flight.is_none() && self.unpushed.commits > 0 {
            self.start_push()?;
        }
        Ok(())
    }

    /// Pushes every local commit and waits until they are accepted (or the
    /// branch moved, and the worker started over on its new tip).
    fn push(&mut self) -> Result<(), SinkError> {
        loop {
            self.settle(true)?;
            if self.unpushed.commits == 0 {
                return Ok(());
            }
            self.start_push()?;
        }
    }

    fn start_push(&mut self) -> Result<(), SinkError> {
        let Some(tip) = self.store.tip() else {
            return Ok(());
        };
        self.fenced()?;
        self.store.persist().map_err(|source| self.git(source))?;
        let totals = std::mem::take(&mut self.unpushed);
        match InFlight::start(&self.remote, tip, self.cursor.done(), totals) {
            Ok(push) => {
                self.in_flight = Some(push);
                Ok(())
            }
            Err(error) => {
                self.unpushed = totals;
                self.failed(error)
            }
        }
    }

    /// Takes the outcome of the push under way if it is over (with
    /// `wait`, once it is): an accepted push acknowledges everything in
    /// its commits.
    fn settle(&mut self, wait: bool) -> Result<(), SinkError> {
        let Some(push) = self.in_flight.take_if(|p| wait || p.is_over()) else {
            return Ok(());
        };
        let (through, totals, started) = (push.through, push.totals, push.started);
        let tip = push.tip;
        match push.finish() {
            Ok(Push::Accepted) => {
                let partition = &self.partition;
                tracing::debug!(target: CHANGES, %partition, commit = %tip, "pushed");
                self.metrics
                    .push_seconds
                    .0
                    .get_or_create(&self.labels)
                    .observe(started.elapsed().as_secs_f64());
                if self.store.packs() > MAX_PACKS {
                    self.remote.repack().map_err(|source| self.git(source))?;
                }
                self.retry.pushed();
                self.pushed(totals);
                self.cursor.ack(through)?;
                self.record_depth();
                Ok(())
            }
            Ok(Push::Rejected) => self.rejected(),
            Err(error) => {
                // Its commits go with the next push.
                self.unpushed.add(totals);
                self.failed(error)
            }
        }
    }

    /// Another writer moved the branch: start over on its new tip, with
    /// the entries not acknowledged (seeds restart with them).
    fn rejected(&mut self) -> Result<(), SinkError> {
        self.report.push_retries += 1;
        self.metrics.push_retries.get_or_create(&self.labels).inc();
        // A remote that was never reached still has a backlog to show.
        self.record_depth();
        match self.retry.rejected(Instant::now()) {
            Replay::GiveUp(attempts) => Err(SinkError::Rejected {
                destination: names(&self.destinations),
                attempts,
            }),
            Replay::OnNewTip => {
                tracing::info!(partition = %self.partition, "push rejected: the branch moved; replaying on its new tip");
                self.start_over()
            }
        }
    }

    fn pushed(&mut self, u: Totals) {
        let commits = u.commits;
        self.report.written += u.written;
        self.report.deleted += u.deleted;
        self.report.bytes += u.bytes as u64;
        self.report.commits += commits;
        let m = &self.metrics;
        m.files_written
            .get_or_create(&self.labels)
            .inc_by(u.written as u64);
        m.files_deleted
            .get_or_create(&self.labels)
            .inc_by(u.deleted as u64);
        m.commits.get_or_create(&self.labels).inc_by(commits as u64);
        m.commit_bytes
            .get_or_create(&self.labels)
            .inc_by(u.bytes as u64);
        tracing::info!(partition = %self.partition, commits, written = u.written, deleted = u.deleted, "pushed");
    }
}

fn names(destinations: &[Folder]) -> String {
    destinations
        .iter()
        .map(|d| d.name.as_str())
        .collect::<Vec<_>>()
        .join(", ")
}

#[cfg(test)]
mod tests;
