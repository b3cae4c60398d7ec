//! Watch events on their way to routing, in the order they came. Each
//! waits, up to the grace window, for the audit fact that says who made
//! it: the API server sends its audit batch after the write, and the
//! watch event often comes first. Without the audit webhook, no event
//! waits (an admission fact is told before the write persists).
//!
//! Order is kept whole: an event that waits holds back those behind it,
//! and a resource's version (in memory) advances only past events handed
//! on.

use crate::ingest::attribution::{Attribution, Found};
use crate::model::{Event, GroupResource};
use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::Arc;
use std::time::Instant;

/// Watch events gathered for one routing: at most one per object (routing
/// runs a batch's events in parallel), and the version each resource
/// reaches once they are routed.
#[derive(Default)]
pub struct Batch {
    /// The events.
    pub events: Vec<Event>,
    objects: HashSet<String>,
    /// Each resource's version after the batch.
    pub versions: HashMap<GroupResource, String>,
}

impl Batch {
    /// Empties the batch once routed.
    pub fn clear(&mut self) {
        self.events.clear();
        self.objects.clear();
        self.versions.clear();
    }
}

/// One watch message waiting.
struct Item {
    arrived: Instant,
    resource: GroupResource,
    version: String,
    /// None for a bookmark: only the version moves.
    event: Option<Box<Event>>,
}

/// What [`Waiting::release`] left.
#[derive(Debug, PartialEq, Eq)]
pub enum Released {
    /// Everything that may go now is in the batch.
    AllThatMay,
    /// The batch is full or would hold an object twice: route it, then
    /// release again.
    BatchFull,
}

/// The watch messages not routed yet.
pub struct Waiting {
    items: VecDeque<Item>,
    attribution: Option<Arc<Attribution>>,
    /// Most events in one batch.
    limit: usize,
}

impl Waiting {
    /// Events joined by `attribution` (none: nobody says who made
    /// changes), batched `limit` at a time.
    pub fn new(attribution: Option<Arc<Attribution>>, limit: usize) -> Waiting {
        Waiting {
            items: VecDeque::new(),
            attribution,
            limit,
        }
    }

    /// A message that arrived now: `event` (none for a bookmark) brought
    /// `resource` to `version`.
    pub fn push(&mut self, resource: GroupResource, version: String, event: Option<Box<Event>>) {
        self.items.push_back(Item {
            arrived: Instant::now(),
            resource,
            version,
            event,
        });
    }

    /// Drops what waits for `resource`: it is being listed again, and the
    /// listing says all of it.
    pub fn forget(&mut self, resource: &GroupResource) {
        self.items.retain(|item| &item.resource != resource);
    }

    /// Whether anything waits.
    #[cfg(test)]
    pub fn is_empty(&self) -> bool {
        self.items.is_empty()
    }

    /// Moves what may be routed at `now` into `batch`, in order.
    pub fn release(&mut self, batch: &mut Batch, now: Instant) -> Released {
        while let Some(item) = self.items.front_mut() {
            let Some(event) = &mut item.event else {
                let item = self.items.pop_front().expect("looked at");
                batch.versions.insert(item.resource, item.version);
                continue;
            };
            if batch.events.len() >= self.limit {
                return Released::BatchFull;
            }
            let key = event.target.key().to_string();
            if batch.objects.contains(&key) {
                return Released::BatchFull;
            }
            if let Some(attribution) = &self.attribution {
                match attribution.lookup(event, item.arrived, now) {
                    Found::By(username) => event.username = Some(username),
                    // Still within the grace window: it, and all behind
                    // it, wait for the fact.
                    Found::Wait => return Released::AllThatMay,
                    Found::Unknown => {}
                }
            }
            let item = self.items.pop_front().expect("looked at");
            batch.objects.insert(key);
            batch.events.push(*item.event.expect("an event"));
            batch.versions.insert(item.resource, item.version);
        }
        Released::AllThatMay
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ingest::attribution::audit::{Fact, Subject};
    use crate::ingest::attribution::testing::config_map;
    use crate::ingest::attribution::{Facts, FactsConfig};
    use crate::model::Operation;
    use std::time::Duration;

    fn event(name: &str, rv: &str) -> Box<Event> {
        let target = config_map(name);
        Box::new(Event {
            uid: Some(format!("uid-{name}")),
            resource_version: Some(rv.into()),
            ..Event::new(Operation::Update, target, "{}".into())
        })
    }

    fn audit(facts: &Arc<Facts>) -> Arc<Attribution> {
        Arc::new(Attribution::new(Some(facts.clone()), None))
    }

    fn configmaps() -> GroupResource {
        GroupResource::new("", "configmaps")
    }

    fn said(facts: &Facts, user: &str, name: &str, rv: &str) {
        facts.record(vec![Fact {
            username: user.into(),
            deletion: false,
            subject: Subject {
                group: String::new(),
                resource: "configmaps".into(),
                namespace: Some("shop".into()),
                name: Some(name.into()),
                uid: Some(format!("uid-{name}")),
                resource_version: Some(rv.into()),
            },
        }]);
    }

    #[test]
    fn without_a_webhook_nothing_waits() {
        let mut waiting = Waiting::new(None, 10);
        waiting.push(configmaps(), "5".into(), Some(event("a", "5")));
        waiting.push(configmaps(), "6".into(), None);
        let mut batch = Batch::default();
        assert_eq!(
            waiting.release(&mut batch, Instant::now()),
            Released::AllThatMay
        );
        assert_eq!(batch.events.len(), 1);
        assert_eq!(batch.events[0].username, None);
        assert_eq!(batch.versions[&configmaps()], "6", "the bookmark moved it");
    }

    #[test]
    fn an_event_waits_for_its_fact_and_holds_back_those_behind_it() {
        let facts = Arc::new(Facts::new(FactsConfig::default()));
        let mut waiting = Waiting::new(Some(audit(&facts)), 10);
        waiting.push(configmaps(), "5".into(), Some(event("a", "5")));
        waiting.push(configmaps(), "6".into(), None);
        let mut batch = Batch::default();
        let now = Instant::now();
        waiting.release(&mut batch, now);
        assert!(
            batch.events.is_empty() && batch.versions.is_empty(),
            "waits"
        );
        said(&facts, "bob", "a", "5");
        waiting.release(&mut batch, now);
        assert_eq!(batch.events[0].username.as_deref(), Some("bob"));
        assert_eq!(batch.versions[&configmaps()], "6");
        assert!(waiting.is_empty());
    }

    #[test]
    fn an_event_whose_fact_never_comes_goes_unattributed_after_the_grace_window() {
        let facts = Arc::new(Facts::new(FactsConfig::default()));
        let mut waiting = Waiting::new(Some(audit(&facts)), 10);
        waiting.push(configmaps(), "5".into(), Some(event("a", "5")));
        let mut batch = Batch::default();
        let later = Instant::now() + Duration::from_secs(4);
        assert_eq!(waiting.release(&mut batch, later), Released::AllThatMay);
        assert_eq!(batch.events.len(), 1);
        assert_eq!(
            batch.events[0].username, None,
            "the sentinel's, not a guess"
        );
    }

    #[test]
    fn a_batch_holds_one_event_per_object_and_at_most_its_limit() {
        let mut waiting = Waiting::new(None, 2);
        waiting.push(configmaps(), "5".into(), Some(event("a", "5")));
        waiting.push(configmaps(), "6".into(), Some(event("a", "6")));
        let mut batch = Batch::default();
        assert_eq!(
            waiting.release(&mut batch, Instant::now()),
            Released::BatchFull
        );
        assert_eq!(batch.events.len(), 1);
        batch.clear();
        waiting.push(configmaps(), "7".into(), Some(event("b", "7")));
        waiting.push(configmaps(), "8".into(), Some(event("c", "8")));
        assert_eq!(
            waiting.release(&mut batch, Instant::now()),
            Released::BatchFull
        );
        assert_eq!(batch.events.len(), 2);
        assert_eq!(batch.versions[&configmaps()], "7");
        waiting.forget(&configmaps());
        assert!(waiting.is_empty());
    }
}
