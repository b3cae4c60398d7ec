//! Who made each change: the API server's audit webhook tells, and the
//! cluster source joins what it tells to the watch events it explains.
//!
//! - [`audit`]: an `audit.k8s.io/v1` EventList read into facts (who made
//!   which persisted change);
//! - [`facts`]: the bounded store of facts, and the join.
//!
//! The webhook is served at `/audit-webhook` (and `/audit-webhook/<name>`,
//! the form gitops-reverser's audit kubeconfig uses) on the daemon's one
//! HTTP server. A body that is not an EventList gets a 400 naming why.

pub mod audit;
pub mod facts;

pub use facts::{Facts, FactsConfig};

use axum::Router;
use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, State};
use axum::http::StatusCode;
use axum::routing::post;
use std::sync::Arc;

/// Largest audit batch taken: the API server's batching webhook sends at
/// most 400 events by default, each with its request and response.
pub const MAX_BATCH_BYTES: usize = 32 << 20;

/// The webhook's routes, recording into `facts`.
pub fn routes(facts: Arc<Facts>) -> Router {
    Router::new()
        .route("/audit-webhook", post(audit_webhook))
        .route("/audit-webhook/{cluster}", post(audit_webhook))
        .layer(DefaultBodyLimit::max(MAX_BATCH_BYTES))
        .with_state(facts)
}

async fn audit_webhook(State(facts): State<Arc<Facts>>, body: Bytes) -> (StatusCode, String) {
    // A batch can be tens of MiB: read off the runtime's threads, which
    // serve the probes.
    let read = tokio::task::spawn_blocking(move || audit::facts(&body)).await;
    let Ok(read) = read else {
        return (
            StatusCode::INTERNAL_SERVER_ERROR,
            "reading the batch failed\n".into(),
        );
    };
    match read {
        Ok(found) => {
            facts.record(found);
            (StatusCode::OK, "{}".into())
        }
        Err(error) => {
            // Said at the 1st, 2nd, 4th, 8th… refusal: anyone who can
            // reach the port must not be able to flood the log.
            let refused = facts.refused();
            if refused.is_power_of_two() {
                tracing::warn!(%error, refused, "an audit webhook body was refused");
            }
            (StatusCode::BAD_REQUEST, format!("{error}\n"))
        }
    }
}
