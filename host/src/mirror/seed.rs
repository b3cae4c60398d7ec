//! A snapshot (every object that exists) to the files each destination
//! should hold. Only a complete snapshot may prune: a file whose object was
//! not seen might belong to a file that failed to parse.

use super::pipeline::{MirrorError, Pipeline};
use crate::ingest::directory::Snapshot;
use std::collections::BTreeMap;

/// One file a destination should hold.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DesiredFile {
    /// Canonical YAML.
    pub content: String,
    /// Who made the object so, when known.
    pub actor: Option<String>,
    /// The resource, for commit trailers.
    pub resource: String,
}

/// The desired state of every destination.
#[derive(Debug, Default)]
pub struct Desired {
    /// Per destination index: path → file.
    pub files: BTreeMap<usize, BTreeMap<String, DesiredFile>>,
    /// Events that could not be routed.
    pub errors: Vec<MirrorError>,
    /// Whether every source read and every event routed: only then prune.
    pub complete: bool,
}

/// Routes every event of `snapshot`, on every core: each event costs a few
/// fresh plugin instances, and they are independent.
pub fn desired_state(pipeline: &Pipeline, snapshot: &Snapshot) -> Desired {
    let mut desired = Desired::default();
    for index in 0..pipeline.config().destinations.len() {
        desired.files.insert(index, BTreeMap::new());
    }
    let workers = std::thread::available_parallelism().map_or(1, |n| n.get());
    let chunk = snapshot.events.len().div_ceil(workers).max(1);
    let routed: Vec<Vec<_>> = std::thread::scope(|scope| {
        let handles: Vec<_> = snapshot
            .events
            .chunks(chunk)
            .map(|events| {
                scope.spawn(move || {
                    events
                        .iter()
                        .map(|event| (event, pipeline.route(event)))
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().expect("routing does not panic"))
            .collect()
    });
    for (event, outcome) in routed.into_iter().flatten() {
        match outcome {
            Ok(routed) => {
                for r in routed {
                    if let Some(content) = r.content {
                        let file = DesiredFile {
                            content,
                            actor: event.username.clone(),
                            resource: r.key.resource.clone(),
                        };
                        desired
                            .files
                            .entry(r.destination)
                            .or_default()
                            .insert(r.path, file);
                    }
                }
            }
            Err(error) => desired.errors.push(error),
        }
    }
    desired.complete = snapshot.is_complete() && desired.errors.is_empty();
    desired
}
