//! Routing: events through the pipeline, on every core, into each
//! destination's partition of the queue.
//!
//! Appending is the acknowledgement a source waits for: when `submit` or
//! `seed` returns, every file the events produce is durably queued. A seed
//! is framed by markers, so that the sink knows which files the listing
//! produced and may prune the rest (only if the listing was complete).
//!
//! The pipeline can be replaced while events flow (a policy bundle moved):
//! each `submit` takes the pipeline once and routes all its events with it,
//! so every event is decided entirely by the old policies or entirely by
//! the new ones.

use super::pipeline::{MirrorError, Pipeline};
use crate::model::{Event, Target};
use crate::queue::{Entry, FileChange, Partition, Queue, QueueError};
use crate::telemetry::Metrics;
use crate::telemetry::metrics::SourceLabels;
use std::sync::{Arc, RwLock};

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
    source: SourceLabels,
}

impl Router {
    /// A router deciding with `pipeline` into `queue`; `source` names where
    /// the events come from, for metrics.
    pub fn new(
        pipeline: Arc<Pipeline>,
        queue: Arc<dyn Queue>,
        metrics: Arc<Metrics>,
        source: &str,
    ) -> Router {
        Router {
            pipeline: RwLock::new(pipeline),
            queue,
            metrics,
            source: SourceLabels {
                source: source.to_owned(),
            },
        }
    }

    /// The pipeline events are routed with now.
    pub fn pipeline(&self) -> Arc<Pipeline> {
        self.pipeline
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }

    /// Routes every later `submit` with `pipeline` (which must route to the
    /// same destinations); a `submit` under way finishes with the old one.
    pub fn replace(&self, pipeline: Arc<Pipeline>) {
        *self
            .pipeline
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = pipeline;
    }

    /// The partition of each destination, by index.
    pub fn partitions(&self) -> Vec<Partition> {
        self.pipeline()
            .config()
            .destinations
            .iter()
            .map(|d| d.partition())
            .collect()
    }

    /// Routes `events` (independent of each other: at most one per
    /// object) on every core and queues their files, in path order (so that
    /// a batch touches few folders, and a commit rewrites few trees);
    /// returns once they are durable.
    pub fn submit(&self, events: &[Event]) -> Result<Routing, QueueError> {
        let workers = std::thread::available_parallelism().map_or(1, |n| n.get());
        let share = events.len().div_ceil(workers).max(1);
        let pipeline = self.pipeline();
        let pipeline = &*pipeline;
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
        let mut total = Routing::default();
        let mut queued: Vec<Vec<Entry>> = vec![Vec::new(); self.partitions().len()];
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
        self.append_grouped(&self.partitions(), queued)?;
        Ok(total)
    }

    /// Routes `events`: per destination, the entries they produce.
    fn route_all(&self, pipeline: &Pipeline, events: &[Event]) -> (Routing, Vec<Vec<Entry>>) {
        let destinations = &pipeline.config().destinations;
        let mut routing = Routing::default();
        let mut queued: Vec<Vec<Entry>> = vec![Vec::new(); destinations.len()];
        for event in events {
            routing.events += 1;
            self.metrics
                .objects_scanned
                .get_or_create(&self.source)
                .inc();
            match pipeline.route_caught(event) {
                Ok(routed) => {
                    for r in routed {
                        queued[r.destination].push(Entry::File(FileChange {
                            destination: destinations[r.destination].name.clone(),
                            path: r.path,
                            content: r.content,
                            operation: event.operation,
                            actor: event.username.clone(),
                            resource: r.key.resource,
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
                    for (destination, path) in pipeline.paths(&event.target) {
                        queued[destination].push(Entry::Keep {
                            destination: destinations[destination].name.clone(),
                            path,
                        });
                    }
                }
            }
        }
        (routing, queued)
    }

    /// Appends each destination's entries, one transaction per partition.
    fn append_grouped(
        &self,
        partitions: &[Partition],
        queued: Vec<Vec<Entry>>,
    ) -> Result<(), QueueError> {
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

    /// Tells the seed under way that `targets`, which the source could not
    /// read this time, are not gone: their files stay, in every destination.
    pub fn keep(&self, targets: &[Target]) -> Result<(), QueueError> {
        let pipeline = self.pipeline();
        let destinations = &pipeline.config().destinations;
        let mut queued: Vec<Vec<Entry>> = vec![Vec::new(); destinations.len()];
        for target in targets {
            for (destination, path) in pipeline.paths(target) {
                queued[destination].push(Entry::Keep {
                    destination: destinations[destination].name.clone(),
                    path,
                });
            }
        }
        self.append_grouped(&self.partitions(), queued)
    }

    /// Begins a listing of everything for every destination: the files
    /// submitted until [`Router::end_seed`] are the live ones. Returns the
    /// seed's identity.
    pub fn begin_seed(&self) -> Result<u64, QueueError> {
        let id = seed_id();
        let start = self.markers(&|destination| Entry::SeedStart {
            destination,
            seed: id,
        });
        self.append_grouped(&self.partitions(), start)?;
        Ok(id)
    }

    /// Ends seed `id`. `complete` says whether the source read everything
    /// and every event was routed: only then are orphans pruned.
    pub fn end_seed(
        &self,
        id: u64,
        complete: bool,
        deleted_by: Option<&str>,
    ) -> Result<(), QueueError> {
        let end = self.markers(&|destination| Entry::SeedEnd {
            destination,
            seed: id,
            complete,
            deleted_by: deleted_by.map(str::to_owned),
        });
        self.append_grouped(&self.partitions(), end)
    }

    /// One marker per destination.
    fn markers(&self, make: &dyn Fn(String) -> Entry) -> Vec<Vec<Entry>> {
        self.pipeline()
            .config()
            .destinations
            .iter()
            .map(|d| vec![make(d.name.clone())])
            .collect()
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

/// A seed's identity: the time it began, which no earlier seed shares.
fn seed_id() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64)
}
