//! `cargo bench --bench scale`: what sharing state between replicas costs
//! (the scale-out issue), against the embedded store in the same run.
//!
//! - Catalog registrations with four concurrent writers spread over two
//!   replicas sharing one JetStream bucket (one NATS server with one copy;
//!   a three-node cluster with three), against the same four writers on
//!   the embedded redb store.
//!
//! `SCALE_REGISTRATIONS` (default 2000) sets how many versions each run
//! registers.

#[path = "../../tests/nats.rs"]
mod nats;

mod common;

use common::report;
use nats::Nats;
use plumbline::catalog::store::jetstream::JetStreamCatalog;
use plumbline::catalog::store::{CatalogStore, DiskCatalog, Record};
use std::sync::Arc;
use std::time::{Duration, Instant};

const WRITERS: usize = 4;

fn main() {
    let count: usize = std::env::var("SCALE_REGISTRATIONS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(2000);
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
