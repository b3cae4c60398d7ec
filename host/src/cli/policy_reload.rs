//! Following policy bundles while the mirror runs: their tags are resolved
//! again every `bundleRefreshSeconds`, and a set built from moved tags
//! replaces the router's pipeline whole. A set that fails leaves the old
//! one serving and says so in the log, `/readyz` and `/metrics`.

use crate::bundle::PolicyLoader;
use crate::bundle::reload::{Digests, describe};
use crate::mirror::{MirrorConfig, Pipeline, Router};
use crate::telemetry::health::Status;
use crate::telemetry::metrics::{BundleLabels, ReloadLabels};
use crate::telemetry::{Health, Metrics};
use std::sync::Arc;

/// What the reload thread works with.
pub struct Reload {
    /// Why the policies need the operator's eye at the start (bundles
    /// loaded from the store because the registry did not answer).
    pub offline: Vec<String>,
    /// Builds new sets.
    pub loader: PolicyLoader,
    /// The digests serving at the start.
    pub serving: Digests,
    /// Whose pipeline is replaced.
    pub router: Arc<Router>,
    /// The routing configuration every new pipeline keeps.
    pub config: MirrorConfig,
    /// Where success and failure are reported.
    pub health: Arc<Health>,
    /// And counted.
    pub metrics: Arc<Metrics>,
    /// The newest failure to load, until a load succeeds.
    pub failure: Option<String>,
}

impl Reload {
    /// Runs for the life of the process on a thread of its own.
    pub fn spawn(mut self) {
        let config = self.config.clone();
        self.loader.set_check(Box::new(move |set| {
            Pipeline::check_policies(set, &config).map_err(|e| e.to_string())
        }));
        self.show_serving(&Digests::new());
        self.show_health(None);
        std::thread::Builder::new()
            .name("policy reload".into())
            .spawn(move || {
                loop {
                    std::thread::sleep(self.loader.config().bundle_refresh());
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
                    let pipeline = Pipeline::new(loaded.set, self.config.clone());
                    self.router.replace(Arc::new(pipeline));
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
