//! The attribution store: recording the facts of a batch of audit events
//! and joining each watch event to its fact, against the least any join by
//! uid and resourceVersion must do, measured in the same run: a plain
//! `HashMap` keyed by (uid, resourceVersion), filled and read.
//!
//! The admission webhook's store likewise: recording 10,000 admitted
//! facts and taking each by the watch event it explains (which reads the
//! event's object and digests it), against a `HashMap` doing the same
//! digest and remove.
//!
//! `cargo bench --bench attribution`: each at 10,000 changes (the stores'
//! default capacity), as changes (put + lookup) per second.

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use plumbline::ingest::attribution::admission::{Admitted, AdmittedKey, fingerprint};
use plumbline::ingest::attribution::audit::{Fact, Subject};
use plumbline::ingest::attribution::{Admissions, AdmittedConfig, Facts, FactsConfig};
use plumbline::model::{Event, Operation, Target};
use std::collections::HashMap;
use std::hint::black_box;
use std::time::Instant;

const CHANGES: usize = 10_000;

/// The facts of `CHANGES` updates of config maps, and their watch events.
fn changes() -> (Vec<Fact>, Vec<Event>) {
    (0..CHANGES)
        .map(|i| {
            let (name, uid, rv) = (
                format!("cm-{i}"),
                format!("uid-{i:08}"),
                format!("{}", 1000 + i),
            );
            let fact = Fact {
                username: format!("user-{}", i % 7),
                deletion: false,
                subject: Subject {
                    group: String::new(),
                    resource: "configmaps".into(),
                    namespace: Some(format!("team-{}", i % 50)),
                    name: Some(name.clone()),
                    uid: Some(uid.clone()),
                    resource_version: Some(rv.clone()),
                },
            };
            let target = Target {
                group: String::new(),
                version: "v1".into(),
                kind: "ConfigMap".into(),
                resource: "configmaps".into(),
                subresource: None,
                namespace: Some(format!("team-{}", i % 50)),
                name,
            };
            let event = Event {
                uid: Some(uid),
                resource_version: Some(rv),
                ..Event::new(Operation::Update, target, "{}".into())
            };
            (fact, event)
        })
        .unzip()
}

fn join(c: &mut Criterion) {
    let (facts, events) = changes();
    let mut group = c.benchmark_group("attribution");
    group.throughput(Throughput::Elements(CHANGES as u64));
    group.bench_function("store: record + lookup", |b| {
        b.iter(|| {
            let store = Facts::new(FactsConfig::default());
            // The webhook records a batch at a time, as the API server sends.
            for batch in facts.chunks(400) {
                store.record(batch.to_vec());
            }
            let now = Instant::now();
            let found = events
                .iter()
                .filter(|e| store.lookup(e, now).is_some())
                .count();
            assert_eq!(found, CHANGES);
            black_box(found)
        })
    });
    group.bench_function("baseline: HashMap insert + get", |b| {
        b.iter(|| {
            let mut map = HashMap::new();
            for fact in &facts {
                let subject = &fact.subject;
                let key = (
                    subject.uid.clone().unwrap(),
                    subject.resource_version.clone().unwrap(),
                );
                map.insert(key, fact.username.clone());
            }
            // The username is handed out, as the store's lookup does.
            let found = events
                .iter()
                .filter_map(|e| {
                    let key = (e.uid.clone().unwrap(), e.resource_version.clone().unwrap());
                    map.get(&key).cloned()
                })
                .count();
            assert_eq!(found, CHANGES);
            black_box(found)
        })
    });
    group.finish();
}

/// The admitted facts of `CHANGES` updates, and their watch events, each
/// with a config map's object as the API server sends it.
fn admitted() -> (Vec<Admitted>, Vec<Event>) {
    let (_, events) = changes();
    events
        .into_iter()
        .enumerate()
        .map(|(i, mut event)| {
            let object = serde_json::json!({"apiVersion": "v1", "kind": "ConfigMap",
                "metadata": {"name": event.target.name, "namespace": event.target.namespace,
                    "uid": event.uid, "resourceVersion": event.resource_version,
                    "labels": {"app": "shop", "team": format!("team-{}", i % 50)}},
                "data": {"config.yaml": format!("replicas: {i}\nimage: shop:1.{i}\n")}});
            event.object = object.to_string();
            let fact = Admitted {
                username: format!("user-{}", i % 7),
                key: AdmittedKey {
                    group: String::new(),
                    resource: "configmaps".into(),
                    namespace: event.target.namespace.clone(),
                    name: event.target.name.clone(),
                    operation: Operation::Update,
                    fingerprint: Some(fingerprint(&object)),
                },
            };
            (fact, event)
        })
        .unzip()
}

fn admission(c: &mut Criterion) {
    let (facts, events) = admitted();
    let mut group = c.benchmark_group("admission");
    group.throughput(Throughput::Elements(CHANGES as u64));
    group.bench_function("store: record + take", |b| {
        b.iter(|| {
            let store = Admissions::new(AdmittedConfig::default());
            for fact in &facts {
                store.record(fact.clone());
            }
            let found = events.iter().filter(|e| store.take(e).is_some()).count();
            assert_eq!(found, CHANGES);
            black_box(found)
        })
    });
    group.bench_function("baseline: HashMap insert + digest + remove", |b| {
        b.iter(|| {
            let mut map = HashMap::new();
            for fact in &facts {
                map.insert(fact.key.clone(), fact.username.clone());
            }
            let found = events
                .iter()
                .filter_map(|e| {
                    let object: serde_json::Value = serde_json::from_str(&e.object).ok()?;
                    let key = AdmittedKey {
                        group: e.target.group.clone(),
                        resource: e.target.resource.clone(),
                        namespace: e.target.namespace.clone(),
                        name: e.target.name.clone(),
                        operation: e.operation,
                        fingerprint: Some(fingerprint(&object)),
                    };
                    map.remove(&key)
                })
                .count();
            assert_eq!(found, CHANGES);
            black_box(found)
        })
    });
    group.finish();
}

criterion_group!(benches, join, admission);
criterion_main!(benches);
