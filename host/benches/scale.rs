//! `cargo bench --bench scale`: what sharing state between replicas costs
//! (the scale-out issue), against the embedded store in the same run.
//!
//! - Catalog registrations with four concurrent writers spread over two
//!   replicas sharing one JetStream bucket (one NATS server with one copy;
//!   a three-node cluster with three), against the same four writers on
//!   the embedded redb store.
//!
//! - The queue: entries appended in batches of 100, then read and
//!   acknowledged 100 at a time, on JetStream (one server) against the
//!   embedded redb queue: the cost per entry of sharing the queue.
//!
//! `SCALE_REGISTRATIONS` (default 2000) sets how many versions each run
//! registers, `SCALE_ENTRIES` (default 20000) how many entries go through
//! each queue.

#[path = "../../tests/nats.rs"]
mod nats;

mod common;

use common::report;
use nats::Nats;
use plumbline::catalog::store::jetstream::JetStreamCatalog;
use plumbline::catalog::store::{CatalogStore, DiskCatalog, Record};
use plumbline::model::Operation;
use plumbline::queue::disk::DiskQueue;
use plumbline::queue::jetstream::{JetStreamQueue, LEASE, Options};
use plumbline::queue::{Entry, FileChange, Partition, Position, Queue};
use std::sync::Arc;
use std::time::{Duration, Instant};

const WRITERS: usize = 4;

fn env(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn main() {
    let count = env("SCALE_REGISTRATIONS", 2000);
    let records: Vec<Record> = (0..count).map(record).collect();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let work = tempfile::tempdir().unwrap();
    let disk: Arc<dyn CatalogStore> =
        Arc::new(DiskCatalog::open(&work.path().join("catalog.redb")).unwrap());
    let embedded = registering(&[disk.clone(), disk], &records);
    println!(
        "catalog: {count} registrations, {WRITERS} writers: redb {:.0}/s",
        rate(count, embedded)
    );
    for (servers, copies) in [(1, 1), (3, 3)] {
        let nats = if servers == 1 {
            Nats::start()
        } else {
            Nats::cluster(servers)
        };
        let replica = || -> Arc<dyn CatalogStore> {
            Arc::new(
                JetStreamCatalog::connect(runtime.handle().clone(), &nats.url(), copies).unwrap(),
            )
        };
        let shared = registering(&[replica(), replica()], &records);
        println!(
            "catalog on JetStream ({servers} server(s), {copies} cop(ies)), 2 replicas: {:.0}/s",
            rate(count, shared)
        );
        report(
            &format!(
                "{count} registrations on 2 replicas sharing JetStream ({servers} server(s), R{copies})"
            ),
            shared,
            "the embedded redb store",
            embedded,
        );
    }
    queues(&runtime, env("SCALE_ENTRIES", 20_000));
}

/// The queue's cost per entry on JetStream against redb.
fn queues(runtime: &tokio::runtime::Runtime, entries: usize) {
    let work = tempfile::tempdir().unwrap();
    let capacity = entries as u64 + 1;
    let disk = DiskQueue::open(&work.path().join("queue.redb"), capacity).unwrap();
    let embedded = through(&disk, entries);
    let nats = Nats::start();
    let options = Options {
        replicas: 1,
        capacity,
        lease: LEASE,
    };
    let shared = JetStreamQueue::connect(runtime.handle().clone(), &nats.url(), options).unwrap();
    let jetstream = through(&shared, entries);
    let per = |took: Duration| took / u32::try_from(entries).unwrap();
    let phases = [
        ("appended", jetstream.0, embedded.0),
        ("read and acknowledged", jetstream.1, embedded.1),
        (
            "appended, read and acknowledged",
            jetstream.0 + jetstream.1,
            embedded.0 + embedded.1,
        ),
    ];
    for (what, shared, embedded) in phases {
        report(
            &format!(
                "queue: {entries} entries {what} 100 at a time, per entry, JetStream (1 server)"
            ),
            per(shared),
            "redb",
            per(embedded),
        );
    }
}

/// How long `entries` take to be appended to `queue` 100 at a time, and
/// then to be read and acknowledged 100 at a time.
fn through(queue: &dyn Queue, entries: usize) -> (Duration, Duration) {
    let partition = Partition {
        repo: "git://example/bench.git".into(),
        branch: "main".into(),
    };
    let batch: Vec<Entry> = (0..100).map(entry).collect();
    let started = Instant::now();
    for _ in 0..entries / 100 {
        queue.append(&partition, &batch).unwrap();
    }
    let appended = started.elapsed();
    let started = Instant::now();
    let mut after = Position::START;
    loop {
        let read = queue.read(&partition, after, 100, Duration::ZERO).unwrap();
        let Some((last, _)) = read.last() else { break };
        after = *last;
        queue.ack(&partition, after).unwrap();
    }
    assert_eq!(queue.depth(&partition), 0);
    (appended, started.elapsed())
}

/// A file change of about the size of a small object's YAML.
fn entry(n: usize) -> Entry {
    Entry::File(FileChange {
        destination: "bench".into(),
        path: format!("ns/core/configmaps/cm-{n}.yaml"),
        content: Some(format!(
            "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: cm-{n}\ndata:\n  n: \"{n}\"\n"
        )),
        operation: Operation::Update,
        actor: Some("alice".into()),
        resource: "configmaps".into(),
        replay: None,
        trace: None,
    })
}

/// Version `i` of one of 100 workflows.
fn record(i: usize) -> Record {
    let text = format!(
        "metadata: {{workflowId: wf-{}, version: '1.{}.0', description: {{what: restarts a pod, whenToUse: when it hangs}}}}\n\
         execution: {{engine: job}}\nparameters: [{{name: POD, type: string, required: true}}]\n",
        i % 100,
        i / 100
    );
    Record::new(
        plumbline_catalog::read(&text).unwrap(),
        "bench",
        "2026-12-06T00:00:00Z",
    )
}

/// How long [`WRITERS`] threads, spread over `stores`, take to register
/// every record once.
fn registering(stores: &[Arc<dyn CatalogStore>], records: &[Record]) -> Duration {
    let started = Instant::now();
    std::thread::scope(|scope| {
        for writer in 0..WRITERS {
            let store = stores[writer % stores.len()].clone();
            scope.spawn(move || {
                for record in records.iter().skip(writer).step_by(WRITERS) {
                    store.register(record.clone()).unwrap();
                }
            });
        }
    });
    started.elapsed()
}

fn rate(count: usize, took: Duration) -> f64 {
    count as f64 / took.as_secs_f64()
}
