//! Making room when every connection is taken: the connections served,
//! oldest first, each with a signal that asks it to close once the request
//! it is serving is answered (at once when it is idle, which is what a
//! flood of idle connections is).
//!
//! The list holds weak handles, so a connection that ended is just skipped;
//! it is pruned when it grows past twice the cap, so a long-running server
//! that never hits the cap does not keep one entry per connection it ever
//! served.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex, PoisonError, Weak};
use tokio::sync::Notify;

/// The signal one connection is asked to close by.
pub struct Shed(Arc<Notify>);

impl Shed {
    /// Waits until this connection is asked to close.
    pub async fn asked(&self) {
        self.0.notified().await;
    }
}

/// The connections served, oldest first.
pub struct Served {
    order: Mutex<VecDeque<Weak<Notify>>>,
    cap: usize,
}

impl Served {
    /// No connection yet, for a server of at most `cap` connections.
    pub fn new(cap: usize) -> Served {
        Served {
            order: Mutex::new(VecDeque::new()),
            cap: cap.max(1),
        }
    }

    /// A new connection, the youngest.
    pub fn join(&self) -> Shed {
        let signal = Arc::new(Notify::new());
        let mut order = self.order.lock().unwrap_or_else(PoisonError::into_inner);
        if order.len() >= 2 * self.cap {
            order.retain(|w| w.strong_count() > 0);
        }
        order.push_back(Arc::downgrade(&signal));
        Shed(signal)
    }

    /// Asks the oldest connection still served to close once its request
    /// is answered.
    pub fn shed_oldest(&self) {
        let mut order = self.order.lock().unwrap_or_else(PoisonError::into_inner);
        while let Some(oldest) = order.pop_front() {
            if let Some(signal) = oldest.upgrade() {
                // A permit is kept if the connection is not waiting yet.
                signal.notify_one();
                return;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn the_oldest_live_connection_is_asked_and_ended_ones_are_skipped() {
        let served = Served::new(2);
        let first = served.join();
        let second = served.join();
        let third = served.join();
        drop(first);
        served.shed_oldest();
        // The second was asked (the first had ended); the third was not.
        tokio::time::timeout(std::time::Duration::from_secs(5), second.asked())
            .await
            .expect("the oldest live connection is asked");
        let third_asked =
            tokio::time::timeout(std::time::Duration::from_millis(50), third.asked()).await;
        assert!(third_asked.is_err());
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
