//! `/registry-webhook`: the push notifications a registry sends (the
//! distribution registry's `application/vnd.docker.distribution.events.v1+json`
//! envelope, which Debian's `docker-registry` sends when its
//! `notifications` section names an endpoint). A push of a tag to a
//! watched repository is registered as it arrives; the answer goes at once
//! (a registry retries what is not answered), the registration on a thread
//! of its own.

use super::api::{Access, writer};
use super::reconcile::Reconciler;
use crate::api::tls::Peer;
use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::{Extension, Router};
use serde::Deserialize;
use std::sync::Arc;
use std::time::Instant;

/// The largest envelope read (a registry batches a few events).
const MAX_BODY_BYTES: usize = 1 << 20;

/// The envelope.
#[derive(Debug, Deserialize)]
struct Envelope {
    #[serde(default)]
    events: Vec<Event>,
}

/// One event; only what is read of it.
#[derive(Debug, Deserialize)]
struct Event {
    #[serde(default)]
    action: String,
    #[serde(default)]
    target: Target,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Target {
    #[serde(default)]
    media_type: String,
    #[serde(default)]
    repository: String,
    #[serde(default)]
    tag: String,
}

#[derive(Clone)]
struct Notified {
    reconciler: Arc<Reconciler>,
    access: Access,
}

/// The route, registering through `reconciler`; writes as `access` says.
pub fn routes(reconciler: Arc<Reconciler>, access: Access) -> Router {
    Router::new()
        .route("/registry-webhook", post(notified))
        .layer(DefaultBodyLimit::max(MAX_BODY_BYTES))
        .with_state(Notified { reconciler, access })
}

async fn notified(
    State(state): State<Notified>,
    Extension(peer): Extension<Peer>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    if let Err(problem) = writer(&state.access, &headers, &peer) {
        return problem.into_response();
    }
    let arrived = Instant::now();
    let envelope: Envelope = match serde_json::from_slice(&body) {
        Ok(envelope) => envelope,
        Err(error) => {
            let message = format!("not a registry notification envelope: {error}\n");
            return (StatusCode::BAD_REQUEST, message).into_response();
        }
    };
    // A registry may repeat an event: each tag is offered once.
    let pushes: std::collections::BTreeSet<String> = envelope
        .events
        .iter()
        .filter(|e| e.action == "push" && !e.target.tag.is_empty())
        // A blob's push is part of an image's; the manifest's names it.
        .filter(|e| {
            e.target.media_type.contains("manifest") || e.target.media_type.contains("index")
        })
        .filter_map(|e| {
            let watched = state.reconciler.watching(&e.target.repository)?;
            Some(watched.reference(&e.target.repository, &e.target.tag))
        })
        .collect();
    for reference in pushes {
        let reconciler = state.reconciler.clone();
        tokio::task::spawn_blocking(move || match reconciler.offer(&reference, "notification") {
            Ok(registered) => {
                if registered {
                    reconciler.metrics.extracted(arrived);
                }
            }
            Err(error) => tracing::warn!("a pushed workflow image was not registered: {error}"),
        });
    }
    StatusCode::OK.into_response()
}
