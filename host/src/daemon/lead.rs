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
//! read before.

use crate::mirror::Control;
use crate::queue::{Claim, Queue, QueueError};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

/// How often a follower tries to lead, and a leader looks at its lease.
const LOOK: Duration = Duration::from_millis(250);

/// The source's lead, held.
pub struct Lead {
    claim: Arc<Claim>,
    lost: Arc<AtomicBool>,
    done: Arc<AtomicBool>,
    watcher: Option<std::thread::JoinHandle<()>>,
}

/// Takes the lead, waiting while another replica holds it; `None` if the
/// daemon was told to stop meanwhile.
pub fn take(queue: &dyn Queue, control: &Arc<Control>) -> Result<Option<Lead>, QueueError> {
    let mut told = false;
    loop {
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
            Err(error) => return Err(error),
        }
        control.wait(LOOK * 4);
        if control.stopping() {
            return Ok(None);
        }
        // A relist asked of a follower is the leader's to do.
        let _ = control.take_relist();
    }
}

impl Lead {
    /// Watches `claim`: once it may have lapsed, the source is told to
    /// stop.
    fn watch(claim: Claim, control: Arc<Control>) -> Lead {
        let claim = Arc::new(claim);
        let (lost, done) = (
            Arc::new(AtomicBool::new(false)),
            Arc::new(AtomicBool::new(false)),
        );
        let watcher = {
            let (claim, lost, done) = (claim.clone(), lost.clone(), done.clone());
            std::thread::Builder::new()
                .name("lead".into())
                .spawn(move || {
                    while !done.load(Ordering::Acquire) {
                        if !claim.held() {
                            lost.store(true, Ordering::Release);
                            control.interrupt();
                            return;
                        }
                        std::thread::sleep(LOOK);
                    }
                })
                .ok()
        };
        Lead {
            claim,
            lost,
            done,
            watcher,
        }
    }

    /// Whether the lead surely still holds, as a check that outlives it.
    pub fn checker(&self) -> impl Fn() -> bool + Send + Sync + 'static {
        let claim = self.claim.clone();
        move || claim.held()
    }

    /// Whether the lead lapsed while held.
    pub fn lost(&self) -> bool {
        self.lost.load(Ordering::Acquire)
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
