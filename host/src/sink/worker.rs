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
use super::remote::{GitError, Push, Remote};
use super::seeds::Seeds;
use super::store::{Change, Person, Store};
use crate::layout;
use crate::model::Operation;
use crate::model::Prune;
use crate::queue::{Claim, Entry, FileChange, Partition, Position, Queue, QueueError};
use crate::telemetry::health::Status;
use crate::telemetry::{Health, Metrics, RepoLabels};
use std::collections::{BTreeSet, HashMap};
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

/// When a commit is full.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BatchLimits {
    /// Most files changed by one commit.
    pub files: usize,
    /// Most bytes written by one commit.
    pub bytes: usize,
    /// Longest a change waits for its batch to fill.
    pub wait: Duration,
}

impl Default for BatchLimits {
    fn default() -> Self {
        BatchLimits {
            files: 200,
            bytes: 1 << 20,
            wait: Duration::from_secs(20),
        }
    }
}

/// How a worker behaves.
#[derive(Debug, Clone)]
pub struct SinkOptions {
    /// Batch sizes.
    pub batch: BatchLimits,
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
}

impl SinkOptions {
    /// Defaults for a source described by `source`.
    pub fn new(source: impl Into<String>) -> SinkOptions {
        SinkOptions {
            batch: BatchLimits::default(),
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
        }
    }
}

/// How long a worker told to finish retries a remote that fails before it
/// gives up; what it could not push stays in the queue.
pub const FINISH_RETRY: Duration = Duration::from_secs(30);

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
#[derive(Debug, Clone, Default)]
pub struct Signals {
    /// Finish: push everything queued, then return (a run `--once`, when
    /// the source was read).
    pub finish: Arc<AtomicBool>,
    /// Stop at the next step: what is not pushed stays in the queue, for
    /// the next worker of the partition (its destinations changed).
    pub stop: Arc<AtomicBool>,
}

/// Why a worker stopped.
#[derive(Debug, thiserror::Error)]
pub enum SinkError {
    /// It was told to stop ([`Signals::stop`]).
    #[error("stopped")]
    Stopped,
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

/// Changes staged for the next commit.
#[derive(Debug, Default)]
struct Batch {
    /// Changes staged (a file changed twice counts twice), for the limits.
    files: usize,
    bytes: usize,
    author: Option<Option<String>>,
    started: Option<Instant>,
    /// The last change staged per path: what the commit message says of
    /// the files that did change.
    changes: HashMap<String, Staged>,
}

/// What the commit message needs of a staged change.
#[derive(Debug)]
struct Staged {
    operation: &'static str,
    resource: String,
    destination: String,
    bytes: usize,
}

/// Files changed by local commits not pushed yet.
#[derive(Debug, Default)]
struct Totals {
    written: usize,
    deleted: usize,
    bytes: usize,
}

/// The sink of one partition.
pub struct Worker {
    partition: Partition,
    destinations: Vec<Folder>,
    queue: Arc<dyn Queue>,
    remote: Remote,
    store: Store,
    options: SinkOptions,
    metrics: Arc<Metrics>,
    health: Arc<Health>,
    labels: RepoLabels,
    /// Held while the worker runs: no other consumer writes the branch.
    _claim: Claim,
    /// The last entry read.
    cursor: Position,
    /// The entry being applied.
    reading: Position,
    /// Every entry up to this one is in a local commit or changed nothing.
    done_through: Position,
    staged: Batch,
    /// Committed locally, not pushed.
    unpushed: Totals,
    unpushed_commits: usize,
    seeds: Seeds,
    signals: Signals,
    /// Destinations no longer configured whose entries were discarded.
    discarding: BTreeSet<String>,
    /// Whether the worker was told to finish: a remote that keeps failing
    /// then costs at most [`FINISH_RETRY`].
    finishing: bool,
    report: SyncReport,
    /// When the remote started failing, if it is failing.
    failing_since: Option<Instant>,
    /// When pushes started being rejected, if they are.
    rejected_since: Option<Instant>,
    rejections: u32,
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
        let remote = Remote::new(&partition.repo, &partition.branch, gitdir).map_err(git)?;
        let store = Store::open(gitdir).map_err(git)?;
        let labels = RepoLabels::new(&partition.repo, &partition.branch);
        Ok(Worker {
            partition,
            destinations,
            queue,
            remote,
            store,
            options,
            metrics,
            health,
            labels,
            _claim: claim,
            cursor: Position::START,
            reading: Position::START,
            done_through: Position::START,
            staged: Batch::default(),
            unpushed: Totals::default(),
            unpushed_commits: 0,
            seeds: Seeds::default(),
            signals: Signals::default(),
            discarding: BTreeSet::new(),
            finishing: false,
            report: SyncReport::default(),
            failing_since: None,
            rejected_since: None,
            rejections: 0,
        })
    }

    fn part(&self) -> String {
        format!("sink {}", self.partition)
    }

    /// Runs until [`Signals::finish`] is set and every entry is pushed,
    /// or [`Signals::stop`] is set, or for ever.
    pub fn run(&mut self, signals: &Signals) -> Result<SyncReport, SinkError> {
        self.signals = signals.clone();
        self.health
            .set(&self.part(), Status::NotReady("starting".into()));
        self.start_over()?;
        loop {
            self.check_stop()?;
            // Read first, then check: `finish` is set after the last
            // append, so an empty read after seeing it means the end.
            let done = signals.finish.load(Ordering::Acquire);
            self.finishing |= done;
            let wait = match self.staged.started {
                Some(started) => self.options.batch.wait.saturating_sub(started.elapsed()),
                None if done => Duration::ZERO,
                None => Duration::from_millis(500),
            };
            let entries = self.queue.read(
                &self.partition,
                self.cursor,
                self.options.batch.files,
                wait.min(Duration::from_millis(500)),
            )?;
            self.record_depth();
            if entries.is_empty() {
                let due = self
                    .staged
                    .started
                    .is_some_and(|s| s.elapsed() >= self.options.batch.wait);
                if due || done {
                    self.commit(self.cursor)?;
                }
                if self.unpushed_commits > 0 {
                    self.push()?;
                } else if self.staged.files == 0 {
                    self.caught_up()?;
                    if done {
                        self.report.files = self.held_files();
                        return Ok(self.report.clone());
                    }
                }
                continue;
            }
            for (seq, entry) in entries {
                self.reading = seq;
                self.apply(entry)?;
                self.cursor = seq;
                if self.staged.files == 0 {
                    self.done_through = seq;
                }
            }
            if self.unpushed_commits >= self.options.push_every {
                self.push()?;
            }
        }
    }

    /// Acknowledges every entry through `through`.
    fn ack(&self, through: Position) -> Result<(), SinkError> {
        if self.queue.acked(&self.partition)? < through {
            self.queue.ack(&self.partition, through)?;
        }
        self.record_depth();
        Ok(())
    }

    fn record_depth(&self) {
        self.metrics
            .queue_depth
            .get_or_create(&self.labels)
            .set(self.queue.depth(&self.partition) as i64);
    }

    /// Nothing waits: everything read is pushed (or changed nothing).
    fn caught_up(&mut self) -> Result<(), SinkError> {
        self.ack(self.cursor)?;
        self.health.set(&self.part(), Status::Ready);
        Ok(())
    }

    /// Fetches the remote's tip (retrying while it fails) and reads again
    /// from the first entry not acknowledged.
    fn start_over(&mut self) -> Result<(), SinkError> {
        let mut backoff = Duration::from_millis(250);
        let tip = loop {
            match self.remote.fetch() {
                Ok(tip) => {
                    self.failing_since = None;
                    break tip;
                }
                Err(error) => {
                    self.failed(error, backoff)?;
                    backoff = (backoff * 2).min(Duration::from_secs(10));
                }
            }
        };
        self.store.reset(tip).map_err(|source| self.git(source))?;
        self.cursor = self.queue.acked(&self.partition)?;
        self.done_through = self.cursor;
        self.staged = Batch::default();
        self.unpushed = Totals::default();
        self.unpushed_commits = 0;
        Ok(())
    }

    /// Records a failure of the remote; an error once it has failed for
    /// longer than the retry budget, else waits `backoff`.
    fn failed(&mut self, error: GitError, backoff: Duration) -> Result<(), SinkError> {
        let since = *self.failing_since.get_or_insert_with(Instant::now);
        self.report.push_retries += 1;
        self.metrics.push_retries.get_or_create(&self.labels).inc();
        self.health
            .set(&self.part(), Status::NotReady(format!("{error}")));
        if self
            .budget()
            .is_some_and(|budget| since.elapsed() >= budget)
        {
            return Err(self.git(error));
        }
        tracing::warn!(partition = %self.partition, %error, retry_in = ?backoff, "git failed; retrying");
        self.pause(backoff)
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

    fn check_stop(&self) -> Result<(), SinkError> {
        if self.signals.stop.load(Ordering::Acquire) {
            Err(SinkError::Stopped)
        } else {
            Ok(())
        }
    }

    /// How long the remote may keep failing: the configured budget; with
    /// none (following), [`FINISH_RETRY`] once told to finish, so that a
    /// destination removed while its remote is down does not hold its
    /// worker for ever.
    fn budget(&self) -> Option<Duration> {
        self.options
            .retry_for
            .or(self.finishing.then_some(FINISH_RETRY))
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
        let Some(destination) = self.destination(&change.destination) else {
            self.discard(&change.destination);
            return Ok(());
        };
        // Routing refuses such paths now; the queue may still hold some
        // from before, and they must not stop everything behind them.
        if let Err(error) = layout::check_path(&change.path) {
            self.set_aside(&change.destination, &change.path, &error);
            return Ok(());
        }
        let prune = destination.prune;
        if change.content.is_some() {
            self.seeds.live(&change.destination, &change.path);
        }
        if self
            .staged
            .author
            .as_ref()
            .is_some_and(|a| *a != change.actor)
        {
            // Everything before this entry is in the batch.
            self.commit(self.cursor)?;
        }
        let changed = match &change.content {
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
        if changed {
            self.stage(&change);
        }
        if self.staged.files >= self.options.batch.files
            || self.staged.bytes >= self.options.batch.bytes
        {
            self.commit(self.reading)?;
        }
        Ok(())
    }

    fn stage(&mut self, change: &FileChange) {
        let batch = &mut self.staged;
        batch.started.get_or_insert_with(Instant::now);
        batch.author = Some(change.actor.clone());
        batch.files += 1;
        let bytes = change.content.as_ref().map_or(0, String::len);
        batch.bytes += bytes;
        let staged = Staged {
            operation: match change.operation {
                Operation::Create => "create",
                Operation::Update => "update",
                Operation::Delete => "delete",
            },
            resource: change.resource.clone(),
            destination: change.destination.clone(),
            bytes,
        };
        batch.changes.insert(change.path.clone(), staged);
    }

    /// Drops a change routed to a destination that was removed since: the
    /// operator no longer wants it written, and its files in Git stay as
    /// they are. Said once per destination, counted always.
    fn discard(&mut self, destination: &str) {
        self.report.discarded += 1;
        if self.discarding.insert(destination.to_owned()) {
            tracing::warn!(
                partition = %self.partition,
                destination,
                "changes for destination `{destination}`, which is no longer configured, are discarded; its files stay as they are"
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
        self.commit(self.reading)
    }

    fn prune(
        &mut self,
        name: &str,
        id: u64,
        complete: bool,
        deleted_by: Option<String>,
    ) -> Result<(), SinkError> {
        let ended = self.seeds.end(name, id);
        let Some(destination) = self.destination(name).cloned() else {
            return Ok(());
        };
        let Some(seed) = ended else {
            // The seed began before a restart: its live set is unknown, so
            // its orphans wait for the next seed.
            tracing::info!(
                destination = name,
                "seed began before a restart; orphans wait for the next seed"
            );
            return Ok(());
        };
        let base = &destination.base_folder;
        let mut orphans: Vec<String> = self
            .store
            .paths()
            .filter(|p| layout::key_of(base, p).is_some_and(|key| seed.is_orphan(p, &key)))
            .map(str::to_owned)
            .collect();
        orphans.sort_unstable();
        if !complete || destination.prune != Prune::Always {
            self.report.orphans_kept = orphans.len();
            return Ok(());
        }
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
        self.done_through = through;
        let author = match batch.author.clone().flatten() {
            Some(actor) => person_of(&actor),
            None => self.options.unknown_actor.clone(),
        };
        let (template, source) = (&self.options.message_template, &self.options.source);
        let committed = self
            .store
            .commit(
                |changed| message(template, source, &batch, changed),
                &author,
                &self.options.committer,
            )
            .map_err(|source| self.git(source))?;
        for (path, error) in &committed.refused {
            let destination = batch
                .changes
                .get(path)
                .map_or("", |s| s.destination.as_str());
            self.set_aside(destination, path, error);
        }
        if self.store.should_persist() {
            self.store.persist().map_err(|source| self.git(source))?;
        }
        if committed.id.is_some() {
            self.unpushed_commits += 1;
            let u = &mut self.unpushed;
            for change in &committed.changed {
                if change.written {
                    u.written += 1;
                    u.bytes += batch.changes.get(&change.path).map_or(0, |s| s.bytes);
                } else {
                    u.deleted += 1;
                }
            }
        }
        Ok(())
    }

    /// Pushes the local commits; on success acknowledges everything read.
    fn push(&mut self) -> Result<(), SinkError> {
        let Some(tip) = self.store.tip() else {
            return Ok(());
        };
        self.store.persist().map_err(|source| self.git(source))?;
        let mut backoff = Duration::from_millis(250);
        loop {
            match self.remote.push(tip) {
                Ok(Push::Accepted) => {
                    if self.store.packs() > MAX_PACKS {
                        self.remote.repack().map_err(|source| self.git(source))?;
                    }
                    self.failing_since = None;
                    self.rejected_since = None;
                    self.rejections = 0;
                    self.pushed();
                    return self.ack(self.done_through);
                }
                Ok(Push::Rejected) => {
                    self.rejections += 1;
                    self.report.push_retries += 1;
                    self.metrics.push_retries.get_or_create(&self.labels).inc();
                    let since = *self.rejected_since.get_or_insert_with(Instant::now);
                    if self
                        .budget()
                        .is_some_and(|budget| since.elapsed() >= budget)
                    {
                        return Err(SinkError::Rejected {
                            destination: names(&self.destinations),
                            attempts: self.rejections,
                        });
                    }
                    tracing::info!(partition = %self.partition, "push rejected: the branch moved; replaying on its new tip");
                    // Seeds restart with their entries.
                    return self.start_over();
                }
                Err(error) => {
                    self.failed(error, backoff)?;
                    backoff = (backoff * 2).min(Duration::from_secs(10));
                }
            }
        }
    }

    fn pushed(&mut self) {
        let u = std::mem::take(&mut self.unpushed);
        let commits = std::mem::take(&mut self.unpushed_commits);
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

/// The commit message of the files `changed`: the subject from `template`,
/// then the trailers. Only files that changed are counted and named.
fn message(template: &str, source: &str, batch: &Batch, changed: &[Change]) -> String {
    let staged: Vec<&Staged> = changed
        .iter()
        .filter_map(|c| batch.changes.get(&c.path))
        .collect();
    let operations: BTreeSet<&str> = staged.iter().map(|s| s.operation).collect();
    let operation = match operations.len() {
        1 => operations.first().copied().unwrap_or("sync"),
        _ => "sync",
    };
    let joined = |set: BTreeSet<&str>| set.into_iter().collect::<Vec<_>>().join(", ");
    let resources = joined(staged.iter().map(|s| s.resource.as_str()).collect());
    let destinations = joined(staged.iter().map(|s| s.destination.as_str()).collect());
    let subject = template
        .replace("{operation}", operation)
        .replace("{count}", &changed.len().to_string())
        .replace("{destination}", &destinations)
        .replace("{resources}", &resources);
    format!(
        "{subject}\n\nPlumbline-Operation: {}\nPlumbline-Resources: {resources}\nPlumbline-Destination: {destinations}\nPlumbline-Source: {source}\n",
        joined(operations),
    )
}

fn names(destinations: &[Folder]) -> String {
    destinations
        .iter()
        .map(|d| d.name.as_str())
        .collect::<Vec<_>>()
        .join(", ")
}

/// The Git identity of a Kubernetes user name.
fn person_of(actor: &str) -> Person {
    Person {
        name: actor.to_owned(),
        email: format!(
            "{}@users.plumbline.invalid",
            actor.replace(
                |c: char| !c.is_ascii_alphanumeric() && c != '.' && c != '-',
                "_"
            )
        ),
    }
}
