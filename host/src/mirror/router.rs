//! Routing: events through the pipeline, on every core, into each
//! destination's partition of the queue. The router is the mirror's
//! [`Intake`]: what a source hands it is durably queued when a call
//! returns.
//!
//! A seed is framed by markers, so that the sink knows which files the
//! listing produced and may prune the rest (only if the listing was
//! complete, and only in its scope).
//!
//! The pipeline can be replaced while events flow (a policy bundle moved,
//! the destinations changed): each `submit` holds the pipeline until its
//! entries are queued, so every event is decided entirely by the old
//! policies or entirely by the new ones, and when [`Router::replace`]
//! returns, nothing routed by the old pipeline is still on its way.

use super::intake::{Intake, Listing, Seed, SeedScope};
use super::pipeline::{MirrorError, Pipeline};
use crate::model::{Event, Target};
use crate::queue::{Cursors, Entry, FileChange, Partition, Queue, QueueError};
use crate::telemetry::CHANGES;
use crate::telemetry::health::PassOutcome;
use crate::telemetry::metrics::SourceLabels;
use crate::telemetry::{Health, Metrics};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError, RwLock};

/// What routing some events did.
#[derive(Debug, Default)]
pub struct Routing {
    /// Events routed.
    pub events: usize,
    /// Events that could not be routed (reported, skipped).
    pub errors: Vec<MirrorError>,
}

/// Routes events into the queue.
pub struct Router {
    pipeline: RwLock<Arc<Pipeline>>,
    queue: Arc<dyn Queue>,
    metrics: Arc<Metrics>,
    health: Arc<Health>,
    source: SourceLabels,
    /// What the policies made of the events of the pass under way.
    pass: Mutex<PassOutcome>,
    /// The last seed's identity.
    seeds: AtomicU64,
}

impl Router {
    /// A router deciding with `pipeline` into `queue`; `source` names where
    /// the events come from, for metrics; what the policies make of each
    /// pass goes to `health`.
    pub fn new(
        pipeline: Arc<Pipeline>,
        queue: Arc<dyn Queue>,
        metrics: Arc<Metrics>,
        health: Arc<Health>,
        source: &str,
    ) -> Router {
        Router {
            pipeline: RwLock::new(pipeline),
            queue,
            metrics,
            health,
            source: SourceLabels {
                source: source.to_owned(),
            },
            pass: Mutex::default(),
            seeds: AtomicU64::new(seed_epoch()),
        }
    }

    /// The pipeline events are routed with now.
    pub fn pipeline(&self) -> Arc<Pipeline> {
        self.pipeline
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// Routes every later `submit` with `pipeline`; waits for a `submit`
    /// under way to queue everything it routed with the old one.
    pub fn replace(&self, pipeline: Arc<Pipeline>) {
        *self
            .pipeline
            .write()
            .unwrap_or_else(PoisonError::into_inner) = pipeline;
    }

    /// Routes `events` (independent of each other: at most one per
    /// object) on every core and queues their files, in path order (so that
    /// a batch touches few folders, and a commit rewrites few trees);
    /// returns once they are durable.
    pub fn submit(&self, events: &[Event]) -> Result<Routing, QueueError> {
        // Held until the entries are queued (see `replace`). Nothing below
        // takes the lock again: a writer waiting would block it.
        let guard = self.pipeline.read().unwrap_or_else(PoisonError::into_inner);
        let pipeline: &Pipeline = &guard;
        let workers = std::thread::available_parallelism().map_or(1, |n| n.get());
        let share = events.len().div_ceil(workers).max(1);
        let results: Vec<(Routing, Vec<Vec<Entry>>)> = std::thread::scope(|scope| {
            let handles: Vec<_> = events
                .chunks(share)
                .map(|events| scope.spawn(move || self.route_all(pipeline, events)))
                .collect();
            handles
                .into_iter()
                .map(|h| h.join().expect("each route catches its own panic"))
                .collect()
        });
        let destinations = pipeline.config().destinations.len();
        let mut total = Routing::default();
        let mut queued: Vec<Vec<Entry>> = vec![Vec::new(); destinations];
        for (routing, entries) in results {
            total.events += routing.events;
            total.errors.extend(routing.errors);
            for (all, more) in queued.iter_mut().zip(entries) {
                all.extend(more);
            }
        }
        for entries in &mut queued {
            entries.sort_by(|a, b| path_of(a).cmp(path_of(b)));
        }
        self.append_grouped(pipeline, queued)?;
        self.count_pass(&total);
        Ok(total)
    }

    fn count_pass(&self, routing: &Routing) {
        let mut pass = self.pass.lock().unwrap_or_else(PoisonError::into_inner);
        pass.objects += routing.events;
        for error in &routing.errors {
            if let MirrorError::Policy { .. } = error {
                pass.refused += 1;
                pass.first_refusal.get_or_insert_with(|| error.to_string());
            }
        }
    }

    /// Routes `events`: per destination, the entries they produce.
    fn route_all(&self, pipeline: &Pipeline, events: &[Event]) -> (Routing, Vec<Vec<Entry>>) {
        let destinations = &pipeline.config().destinations;
        let mut routing = Routing::default();
        let mut queued: Vec<Vec<Entry>> = vec![Vec::new(); destinations.len()];
        for event in events {
            routing.events += 1;
            let trace = crate::telemetry::trace_id();
            let _change = tracing::debug_span!(
                target: CHANGES,
                "change",
                trace,
                object = %event.target,
                operation = %event.operation,
            )
            .entered();
            self.metrics
                .objects_scanned
                .get_or_create(&self.source)
                .inc();
            match pipeline.route_caught(event) {
                Ok(routed) => {
                    for r in routed {
                        let partition = destinations[r.destination].partition();
                        tracing::debug!(target: CHANGES, %partition, path = r.path, "queued");
                        queued[r.destination].push(Entry::File(FileChange {
                            destination: destinations[r.destination].name.clone(),
                            path: r.path,
                            content: r.content,
                            operation: event.operation,
                            actor: event.username.clone(),
                            resource: r.key.resource,
                            replay: event.replay_key(),
                            trace: Some(trace.clone()),
                        }));
                    }
                }
                Err(error) => {
                    self.metrics
                        .objects_failed
                        .get_or_create(&self.source)
                        .inc();
                    routing.errors.push(error);
                    // What it should be in Git is unknown: a seed keeps
                    // its file as it is, and prunes the rest.
                    keep(pipeline, &event.target, &mut queued, &|_| true);
                }
            }
        }
        (routing, queued)
    }

    /// Appends each destination's entries (by index in `pipeline`), one
    /// transaction per partition.
    fn append_grouped(
        &self,
        pipeline: &Pipeline,
        queued: Vec<Vec<Entry>>,
    ) -> Result<(), QueueError> {
        let partitions: Vec<Partition> = pipeline
            .config()
            .destinations
            .iter()
            .map(|d| d.partition())
            .collect();
        let mut by_partition: Vec<(&Partition, Vec<Entry>)> = Vec::new();
        for (index, entries) in queued.into_iter().enumerate() {
            let partition = &partitions[index];
            match by_partition.iter_mut().find(|(p, _)| *p == partition) {
                Some((_, all)) => all.extend(entries),
                None => by_partition.push((partition, entries)),
            }
        }
        for (partition, entries) in by_partition {
            if !entries.is_empty() {
                self.queue.append(partition, &entries)?;
            }
        }
        Ok(())
    }

    /// One marker per destination `wanted` takes, by index.
    fn markers(
        pipeline: &Pipeline,
        wanted: &dyn Fn(&str) -> bool,
        make: &dyn Fn(String) -> Entry,
    ) -> Vec<Vec<Entry>> {
        pipeline
            .config()
            .destinations
            .iter()
            .map(|d| {
                if wanted(&d.name) {
                    vec![make(d.name.clone())]
                } else {
                    Vec::new()
                }
            })
            .collect()
    }
}

impl Intake for Router {
    fn begin_seed(&self, scope: &SeedScope) -> Result<Seed, QueueError> {
        let guard = self.pipeline.read().unwrap_or_else(PoisonError::into_inner);
        let id = self.seeds.fetch_add(1, Ordering::Relaxed) + 1;
        let resources: Option<Vec<_>> = scope
            .resources
            .as_ref()
            .map(|r| r.iter().cloned().collect());
        let start = Router::markers(&guard, &|name| scope.covers(name), &|destination| {
            Entry::SeedStart {
                destination,
                seed: id,
                resources: resources.clone(),
            }
        });
        let destinations = guard
            .config()
            .destinations
            .iter()
            .filter(|d| scope.covers(&d.name))
            .map(|d| d.name.clone())
            .collect();
        self.append_grouped(&guard, start)?;
        Ok(Seed { id, destinations })
    }

    fn submit(&self, events: &[Event]) -> Result<Routing, QueueError> {
        Router::submit(self, events)
    }

    fn end_seed(&self, seed: Seed, listing: &Listing) -> Result<(), QueueError> {
        let guard = self.pipeline.read().unwrap_or_else(PoisonError::into_inner);
        let ours = |name: &str| seed.destinations.iter().any(|d| d == name);
        // What could not be read holds back the pruning of only its own
        // files: they are live for this seed.
        let mut queued = vec![Vec::new(); guard.config().destinations.len()];
        for target in &listing.held_back {
            keep(&guard, target, &mut queued, &ours);
        }
        let end = Router::markers(&guard, &ours, &|destination| Entry::SeedEnd {
            destination,
            seed: seed.id,
            complete: listing.complete,
            deleted_by: listing.deleted_by.clone(),
        });
        for (all, marker) in queued.iter_mut().zip(end) {
            all.extend(marker);
        }
        self.append_grouped(&guard, queued)
    }

    fn end_pass(&self) {
        let pass = std::mem::take(&mut *self.pass.lock().unwrap_or_else(PoisonError::into_inner));
        self.health.record_pass(&pass);
    }

    fn cursors(&self) -> Result<Cursors, QueueError> {
        self.queue.cursors(&self.source.source)
    }

    fn save_cursors(&self, changes: &[(String, Option<String>)]) -> Result<(), QueueError> {
        self.queue.save_cursors(&self.source.source, changes)
    }
}

/// Queues a keep of `target`'s file in every destination `wanted` takes:
/// what it should hold is unknown, and it must not be pruned.
fn keep(
    pipeline: &Pipeline,
    target: &Target,
    queued: &mut [Vec<Entry>],
    wanted: &dyn Fn(&str) -> bool,
) {
    let destinations = &pipeline.config().destinations;
    for (destination, path) in pipeline.paths(target) {
        let name = &destinations[destination].name;
        if wanted(name) {
            queued[destination].push(Entry::Keep {
                destination: name.clone(),
                path,
            });
        }
    }
}

/// The path an entry is about; markers sort first.
fn path_of(entry: &Entry) -> &str {
    match entry {
        Entry::File(change) => &change.path,
        Entry::Keep { path, .. } => path,
        Entry::SeedStart { .. } | Entry::SeedEnd { .. } => "",
    }
}

/// Where seed identities start: the time the router was made, so that no
/// seed of an earlier run (whose markers may still be queued) shares one.
fn seed_epoch() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64)
}
