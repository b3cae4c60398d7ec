//! The policy set serving now: one handle, shared by every user of a
//! decision (the mirror's router now; the execution gate and the
//! catalog's schema rules next), swapped whole and at once when a new set
//! loads, so that no decision is ever made by a mix of two sets.
//!
//! It is a `tokio::sync::watch` channel: reading the current set is a
//! cheap clone of an `Arc` from any thread, and a user that must act on a
//! new set (the mirror lists everything again) subscribes to changes.

use super::reload::Digests;
use crate::policy::PolicySet;
use std::sync::Arc;
use tokio::sync::watch;

/// A set and the bundle digests it was built from.
#[derive(Clone)]
pub struct Served {
    /// The set.
    pub set: Arc<PolicySet>,
    /// The digest each of its bundles loaded at (empty with no bundles).
    pub digests: Digests,
}

/// The handle to the serving set; clones share it.
#[derive(Clone)]
pub struct Serving {
    sender: Arc<watch::Sender<Served>>,
}

impl Serving {
    /// `set`, built from bundles at `digests`, serving from now on.
    pub fn new(set: Arc<PolicySet>, digests: Digests) -> Serving {
        let (sender, _) = watch::channel(Served { set, digests });
        Serving {
            sender: Arc::new(sender),
        }
    }

    /// The set serving now.
    pub fn set(&self) -> Arc<PolicySet> {
        self.sender.borrow().set.clone()
    }

    /// The digests of the set serving now.
    pub fn digests(&self) -> Digests {
        self.sender.borrow().digests.clone()
    }

    /// Serves `next` from now on, for every user at once; returns what
    /// served before.
    pub fn swap(&self, next: Served) -> Served {
        self.sender.send_replace(next)
    }

    /// Whether another clone of this handle is alive: what follows the
    /// bundles stops once it holds the only one.
    pub fn is_shared(&self) -> bool {
        Arc::strong_count(&self.sender) > 1
    }

    /// Hears of every swap from now on.
    pub fn subscribe(&self) -> watch::Receiver<Served> {
        self.sender.subscribe()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::policy::config::PolicyConfig;

    fn set() -> Arc<PolicySet> {
        let config = PolicyConfig::builtin();
        let runtime = crate::policy::Runtime::new(&config.runtime_config(None)).unwrap();
        Arc::new(config.load(&runtime).unwrap())
    }

    #[test]
    fn a_swap_reaches_every_holder_and_every_subscriber_at_once() {
        let (first, second) = (set(), set());
        let serving = Serving::new(first.clone(), Digests::new());
        let (held, mut heard) = (serving.clone(), serving.subscribe());
        assert!(Arc::ptr_eq(&held.set(), &first));
        let digests = Digests::from([("b".to_owned(), "sha256:02".to_owned())]);
        let old = serving.swap(Served {
            set: second.clone(),
            digests: digests.clone(),
        });
        assert!(Arc::ptr_eq(&old.set, &first));
        assert!(Arc::ptr_eq(&held.set(), &second));
        assert_eq!(held.digests(), digests);
        assert!(heard.has_changed().unwrap());
        assert!(Arc::ptr_eq(&heard.borrow_and_update().set, &second));
        assert!(!heard.has_changed().unwrap());
    }
}
