//! What the daemon reports about itself: Prometheus metrics and the health
//! each part declares, served on the one HTTP server through the routes
//! of [`http`], and read by the terminal progress display. Every stage
//! records into these.
//!
//! - [`metrics`]: counters and gauges, labelled by repository and branch;
//! - [`health`]: each part's readiness, with the reason when it is not;
//! - [`http`]: `/healthz`, `/readyz` and `/metrics`;
//! - [`notices`]: what the operator should read as it happens.

pub mod health;
pub mod http;
pub mod metrics;
pub mod notices;

pub use health::Health;
pub use metrics::{Metrics, RepoLabels};
pub use notices::Notices;

/// The log target that follows each change from its event to the push
/// that carried it (`--log warn,plumbline::change=debug`): its span
/// `change` carries the change's `trace` from routing, across the queue
/// (in the entry, so across replicas), to the worker that applies it; the
/// `committed` line lists the traces in a commit and names it, and the
/// `pushed` line names the commit pushed.
pub const CHANGES: &str = "plumbline::change";

/// A new change's trace: 128 random bits in hex, the shape of a W3C trace
/// id, so a collector can take it as one.
pub fn trace_id() -> String {
    format!("{:032x}", rand::random::<u128>())
}

/// Now, as RFC 3339 in whole seconds, UTC (`2026-12-06T18:40:00Z`): what
/// Kubernetes conditions and the catalog's records carry.
pub fn timestamp() -> String {
    jiff::Timestamp::now()
        .strftime("%Y-%m-%dT%H:%M:%SZ")
        .to_string()
}

/// An error and its causes, `: `-joined, as a log line shows them.
pub fn chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut cause = error.source();
    while let Some(error) = cause {
        text.push_str(": ");
        text.push_str(&error.to_string());
        cause = error.source();
    }
    text
}
