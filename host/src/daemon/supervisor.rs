//! The sink workers: one thread per (repository, branch) the destinations
//! write to, started and stopped as destinations come and go.
//!
//! A worker whose partition loses or gains a destination (or whose
//! destination's folder, prune mode or repository's commit settings
//! change) is stopped and a new one
//! started; what the old one had not pushed is still in the queue, and the
//! new one reads it. An entry for a destination that is gone is discarded
//! on purpose by the worker (counted, said once). A partition no
//! destination writes to any more keeps its unpushed entries in the queue
//! until one does again.

use super::DaemonError;
use super::share::Share;
use crate::mirror::MirrorConfig;
use crate::mirror::config::CommitSpec;
use crate::queue::{Partition, Queue, QueueError};
use crate::sink::Folder;
use crate::sink::store::Person;
use crate::sink::worker::{Signals, SinkError, SinkOptions, SyncReport, Worker};
use crate::telemetry::{Health, Metrics};
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::Duration;

/// What every worker shares.
pub struct WorkerContext {
    /// The queue they read.
    pub queue: Arc<dyn Queue>,
    /// How they batch and retry.
    pub options: SinkOptions,
    /// What they count.
    pub metrics: Arc<Metrics>,
    /// Where they say whether they are ready.
    pub health: Arc<Health>,
    /// Where their local repositories are.
    pub state: PathBuf,
    /// Whether a worker that fails starts over (following) or the run
    /// fails (`once`).
    pub follow: bool,
    /// Set when every worker is to push what is queued and end.
    pub finish: Arc<AtomicBool>,
    /// Whether finishing hands each partition over (pushes what is staged
    /// and gives it up) rather than pushing everything queued: other
    /// replicas share the queue.
    pub hand_over: bool,
}

/// Why a worker ended without a report.
#[derive(Debug, thiserror::Error)]
pub enum WorkerFailed {
    /// The sink failed (a remote that kept failing, the queue).
    #[error("the sink of {partition} failed")]
    Sink {
        /// The partition.
        partition: String,
        /// Why.
        #[source]
        source: SinkError,
    },
    /// The worker panicked.
    #[error("the sink worker of {partition} panicked: {message}")]
    Panicked {
        /// The partition.
        partition: String,
        /// The panic's message.
        message: String,
    },
}

/// What a partition's worker writes and how it commits, as the
/// configuration says: a change of either restarts the worker.
#[derive(Debug, Clone, PartialEq)]
struct Plan {
    folders: Vec<Folder>,
    /// The first destination's repository settings (destinations of one
    /// partition share its repository).
    commit: CommitSpec,
    /// And its credentials.
    credentials: Option<Arc<crate::model::auth::GitAuth>>,
    /// And its signing key, if it has one of its own.
    signing: Option<Arc<crate::signing::Signer>>,
}

/// A worker running.
struct Running {
    plan: Plan,
    stop: Arc<AtomicBool>,
    thread: JoinHandle<Result<SyncReport, SinkError>>,
}

/// The workers.
pub struct Supervisor {
    context: WorkerContext,
    running: BTreeMap<Partition, Running>,
    share: Arc<Share>,
}

impl Supervisor {
    /// No workers yet.
    pub fn new(context: WorkerContext) -> Supervisor {
        let share = Arc::new(Share::new(context.queue.clone()));
        Supervisor {
            context,
            running: BTreeMap::new(),
            share,
        }
    }

    /// The partitions with a worker.
    pub fn partitions(&self) -> Vec<Partition> {
        self.running.keys().cloned().collect()
    }

    /// How many entries wait in `partition`.
    pub fn depth(&self, partition: &Partition) -> u64 {
        self.context.queue.depth(partition)
    }

    /// Stops (and waits for) every worker whose partition `config` writes
    /// to with other destinations: it would take a new destination's
    /// entries for strays. What it had not pushed stays queued.
    pub fn retire_changed(&mut self, config: &MirrorConfig) {
        let wanted = partitions(config);
        self.retire_if(|partition, plan| wanted.get(partition).is_some_and(|now| now != plan));
    }

    /// Stops (and waits for) every worker whose partition `config` does not
    /// write to. Call it after the router routes by `config`: until then,
    /// an append to the partition may be waiting for room that only its
    /// worker makes.
    pub fn retire_removed(&mut self, config: &MirrorConfig) {
        let wanted = partitions(config);
        for partition in self.retire_if(|partition, _| !wanted.contains_key(partition)) {
            let waiting = self.context.queue.depth(&partition);
            tracing::info!(
                %partition,
                waiting,
                "no destination writes to {partition} any more: its worker stopped; entries not pushed stay queued until one does"
            );
        }
    }

    /// Stops the workers `stale` picks; returns their partitions.
    fn retire_if(&mut self, stale: impl Fn(&Partition, &Plan) -> bool) -> Vec<Partition> {
        let stale: Vec<Partition> = self
            .running
            .iter()
            .filter(|(partition, running)| stale(partition, &running.plan))
            .map(|(partition, _)| partition.clone())
            .collect();
        for partition in &stale {
            let Some(running) = self.running.remove(partition) else {
                continue;
            };
            running.stop.store(true, Ordering::Release);
            if let Err(error) = ended(partition, running.thread.join()) {
                tracing::warn!("{}", crate::telemetry::chain(&error));
            }
            self.context.health.forget(&format!("sink {partition}"));
        }
        self.share.set_partitions(self.running.len());
        stale
    }

    /// Starts a worker for every partition `config` writes to that has
    /// none.
    pub fn start(&mut self, config: &MirrorConfig) -> Result<(), DaemonError> {
        let wanted = partitions(config);
        let all = wanted.len()
            + self
                .running
                .keys()
                .filter(|p| !wanted.contains_key(p))
                .count();
        self.share.set_partitions(all);
        for (partition, plan) in wanted {
            if self.running.contains_key(&partition) {
                continue;
            }
            let stop = Arc::new(AtomicBool::new(false));
            let thread = self.spawn(&partition, &plan, &stop)?;
            self.running
                .insert(partition, Running { plan, stop, thread });
        }
        Ok(())
    }

    /// Tells every worker to push what is queued and end; waits for them.
    pub fn finish(&mut self) -> Vec<(Partition, Result<SyncReport, WorkerFailed>)> {
        self.context.finish.store(true, Ordering::Release);
        std::mem::take(&mut self.running)
            .into_iter()
            .map(|(partition, running)| {
                let ended = ended(&partition, running.thread.join());
                (partition, ended)
            })
            .collect()
    }

    /// Stops every worker now; what is not pushed stays queued.
    pub fn stop(&mut self) {
        for running in self.running.values() {
            running.stop.store(true, Ordering::Release);
        }
        for (partition, running) in std::mem::take(&mut self.running) {
            if let Err(error) = ended(&partition, running.thread.join()) {
                tracing::warn!("{}", crate::telemetry::chain(&error));
            }
        }
    }

    fn spawn(
        &self,
        partition: &Partition,
        plan: &Plan,
        stop: &Arc<AtomicBool>,
    ) -> Result<JoinHandle<Result<SyncReport, SinkError>>, DaemonError> {
        let context = &self.context;
        let mut options = committing(context.options.clone(), &plan.commit);
        options.credentials = plan.credentials.clone();
        if let Some(signing) = &plan.signing {
            options.signing = Some(signing.clone());
        }
        let share = self.share.clone();
        let gave = Arc::new(AtomicBool::new(false));
        let gave_place = gave.clone();
        let tended = Tended {
            partition: partition.clone(),
            folders: plan.folders.clone(),
            queue: context.queue.clone(),
            gitdir: context.state.join(repo_folder(partition)),
            options,
            metrics: context.metrics.clone(),
            health: context.health.clone(),
            follow: context.follow,
            signals: Signals {
                finish: context.finish.clone(),
                stop: stop.clone(),
                hand_over: context.hand_over,
                give_up: Some(Arc::new(move || {
                    let over = share.over();
                    gave_place.fetch_or(over, Ordering::AcqRel);
                    over
                })),
            },
            share: self.share.clone(),
            gave,
        };
        std::thread::Builder::new()
            .name(format!("sink {}", partition.branch))
            .spawn(move || tended.run())
            .map_err(|source| DaemonError::Spawn {
                partition: partition.to_string(),
                source,
            })
    }
}

/// One partition, tended by its thread: a worker while this replica holds
/// the partition, started over when it fails.
struct Tended {
    partition: Partition,
    folders: Vec<Folder>,
    queue: Arc<dyn Queue>,
    gitdir: PathBuf,
    options: SinkOptions,
    metrics: Arc<Metrics>,
    health: Arc<Health>,
    follow: bool,
    signals: Signals,
    share: Arc<Share>,
    /// Set when the worker's place went back to the share as it was asked
    /// to give its partition up: it is not given back twice, whatever
    /// the worker then ended with.
    gave: Arc<AtomicBool>,
}

/// How often a partition another replica writes is looked at again.
const LOOK_AGAIN: Duration = Duration::from_secs(1);

impl Tended {
    fn run(self) -> Result<SyncReport, SinkError> {
        let signals = &self.signals;
        let mut told = false;
        loop {
            if !self.share.take() {
                // The share is full: another replica writes this one.
                if self.ending() || self.pause(LOOK_AGAIN) {
                    return Ok(SyncReport::default());
                }
                continue;
            }
            let result = Worker::new(
                self.partition.clone(),
                self.folders.clone(),
                self.queue.clone(),
                &self.gitdir,
                self.options.clone(),
                self.metrics.clone(),
                self.health.clone(),
            )
            .and_then(|mut worker| worker.run(signals));
            // The worker and its claim are gone: so is its place (one
            // asked to give its partition up gave the place back already,
            // even if pushing what it held then failed).
            if !self.gave.swap(false, Ordering::AcqRel) {
                self.share.give_back();
            }
            let wait = match result {
                // Finishing: handed over to the other replicas.
                Err(SinkError::GaveUp { .. }) if self.ending() => {
                    return Ok(SyncReport::default());
                }
                Err(SinkError::GaveUp { partition }) => {
                    // Its place is given back already. Long enough for
                    // the replica short of partitions to take it first.
                    tracing::info!(%partition, "gave {partition} up to a replica with fewer");
                    3 * LOOK_AGAIN
                }
                Err(SinkError::Queue(error @ QueueError::Claimed { .. })) => {
                    if !std::mem::replace(&mut told, true) {
                        tracing::info!("{error}: this replica takes it if that one goes");
                    }
                    if self.ending() {
                        return Ok(SyncReport::default());
                    }
                    LOOK_AGAIN
                }
                // Stopping with NATS out of reach: what it did not push
                // or acknowledge stays queued for the next holder, who
                // finds pushed files as they are.
                Err(error) if self.out_of_reach_at_the_end(&error) => {
                    let error = crate::telemetry::chain(&error);
                    eprintln!(
                        "warning: {}: {error}; the replica that takes it next reads again what was not acknowledged",
                        self.partition
                    );
                    return Ok(SyncReport::default());
                }
                Err(error @ SinkError::ClaimLapsed { .. }) => {
                    eprintln!(
                        "warning: {error}: it pushed nothing since, and claims it again if free"
                    );
                    LOOK_AGAIN
                }
                Err(SinkError::Stopped) => return Ok(SyncReport::default()),
                // Following, a worker that fails starts over: what it had
                // not pushed is still in the queue.
                Err(error) if self.follow && !self.ending() => {
                    let error = WorkerFailed::Sink {
                        partition: self.partition.to_string(),
                        source: error,
                    };
                    let error = crate::telemetry::chain(&error);
                    eprintln!("error: {error}; starting over in 5 s");
                    Duration::from_secs(5)
                }
                other => return other,
            };
            if self.pause(wait) {
                return Ok(SyncReport::default());
            }
        }
    }

    /// The daemon is finishing: a partition not held now is another's.
    fn ending(&self) -> bool {
        self.signals.finish.load(Ordering::Acquire)
    }

    /// Whether `error` ended a worker that was handing its partition
    /// over, or stopping, because NATS is out of reach.
    fn out_of_reach_at_the_end(&self, error: &SinkError) -> bool {
        let handing_over = self.ending() && self.signals.hand_over;
        match error {
            SinkError::Queue(QueueError::Abandoned { .. }) => true,
            SinkError::ClaimLapsed { .. } | SinkError::Queue(_) => handing_over,
            _ => false,
        }
    }

    /// Waits `length` between workers; whether to end instead: told to
    /// stop, or to finish by handing over (holding nothing now, there is
    /// nothing to push first).
    fn pause(&self, length: Duration) -> bool {
        let over = || {
            self.signals.stop.load(Ordering::Acquire) || (self.ending() && self.signals.hand_over)
        };
        let step = Duration::from_millis(100);
        let mut waited = Duration::ZERO;
        while waited < length {
            if over() {
                return true;
            }
            std::thread::sleep(step);
            waited += step;
        }
        over()
    }
}

/// How a worker's thread ended, as its report or why there is none.
fn ended(
    partition: &Partition,
    joined: std::thread::Result<Result<SyncReport, SinkError>>,
) -> Result<SyncReport, WorkerFailed> {
    match joined {
        Ok(Ok(report)) => Ok(report),
        Ok(Err(source)) => Err(WorkerFailed::Sink {
            partition: partition.to_string(),
            source,
        }),
        Err(panic) => Err(WorkerFailed::Panicked {
            partition: partition.to_string(),
            message: crate::mirror::pipeline::panic_message(&*panic),
        }),
    }
}

/// The daemon's options with a repository's own commit settings.
fn committing(mut options: SinkOptions, commit: &CommitSpec) -> SinkOptions {
    let person = |i: &plumbline_crd::mirror::Identity| Person {
        name: i.name.clone(),
        email: i.email.clone(),
    };
    if let Some(committer) = &commit.committer {
        options.committer = person(committer);
    }
    if let Some(unknown) = &commit.unknown_author {
        options.unknown_actor = person(unknown);
    }
    if let Some(message) = &commit.message {
        options.message_template = message.clone();
    }
    options
}

/// What each partition's worker writes, as `config` says.
fn partitions(config: &MirrorConfig) -> BTreeMap<Partition, Plan> {
    let mut partitions: BTreeMap<Partition, Plan> = BTreeMap::new();
    for destination in &config.destinations {
        partitions
            .entry(destination.partition())
            .or_insert_with(|| Plan {
                folders: Vec::new(),
                commit: destination.commit.clone(),
                credentials: destination.credentials.clone(),
                signing: destination.signing.clone(),
            })
            .folders
            .push(Folder {
                name: destination.name.clone(),
                base_folder: destination.base_folder.clone(),
                prune: destination.prune,
            });
    }
    partitions
}

/// A folder name for a partition's repository.
pub fn repo_folder(partition: &Partition) -> String {
    format!("repo-{}", partition.token())
}
