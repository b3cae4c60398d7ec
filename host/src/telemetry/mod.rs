//! What the daemon reports about itself: Prometheus metrics and the health
//! each part declares, both served by `api/` and read by the terminal
//! progress display. Every stage records into these; none serves them.
//!
//! - [`metrics`]: counters and gauges, labelled by repository and branch;
//! - [`health`]: each part's readiness, with the reason when it is not.

pub mod health;
pub mod metrics;

pub use health::Health;
pub use metrics::{Metrics, RepoLabels};
