//! Making room when every connection is taken: the connections served,
//! oldest first, each with what shedding needs to know of it (whether it is
//! serving a request now, since when it has been quiet) and a signal that
//! asks it to close.
//!
//! Which one goes: the oldest that serves no request and has been quiet a
//! moment ([`QUIET`]: a connection accepted just now has not had the time
//! to send its request), else the oldest that serves none, else the oldest
//! (which closes once its answer is sent). One that serves no request is
//! closed at once, whether it is idle between requests or still sending
//! its headers a line at a time; one that does finishes its answer first.
//!
//! The list holds weak handles, so a connection that ended is just skipped;
//! it is pruned when it grows past twice the cap, so a long-running server
//! that never hits the cap does not keep one entry per connection it ever
//! served.

use axum::body::{Body, HttpBody};
use axum::extract::{Request, State};
use axum::middleware::Next;
use axum::response::Response;
use http_body::{Frame, SizeHint};
use std::collections::VecDeque;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError, Weak};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};
use tokio::sync::Notify;

/// How long a connection must have been quiet to be shed before others
/// that serve no request either.
const QUIET: Duration = Duration::from_millis(100);

/// One connection, as shedding sees it.
pub struct Connection {
    signal: Notify,
    /// Requests being served (from their headers to their answer's last
    /// byte).
    busy: AtomicUsize,
    /// When it was last busy (or accepted), in milliseconds since `epoch`.
    quiet_since: AtomicU64,
    epoch: Instant,
}

impl Connection {
    /// Waits until this connection is asked to close.
    pub async fn asked(&self) {
        self.signal.notified().await;
    }

    /// Whether it serves no request now.
    pub fn idle(&self) -> bool {
        self.busy.load(Ordering::Acquire) == 0
    }

    fn quiet_for(&self) -> Duration {
        let since = Duration::from_millis(self.quiet_since.load(Ordering::Acquire));
        self.epoch.elapsed().saturating_sub(since)
    }

    fn start(self: &Arc<Self>) -> Busy {
        self.busy.fetch_add(1, Ordering::AcqRel);
        Busy(self.clone())
    }
}

/// A request being served; its connection is quiet again when it drops.
struct Busy(Arc<Connection>);

impl Drop for Busy {
    fn drop(&mut self) {
        let now = u64::try_from(self.0.epoch.elapsed().as_millis()).unwrap_or(u64::MAX);
        self.0.quiet_since.store(now, Ordering::Release);
        self.0.busy.fetch_sub(1, Ordering::AcqRel);
    }
}

/// Middleware: the connection is busy from a request's headers until its
/// answer's body is sent (or dropped).
pub async fn track(
    State(connection): State<Arc<Connection>>,
    request: Request,
    next: Next,
) -> Response {
    let busy = connection.start();
    let response = next.run(request).await;
    response.map(|body| {
        Body::new(Tracked {
            inner: body,
            _busy: busy,
        })
    })
}

/// An answer's body that keeps its connection busy while it is sent.
struct Tracked {
    inner: Body,
    _busy: Busy,
}

impl HttpBody for Tracked {
    type Data = <Body as HttpBody>::Data;
    type Error = <Body as HttpBody>::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Self::Data>, Self::Error>>> {
        Pin::new(&mut self.inner).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

/// The connections served, oldest first.
pub struct Served {
    order: Mutex<VecDeque<Weak<Connection>>>,
    cap: usize,
    epoch: Instant,
}

impl Served {
    /// No connection yet, for a server of at most `cap` connections.
    pub fn new(cap: usize) -> Served {
        Served {
            order: Mutex::new(VecDeque::new()),
            cap: cap.max(1),
            epoch: Instant::now(),
        }
    }

    /// A new connection, the youngest.
    pub fn join(&self) -> Arc<Connection> {
        let now = u64::try_from(self.epoch.elapsed().as_millis()).unwrap_or(u64::MAX);
        let connection = Arc::new(Connection {
            signal: Notify::new(),
            busy: AtomicUsize::new(0),
            quiet_since: AtomicU64::new(now),
            epoch: self.epoch,
        });
        let mut order = self.order.lock().unwrap_or_else(PoisonError::into_inner);
        if order.len() >= 2 * self.cap {
            order.retain(|w| w.strong_count() > 0);
        }
        order.push_back(Arc::downgrade(&connection));
        connection
    }

    /// Asks one connection to close (see the module's note for which).
    pub fn shed_one(&self) {
        let mut order = self.order.lock().unwrap_or_else(PoisonError::into_inner);
        order.retain(|w| w.strong_count() > 0);
        let live: Vec<Arc<Connection>> = order.iter().filter_map(Weak::upgrade).collect();
        let chosen = live
            .iter()
            .position(|c| c.idle() && c.quiet_for() >= QUIET)
            .or_else(|| live.iter().position(|c| c.idle()))
            .or((!live.is_empty()).then_some(0));
        if let Some(at) = chosen {
            order.remove(at);
            // A permit is kept if the connection is not waiting yet.
            live[at].signal.notify_one();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn asked(connection: &Connection) -> bool {
        tokio::time::timeout(Duration::from_millis(50), connection.asked())
            .await
            .is_ok()
    }

    #[tokio::test]
    async fn an_idle_connection_goes_before_a_busy_one_and_ended_ones_are_skipped() {
        let served = Served::new(3);
        let ended = served.join();
        let busy = served.join();
        let idle = served.join();
        drop(ended);
        let _request = busy.start();
        served.shed_one();
        // The idle one was asked, though the busy one is older.
        assert!(asked(&idle).await);
        assert!(!asked(&busy).await);
        // With none idle, the oldest is asked (it closes once answered).
        served.shed_one();
        assert!(asked(&busy).await);
    }

    #[test]
    fn ended_connections_are_pruned_past_twice_the_cap() {
        let served = Served::new(2);
        for _ in 0..100 {
            drop(served.join());
        }
        assert!(served.order.lock().unwrap().len() <= 5);
    }
}
