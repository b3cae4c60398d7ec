//! `cargo bench --bench catalog`: what the workflow catalog costs, each
//! against a baseline measured in the same run.
//!
//! - registering a ~50 MiB image whose schema sits in its small top layer,
//!   through a running daemon's REST API, against `oras pull` of the whole
//!   image; the big layers' blobs are then deleted from the registry, and
//!   registration still works: it never fetched them;
//! - gate decisions at 500 requests/s (an open-loop load generator: each
//!   request is sent at its time whether or not the ones before were
//!   answered), p50 and p99 from the scheduled time, against the same load
//!   on `/healthz`;
//! - search over 10,000 registered versions, against a plain scan of the
//!   same descriptions for the same words.
//!
//! `CATALOG_ROUNDS` (default 9) sets how many registrations are measured;
//! `GATE_SECONDS` (default 10) how long each load runs.

#[path = "../../tests/registry.rs"]
mod registry;

mod common;

use common::{listening_address, median, report};
use plumbline::oci::{Artifact, Blob, OciClient, OciConfig};
use registry::{Registry, layer};
use serde_json::{Value, json};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

const SCHEMA: &str = "metadata: {workflowId: restart, version: '1.0.0', description: {what: restarts a pod, whenToUse: when it hangs}}\n\
    execution: {engine: job}\n\
    parameters:\n- {name: POD, type: string, required: true, pattern: '^[a-z0-9-]+$', description: the pod}\n\
    - {name: GRACE, type: integer, minimum: 0, maximum: 600, default: 30, description: seconds to wait}\n";

fn main() {
    let rounds: usize = env("CATALOG_ROUNDS", 9);
    let seconds: u64 = env("GATE_SECONDS", 10);
    let registry = Registry::start();
    let work = tempfile::tempdir().unwrap();
    let (mut daemon, address) = start(&registry, work.path());
    registration(&registry, &address, rounds);
    gate(&address, seconds);
    let _ = daemon.kill();
    let _ = daemon.wait();
    search();
}

fn env<T: std::str::FromStr>(name: &str, default: T) -> T {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// The release daemon serving the catalog.
fn start(registry: &Registry, work: &std::path::Path) -> (std::process::Child, String) {
    std::fs::create_dir_all(work.join("src")).unwrap();
    let mut daemon = Command::new(env!("CARGO_BIN_EXE_plumbline"))
        .args([
            "run",
            "--catalog",
            "--listen",
            "127.0.0.1:0",
            "--insecure-registry",
        ])
        .arg(registry.host())
        .arg("--source-dir")
        .arg(work.join("src"))
        .arg("--repo")
        .arg(work.join("out.git"))
        .arg("--state-dir")
        .arg(work.join("state"))
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let address = listening_address(daemon.stderr.take().unwrap());
    (daemon, address)
}

/// Bytes that do not compress.
fn noise(len: usize, seed: u32) -> Vec<u8> {
    let mut x = seed.wrapping_mul(2_654_435_761) | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 17;
            x ^= x << 5;
            x as u8
        })
        .collect()
}

fn registration(registry: &Registry, address: &str, rounds: usize) {
    let client = OciClient::new(OciConfig {
        insecure: vec![registry.host()],
        ..OciConfig::default()
    })
    .unwrap();
    let big = [
        layer(&[("usr/lib/base.bin", &noise(40 << 20, 1))]),
        layer(&[("opt/app.bin", &noise(10 << 20, 2))]),
    ];
    let sizes: usize = big.iter().map(|b| b.data.len()).sum();
    let mut layers = big.to_vec();
    layers.push(layer(&[("workflow-schema.yaml", SCHEMA.as_bytes())]));
    let image = Artifact {
        digest: None,
        config: Blob {
            media_type: "application/vnd.oci.image.config.v1+json".into(),
            data:
                br#"{"architecture":"amd64","os":"linux","rootfs":{"type":"layers","diff_ids":[]}}"#
                    .to_vec(),
            annotations: Default::default(),
        },
        layers,
    };
    let reference = format!("{}/workflows/restart:1.0.0", registry.host());
    client.push(&reference, &image).unwrap();
    println!(
        "image: {:.1} MiB in 3 layers, the schema in the top one; {rounds} rounds, medians",
        sizes as f64 / (1 << 20) as f64
    );
    let oras = common::oras_pull(&registry.host(), &reference, rounds.min(5));
    // The big layers leave the registry: a registration that fetched them
    // would fail now.
    for blob in &big {
        let digest = format!(
            "sha256:{}",
            hex::encode(<sha2::Sha256 as sha2::Digest>::digest(&blob.data))
        );
        std::fs::remove_file(registry.blob_path(&digest)).unwrap();
    }
    let http = reqwest::blocking::Client::new();
    let url = format!("http://{address}/api/v1/workflows");
    let mut outcomes = Vec::new();
    let registering = median(rounds, || {
        let started = Instant::now();
        let answer = http
            .post(&url)
            .json(&json!({"schemaImage": reference}))
            .send()
            .unwrap();
        let took = started.elapsed();
        outcomes.push(answer.status().as_u16());
        took
    });
    assert!(
        outcomes.iter().all(|s| matches!(s, 200 | 201)),
        "{outcomes:?}"
    );
    println!(
        "the two big layers' blobs were deleted from the registry before registering: never fetched"
    );
    match oras {
        Some(oras) => report(
            "register the image (REST, loopback)",
            registering,
            "oras pull of the whole image",
            oras,
        ),
        None => println!(
            "register the image: {registering:.2?} (no oras in target/test-tools: run scripts/test)"
        ),
    }
}

/// Open-loop load: one request every `1/rate` s for `seconds`; the
/// latencies from each request's scheduled time, sorted.
fn load(url: &str, body: Option<Value>, rate: u64, seconds: u64) -> Vec<Duration> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        let client = reqwest::Client::builder()
            .pool_max_idle_per_host(256)
            .build()
            .unwrap();
        let body = Arc::new(body);
        let interval = Duration::from_nanos(1_000_000_000 / rate);
        let start = tokio::time::Instant::now();
        let mut tasks = Vec::new();
        for i in 0..rate * seconds {
            let scheduled = start + interval * i as u32;
            tokio::time::sleep_until(scheduled).await;
            let (client, body, url) = (client.clone(), body.clone(), url.to_owned());
            tasks.push(tokio::spawn(async move {
                let request = match body.as_ref() {
                    Some(body) => client.post(&url).json(body),
                    None => client.get(&url),
                };
                let answer = request.send().await.unwrap();
                assert!(answer.status().is_success(), "{}", answer.status());
                let _ = answer.bytes().await.unwrap();
                scheduled.elapsed()
            }));
        }
        let mut latencies = Vec::new();
        for task in tasks {
            latencies.push(task.await.unwrap());
        }
        latencies.sort();
        latencies
    })
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    sorted[((sorted.len() as f64 * p) as usize).min(sorted.len() - 1)]
}

fn gate(address: &str, seconds: u64) {
    let http = reqwest::blocking::Client::new();
    let registered = http
        .post(format!("http://{address}/api/v1/workflows"))
        .json(&json!({"schema": SCHEMA.replace("restart", "gated").replace("execution: {engine: job}", "execution: {engine: job, bundle: 'example.com/gated@sha256:1111111111111111111111111111111111111111111111111111111111111111'}")}))
        .send()
        .unwrap();
    assert!(
        registered.status().is_success(),
        "{}",
        registered.text().unwrap()
    );
    let execution = json!({"object": {
        "apiVersion": "batch/v1", "kind": "Job",
        "metadata": {"name": "r", "annotations": {"plumbline.dev/workflow": "gated@1.0.0"}},
        "spec": {"template": {"spec": {"containers": [{"name": "w",
            "image": "example.com/gated@sha256:1111111111111111111111111111111111111111111111111111111111111111",
            "env": [{"name": "POD", "value": "web-0"}, {"name": "GRACE", "value": "60"}]}]}}}}});
    let decided: Value = http
        .post(format!("http://{address}/gate"))
        .json(&execution)
        .send()
        .unwrap()
        .json()
        .unwrap();
    assert_eq!(decided["allowed"], true, "{decided}");
    let rate = 500;
    let gate = load(
        &format!("http://{address}/gate"),
        Some(execution),
        rate,
        seconds,
    );
    let probe = load(&format!("http://{address}/healthz"), None, rate, seconds);
    println!(
        "gate: {} decisions at {rate}/s for {seconds} s (each allowed one recorded)",
        gate.len()
    );
    for (name, p) in [("p50", 0.5), ("p99", 0.99)] {
        report(
            &format!("gate decision {name}"),
            percentile(&gate, p),
            &format!("/healthz {name}"),
            percentile(&probe, p),
        );
    }
}

fn search() {
    use plumbline::catalog::register::Registrar;
    use plumbline::catalog::search::Query;
    use plumbline::catalog::store::DiskCatalog;
    use plumbline::catalog::{Catalog, register::Offer};
    let work = tempfile::tempdir().unwrap();
    let store = DiskCatalog::open(&work.path().join("catalog.redb")).unwrap();
    let registrar = Registrar {
        store: Arc::new(store),
        registry: Arc::new(OciClient::new(OciConfig::default()).unwrap()),
        paths: Vec::new(),
        caps: Default::default(),
        rules: Arc::new(|_: &str, _: &str| Vec::new()),
        reading: Default::default(),
        trusted: None,
    };
    let catalog = Catalog::open(registrar).unwrap();
    let words = [
        "restarts",
        "scales",
        "drains",
        "rolls back",
        "cordons",
        "evicts",
        "patches",
        "resizes",
    ];
    let things = [
        "a pod",
        "a deployment",
        "a node",
        "a statefulset",
        "a daemonset",
    ];
    let severities = ["critical", "high", "medium", "low"];
    let count = 10_000;
    let started = Instant::now();
    let mut texts = Vec::with_capacity(count);
    for i in 0..count {
        let what = format!(
            "{} {} number {i}",
            words[i % words.len()],
            things[i % things.len()]
        );
        let schema = format!(
            "metadata: {{workflowId: wf-{}, version: '1.{}.0', description: {{what: '{what}', whenToUse: when it is needed}}}}\n\
             labels: {{severity: [{}]}}\nexecution: {{engine: job}}\n",
            i / 10,
            i % 10,
            severities[i % severities.len()]
        );
        catalog.register(&Offer::Inline(schema), "bench").unwrap();
        texts.push((
            format!("wf-{}", i / 10),
            what.to_lowercase(),
            severities[i % severities.len()],
        ));
    }
    let filled = started.elapsed();
    println!(
        "search: {count} versions registered in {filled:.2?} ({:.0} registrations/s)",
        count as f64 / filled.as_secs_f64()
    );
    let query = Query {
        q: Some("restarts pod".into()),
        severity: Some("critical".into()),
        limit: Some(50),
        ..Query::default()
    };
    let mut found = 0;
    let searching = median(101, || {
        let started = Instant::now();
        found = catalog.search(&query).unwrap().items.len();
        started.elapsed()
    });
    let mut scanned = 0;
    let scanning = median(101, || {
        let started = Instant::now();
        scanned = texts
            .iter()
            .filter(|(_, text, severity)| {
                *severity == "critical" && text.contains("restarts") && text.contains("pod")
            })
            .take(50)
            .count();
        started.elapsed()
    });
    assert_eq!(found, scanned);
    report(
        &format!("search of {count} versions (words + a label, a page of {found})"),
        searching,
        "a plain scan of their descriptions",
        scanning,
    );
}
