//! What the admission webhook was told, kept for a while: a bounded store
//! of who is about to make which change, emptied as the watch events come
//! that the changes made.
//!
//! Bounded twice: a fact older than the TTL is gone (its write was
//! rejected further on, or made no watch event), and beyond the capacity
//! the least recently told goes first. Either way it is an eviction: a
//! fact dropped unused.

use super::admission::{Admitted, AdmittedKey};
use crate::model::{Event, Operation};
use clru::CLruCache;
use prometheus_client::metrics::counter::Counter;
use std::num::NonZeroUsize;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// How long and how many admission facts are kept.
#[derive(Debug, Clone, Copy)]
pub struct AdmittedConfig {
    /// How long a fact is kept.
    pub ttl: Duration,
    /// Most facts kept.
    pub capacity: NonZeroUsize,
}

impl Default for AdmittedConfig {
    fn default() -> Self {
        AdmittedConfig {
            ttl: Duration::from_secs(60),
            capacity: NonZeroUsize::new(10_000).expect("not zero"),
        }
    }
}

struct Kept {
    username: String,
    at: Instant,
}

/// Who is about to make which change, as the admission webhook said.
pub struct Admissions {
    config: AdmittedConfig,
    // clru (already under gix): an LRU with constant-time operations.
    cache: Mutex<CLruCache<AdmittedKey, Kept>>,
    /// Exported as `plumbline_attribution_evictions_total`.
    evictions: Counter,
    refused: AtomicU64,
    /// Told every fact the webhook records (the other replicas).
    others: super::Tell<Admitted>,
}

impl Admissions {
    /// An empty store.
    pub fn new(config: AdmittedConfig) -> Admissions {
        Admissions {
            config,
            cache: Mutex::new(CLruCache::new(config.capacity)),
            evictions: Counter::default(),
            refused: AtomicU64::new(0),
            others: super::Tell::default(),
        }
    }

    /// Keeps `fact`, told now. A later fact of the same change (the same
    /// object written twice, the same way) takes its place: the latest
    /// request is the one the next watch event shows.
    pub fn record(&self, fact: Admitted) {
        self.others.tell(&fact);
        self.keep(fact, Instant::now());
    }

    /// Keeps `fact`, which another replica's webhook was told `age` ago.
    pub fn record_told(&self, fact: Admitted, age: Duration) {
        let now = Instant::now();
        self.keep(fact, now.checked_sub(age).unwrap_or(now));
    }

    /// From now on, `tell` is given every fact the webhook records.
    pub fn tell_others(&self, tell: impl Fn(&Admitted) + Send + Sync + 'static) {
        self.others.set(tell);
    }

    fn keep(&self, fact: Admitted, now: Instant) {
        let mut cache = self.lock();
        self.expire(&mut cache, Instant::now());
        if cache.len() == cache.capacity() && cache.peek(&fact.key).is_none() {
            cache.pop_back();
            self.evictions.inc();
        }
        let kept = Kept {
            username: fact.username,
            at: now,
        };
        cache.put(fact.key, kept);
    }

    /// Who made the change `event` reports, taken out of the store (a fact
    /// explains one change).
    pub fn take(&self, event: &Event) -> Option<String> {
        // Reading and digesting the object is the cost of a lookup: not
        // for an empty store (a webhook no API server calls yet).
        if self.lock().is_empty() {
            return None;
        }
        let key = key_of(event)?;
        let now = Instant::now();
        let mut cache = self.lock();
        self.expire(&mut cache, now);
        cache.pop(&key).map(|kept| kept.username)
    }

    /// Facts dropped unused, so far.
    pub fn evictions(&self) -> &Counter {
        &self.evictions
    }

    /// Counts a webhook body that was refused: how many so far.
    pub fn refused(&self) -> u64 {
        self.refused.fetch_add(1, Ordering::Relaxed) + 1
    }

    /// Drops what is older than the TTL: the least recently told are the
    /// oldest, since a fact is never read without being taken.
    fn expire(&self, cache: &mut CLruCache<AdmittedKey, Kept>, now: Instant) {
        while let Some((_, kept)) = cache.back() {
            if now.saturating_duration_since(kept.at) <= self.config.ttl {
                break;
            }
            cache.pop_back();
            self.evictions.inc();
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, CLruCache<AdmittedKey, Kept>> {
        self.cache.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// The key a watch event is looked up by: its object's fingerprint, for
/// a create or an update.
fn key_of(event: &Event) -> Option<AdmittedKey> {
    let target = &event.target;
    let fingerprint = match event.operation {
        Operation::Delete => None,
        Operation::Create | Operation::Update => {
            let object: serde_json::Value = serde_json::from_str(&event.object).ok()?;
            Some(super::admission::fingerprint(&object))
        }
    };
    Some(AdmittedKey {
        group: target.group.clone(),
        resource: target.resource.clone(),
        namespace: target.namespace.clone(),
        name: target.name.clone(),
        operation: event.operation,
        fingerprint,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ingest::attribution::testing::config_map;
    use serde_json::json;

    fn object(data: &str) -> serde_json::Value {
        json!({"apiVersion": "v1", "kind": "ConfigMap",
            "metadata": {"name": "a", "namespace": "shop"}, "data": {"k": data}})
    }

    fn event(operation: Operation, data: &str) -> Event {
        let target = config_map("a");
        let mut stored = object(data);
        stored["metadata"]["resourceVersion"] = json!("9");
        Event::new(operation, target, stored.to_string())
    }

    fn told(user: &str, operation: Operation, data: &str) -> Admitted {
        Admitted {
            username: user.into(),
            key: AdmittedKey {
                group: String::new(),
                resource: "configmaps".into(),
                namespace: Some("shop".into()),
                name: "a".into(),
                operation,
                fingerprint: (operation != Operation::Delete)
                    .then(|| super::super::admission::fingerprint(&object(data))),
            },
        }
    }

    #[test]
    fn a_fact_explains_the_change_with_its_content_once() {
        let store = Admissions::new(AdmittedConfig::default());
        store.record(told("alice", Operation::Update, "1"));
        store.record(told("bob", Operation::Update, "2"));
        store.record(told("carol", Operation::Delete, ""));
        assert_eq!(
            store.take(&event(Operation::Update, "2")).as_deref(),
            Some("bob")
        );
        assert_eq!(store.take(&event(Operation::Update, "2")), None, "taken");
        assert_eq!(
            store.take(&event(Operation::Create, "1")),
            None,
            "another operation"
        );
        assert_eq!(
            store.take(&event(Operation::Update, "1")).as_deref(),
            Some("alice")
        );
        assert_eq!(
            store.take(&event(Operation::Delete, "x")).as_deref(),
            Some("carol")
        );
        assert_eq!(store.evictions().get(), 0);
    }

    #[test]
    fn beyond_the_capacity_or_the_ttl_facts_are_evicted_and_counted() {
        let store = Admissions::new(AdmittedConfig {
            capacity: NonZeroUsize::new(2).unwrap(),
            ..AdmittedConfig::default()
        });
        for (user, data) in [("a", "1"), ("b", "2"), ("c", "3")] {
            store.record(told(user, Operation::Update, data));
        }
        assert_eq!(store.evictions().get(), 1);
        assert_eq!(
            store.take(&event(Operation::Update, "1")),
            None,
            "the oldest went"
        );
        assert_eq!(
            store.take(&event(Operation::Update, "3")).as_deref(),
            Some("c")
        );

        let store = Admissions::new(AdmittedConfig {
            ttl: Duration::ZERO,
            ..AdmittedConfig::default()
        });
        store.record(told("a", Operation::Update, "1"));
        std::thread::sleep(Duration::from_millis(2));
        assert_eq!(store.take(&event(Operation::Update, "1")), None);
        assert_eq!(store.evictions().get(), 1);
    }
}
