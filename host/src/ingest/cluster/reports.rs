//! What the cluster source tells the operator: a part that fails (the
//! discovery, a resource whose listing was refused, a watch that keeps
//! failing) is said once on standard error, and stands in `/readyz`
//! until it works again. A resource that cannot be read is also kept in
//! [`Unreadable`], which the rules' statuses read: the rule that selects
//! it says so where its author looks.

use crate::model::GroupResource;
use crate::telemetry::Notices;
use crate::telemetry::health::{Health, Status};
use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex, PoisonError};

/// Why a resource cannot be read now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Unread {
    /// Whether the server refused the daemon (403): a matter of its
    /// permissions, not of the server.
    pub forbidden: bool,
    /// What was said of it.
    pub message: String,
}

/// The resources the cluster source cannot read now, shared with what
/// reports on the rules that select them.
#[derive(Debug, Clone, Default)]
pub struct Unreadable(Arc<Mutex<BTreeMap<GroupResource, Unread>>>);

impl Unreadable {
    /// The resources unread now.
    pub fn now(&self) -> BTreeMap<GroupResource, Unread> {
        self.0
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    fn set(&self, id: &GroupResource, unread: Option<Unread>) {
        let mut map = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        match unread {
            Some(unread) => map.insert(id.clone(), unread),
            None => map.remove(id),
        };
    }
}

/// The source's parts that fail now.
#[derive(Default)]
pub struct Reports {
    health: Option<Arc<Health>>,
    /// What was said of each failing part.
    failing: HashMap<String, String>,
    /// The resources among them.
    unreadable: Unreadable,
}

impl Reports {
    /// Reports into `health` (none: standard error only) and, for
    /// resources, into `unreadable`.
    pub fn new(health: Option<Arc<Health>>, unreadable: Unreadable) -> Reports {
        Reports {
            health,
            failing: HashMap::new(),
            unreadable,
        }
    }

    /// The resource `id` cannot be read, as `message` says; `serving` as
    /// for [`Reports::failing`].
    pub fn unreadable(
        &mut self,
        id: &GroupResource,
        unread: Unread,
        serving: bool,
        notices: &dyn Notices,
    ) {
        self.failing(&part(id), unread.message.clone(), serving, notices);
        self.unreadable.set(id, Some(unread));
    }

    /// The resource `id` is read (again), or is not followed any more.
    pub fn readable(&mut self, id: &GroupResource) {
        self.working(&part(id));
        self.unreadable.set(id, None);
    }

    /// `part` fails, as `message` says; `serving` if what was read before
    /// still serves (a watch retrying), else nothing of it works.
    pub fn failing(&mut self, part: &str, message: String, serving: bool, notices: &dyn Notices) {
        if self.failing.get(part) == Some(&message) {
            return;
        }
        notices.error(&message);
        if let Some(health) = &self.health {
            let status = if serving {
                Status::Degraded(message.clone())
            } else {
                Status::NotReady(message.clone())
            };
            health.set(part, status);
        }
        self.failing.insert(part.to_owned(), message);
    }

    /// `part` works (again), or is gone.
    pub fn working(&mut self, part: &str) {
        if self.failing.remove(part).is_some()
            && let Some(health) = &self.health
        {
            health.forget(part);
        }
    }
}

/// The readiness part of a resource.
fn part(id: &GroupResource) -> String {
    format!("source {}", display(id))
}

/// A resource as a person names it: `deployments.apps`, `secrets`.
pub fn display(id: &GroupResource) -> String {
    if id.group.is_empty() {
        id.resource.clone()
    } else {
        format!("{}.{}", id.resource, id.group)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::telemetry::notices::Collected;

    #[test]
    fn a_failure_is_said_once_while_it_lasts_and_stands_in_readiness_until_it_goes() {
        let health = Arc::new(Health::default());
        let mut reports = Reports::new(Some(health.clone()), Unreadable::default());
        let said = Collected::default();
        let refused = "listing secrets: 403 Forbidden".to_owned();
        reports.failing("source secrets", refused.clone(), false, &said);
        reports.failing("source secrets", refused.clone(), false, &said);
        assert_eq!(said.lines().len(), 1);
        let (ready, text) = health.report();
        assert!(!ready && text.contains("403 Forbidden"), "{text}");
        reports.working("source secrets");
        assert!(health.report().0);
        reports.failing("source secrets", refused, false, &said);
        assert_eq!(said.lines().len(), 2, "said again when it comes back");
    }

    #[test]
    fn an_unreadable_resource_is_shared_until_it_is_read() {
        let health = Arc::new(Health::default());
        let unreadable = Unreadable::default();
        let mut reports = Reports::new(Some(health.clone()), unreadable.clone());
        let secrets = GroupResource::new("", "secrets");
        let refused = Unread {
            forbidden: true,
            message: "listing secrets: 403 Forbidden".into(),
        };
        reports.unreadable(&secrets, refused.clone(), false, &Collected::default());
        assert_eq!(unreadable.now().get(&secrets), Some(&refused));
        assert!(health.report().1.contains("source secrets"));
        reports.readable(&secrets);
        assert!(unreadable.now().is_empty());
        assert!(health.report().0);
    }
}
