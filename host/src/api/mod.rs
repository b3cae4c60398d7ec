//! The one HTTP server. It knows no route: each stage contributes its own
//! (telemetry's probes and metrics now; the webhooks and the catalog's
//! REST API next), and the daemon merges them into one router.
//!
//! It runs as a task of the daemon's async runtime, whose threads do no
//! blocking work (Wasm and Git run on threads of their own), so a probe
//! or a scrape is never delayed by the mirror.
//!
//! Anyone who can reach the port must not be able to take the probes down,
//! so the accept loop is Plumbline's own, over hyper's HTTP/1 connection
//! (axum's `serve` has no timeouts and no cap, and its accept back-off
//! panics on a runtime without timers):
//!
//! - a client has [`ServerLimits::read_timeout`] to send a request's headers,
//!   counted from when it connects or its previous response went out, so a
//!   slow or idle connection is closed then; and as long again for the rest
//!   of the request's body, or it gets a 408 ([`deadline`]): a body sent a
//!   byte a second held a connection for its whole lifetime;
//! - no connection lives longer than [`CONNECTION_LIFETIME`], so one that
//!   stops reading its response does not hold its place for ever;
//! - at most [`ServerLimits::max_connections`] are served at once; the next
//!   wait in the kernel's backlog, costing no descriptor. A new connection
//!   that finds them all taken has one closed ([`shed`]): the oldest that
//!   serves no request (idle, or still sending its headers), else the
//!   oldest once its answer is sent, as nginx reuses keep-alive
//!   connections: otherwise a few hundred idle or slow ones kept a probe
//!   waiting for the read timeout;
//! - an `accept` that fails (out of file descriptors, most often) is retried
//!   with back-off: the listener works again as soon as descriptors free up.
//!
//! With [`tls`], every connection is TLS, its handshake within the read
//! timeout too; what the handshake learnt of the client reaches the routes
//! as a [`tls::Peer`] request extension.

mod client_auth;
mod deadline;
mod shed;
pub mod tls;

use axum::{Extension, Router};
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::runtime::Handle;
use tokio::sync::Semaphore;

/// What keeps the server answering whatever its clients do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ServerLimits {
    /// How long a client may take to send a request's headers, from when it
    /// connects or its previous response was sent; an idle keep-alive
    /// connection is closed then too.
    pub read_timeout: Duration,
    /// Most connections served at once.
    pub max_connections: usize,
}

impl Default for ServerLimits {
    fn default() -> Self {
        ServerLimits {
            read_timeout: Duration::from_secs(10),
            max_connections: 256,
        }
    }
}

/// The longest one connection is served, whatever it does: a constant, as
/// no request to these endpoints takes more than a moment, and a client
/// that keeps a connection alive simply opens a new one.
pub const CONNECTION_LIFETIME: Duration = Duration::from_secs(120);

/// The first and the longest wait after a failed `accept`.
const ACCEPT_BACKOFF: (Duration, Duration) = (Duration::from_millis(10), Duration::from_secs(1));

/// Serves `app` on `address` within `limits`, as a task of the runtime
/// `runtime` belongs to; returns the address bound (useful with port 0).
/// Binding happens here, so that a port in use is this call's error.
pub fn serve(
    runtime: &Handle,
    address: SocketAddr,
    limits: ServerLimits,
    tls: Option<tls::ServerTls>,
    app: Router,
) -> std::io::Result<SocketAddr> {
    let listener = std::net::TcpListener::bind(address)?;
    listener.set_nonblocking(true)?;
    let bound = listener.local_addr()?;
    let listener = {
        let _inside = runtime.enter();
        tokio::net::TcpListener::from_std(listener)?
    };
    let tls = tls.map(|tls| (tokio_rustls::TlsAcceptor::from(tls.config.clone()), tls));
    let app = app.layer(axum::middleware::from_fn_with_state(
        limits.read_timeout,
        deadline::deadline,
    ));
    runtime.spawn(accept_loop(listener, app, limits, tls));
    Ok(bound)
}

/// Accepts for ever: an error is waited out, never the end.
async fn accept_loop(
    listener: tokio::net::TcpListener,
    app: Router,
    limits: ServerLimits,
    tls: Option<(tokio_rustls::TlsAcceptor, tls::ServerTls)>,
) {
    let permits = Arc::new(Semaphore::new(limits.max_connections.max(1)));
    let served = Arc::new(shed::Served::new(limits.max_connections));
    let mut backoff = ACCEPT_BACKOFF.0;
    loop {
        // A permit before `accept`: past the cap, connections wait in the
        // backlog instead of taking a descriptor each, and the oldest
        // served is asked to make room.
        let permit = match permits.clone().try_acquire_owned() {
            Ok(permit) => permit,
            Err(_) => {
                served.shed_one();
                let Ok(permit) = permits.clone().acquire_owned().await else {
                    return; // never closed
                };
                permit
            }
        };
        let (stream, address) = match listener.accept().await {
            Ok(accepted) => {
                backoff = ACCEPT_BACKOFF.0;
                accepted
            }
            Err(error) => {
                if backoff == ACCEPT_BACKOFF.0 {
                    tracing::warn!(%error, "cannot accept HTTP connections; retrying with back-off");
                }
                drop(permit);
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(ACCEPT_BACKOFF.1);
                continue;
            }
        };
        let (app, tls) = (app.clone(), tls.clone());
        let shed = served.join();
        tokio::spawn(async move {
            let _permit = permit;
            let Some((acceptor, tls)) = tls else {
                return serve_connection(
                    stream,
                    app.layer(Extension(tls::Peer {
                        client_certified: false,
                        address: Some(address),
                    })),
                    limits,
                    shed,
                )
                .await;
            };
            // The handshake is part of the request's headers' time.
            let stream =
                match tokio::time::timeout(limits.read_timeout, acceptor.accept(stream)).await {
                    Ok(Ok(stream)) => stream,
                    Ok(Err(error)) => return handshake_failed(&error),
                    Err(_) => return tracing::debug!("TLS handshake timed out"),
                };
            // Whether the client CA signed the certificate the handshake
            // took (any, for the routes that want none); without a CA,
            // none is asked for.
            let peer = tls::Peer {
                client_certified: tls.certified(stream.get_ref().1.peer_certificates()),
                address: Some(address),
            };
            serve_connection(stream, app.layer(Extension(peer)), limits, shed).await;
        });
    }
}

/// Serves one connection's requests, for at most [`CONNECTION_LIFETIME`].
/// Asked to close ([`shed`]): at once if it serves no request, else once
/// its answer is sent.
async fn serve_connection<S>(
    stream: S,
    app: Router,
    limits: ServerLimits,
    shed: Arc<shed::Connection>,
) where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let app = app.layer(axum::middleware::from_fn_with_state(
        shed.clone(),
        shed::track,
    ));
    let connection = hyper::server::conn::http1::Builder::new()
        .timer(TokioTimer::new())
        .header_read_timeout(limits.read_timeout)
        .serve_connection(TokioIo::new(stream), TowerToHyperService::new(app));
    let served = async {
        tokio::pin!(connection);
        tokio::select! {
            result = connection.as_mut() => return result,
            () = shed.asked() => connection.as_mut().graceful_shutdown(),
        }
        if shed.idle() {
            return Ok(()); // dropped: nothing of it is owed an answer
        }
        connection.await
    };
    match tokio::time::timeout(CONNECTION_LIFETIME, served).await {
        Ok(Ok(())) => {}
        // A client that went away or timed out: its business.
        Ok(Err(error)) => tracing::debug!(%error, "HTTP connection ended"),
        Err(_) => tracing::debug!("HTTP connection closed after its lifetime"),
    }
}

/// Says a failed TLS handshake at the 1st, 2nd, 4th, 8th… failure: an API
/// server whose client certificate expired loses its webhook calls, which
/// must show at the default log level, but a scanner must not flood it.
fn handshake_failed(error: &std::io::Error) {
    static FAILED: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let failed = FAILED.fetch_add(1, std::sync::atomic::Ordering::Relaxed) + 1;
    if failed.is_power_of_two() {
        tracing::warn!(%error, failed, "a TLS handshake failed (not TLS, or a client certificate the CA did not sign or that expired)");
    } else {
        tracing::debug!(%error, "TLS handshake failed");
    }
}
