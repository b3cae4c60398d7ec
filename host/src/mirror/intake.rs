//! The contract between a source and the mirror.
//!
//! A source (a folder of manifests, the cluster's List+Watch) pushes
//! events into an [`Intake`] and frames each listing as a seed: it begins
//! one for a [`SeedScope`], submits what it lists, and ends it with a
//! [`Listing`] saying whether the listing was complete. Only a complete
//! listing prunes, and only within its scope: a watch that expired lists
//! its one resource again, and cannot prune another resource's files.
//!
//! [`Control`] is how the daemon steers a source that follows: stop, or
//! list a scope again (the policies or the destinations changed).

use super::router::Routing;
use crate::model::{Event, GroupResource, Target};
use crate::queue::{Cursors, QueueError};
use std::collections::BTreeSet;
use std::sync::{Condvar, Mutex, PoisonError};
use std::time::Duration;

/// What a seed lists: which destinations it is for, and which resources.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SeedScope {
    /// The destinations (by name) whose orphans the seed may prune; `None`
    /// for every destination.
    pub destinations: Option<BTreeSet<String>>,
    /// The resources listed; `None` for every resource.
    pub resources: Option<BTreeSet<GroupResource>>,
}

impl SeedScope {
    /// Every resource, for every destination.
    pub fn everything() -> SeedScope {
        SeedScope::default()
    }

    /// Every resource, for the destination `name` only (one that was just
    /// added).
    pub fn destination(name: &str) -> SeedScope {
        SeedScope {
            destinations: Some(BTreeSet::from([name.to_owned()])),
            resources: None,
        }
    }

    /// The resources `resources`, for every destination (watches that
    /// expired).
    pub fn resources(resources: impl IntoIterator<Item = GroupResource>) -> SeedScope {
        SeedScope {
            destinations: None,
            resources: Some(resources.into_iter().collect()),
        }
    }

    /// Whether the seed is for the destination `name`.
    pub fn covers(&self, name: &str) -> bool {
        self.destinations.as_ref().is_none_or(|d| d.contains(name))
    }

    /// The smallest scope holding both.
    pub fn union(self, other: SeedScope) -> SeedScope {
        fn both<T: Ord>(a: Option<BTreeSet<T>>, b: Option<BTreeSet<T>>) -> Option<BTreeSet<T>> {
            let (mut a, b) = (a?, b?);
            a.extend(b);
            Some(a)
        }
        SeedScope {
            destinations: both(self.destinations, other.destinations),
            resources: both(self.resources, other.resources),
        }
    }
}

/// A seed under way, as [`Intake::begin_seed`] returned it.
#[derive(Debug)]
pub struct Seed {
    pub(super) id: u64,
    /// The destinations its markers went to.
    pub(super) destinations: Vec<String>,
}

/// How a listing ended.
#[derive(Debug, Clone, Default)]
pub struct Listing {
    /// Whether everything in scope was read, or what was not is in
    /// `held_back`: only then are orphans pruned.
    pub complete: bool,
    /// Objects the source could not read this time, which are not gone:
    /// their files stay as they are.
    pub held_back: Vec<Target>,
    /// Who deleted the orphans' objects, when the source knows.
    pub deleted_by: Option<String>,
}

/// Where a source puts what it reads. When a call returns, what it was
/// given is durably queued: that is the acknowledgement a source waits
/// for before it moves its own cursor.
pub trait Intake: Send + Sync {
    /// Begins a listing of `scope`.
    fn begin_seed(&self, scope: &SeedScope) -> Result<Seed, QueueError>;

    /// Routes `events` (at most one per object) into the queue. An event
    /// the policies fail on is in [`Routing::errors`], and its file stays
    /// as it is; the others are queued.
    fn submit(&self, events: &[Event]) -> Result<Routing, QueueError>;

    /// Ends `seed`.
    fn end_seed(&self, seed: Seed, listing: &Listing) -> Result<(), QueueError>;

    /// One look at the source is over: what the policies made of its
    /// events goes to readiness.
    fn end_pass(&self);

    /// Where each feed of the source resumes (a watch's resourceVersion,
    /// by resource), as it last saved them, kept with the queue.
    fn cursors(&self) -> Result<Cursors, QueueError>;

    /// Saves (`Some`) or forgets (`None`) the source's cursors, durably.
    /// Call it only after the events before them were submitted: a
    /// restart then resumes from them losing nothing, and replays at most
    /// what was submitted since the last save.
    fn save_cursors(&self, changes: &[(String, Option<String>)]) -> Result<(), QueueError>;
}

/// How the daemon steers a source that follows.
#[derive(Debug, Default)]
pub struct Control {
    state: Mutex<Asked>,
    wake: Condvar,
}

#[derive(Debug, Default)]
struct Asked {
    stop: bool,
    /// Stop for now: the replica no longer leads, and reads the source
    /// again once it does.
    interrupted: bool,
    relist: Option<SeedScope>,
}

impl Control {
    /// Asks the source to stop following.
    pub fn stop(&self) {
        self.ask(|asked| asked.stop = true);
    }

    /// Asks the source to list `scope` again, as a seed; asked twice
    /// before it does, it lists both.
    pub fn relist(&self, scope: SeedScope) {
        self.ask(|asked| {
            asked.relist = Some(match asked.relist.take() {
                Some(before) => before.union(scope),
                None => scope,
            });
        });
    }

    /// Asks the source to stop following for now ([`Control::resume`]
    /// lets it follow again): this replica no longer leads.
    pub fn interrupt(&self) {
        self.ask(|asked| asked.interrupted = true);
    }

    /// Takes back [`Control::interrupt`].
    pub fn resume(&self) {
        self.lock().interrupted = false;
    }

    /// Whether the source was asked to stop, for good or for now.
    pub fn stopped(&self) -> bool {
        let asked = self.lock();
        asked.stop || asked.interrupted
    }

    /// Whether the source was asked to stop for good.
    pub fn stopping(&self) -> bool {
        self.lock().stop
    }

    /// What the source was asked to list again, if anything; asking
    /// clears it.
    pub fn take_relist(&self) -> Option<SeedScope> {
        self.lock().relist.take()
    }

    /// Waits up to `timeout`, or until the source is asked something.
    pub fn wait(&self, timeout: Duration) {
        let asked = self.lock();
        if asked.stop || asked.interrupted || asked.relist.is_some() {
            return;
        }
        let _ = self.wake.wait_timeout_while(asked, timeout, |a| {
            !a.stop && !a.interrupted && a.relist.is_none()
        });
    }

    fn ask(&self, change: impl FnOnce(&mut Asked)) {
        change(&mut self.lock());
        self.wake.notify_all();
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Asked> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;
    use std::time::Instant;

    fn deployments() -> GroupResource {
        GroupResource::new("apps", "deployments")
    }

    #[test]
    fn a_scope_covers_its_destinations_only() {
        assert!(SeedScope::everything().covers("a"));
        let b = SeedScope::destination("b");
        assert!(b.covers("b") && !b.covers("a"));
    }

    #[test]
    fn the_union_of_scopes_holds_both_and_everything_absorbs() {
        let a = SeedScope::destination("a");
        let both = a.clone().union(SeedScope::destination("b"));
        assert!(both.covers("a") && both.covers("b") && !both.covers("c"));
        assert_eq!(a.union(SeedScope::everything()), SeedScope::everything());
        let r = SeedScope::resources([deployments()])
            .union(SeedScope::resources([GroupResource::new("", "configmaps")]));
        assert_eq!(r.resources.map(|r| r.len()), Some(2));
    }

    #[test]
    fn relists_asked_twice_merge_and_asking_clears_them() {
        let control = Control::default();
        assert_eq!(control.take_relist(), None);
        control.relist(SeedScope::resources([deployments()]));
        control.relist(SeedScope::destination("b"));
        // Deployments for every destination, everything for b: together,
        // everything for every destination.
        assert_eq!(control.take_relist(), Some(SeedScope::everything()));
        assert_eq!(control.take_relist(), None);
    }

    #[test]
    fn a_wait_ends_when_the_source_is_asked_to_stop() {
        let control = Arc::new(Control::default());
        let asker = control.clone();
        let started = Instant::now();
        let thread = std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(50));
            asker.stop();
        });
        // Far longer than any machine takes to run the other thread.
        control.wait(Duration::from_secs(600));
        thread.join().unwrap();
        assert!(control.stopped());
        assert!(started.elapsed() < Duration::from_secs(600));
    }
}
