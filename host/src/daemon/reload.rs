//! Following policy bundles while the mirror runs: their tags are resolved
//! again every `bundleRefreshSeconds`, and a set built from moved tags
//! replaces the router's pipeline whole, after which the source lists
//! everything again (so that Git shows what the new policies make of it).
//! A set that fails leaves the old one serving and says so in the log,
//! `/readyz` and `/metrics`.

use super::{Bundles, Routes};
use crate::bundle::PolicyLoader;
use crate::bundle::reload::{Digests, describe};
use crate::mirror::Pipeline;
use crate::telemetry::health::Status;
use crate::telemetry::metrics::{BundleLabels, ReloadLabels};
use crate::telemetry::{Health, Metrics};
use std::sync::{Arc, Weak};

/// What the reload thread works with.
pub struct Reload {
    /// Why the policies need the operator's eye at the start (bundles
    /// loaded from the store because the registry did not answer).
    offline: Vec<String>,
    /// Builds new sets.
    loader: PolicyLoader,
    /// The digests serving now.
    serving: Digests,
    /// Whose pipeline is replaced; gone when the daemon is.
    routes: Weak<Routes>,
    /// Where success and failure are reported.
    health: Arc<Health>,
    /// And counted.
    metrics: Arc<Metrics>,
    /// The newest failure to load, until a load succeeds.
    failure: Option<String>,
}

impl Reload {
    /// A reload of `bundles` into `routes`.
    pub(super) fn new(
        bundles: Bundles,
        routes: Arc<Routes>,
        health: Arc<Health>,
        metrics: Arc<Metrics>,
    ) -> Reload {
        Reload {
            offline: bundles.offline,
            loader: bundles.loader,
            serving: bundles.digests,
            routes: Arc::downgrade(&routes),
            health,
            metrics,
            failure: None,
        }
    }

    /// Runs for the life of the daemon on a thread of its own.
    pub fn spawn(mut self) {
        let routes = self.routes.clone();
        // A new set must read the rules routed by then, not at the start.
        self.loader.set_check(Box::new(move |set| {
            let Some(routes) = routes.upgrade() else {
                return Ok(());
            };
            let config = routes.current().config.clone();
            Pipeline::check_policies(set, &config).map_err(|e| e.to_string())
        }));
        self.show_serving(&Digests::new());
        self.show_health(None);
        std::thread::Builder::new()
            .name("policy reload".into())
            .spawn(move || {
                loop {
                    std::thread::sleep(self.loader.config().bundle_refresh());
                    if self.routes.strong_count() == 0 {
                        return;
                    }
                    self.once();
                }
            })
            .expect("spawn the policy reload thread");
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
                    if let Some(routes) = self.routes.upgrade() {
                        routes.set_policies(Arc::new(loaded.set));
                    }
                    reloads("loaded");
                    self.metrics.policy_reload_failing.set(0);
                    self.failure = None;
                    let old = std::mem::replace(&mut self.serving, loaded.digests);
                    self.show_serving(&old);
                    eprintln!("policies: now serving {}", describe(&self.serving));
                }
                self.show_health(None);
            }
            Err(error) => {
                reloads("failed");
                self.metrics.policy_reload_failing.set(1);
                let why = format!(
                    "a new policy set failed to load, still serving {}: {error}",
                    describe(&self.serving)
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
        for serving in self.serving.iter().map(labels) {
            self.metrics.bundle_serving.get_or_create(&serving).set(1);
        }
    }
}
