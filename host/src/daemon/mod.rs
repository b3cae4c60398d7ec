//! The daemon: a source, the router, the durable queue and one sink worker
//! per (repository, branch), wired together and kept running.
//!
//! [`Daemon::start`] takes over the one async [`runtime`], opens the
//! queue, serves HTTP (merging the routes each stage contributes), starts
//! the workers and the policy reload; [`Daemon::run`] seeds from a [`Source`] and then
//! follows it (or, `once`, waits for every worker to push what the seed
//! produced). While it runs, a [`Handle`] changes the destinations and
//! rules ([`Handle::set_config`]): the supervisor starts and stops workers
//! to match, and the source lists everything again, so that Git shows
//! what the new rules select. A new policy set does the same.
//!
//! - [`supervisor`]: the sink workers, started and stopped as
//!   destinations come and go.
//!
//! The policies serve through the bundle stage's [`Serving`] handle: the
//! bundles' follower swaps a new set in, and the daemon, subscribed to it,
//! rebuilds the router's pipeline and lists everything again.

mod lead;
mod share;
pub mod supervisor;

use crate::api::ServerLimits;
use crate::bundle::follow::Follow;
use crate::bundle::{PolicyLoader, Serving};
use crate::ingest::source::{Context, SeedReport, Source, SourceError};
use crate::mirror::{Control, MirrorConfig, MirrorError, Pipeline, Router, SeedScope};
use crate::queue::jetstream::JetStreamQueue;
use crate::queue::{Partition, Queue, QueueError, disk::DiskQueue};
use crate::sink::worker::{SinkOptions, SyncReport};
use crate::telemetry::health::Status;
use crate::telemetry::{Health, Metrics, Notices};
use prometheus_client::registry::Registry;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, PoisonError};
use supervisor::{Supervisor, WorkerContext, WorkerFailed};
use tokio::runtime::Runtime;

/// Everything the daemon is made from.
pub struct Setup {
    /// The one async runtime ([`runtime`]): HTTP, the registry client,
    /// and the Kubernetes client and NATS next. The daemon owns it from
    /// now on; build it first, so that what is loaded before the start
    /// (the policies' registry client) runs on it too.
    pub runtime: Runtime,
    /// Routes other stages add to the one HTTP server, beside telemetry's
    /// `/healthz`, `/readyz` and `/metrics` (empty for the mirror alone).
    pub routes: axum::Router,
    /// The policies serving, which a followed bundle swaps; every user of
    /// a decision reads them from this one handle.
    pub policies: Serving,
    /// Policy bundles to follow (none when the policies name no bundle).
    pub bundles: Option<Bundles>,
    /// The destinations and rules to start with.
    pub config: MirrorConfig,
    /// The state folder: the queue and the local repositories.
    pub state: PathBuf,
    /// Most entries waiting per partition.
    pub queue_capacity: u64,
    /// Keep the queue and the partition claims on NATS JetStream, shared
    /// with other replicas, instead of in the state folder.
    pub nats: Option<crate::nats::Settings>,
    /// How the sink workers batch, commit and retry.
    pub sink: SinkOptions,
    /// Where to serve HTTP, if anywhere.
    pub listen: Option<(SocketAddr, ServerLimits)>,
    /// TLS for every connection of the HTTP server, if any.
    pub tls: Option<crate::api::tls::ServerTls>,
    /// Seed, push everything, and stop, instead of following.
    pub once: bool,
    /// Metrics other stages export (the webhooks' attribution counters),
    /// registered beside the daemon's own.
    pub export: Vec<Export>,
}

/// Registers a stage's metrics in the daemon's registry.
pub type Export = Box<dyn FnOnce(&mut Registry) + Send>;

/// Policy bundles, followed while the daemon runs.
pub struct Bundles {
    /// Resolves their tags again and builds new sets.
    pub loader: PolicyLoader,
    /// Bundles loaded from the store because the registry did not answer.
    pub offline: Vec<String>,
}

/// Why the daemon could not start or went on no further.
#[derive(Debug, thiserror::Error)]
pub enum DaemonError {
    /// The match chain cannot read the watch rules.
    #[error("the policies cannot read the watch rules")]
    Rules(#[source] MirrorError),
    /// The queue could not be opened.
    #[error("opening the queue in {path}")]
    Queue {
        /// The state folder.
        path: String,
        /// Why.
        #[source]
        source: QueueError,
    },
    /// The HTTP server could not start.
    #[error("serving HTTP on {address}")]
    Http {
        /// The address asked for.
        address: SocketAddr,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// A sink worker could not be started.
    #[error("starting the sink worker of {partition}")]
    Spawn {
        /// The partition.
        partition: String,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// The source stopped on an error.
    #[error(transparent)]
    Source(#[from] SourceError),
    /// The queue could not say who reads the source.
    #[error("taking the lead of the source")]
    Lead(#[source] QueueError),
}

/// What a run did: the seed, and each sink's report (or failure).
#[derive(Debug)]
pub struct Outcome {
    /// What the first seed listed; `None` if this replica never led the
    /// source (another replica read it).
    pub seed: Option<SeedReport>,
    /// Each partition's worker, as it ended.
    pub sinks: Vec<(Partition, Result<SyncReport, WorkerFailed>)>,
}

/// The running mirror.
pub struct Daemon {
    routes: Arc<Routes>,
    queue: Arc<dyn Queue>,
    metrics: Arc<Metrics>,
    health: Arc<Health>,
    address: Option<SocketAddr>,
    once: bool,
    /// Declared last, so dropped last (fields drop in order): what the
    /// others give up as they go (a lease on NATS) still has it.
    runtime: Runtime,
}

/// Changes a running daemon: its destinations and rules, or stops it.
#[derive(Clone)]
pub struct Handle {
    routes: Arc<Routes>,
}

/// What routes events now, and the workers that write them.
struct Routes {
    router: Arc<Router>,
    current: Mutex<Current>,
    supervisor: Mutex<Supervisor>,
    control: Arc<Control>,
    /// Told when the daemon stops, so that nothing waits for a queue out
    /// of reach ([`Queue::hurry`]).
    queue: Arc<dyn Queue>,
}

/// The configuration the router's pipeline was made from, with the
/// policies serving.
struct Current {
    policies: Serving,
    config: MirrorConfig,
}

impl Daemon {
    /// Opens the queue, serves HTTP, starts a sink worker per partition and
    /// the policy reload; events from the source `source` (its name) can
    /// flow once this returns.
    pub fn start(mut setup: Setup, source: &str) -> Result<Daemon, DaemonError> {
        let policies = setup.policies.set();
        Pipeline::check_policies(&policies, &setup.config).map_err(DaemonError::Rules)?;
        let (metrics, mut registry) = Metrics::new();
        for export in std::mem::take(&mut setup.export) {
            export(&mut registry);
        }
        let health = Arc::new(Health::default());
        health.set("policies", Status::Ready);
        let address = match setup.listen {
            Some((address, limits)) => {
                let app = std::mem::take(&mut setup.routes)
                    .merge(crate::telemetry::http::routes(registry, health.clone()));
                let bound = crate::api::serve(
                    setup.runtime.handle(),
                    address,
                    limits,
                    setup.tls.take(),
                    app,
                )
                .map_err(|source| DaemonError::Http { address, source })?;
                Some(bound)
            }
            None => None,
        };
        let queue = open_queue(&setup)?;
        share_digest_key(&*queue).map_err(|source| DaemonError::Queue {
            path: "the SOPS digest key".into(),
            source,
        })?;
        if setup.nats.is_some() {
            watch_reach(&queue, &health);
        }
        let pipeline = Pipeline::new(policies, setup.config.clone());
        let router = Arc::new(Router::new(
            Arc::new(pipeline),
            queue.clone(),
            metrics.clone(),
            health.clone(),
            source,
        ));
        let mut supervisor = Supervisor::new(WorkerContext {
            queue: queue.clone(),
            options: setup.sink.clone(),
            metrics: metrics.clone(),
            health: health.clone(),
            state: setup.state.clone(),
            follow: !setup.once,
            finish: Default::default(),
            hand_over: setup.nats.is_some() && !setup.once,
        });
        supervisor.start(&setup.config)?;
        let routes = Arc::new(Routes {
            router,
            current: Mutex::new(Current {
                policies: setup.policies,
                config: setup.config,
            }),
            supervisor: Mutex::new(supervisor),
            control: Arc::default(),
            queue: queue.clone(),
        });
        routes.subscribe(&setup.runtime);
        if let Some(bundles) = setup.bundles.filter(|_| !setup.once) {
            routes.follow(bundles, &health, &metrics)?;
        }
        Ok(Daemon {
            runtime: setup.runtime,
            routes,
            queue,
            metrics,
            health,
            address,
            once: setup.once,
        })
    }

    /// What changes the daemon while it runs.
    pub fn handle(&self) -> Handle {
        Handle {
            routes: self.routes.clone(),
        }
    }

    /// The policies serving: what every other user of a decision (the
    /// gate, the catalog's schema rules) reads, so that a swap changes
    /// every decision at once.
    pub fn policies(&self) -> Serving {
        self.routes.current().policies.clone()
    }

    /// The daemon's async runtime, for what joins it.
    pub fn runtime(&self) -> &tokio::runtime::Handle {
        self.runtime.handle()
    }

    /// The address HTTP is served on, if it is.
    pub fn address(&self) -> Option<SocketAddr> {
        self.address
    }

    /// What the daemon counts.
    pub fn metrics(&self) -> Arc<Metrics> {
        self.metrics.clone()
    }

    /// Each part's readiness, as `/readyz` serves it.
    pub fn health(&self) -> Arc<Health> {
        self.health.clone()
    }

    /// The partitions written to now.
    pub fn partitions(&self) -> Vec<Partition> {
        self.routes.supervisor().partitions()
    }

    /// Seeds from `source`; then, `once`, waits for every worker to push
    /// what it produced, or else follows the source until
    /// [`Handle::stop`], and lets the workers push what is queued.
    pub fn run(
        self,
        source: &mut dyn Source,
        notices: &dyn Notices,
    ) -> Result<Outcome, DaemonError> {
        let routes = &self.routes;
        let context = Context {
            intake: &*routes.router,
            control: &routes.control,
            notices,
        };
        let mut seeded = None;
        loop {
            let lead = match lead::take(&*self.queue, &routes.control) {
                Ok(Some(lead)) => lead,
                Ok(None) => break,
                Err(source) => {
                    routes.supervisor().stop();
                    return Err(DaemonError::Lead(source));
                }
            };
            let led = self.lead(source, &context);
            self.metrics.source_leading.set(0);
            match led {
                _ if lead.lost() && !routes.control.stopping() => {
                    eprintln!(
                        "warning: this replica's lease on the source lapsed (NATS out of reach, or the process paused past it): it stopped reading, as another replica may lead now, and reads again once it leads"
                    );
                    routes.control.resume();
                }
                Ok(seed) => {
                    seeded = Some(seed);
                    break;
                }
                // Told to stop while NATS is out of reach (the queue
                // gives up at once then): what was read and not queued,
                // the next leader reads again.
                Err(error) if lead.lost() || self.queue.unreachable().is_some() => {
                    let error = crate::telemetry::chain(&error);
                    eprintln!(
                        "warning: stopped with NATS out of reach ({error}): the next replica to lead reads again what was not queued"
                    );
                    break;
                }
                Err(error) => {
                    routes.supervisor().stop();
                    return Err(error);
                }
            }
        }
        let sinks = routes.supervisor().finish();
        Ok(Outcome {
            seed: seeded,
            sinks,
        })
    }

    /// Reads `source` while this replica holds the lead: seeds, then
    /// follows unless `once` (or until the lead lapses: the queue then
    /// refuses what it reads, and the source is interrupted).
    fn lead(&self, source: &mut dyn Source, context: &Context) -> Result<SeedReport, DaemonError> {
        self.metrics.source_leading.set(1);
        let seed = source.seed(&SeedScope::everything(), context)?;
        if !self.once {
            tracing::info!(objects = seed.objects, "seeded from {}", source.name());
            source.follow(context)?;
        }
        Ok(seed)
    }
}

impl Handle {
    /// Routes by `config` from now on: workers start and stop to match its
    /// partitions, and the source lists everything again. A configuration
    /// the policies cannot read is refused, and the old one stays.
    pub fn set_config(&self, config: MirrorConfig) -> Result<(), DaemonError> {
        let routes = &self.routes;
        let mut current = routes.current();
        let policies = current.policies.set();
        Pipeline::check_policies(&policies, &config).map_err(DaemonError::Rules)?;
        let pipeline = Pipeline::new(policies, config.clone());
        let mut supervisor = routes.supervisor();
        // Workers whose destinations change stop first: one still running
        // would take a new destination's entries for strays and drop them.
        // Their successors start before the router switches, so that an
        // append waiting for room (routed by the old configuration) gets
        // it, and `replace` does not wait for ever; they read what their
        // predecessors had not pushed. Workers no destination needs stop
        // last, when nothing can be appended for them any more.
        supervisor.retire_changed(&config);
        let started = supervisor.start(&config);
        routes.router.replace(Arc::new(pipeline));
        supervisor.retire_removed(&config);
        drop(supervisor);
        current.config = config;
        drop(current);
        routes.control.relist(SeedScope::everything());
        started
    }

    /// The destinations and rules routed by now.
    pub fn config(&self) -> MirrorConfig {
        self.routes.current().config.clone()
    }

    /// How many entries wait in `partition`.
    pub fn depth(&self, partition: &Partition) -> u64 {
        self.routes.supervisor().depth(partition)
    }

    /// The partitions that have a worker now.
    pub fn partitions(&self) -> Vec<Partition> {
        self.routes.supervisor().partitions()
    }

    /// Stops following: [`Daemon::run`] lets the workers push what is
    /// queued, and returns.
    pub fn stop(&self) {
        self.routes.queue.hurry();
        self.routes.control.stop();
    }
}

impl Routes {
    /// Takes every set swapped into the serving handle, by whomever
    /// ([`Routes::take_policies`]), for as long as the daemon lives.
    fn subscribe(self: &Arc<Self>, runtime: &Runtime) {
        let (routes, mut swaps) = (Arc::downgrade(self), self.current().policies.subscribe());
        runtime.spawn(async move {
            while swaps.changed().await.is_ok() {
                let Some(routes) = routes.upgrade() else {
                    return;
                };
                // Building a pipeline and relisting are not for an async
                // worker; a panic there is the blocking task's alone.
                let _ = tokio::task::spawn_blocking(move || routes.take_policies()).await;
            }
        });
    }

    /// Follows `bundles`: a new set must read the rules routed by then.
    fn follow(
        self: &Arc<Self>,
        mut bundles: Bundles,
        health: &Arc<Health>,
        metrics: &Arc<Metrics>,
    ) -> Result<(), DaemonError> {
        let routes = Arc::downgrade(self);
        bundles.loader.set_check(Box::new(move |set| {
            let Some(routes) = routes.upgrade() else {
                return Ok(());
            };
            let config = routes.current().config.clone();
            Pipeline::check_policies(set, &config).map_err(|e| e.to_string())
        }));
        let serving = self.current().policies.clone();
        Follow::new(
            bundles.loader,
            bundles.offline,
            serving,
            health.clone(),
            metrics.clone(),
        )
        .spawn()
        .map_err(|source| DaemonError::Spawn {
            partition: "the policy follower".into(),
            source,
        })
    }

    /// Routes by the policies serving now, and lists everything again, so
    /// that Git shows what the new policies make of it.
    fn take_policies(&self) {
        let current = self.current();
        let pipeline = Pipeline::new(current.policies.set(), current.config.clone());
        self.router.replace(Arc::new(pipeline));
        drop(current);
        self.control.relist(SeedScope::everything());
    }

    fn current(&self) -> std::sync::MutexGuard<'_, Current> {
        self.current.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn supervisor(&self) -> std::sync::MutexGuard<'_, Supervisor> {
        self.supervisor
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }
}

/// The daemon's one async runtime: a worker thread per core (two at
/// least, so that a task that steps off its worker to wait, as the
/// blocking registry client does, never leaves none).
pub fn runtime() -> std::io::Result<Runtime> {
    let cores = std::thread::available_parallelism().map_or(2, usize::from);
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(cores.max(2))
        .thread_name("plumbline-async")
        .enable_all()
        .build()
}

/// Says in `/readyz`, every 2 s while the queue lives, whether its
/// servers answer: while they do not, nothing read can be queued, claimed
/// or pushed.
fn watch_reach(queue: &Arc<dyn Queue>, health: &Arc<Health>) {
    let (queue, health) = (Arc::downgrade(queue), health.clone());
    let watching = std::thread::Builder::new()
        .name("queue reach".into())
        .spawn(move || {
            while let Some(queue) = queue.upgrade() {
                let status = match queue.unreachable() {
                    None => Status::Ready,
                    Some(why) => Status::NotReady(format!(
                        "{why}; nothing is queued, claimed or pushed until it answers"
                    )),
                };
                drop(queue);
                health.set("queue", status);
                std::thread::sleep(std::time::Duration::from_secs(2));
            }
        });
    if let Err(error) = watching {
        tracing::warn!(%error, "the queue's reach is not watched: /readyz will not say when NATS is out of reach");
    }
}

/// Where the queue keeps the key of the `sops` step's plaintext digests,
/// as it keeps a source's cursors: beside the queue, so that every
/// replica, and the next run, recognise an unchanged Secret by the same
/// key (and keep its file).
const SOPS_KEYS: &str = "plumbline.sops";
const DIGEST_KEY: &str = "digest-key";

/// Sets the `sops` step's digest key from the queue's state, making one
/// the first time. Two replicas that make one at once both adopt the one
/// saved last (read back after saving).
fn share_digest_key(queue: &dyn Queue) -> Result<(), QueueError> {
    let stored = |queue: &dyn Queue| -> Result<Option<[u8; 32]>, QueueError> {
        let keys = queue.cursors(SOPS_KEYS)?;
        let key = keys.get(DIGEST_KEY).and_then(|k| hex::decode(k).ok());
        Ok(key.and_then(|k| k.try_into().ok()))
    };
    let key = match stored(queue)? {
        Some(key) => key,
        None => {
            let made: [u8; 32] = rand::random();
            queue.save_cursors(SOPS_KEYS, &[(DIGEST_KEY.into(), Some(hex::encode(made)))])?;
            stored(queue)?.unwrap_or(made)
        }
    };
    crate::policy::sops::set_digest_key(key);
    Ok(())
}

fn open_queue(setup: &Setup) -> Result<Arc<dyn Queue>, DaemonError> {
    // Room for at least two full batches, or a batch could never fill.
    let batch = setup.sink.batch.files.max(setup.sink.seed_batch.files);
    let capacity = setup.queue_capacity.max(2 * batch as u64);
    if let Some(nats) = &setup.nats {
        let options = crate::queue::jetstream::Options {
            replicas: nats.replicas,
            capacity,
            lease: nats.lease,
        };
        let handle = setup.runtime.handle().clone();
        let queue = JetStreamQueue::connect(handle, &nats.url, options).map_err(|source| {
            DaemonError::Queue {
                path: "JetStream".into(),
                source,
            }
        })?;
        return Ok(Arc::new(queue));
    }
    let path = setup.state.join("queue.redb");
    let queue = DiskQueue::open(&path, capacity).map_err(|source| DaemonError::Queue {
        path: setup.state.display().to_string(),
        source,
    })?;
    Ok(Arc::new(queue))
}
