//! Following policy bundles while the daemon runs: their tags are resolved
//! again every `bundleRefreshSeconds`, and a set built from moved tags is
//! swapped into the [`Serving`] handle whole, for every user of a decision
//! at once (each user reacts as it must: the mirror lists everything
//! again, so that Git shows what the new policies make of it). A set that
//! fails leaves the old one serving and says so in the log, `/readyz` and
//! `/metrics`.

use super::reload::{Digests, describe};
use super::{PolicyLoader, Served, Serving};
use crate::telemetry::health::Status;
use crate::telemetry::metrics::{BundleLabels, ReloadLabels};
use crate::telemetry::{Health, Metrics};
use std::sync::Arc;

/// What the follow thread works with.
pub struct Follow {
    /// Why the policies need the operator's eye at the start (bundles
    /// loaded from the store because the registry did not answer).
    offline: Vec<String>,
    /// Builds new sets.
    loader: PolicyLoader,
    /// The set serving now, swapped here; the thread ends when no one
    /// else holds it.
    serving: Serving,
    /// Where success and failure are reported.
    health: Arc<Health>,
    /// And counted.
    metrics: Arc<Metrics>,
    /// The newest failure to load, until a load succeeds.
    failure: Option<String>,
}

impl Follow {
    /// Follows the bundles `loader` builds from into `serving`; `offline`
    /// names those loaded from the store at the start.
    pub fn new(
        loader: PolicyLoader,
        offline: Vec<String>,
        serving: Serving,
        health: Arc<Health>,
        metrics: Arc<Metrics>,
    ) -> Follow {
        Follow {
            offline,
            loader,
            serving,
            health,
            metrics,
            failure: None,
        }
    }

    /// Runs on a thread of its own (building a set compiles Wasm) for as
    /// long as anyone else holds the serving handle.
    pub fn spawn(mut self) -> std::io::Result<()> {
        self.show_serving(&Digests::new());
        self.show_health(None);
        std::thread::Builder::new()
            .name("policy follow".into())
            .spawn(move || {
                loop {
                    std::thread::sleep(self.loader.config().bundle_refresh());
                    if !self.serving.is_shared() {
                        return;
                    }
                    self.once();
                }
            })
            .map(drop)
    }

    fn once(&mut self) {
        let reloads = |result: &str| {
            self.metrics
                .policy_reloads
                .get_or_create(&ReloadLabels {
                    result: result.into(),
                })
                .inc();
        };
        match self.loader.refresh() {
            Ok(refresh) => {
                self.offline = refresh.offline;
                if let Some(loaded) = refresh.loaded {
                    let old = self.serving.swap(Served {
                        set: Arc::new(loaded.set),
                        digests: loaded.digests,
                    });
                    reloads("loaded");
                    self.metrics.policy_reload_failing.set(0);
                    self.failure = None;
                    self.show_serving(&old.digests);
                    eprintln!(
                        "policies: now serving {}",
                        describe(&self.serving.digests())
                    );
                }
                self.show_health(None);
            }
            Err(error) => {
                reloads("failed");
                self.metrics.policy_reload_failing.set(1);
                let why = format!(
                    "a new policy set failed to load, still serving {}: {error}",
                    describe(&self.serving.digests())
                );
                eprintln!("error: {why}");
                self.show_health(Some(why));
            }
        }
    }

    /// `/readyz`: ready, or degraded by a failed load (kept until a later
    /// one succeeds) and by bundles served from the store.
    fn show_health(&mut self, failure: Option<String>) {
        if failure.is_some() {
            self.failure = failure;
        }
        let notes: Vec<&str> = self
            .failure
            .iter()
            .chain(&self.offline)
            .map(String::as_str)
            .collect();
        let status = if notes.is_empty() {
            Status::Ready
        } else {
            Status::Degraded(notes.join("; "))
        };
        self.health.set("policies", status);
    }

    /// `bundle_serving` for the digests serving now, none for `old`.
    fn show_serving(&self, old: &Digests) {
        let labels = |(bundle, digest): (&String, &String)| BundleLabels {
            bundle: bundle.clone(),
            digest: digest.clone(),
        };
        for old in old.iter().map(labels) {
            self.metrics.bundle_serving.remove(&old);
        }
        for serving in self.serving.digests().iter().map(labels) {
            self.metrics.bundle_serving.get_or_create(&serving).set(1);
        }
    }
}
