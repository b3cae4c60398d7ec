//! The facts of who made which change, kept for a while and looked up by
//! the watch events they explain.
//!
//! A watch event is joined to a fact by the object's uid and the
//! resourceVersion the change made (exact: at the RequestResponse level
//! the audit event's response carries both). A fact that names a version
//! explains that version only, never another change of the object: it may
//! be the last change's, whose successor's fact has not arrived yet. A
//! delete is also found by the uid or name of the object deleted, since
//! an object is deleted once. Facts that name no version (the Metadata
//! level) are found by uid, then by namespace and name, and a
//! deletecollection's by its collection, each only within the grace
//! window of the event, since those keys do not tell two changes of one
//! object apart.
//!
//! The store is bounded: facts older than [`FactsConfig::ttl`] go, and
//! beyond [`FactsConfig::capacity`] the oldest go first.

use super::audit::{Fact, Subject};
use crate::model::{Event, Operation};
use std::collections::{HashMap, VecDeque};
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// How long and how many facts are kept, and how far apart in time a
/// fact and an event may be joined by anything less than an exact version.
#[derive(Debug, Clone, Copy)]
pub struct FactsConfig {
    /// The grace window.
    pub grace: Duration,
    /// How long a fact is kept.
    pub ttl: Duration,
    /// Most facts kept.
    pub capacity: usize,
}

impl Default for FactsConfig {
    fn default() -> Self {
        FactsConfig {
            grace: Duration::from_secs(3),
            ttl: Duration::from_secs(60),
            capacity: 10_000,
        }
    }
}

/// A way to find a fact.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
enum Key {
    Version(String, String),
    Uid(String),
    Name(String, String, Option<String>, String),
    Collection(String, String, Option<String>),
    Deleted(Box<Key>),
}

#[derive(Debug, Clone)]
struct Kept {
    username: String,
    at: Instant,
}

/// Who made which change, as the webhooks said.
#[derive(Debug, Default)]
pub struct Facts {
    config: FactsConfig,
    inner: Mutex<Inner>,
    refused: AtomicU64,
    /// Told every batch the webhook records (the other replicas).
    others: super::Tell<[Fact]>,
}

#[derive(Debug, Default)]
struct Inner {
    by: HashMap<Key, Kept>,
    /// Keys in the order they were put, to let the oldest go.
    order: VecDeque<(Instant, Key)>,
}

impl Facts {
    /// An empty store.
    pub fn new(config: FactsConfig) -> Facts {
        Facts {
            config,
            ..Facts::default()
        }
    }

    /// The store's settings.
    pub fn config(&self) -> FactsConfig {
        self.config
    }

    /// Keeps `facts`, which arrived now, and tells the others.
    pub fn record(&self, facts: Vec<Fact>) {
        if facts.is_empty() {
            return;
        }
        self.others.tell(&facts);
        self.keep(facts, Instant::now());
    }

    /// Keeps `facts` another replica's webhook took `age` ago.
    pub fn record_told(&self, facts: Vec<Fact>, age: Duration) {
        let now = Instant::now();
        self.keep(facts, now.checked_sub(age).unwrap_or(now));
    }

    /// From now on, `tell` is given every batch the webhook records.
    pub fn tell_others(&self, tell: impl Fn(&[Fact]) + Send + Sync + 'static) {
        self.others.set(tell);
    }

    fn keep(&self, facts: Vec<Fact>, now: Instant) {
        let mut inner = self.lock();
        for fact in facts {
            for key in keys(&fact) {
                let kept = Kept {
                    username: fact.username.clone(),
                    at: now,
                };
                match key {
                    // A version is made once: a later fact of the same
                    // version is a no-op write (an apply that changed
                    // nothing), which must not take the author's place.
                    Key::Version(..) if inner.by.contains_key(&key) => continue,
                    _ => {}
                }
                inner.by.insert(key.clone(), kept);
                inner.order.push_back((now, key));
            }
        }
        self.expire(&mut inner, Instant::now());
    }

    /// Who made the change `event` reports, which arrived at `arrived`.
    pub fn lookup(&self, event: &Event, arrived: Instant) -> Option<String> {
        let inner = self.lock();
        let target = &event.target;
        let near = |kept: &&Kept| {
            kept.at.saturating_duration_since(arrived) <= self.config.grace
                && arrived.saturating_duration_since(kept.at) <= self.config.grace
        };
        let exact = match (&event.uid, &event.resource_version) {
            (Some(uid), Some(rv)) => inner.by.get(&Key::Version(uid.clone(), rv.clone())),
            _ => None,
        };
        // Built only when the exact key found nothing: most lookups end there.
        let name = || {
            Key::Name(
                target.group.clone(),
                target.resource.clone(),
                target.namespace.clone(),
                target.name.clone(),
            )
        };
        let deleted = || {
            if event.operation != Operation::Delete {
                return None;
            }
            let by_uid = event
                .uid
                .clone()
                .map(|uid| Key::Deleted(Box::new(Key::Uid(uid))));
            // By name only within the grace window: the name may have been
            // another object's, deleted a minute ago by someone else.
            by_uid
                .and_then(|key| inner.by.get(&key))
                .or_else(|| inner.by.get(&Key::Deleted(Box::new(name()))).filter(near))
        };
        exact
            .or_else(deleted)
            .or_else(|| {
                let uid = event.uid.clone()?;
                inner.by.get(&Key::Uid(uid)).filter(near)
            })
            .or_else(|| inner.by.get(&name()).filter(near))
            .or_else(|| {
                let collection = Key::Collection(
                    target.group.clone(),
                    target.resource.clone(),
                    target.namespace.clone(),
                );
                (event.operation == Operation::Delete)
                    .then(|| inner.by.get(&collection).filter(near))
                    .flatten()
            })
            .map(|kept| kept.username.clone())
    }

    /// Counts a webhook body that was refused: how many so far.
    pub fn refused(&self) -> u64 {
        self.refused.fetch_add(1, Ordering::Relaxed) + 1
    }

    fn expire(&self, inner: &mut Inner, now: Instant) {
        while let Some((at, _)) = inner.order.front() {
            let old = now.saturating_duration_since(*at) > self.config.ttl;
            if !old && inner.order.len() <= self.config.capacity {
                break;
            }
            let (at, key) = inner.order.pop_front().expect("looked at");
            // A key put again since stays until its own turn.
            if inner.by.get(&key).is_some_and(|kept| kept.at == at) {
                inner.by.remove(&key);
            }
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// Every key a fact can be found by.
fn keys(fact: &Fact) -> Vec<Key> {
    let subject: &Subject = &fact.subject;
    let (group, resource, namespace) = (
        subject.group.clone(),
        subject.resource.clone(),
        subject.namespace.clone(),
    );
    let Some(name) = subject.name.clone() else {
        return vec![Key::Collection(group, resource, namespace)];
    };
    let name = Key::Name(group, resource, namespace, name);
    let uid = subject.uid.clone().map(Key::Uid);
    if fact.deletion {
        let mut keys = vec![Key::Deleted(Box::new(name))];
        keys.extend(uid.map(|uid| Key::Deleted(Box::new(uid))));
        return keys;
    }
    match (&subject.uid, &subject.resource_version) {
        (Some(uid), Some(rv)) => vec![Key::Version(uid.clone(), rv.clone())],
        _ => std::iter::once(name).chain(uid).collect(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ingest::attribution::testing::config_map;

    fn event(operation: Operation, name: &str, uid: &str, rv: &str) -> Event {
        let target = config_map(name);
        Event {
            uid: Some(uid.into()),
            resource_version: Some(rv.into()),
            ..Event::new(operation, target, "{}".into())
        }
    }

    fn fact(user: &str, name: Option<&str>, uid: Option<&str>, rv: Option<&str>) -> Fact {
        Fact {
            username: user.into(),
            deletion: name.is_none(),
            subject: Subject {
                group: String::new(),
                resource: "configmaps".into(),
                namespace: Some("shop".into()),
                name: name.map(Into::into),
                uid: uid.map(Into::into),
                resource_version: rv.map(Into::into),
            },
        }
    }

    #[test]
    fn an_exact_version_wins_over_a_later_change_of_the_same_object() {
        let facts = Facts::new(FactsConfig::default());
        facts.record(vec![
            fact("alice", Some("a"), Some("u1"), Some("10")),
            fact("bob", Some("a"), Some("u1"), Some("11")),
        ]);
        let now = Instant::now();
        let first = event(Operation::Update, "a", "u1", "10");
        assert_eq!(facts.lookup(&first, now).as_deref(), Some("alice"));
        let second = event(Operation::Update, "a", "u1", "11");
        assert_eq!(facts.lookup(&second, now).as_deref(), Some("bob"));
        // A version no fact names yet: not the last change's author.
        let third = event(Operation::Update, "a", "u1", "12");
        assert_eq!(facts.lookup(&third, now), None);
    }

    #[test]
    fn a_no_op_write_of_the_same_version_does_not_take_the_authors_place() {
        let facts = Facts::new(FactsConfig::default());
        facts.record(vec![
            fact("alice", Some("a"), Some("u1"), Some("10")),
            fact("ci", Some("a"), Some("u1"), Some("10")),
        ]);
        let made = event(Operation::Update, "a", "u1", "10");
        assert_eq!(
            facts.lookup(&made, Instant::now()).as_deref(),
            Some("alice")
        );
    }

    #[test]
    fn a_delete_found_by_name_only_is_found_within_the_grace_window_only() {
        let facts = Facts::new(FactsConfig::default());
        let mut deletion = fact("frank", Some("a"), None, None);
        deletion.deletion = true;
        facts.record(vec![deletion]);
        let later = event(Operation::Delete, "a", "u9", "99");
        let far = Instant::now() + Duration::from_secs(30);
        assert_eq!(
            facts.lookup(&later, far),
            None,
            "another object of that name"
        );
        assert_eq!(
            facts.lookup(&later, Instant::now()).as_deref(),
            Some("frank")
        );
    }

    #[test]
    fn a_delete_is_found_by_the_object_it_deleted() {
        let facts = Facts::new(FactsConfig::default());
        let mut deletion = fact("frank", Some("a"), Some("u1"), Some("10"));
        deletion.deletion = true;
        facts.record(vec![deletion]);
        let deleted = event(Operation::Delete, "a", "u1", "11");
        assert_eq!(
            facts.lookup(&deleted, Instant::now()).as_deref(),
            Some("frank")
        );
        let updated = event(Operation::Update, "a", "u1", "11");
        assert_eq!(facts.lookup(&updated, Instant::now()), None);
    }

    #[test]
    fn fallbacks_hold_only_within_the_grace_window() {
        let config = FactsConfig {
            grace: Duration::from_millis(50),
            ..FactsConfig::default()
        };
        let facts = Facts::new(config);
        facts.record(vec![fact("carol", Some("b"), None, None)]);
        let later = Instant::now() + Duration::from_secs(5);
        let e = event(Operation::Update, "b", "u2", "20");
        assert_eq!(facts.lookup(&e, later), None, "too far apart");
        assert_eq!(
            facts.lookup(&e, Instant::now()).as_deref(),
            Some("carol"),
            "by namespace and name"
        );
    }

    #[test]
    fn a_deletecollection_attributes_the_deletes_of_its_collection_only() {
        let facts = Facts::new(FactsConfig::default());
        facts.record(vec![fact("dave", None, None, None)]);
        let now = Instant::now();
        let deleted = event(Operation::Delete, "c", "u3", "30");
        assert_eq!(facts.lookup(&deleted, now).as_deref(), Some("dave"));
        let updated = event(Operation::Update, "c", "u3", "30");
        assert_eq!(facts.lookup(&updated, now), None);
    }

    #[test]
    fn the_store_keeps_at_most_its_capacity_oldest_first() {
        let facts = Facts::new(FactsConfig {
            capacity: 2,
            ..FactsConfig::default()
        });
        for i in 0..4 {
            let (name, uid, rv) = (format!("o{i}"), format!("u{i}"), format!("{i}"));
            facts.record(vec![fact("erin", Some(&name), Some(&uid), Some(&rv))]);
        }
        let now = Instant::now();
        let gone = event(Operation::Update, "o0", "u0", "0");
        assert_eq!(facts.lookup(&gone, now), None, "the oldest went");
        let kept = event(Operation::Update, "o3", "u3", "3");
        assert_eq!(facts.lookup(&kept, now).as_deref(), Some("erin"));
        assert!(facts.lock().by.len() <= 2);
    }
}
