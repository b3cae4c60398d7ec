//! The read timeout of a request's body: a client has as long as the
//! headers took at most to send the rest, or it gets a 408.
//!
//! The timeout is the client's, not the handler's: once the whole body has
//! arrived, the handler takes as long as its own work does (a registration
//! reading an image from a slow registry has the registry timeouts of its
//! own). Answering 408 to a request that is being carried out would tell
//! the client it failed while it goes on. So the body is wrapped in
//! [`Arrival`], which says when the last of it came, and the deadline only
//! ends a request whose body is still on its way.
//!
//! A handler that never reads a body it was sent cannot be told from a
//! client that is slow to send it; every handler here reads its body first.

use axum::body::{Body, HttpBody};
use axum::extract::{Request, State};
use axum::http::StatusCode;
use axum::middleware::Next;
use axum::response::{IntoResponse as _, Response};
use http_body::{Frame, SizeHint};
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

/// Middleware: a request whose body has not all arrived within `limit` of
/// its headers gets a 408; one whose body has runs to its end.
pub async fn deadline(State(limit): State<Duration>, request: Request, next: Next) -> Response {
    let arrived = Arc::new(AtomicBool::new(false));
    let request = request.map(|body| Arrival::wrap(body, arrived.clone()));
    let work = next.run(request);
    tokio::pin!(work);
    tokio::select! {
        response = &mut work => return response,
        () = tokio::time::sleep(limit) => {}
    }
    if arrived.load(Ordering::Acquire) {
        return work.await;
    }
    (
        StatusCode::REQUEST_TIMEOUT,
        "the request's body did not arrive within the read timeout\n",
    )
        .into_response()
}

/// A request body that sets `arrived` once it has all been read.
struct Arrival {
    inner: Body,
    arrived: Arc<AtomicBool>,
}

impl Arrival {
    fn wrap(inner: Body, arrived: Arc<AtomicBool>) -> Body {
        if inner.is_end_stream() {
            arrived.store(true, Ordering::Release);
        }
        Body::new(Arrival { inner, arrived })
    }
}

impl HttpBody for Arrival {
    type Data = <Body as HttpBody>::Data;
    type Error = <Body as HttpBody>::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Self::Data>, Self::Error>>> {
        let polled = Pin::new(&mut self.inner).poll_frame(cx);
        if matches!(polled, Poll::Ready(None)) || self.inner.is_end_stream() {
            self.arrived.store(true, Ordering::Release);
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}
