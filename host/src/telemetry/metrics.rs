//! The daemon's Prometheus metrics.
//!
//! Counters are cheap atomics, so stages record on their hot paths; the
//! registry is encoded only when `/metrics` is scraped. Repository URLs in
//! labels have their credentials redacted.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::family::MetricConstructor;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

/// Which branch of which repository a sink metric is about.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RepoLabels {
    /// The repository URL, credentials redacted.
    pub repo: String,
    /// The branch.
    pub branch: String,
}

impl RepoLabels {
    /// Labels for `repo` (redacted here) and `branch`.
    pub fn new(repo: &crate::model::RepoUrl, branch: &str) -> RepoLabels {
        RepoLabels {
            repo: repo.to_string(),
            branch: branch.to_owned(),
        }
    }
}

/// Which source an ingest metric is about.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct SourceLabels {
    /// Where the objects came from.
    pub source: String,
}

/// How a policy reload ended: `loaded` or `failed`.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ReloadLabels {
    /// `loaded` or `failed`.
    pub result: String,
}

/// Which bundle, at which digest, serves.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct BundleLabels {
    /// The bundle's name in the policy configuration.
    pub bundle: String,
    /// The manifest digest serving.
    pub digest: String,
}

/// The buckets of push latency: 5 ms to about 80 s.
#[derive(Debug, Clone, Default)]
pub struct PushBuckets;

impl MetricConstructor<Histogram> for PushBuckets {
    fn new_metric(&self) -> Histogram {
        Histogram::new(exponential_buckets(0.005, 2.0, 15))
    }
}

/// Push latency per repository and branch.
#[derive(Debug, Clone)]
pub struct PushSeconds(pub Family<RepoLabels, Histogram, PushBuckets>);

impl Default for PushSeconds {
    fn default() -> PushSeconds {
        PushSeconds(Family::new_with_constructor(PushBuckets))
    }
}

/// Every metric the daemon exports.
#[derive(Debug, Default)]
pub struct Metrics {
    /// Objects read from sources.
    pub objects_scanned: Family<SourceLabels, Counter>,
    /// Objects that could not be read or routed.
    pub objects_failed: Family<SourceLabels, Counter>,
    /// Files written (created or changed) by pushed commits.
    pub files_written: Family<RepoLabels, Counter>,
    /// Files deleted by pushed commits.
    pub files_deleted: Family<RepoLabels, Counter>,
    /// Changes set aside because the sink cannot write them.
    pub files_rejected: Family<RepoLabels, Counter>,
    /// Changes discarded on purpose: routed for a destination removed, or
    /// moved to another base folder, since.
    pub files_discarded: Family<RepoLabels, Counter>,
    /// Commits pushed.
    pub commits: Family<RepoLabels, Counter>,
    /// Bytes of file content in pushed commits.
    pub commit_bytes: Family<RepoLabels, Counter>,
    /// Pushes that were rejected or failed and were tried again.
    pub push_retries: Family<RepoLabels, Counter>,
    /// Entries waiting in the queue.
    pub queue_depth: Family<RepoLabels, Gauge>,
    /// 1 while this replica holds the partition (writes its branch).
    pub partition_held: Family<RepoLabels, Gauge>,
    /// 1 while this replica reads the source (leads).
    pub source_leading: Gauge,
    /// Seconds from a push's start to the remote's answer, for pushes
    /// accepted.
    pub push_seconds: PushSeconds,
    /// Policy sets built from moved bundle tags, by result.
    pub policy_reloads: Family<ReloadLabels, Counter>,
    /// 1 while the newest bundles fail to load and older ones serve.
    pub policy_reload_failing: Gauge,
    /// 1 for each bundle digest serving.
    pub bundle_serving: Family<BundleLabels, Gauge>,
}

impl Metrics {
    /// The metrics, registered in a fresh registry.
    pub fn new() -> (std::sync::Arc<Metrics>, Registry) {
        let metrics = Metrics::default();
        let mut registry = Registry::with_prefix("plumbline");
        let m = &metrics;
        registry.register(
            "objects_scanned",
            "Objects read from sources",
            m.objects_scanned.clone(),
        );
        registry.register(
            "objects_failed",
            "Objects that could not be read or routed",
            m.objects_failed.clone(),
        );
        registry.register(
            "files_written",
            "Files created or changed by pushed commits",
            m.files_written.clone(),
        );
        registry.register(
            "files_deleted",
            "Files deleted by pushed commits",
            m.files_deleted.clone(),
        );
        registry.register(
            "files_rejected",
            "Changes set aside because the sink cannot write them (a path Git refuses)",
            m.files_rejected.clone(),
        );
        registry.register(
            "files_discarded",
            "Changes discarded on purpose: routed for a destination removed or moved to another base folder since",
            m.files_discarded.clone(),
        );
        registry.register("commits", "Commits pushed", m.commits.clone());
        registry.register(
            "commit_bytes",
            "Bytes of file content in pushed commits",
            m.commit_bytes.clone(),
        );
        registry.register(
            "push_retries",
            "Pushes rejected or failed, and tried again",
            m.push_retries.clone(),
        );
        registry.register(
            "queue_depth",
            "Entries waiting in the queue, per repository and branch",
            m.queue_depth.clone(),
        );
        registry.register(
            "partition_held",
            "1 while this replica holds the repository and branch (it alone writes them)",
            m.partition_held.clone(),
        );
        registry.register(
            "source_leading",
            "1 while this replica reads the source (one replica at a time does)",
            m.source_leading.clone(),
        );
        registry.register(
            "push_seconds",
            "Seconds from a push's start to the remote accepting it",
            m.push_seconds.0.clone(),
        );
        registry.register(
            "policy_reloads",
            "Policy sets built because a bundle tag moved, by result",
            m.policy_reloads.clone(),
        );
        registry.register(
            "policy_reload_failing",
            "1 while the newest bundles fail to load and older ones serve",
            m.policy_reload_failing.clone(),
        );
        registry.register(
            "bundle_serving",
            "1 for each policy bundle digest serving",
            m.bundle_serving.clone(),
        );
        (std::sync::Arc::new(metrics), registry)
    }
}
