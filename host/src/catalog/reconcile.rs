//! Keeping the catalog true to the registry, as the seeds ask: a push to a
//! watched repository is registered as it arrives (the registry's
//! notification, [`super::notify`]), and, as the backup for a missed
//! notification, every registered tag and every watched repository's tags
//! are looked at again periodically.
//!
//! A tag that names another digest than the one its version was registered
//! at is **drift**: recorded on the version with both digests and the time,
//! counted, shown by the API, and never adopted (the gate denies the
//! version's executions until a new version is registered). A registry that
//! cannot be reached is not drift.

use super::Catalog;
use super::extract::ExtractError;
use super::register::{Offer, RegisterError};
use super::store::{Drift, Registered, StoreError};
use crate::oci::OciClient;
use plumbline_catalog::executions::{digest, repository};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;
use std::collections::HashMap;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Instant;

/// The most tags resolved at once by a pass.
const RESOLVING: usize = 8;

/// A repository whose pushes are registered: `registry/repo`, or every
/// repository under a prefix with `registry/prefix/*`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Watched {
    /// `host:port` as Plumbline reaches it.
    host: String,
    /// The repository's path, or the prefix's (ending in `/`).
    path: String,
    /// Whether `path` is a prefix.
    prefix: bool,
}

impl Watched {
    /// Reads `registry/repo` or `registry/prefix/*`.
    pub fn parse(text: &str) -> Result<Watched, String> {
        let bad = || format!("`{text}` is not registry/repository or registry/prefix/*");
        let (host, path) = text.split_once('/').ok_or_else(bad)?;
        let (path, prefix) = match path.strip_suffix("/*") {
            Some(prefix) => (format!("{prefix}/"), true),
            None => (path.to_owned(), false),
        };
        let valid = !host.is_empty()
            && !path.is_empty()
            && !path.contains(['*', ':', '@'])
            && path.chars().all(|c| !c.is_ascii_uppercase());
        if !valid {
            return Err(bad());
        }
        Ok(Watched {
            host: host.to_owned(),
            path,
            prefix,
        })
    }

    /// Whether the repository at `path` (as a registry's notification
    /// names it) is watched here.
    pub fn covers(&self, path: &str) -> bool {
        if self.prefix {
            path.starts_with(&self.path)
        } else {
            path == self.path
        }
    }

    /// The reference of `tag` in the repository at `path`.
    pub fn reference(&self, path: &str, tag: &str) -> String {
        format!("{}/{path}:{tag}", self.host)
    }
}

/// The catalog's series in `/metrics`.
#[derive(Debug, Clone)]
pub struct Metrics {
    /// Versions registered, by what registered them.
    registered: Family<SourceLabel, Counter>,
    /// Tags found pointing elsewhere than their version.
    drift: Counter,
    /// Seconds from a push's notification to its version's registration.
    extraction: Histogram,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, prometheus_client::encoding::EncodeLabelSet)]
struct SourceLabel {
    source: &'static str,
}

impl Default for Metrics {
    fn default() -> Metrics {
        let buckets = [0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0];
        Metrics {
            registered: Family::default(),
            drift: Counter::default(),
            extraction: Histogram::new(buckets),
        }
    }
}

impl Metrics {
    /// Registers `plumbline_catalog_{registered_total,drift_total,extraction_seconds}`.
    pub fn register(&self, registry: &mut Registry) {
        for source in ["notification", "reconciler"] {
            let _ = self.registered.get_or_create(&SourceLabel { source });
        }
        let catalog = registry.sub_registry_with_prefix("catalog");
        catalog.register(
            "registered",
            "Workflow versions registered without an API call, by what found them",
            self.registered.clone(),
        );
        catalog.register(
            "drift",
            "Registered tags found naming another digest than their version's",
            self.drift.clone(),
        );
        catalog.register(
            "extraction_seconds",
            "From a registry's push notification to its version registered",
            self.extraction.clone(),
        );
    }

    /// A version registered by `source`.
    pub fn registered(&self, source: &'static str) {
        self.registered.get_or_create(&SourceLabel { source }).inc();
    }

    /// A push registered `since` its notification arrived.
    pub fn extracted(&self, since: Instant) {
        self.extraction.observe(since.elapsed().as_secs_f64());
    }
}

/// What one pass found.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Report {
    /// Registered tags resolved again.
    pub checked: usize,
    /// Of them, found moved (newly).
    pub drifted: usize,
    /// New versions registered from watched repositories' tags.
    pub registered: usize,
    /// What could not be read (the registry down, a tag that is no
    /// workflow): said, and tried again next time.
    pub failed: Vec<String>,
}

/// Looks at the registry again.
pub struct Reconciler {
    /// The catalog.
    pub catalog: Arc<Catalog>,
    /// The registry client.
    pub registry: Arc<OciClient>,
    /// The repositories whose tags are registered.
    pub watched: Vec<Watched>,
    /// Its series.
    pub metrics: Metrics,
    /// Each tag's digest when it was last offered: a tag is offered again
    /// only when it moves.
    offered: Mutex<HashMap<String, String>>,
}

impl Reconciler {
    /// A reconciler of `catalog` over `watched`.
    pub fn new(
        catalog: Arc<Catalog>,
        registry: Arc<OciClient>,
        watched: Vec<Watched>,
        metrics: Metrics,
    ) -> Reconciler {
        Reconciler {
            catalog,
            registry,
            watched,
            metrics,
            offered: Mutex::new(HashMap::new()),
        }
    }

    /// One pass: drift of every registered tag, then new tags of watched
    /// repositories.
    pub fn once(&self) -> Report {
        let mut report = Report::default();
        self.find_drift(&mut report);
        self.find_new(&mut report);
        report
    }

    fn find_drift(&self, report: &mut Report) {
        let records = match self.catalog.all() {
            Ok(records) => records,
            Err(error) => return report.failed.push(error.to_string()),
        };
        // What each tag names in the catalog: a tag that moved to content
        // registered since is adopted, not drift.
        let registered_at: std::collections::BTreeSet<(String, String)> = records
            .iter()
            .filter_map(|r| {
                let reference = r.schema_reference.clone()?;
                let pinned = digest(r.schema_image.as_deref()?)?.to_owned();
                Some((reference, pinned))
            })
            .collect();
        let tags = records
            .iter()
            .filter_map(|r| r.schema_reference.as_deref())
            .filter(|reference| digest(reference).is_none()); // pinned: cannot move
        let resolved = self.resolve_all(tags);
        for record in records {
            let (Some(reference), Some(image)) = (&record.schema_reference, &record.schema_image)
            else {
                continue;
            };
            let (Some(registered), Some(now)) = (digest(image), resolved.get(reference)) else {
                continue;
            };
            report.checked += 1;
            let now = match now {
                Ok(now) => now,
                Err(error) => {
                    report.failed.push(error.clone());
                    continue;
                }
            };
            let w = &record.workflow;
            let adopted = registered_at.contains(&(reference.clone(), now.clone()));
            let drift = (now != registered && !adopted).then(|| Drift {
                reference: reference.clone(),
                registered: registered.to_owned(),
                now: now.clone(),
                found_at: crate::telemetry::timestamp(),
            });
            let same = match (&drift, &record.drift) {
                (Some(new), Some(old)) => new.now == old.now,
                (None, None) => true,
                _ => false,
            };
            if same {
                continue;
            }
            if drift.is_some() {
                report.drifted += 1;
                self.metrics.drift.inc();
                tracing::warn!(
                    "drift: {reference} names {now}, but {} {} was registered at {registered}; \
                     its executions are denied until a new version is registered",
                    w.workflow_id,
                    w.version
                );
            }
            if let Err(error) = self.catalog.set_drift(&w.workflow_id, &w.version, drift) {
                report.failed.push(error.to_string());
            }
        }
    }

    /// What each of `tags` names now, each distinct tag asked once, up to
    /// [`RESOLVING`] at a time: a catalog of a thousand tags is a pass of
    /// seconds, not of a thousand round trips one after the other.
    fn resolve_all<'a>(
        &self,
        tags: impl Iterator<Item = &'a str>,
    ) -> HashMap<String, Result<String, String>> {
        let tags: Vec<&str> = tags
            .collect::<std::collections::BTreeSet<_>>()
            .into_iter()
            .collect();
        let next = std::sync::atomic::AtomicUsize::new(0);
        let resolved = Mutex::new(HashMap::with_capacity(tags.len()));
        std::thread::scope(|scope| {
            for _ in 0..RESOLVING.min(tags.len()) {
                scope.spawn(|| {
                    while let Some(tag) = tags.get(next.fetch_add(1, Ordering::Relaxed)) {
                        let now = self.registry.resolve(tag).map_err(|e| e.to_string());
                        let mut resolved = resolved.lock().unwrap_or_else(PoisonError::into_inner);
                        resolved.insert((*tag).to_owned(), now);
                    }
                });
            }
        });
        resolved
            .into_inner()
            .unwrap_or_else(PoisonError::into_inner)
    }

    fn find_new(&self, report: &mut Report) {
        let mut repositories: Vec<(Watched, String)> = Vec::new();
        for watched in self.watched.iter().filter(|w| !w.prefix) {
            repositories.push((watched.clone(), watched.path.clone()));
        }
        for (watched, path) in repositories {
            let name = format!("{}/{path}", watched.host);
            let tags = match self.registry.tags(&name) {
                Ok(tags) => tags,
                Err(error) => {
                    report.failed.push(error.to_string());
                    continue;
                }
            };
            for tag in tags {
                let reference = watched.reference(&path, &tag);
                match self.offer(&reference, "reconciler") {
                    Ok(true) => report.registered += 1,
                    Ok(false) => {}
                    Err(error) => report.failed.push(error),
                }
            }
        }
    }

    /// Registers `reference` unless its digest was offered already:
    /// whether a new version was written. A refusal is remembered (the
    /// same digest is not offered again); a failure that may pass (the
    /// registry, the store) is not.
    pub fn offer(&self, reference: &str, source: &'static str) -> Result<bool, String> {
        let now = self
            .registry
            .resolve(reference)
            .map_err(|e| e.to_string())?;
        let offered = || self.offered.lock().unwrap_or_else(PoisonError::into_inner);
        if offered().get(reference) == Some(&now) {
            return Ok(false);
        }
        let outcome = self
            .catalog
            .register(&Offer::Image(reference.to_owned()), source);
        let transient = matches!(
            &outcome,
            Err(RegisterError::Extract(ExtractError::Registry { .. }))
                | Err(RegisterError::Store(StoreError::Store { .. }))
                | Err(RegisterError::Busy(_))
        );
        if !transient {
            offered().insert(reference.to_owned(), now);
        }
        match outcome {
            Ok(Registered::Created(record)) => {
                self.metrics.registered(source);
                let w = &record.workflow;
                tracing::info!(
                    "registered {} {} from {reference}",
                    w.workflow_id,
                    w.version
                );
                Ok(true)
            }
            Ok(Registered::Unchanged(_)) => Ok(false),
            Err(error) => Err(format!("registering {reference}: {error}")),
        }
    }

    /// Whether a repository (as a notification names it) is watched, and
    /// by which entry.
    pub fn watching(&self, path: &str) -> Option<&Watched> {
        self.watched.iter().find(|w| w.covers(path))
    }
}

/// The repository path of a watched entry's references (for tests and
/// messages).
pub fn path_of(reference: &str) -> &str {
    let repo = repository(reference);
    repo.split_once('/').map_or(repo, |(_, path)| path)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn watched_repositories_are_exact_or_prefixes() {
        let exact = Watched::parse("127.0.0.1:5000/workflows/restart").unwrap();
        assert!(exact.covers("workflows/restart"));
        assert!(!exact.covers("workflows/restart-more"));
        assert_eq!(
            exact.reference("workflows/restart", "1.0.0"),
            "127.0.0.1:5000/workflows/restart:1.0.0"
        );
        let prefix = Watched::parse("registry.example/workflows/*").unwrap();
        assert!(prefix.covers("workflows/scale"));
        assert!(!prefix.covers("other/scale"));
        for bad in ["nohost", "host/", "host/Repo", "host/a:b", "host/a*"] {
            assert!(Watched::parse(bad).is_err(), "{bad}");
        }
        assert_eq!(
            path_of("127.0.0.1:5000/workflows/restart:1.0.0"),
            "workflows/restart"
        );
    }
}
