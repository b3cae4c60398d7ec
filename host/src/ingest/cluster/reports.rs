//! What the cluster source tells the operator: a part that fails (the
//! discovery, a resource whose listing was refused, a watch that keeps
//! failing) is said once on standard error, and stands in `/readyz`
//! until it works again.

use crate::telemetry::Notices;
use crate::telemetry::health::{Health, Status};
use std::collections::HashMap;
use std::sync::Arc;

/// The source's parts that fail now.
#[derive(Default)]
pub struct Reports {
    health: Option<Arc<Health>>,
    /// What was said of each failing part.
    failing: HashMap<String, String>,
}

impl Reports {
    /// Reports into `health` (none: standard error only).
    pub fn new(health: Option<Arc<Health>>) -> Reports {
        Reports {
            health,
            failing: HashMap::new(),
        }
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::telemetry::notices::Collected;

    #[test]
    fn a_failure_is_said_once_while_it_lasts_and_stands_in_readiness_until_it_goes() {
        let health = Arc::new(Health::default());
        let mut reports = Reports::new(Some(health.clone()));
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
}
