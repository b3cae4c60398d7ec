//! One replica at a time reads the source: it seeds, prunes orphans and
//! follows, and appends what it reads; the others serve HTTP and write
//! their share of the repositories while they wait to lead. The lead is
//! the queue's claim on the source (a lease on NATS; always this process's
//! with the embedded queue).
//!
//! A leader whose lease lapses (NATS out of reach, or the process paused
//! past the lease) stops reading the source, and waits to lead again like
//! any follower: another replica may lead by then. Appends are fenced by
//! the same check, so a leader that wakes from a pause appends nothing it
//! read before: the queue refuses appends once its lead may have lapsed,
//! and tags each entry with the lead's epoch, so that a reader drops one
//! a lapsed leader got in after its successor's.

use crate::mirror::Control;
use crate::queue::{Claim, Held, Queue, QueueError};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

/// How often a follower tries to lead, and a leader looks at its lease.
const LOOK: Duration = Duration::from_millis(250);

/// The source's lead, held.
pub struct Lead {
    /// Given up when the lead ends.
    _claim: Claim,
    held: Held,
    lost: Arc<AtomicBool>,
    done: Arc<AtomicBool>,
    watcher: Option<std::thread::JoinHandle<()>>,
}

/// Takes the lead, waiting while another replica holds it (or NATS does
/// not answer); `None` if the daemon was told to stop meanwhile.
pub fn take(queue: &dyn Queue, control: &Arc<Control>) -> Result<Option<Lead>, QueueError> {
    let mut told = false;
    loop {
        // A stop while the last attempt lasted (NATS out of reach: it
        // waited out its timeout) is heard before the next.
        if control.stopping() {
            return Ok(None);
        }
        match queue.lead() {
            Ok(claim) => return Ok(Some(Lead::watch(claim, control.clone()))),
            Err(QueueError::Claimed { .. }) => {
                if !std::mem::replace(&mut told, true) {
                    let leader = queue.leader().unwrap_or_else(|| "another replica".into());
                    eprintln!(
                        "waiting to lead: {leader} reads the source; this replica serves HTTP and writes its share of the repositories"
                    );
                }
            }
            Err(QueueError::Abandoned { .. }) => return Ok(None),
            Err(error @ QueueError::Store { .. }) => {
                let error = crate::telemetry::chain(&error);
                tracing::warn!(error, "taking the lead of the source; trying again");
            }
            Err(error) => return Err(error),
        }
        control.wait(LOOK * 4);
        // A relist asked of a follower is the leader's to do.
        let _ = control.take_relist();
    }
}

impl Lead {
    /// Watches `claim`: once it may have lapsed, the source is told to
    /// stop for now.
    fn watch(claim: Claim, control: Arc<Control>) -> Lead {
        let held = claim.checker();
        let (lost, done) = (
            Arc::new(AtomicBool::new(false)),
            Arc::new(AtomicBool::new(false)),
        );
        let watcher = {
            let (held, lost, done) = (held.clone(), lost.clone(), done.clone());
            std::thread::Builder::new()
                .name("lead".into())
                .spawn(move || {
                    while !done.load(Ordering::Acquire) {
                        if !held() {
                            lost.store(true, Ordering::Release);
                            control.interrupt();
                            return;
                        }
                        std::thread::sleep(LOOK);
                    }
                })
        };
        let watcher = match watcher {
            Ok(watcher) => Some(watcher),
            Err(error) => {
                // Appends are fenced all the same; only the interruption
                // waits for the source's next look at the lease.
                tracing::warn!(%error, "the lead's watcher could not start");
                None
            }
        };
        Lead {
            _claim: claim,
            held,
            lost,
            done,
            watcher,
        }
    }

    /// Whether the lead lapsed while held (once lapsed, it stays so).
    pub fn lost(&self) -> bool {
        self.lost.load(Ordering::Acquire) || !(self.held)()
    }
}

impl Drop for Lead {
    fn drop(&mut self) {
        self.done.store(true, Ordering::Release);
        if let Some(watcher) = self.watcher.take() {
            let _ = watcher.join();
        }
    }
}
