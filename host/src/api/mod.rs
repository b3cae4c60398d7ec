//! The one HTTP server: health, readiness and metrics for now; the
//! webhooks and the catalog's REST API join it later.
//!
//! It runs on its own small tokio runtime in a thread of its own, so the
//! mirror's blocking work (Wasm, Git) never delays a probe or a scrape.

use crate::telemetry::Health;
use axum::Router;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use axum::routing::get;
use prometheus_client::registry::Registry;
use std::net::SocketAddr;
use std::sync::Arc;

/// What the handlers read.
struct Shared {
    registry: Registry,
    health: Arc<Health>,
}

/// Binds `address` and serves in the background; returns the address bound
/// (useful with port 0).
pub fn serve(
    address: SocketAddr,
    registry: Registry,
    health: Arc<Health>,
) -> std::io::Result<SocketAddr> {
    let listener = std::net::TcpListener::bind(address)?;
    listener.set_nonblocking(true)?;
    let bound = listener.local_addr()?;
    let shared = Arc::new(Shared { registry, health });
    let app = Router::new()
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
        .with_state(shared);
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_io()
        .build()?;
    std::thread::Builder::new()
        .name("http".into())
        .spawn(move || {
            runtime.block_on(async move {
                let listener = match tokio::net::TcpListener::from_std(listener) {
                    Ok(listener) => listener,
                    Err(error) => {
                        tracing::error!(%error, "cannot serve HTTP");
                        return;
                    }
                };
                if let Err(error) = axum::serve(listener, app).await {
                    tracing::error!(%error, "the HTTP server stopped");
                }
            });
        })?;
    Ok(bound)
}

/// Alive: the process answers.
async fn healthz() -> &'static str {
    "ok\n"
}

/// Ready when every part is, with one line per part either way.
async fn readyz(State(shared): State<Arc<Shared>>) -> impl IntoResponse {
    let (ready, text) = shared.health.report();
    let status = if ready {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (status, text)
}

async fn metrics(State(shared): State<Arc<Shared>>) -> impl IntoResponse {
    let mut text = String::new();
    match prometheus_client::encoding::text::encode(&mut text, &shared.registry) {
        Ok(()) => (
            StatusCode::OK,
            [(
                header::CONTENT_TYPE,
                "application/openmetrics-text; version=1.0.0; charset=utf-8",
            )],
            text,
        ),
        Err(error) => (
            StatusCode::INTERNAL_SERVER_ERROR,
            [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
            error.to_string(),
        ),
    }
}
