//! `cargo bench --bench bundle`: what a policy bundle costs, against a real
//! registry (Debian's `docker-registry`, started here on 127.0.0.1).
//!
//! - pull + verify of a bundle of the five default components, against
//!   `oras pull` of the same bundle (the ORAS Python client, if the test
//!   command installed it in `target/test-tools`);
//! - compiling its components cold, against loading them from the disk
//!   cache (warm);
//! - a whole cold start of the policy set (pull, verify, compile, check)
//!   against a warm one (store and cache on disk);
//! - from the end of a push to the first event decided by the new bundle,
//!   in a running daemon that resolves its tag every second and looks at
//!   its folder every second, against that sum of intervals.
//!
//! `BUNDLE_ROUNDS` (default 5) sets how many times each is measured; the
//! median is reported.

#[path = "../../tests/registry.rs"]
mod registry;

mod common;

use common::{listening_address, median, report};

use plumbline::bundle::{BundleSource, BundleStore, PolicyLoader, format};
use plumbline::oci::{OciClient, OciConfig};
use plumbline::policy::builtin;
use plumbline::policy::config::PolicyConfig;
use plumbline::policy::{Runtime, RuntimeConfig};
use registry::Registry;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

/// The five default plugins, each with its decision.
const PLUGINS: [(&str, &str); 5] = [
    ("neat", "sanitize"),
    ("redact-secrets", "sanitize"),
    ("rule-match", "match"),
    ("schema-lint", "schema"),
    ("digest-gate", "gate"),
];

fn main() {
    let rounds: usize = std::env::var("BUNDLE_ROUNDS")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(5);
    let registry = Registry::start();
    let work = tempfile::tempdir().unwrap();
    let reference = format!("{}/policies/defaults:v1", registry.host());
    let artifact = format::build(&bundle_folder(work.path(), "{}")).unwrap();
    let size: usize = artifact.layers.iter().map(|l| l.data.len()).sum();
    client(&registry).push(&reference, &artifact).unwrap();
    println!(
        "bundle: {} layers, {:.1} MiB, {rounds} rounds, medians",
        artifact.layers.len(),
        size as f64 / (1 << 20) as f64
    );

    let pull = median(rounds, || {
        let store = tempfile::tempdir().unwrap();
        let source = BundleSource::new(client(&registry), BundleStore::new(store.path()));
        let started = Instant::now();
        let digest = source.resolve(&reference).unwrap().digest;
        source.fetch(&reference, &digest, &mut |_| {}).unwrap();
        started.elapsed()
    });
    match common::oras_pull(&registry.host(), &reference, rounds) {
        Some(oras) => report("pull + verify", pull, "oras pull", oras),
        None => {
            println!("pull + verify: {pull:.2?} (no oras in target/test-tools: run scripts/test)")
        }
    }

    let config = bundle_config(work.path(), &reference);
    let load = |store: &Path, cache: Option<&Path>| {
        let runtime = Runtime::new(&RuntimeConfig {
            cache_dir: cache.map(Path::to_owned),
            ..RuntimeConfig::default()
        })
        .unwrap();
        let source = BundleSource::new(client(&registry), BundleStore::new(store));
        let mut loader = PolicyLoader::new(config.clone(), runtime, source);
        let started = Instant::now();
        loader.load().unwrap();
        started.elapsed()
    };
    let cold = median(rounds, || {
        let (store, cache) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
        load(store.path(), Some(cache.path()))
    });
    let (store, cache) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    load(store.path(), Some(cache.path()));
    let warm = median(rounds, || load(store.path(), Some(cache.path())));
    let compiling = median(rounds, || load(store.path(), None));
    report(
        "compile the 5 components (bundle stored)",
        compiling,
        "load them from the disk cache",
        warm,
    );
    report(
        "start, cold (pull, verify, compile, check)",
        cold,
        "start, warm (bundle stored, components cached)",
        warm,
    );

    push_to_decision(&registry, work.path(), rounds);
}

/// From the end of a push to the new set serving, and to the first object
/// decided by it being in Git.
fn push_to_decision(registry: &Registry, work: &Path, rounds: usize) {
    let tag = format!("{}/policies/live:stable", registry.host());
    let push = |label: &str| {
        let settings = format!(r#"{{"rules": [{{"path": "metadata.labels['{label}']"}}]}}"#);
        let dir = bundle_folder(&work.join(label), &settings);
        client(registry)
            .push(&tag, &format::build(&dir).unwrap())
            .unwrap()
    };
    push("first");
    let source = work.join("source");
    std::fs::create_dir_all(&source).unwrap();
    let policy = work.join("live.yaml");
    std::fs::write(
        &policy,
        format!("bundleRefreshSeconds: 1\nbundles:\n  live:\n    reference: {tag}\ndecisions:\n  sanitize:\n    steps:\n      - bundle: live\n"),
    )
    .unwrap();
    let repo = work.join("live.git");
    let mut daemon = Command::new(env!("CARGO_BIN_EXE_plumbline"))
        .args([
            "run",
            "--interval",
            "1",
            "--batch-wait",
            "0.1",
            "--listen",
            "127.0.0.1:0",
        ])
        .args(["--insecure-registry", &registry.host(), "--policy"])
        .arg(&policy)
        .arg("--source-dir")
        .arg(&source)
        .arg("--repo")
        .arg(&repo)
        .arg("--state-dir")
        .arg(work.join("state"))
        .arg("--cache-dir")
        .arg(work.join("cache"))
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let address = listening_address(daemon.stderr.take().unwrap());
    let (mut serving, mut in_git) = (Vec::new(), Vec::new());
    let mut n = 0;
    for round in 0..rounds {
        // Alternate which label the pushed bundle drops.
        let (label, kept) = if round % 2 == 0 {
            ("second", "first")
        } else {
            ("first", "second")
        };
        let digest = push(label);
        let pushed = Instant::now();
        let mut serving_at = None;
        loop {
            let name = format!("cm-{n}");
            n += 1;
            std::fs::write(source.join(format!("{name}.yaml")), configmap(&name)).unwrap();
            let until = Instant::now() + Duration::from_millis(100);
            while Instant::now() < until {
                if serving_at.is_none() && metrics(&address).contains(&digest) {
                    serving_at = Some(pushed.elapsed());
                }
                std::thread::sleep(Duration::from_millis(5));
            }
            if serving_at.is_some() && decided_by(&repo, n, kept) {
                break;
            }
            assert!(
                pushed.elapsed() < Duration::from_secs(60),
                "the push never took effect"
            );
        }
        serving.push(serving_at.unwrap());
        in_git.push(pushed.elapsed());
    }
    let _ = daemon.kill();
    let _ = daemon.wait();
    let median = |mut d: Vec<Duration>| {
        d.sort();
        d[d.len() / 2]
    };
    let refresh = Duration::from_secs(1);
    report(
        "push → new set serving",
        median(serving),
        "tag refresh interval",
        refresh,
    );
    report(
        "push → first object it decided in Git",
        median(in_git),
        "refresh + folder look (1 s each)",
        2 * refresh,
    );
}

/// Whether any of the objects written so far is in Git as the bundle
/// that keeps `kept` decided it.
fn decided_by(repo: &Path, written: usize, kept: &str) -> bool {
    let other = if kept == "first" { "second" } else { "first" };
    (0..written).rev().take(40).any(|i| {
        let out = Command::new("git")
            .arg("--git-dir")
            .arg(repo)
            .args(["show", &format!("main:team/core/configmaps/cm-{i}.yaml")])
            .output()
            .unwrap();
        let text = String::from_utf8_lossy(&out.stdout);
        out.status.success()
            && text.contains(&format!("{kept}:"))
            && !text.contains(&format!("{other}:"))
    })
}

/// The address the daemon says it serves HTTP on; its standard error is
/// drained for the rest of its life.
fn metrics(address: &str) -> String {
    use std::io::{Read as _, Write as _};
    let Ok(mut stream) = std::net::TcpStream::connect(address) else {
        return String::new();
    };
    let _ = write!(
        stream,
        "GET /metrics HTTP/1.1\r\nHost: {address}\r\nConnection: close\r\n\r\n"
    );
    let mut text = String::new();
    let _ = stream.read_to_string(&mut text);
    text
}

fn configmap(name: &str) -> String {
    format!(
        "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: {name}\n  namespace: team\n  labels: {{first: a, second: b}}\n"
    )
}

/// A folder with the five default components and a bundle.yaml; the
/// sanitizer `neat` gets `neat_settings`.
fn bundle_folder(dir: &Path, neat_settings: &str) -> PathBuf {
    std::fs::create_dir_all(dir).unwrap();
    let mut yaml = String::from("steps:\n");
    for (name, decision) in PLUGINS {
        std::fs::write(
            dir.join(format!("{name}.wasm")),
            builtin::component(name).unwrap(),
        )
        .unwrap();
        let settings = if name == "neat" { neat_settings } else { "{}" };
        yaml.push_str(&format!(
            "  - decision: {decision}\n    plugin: {name}.wasm\n    settings: {settings}\n"
        ));
    }
    std::fs::write(dir.join("bundle.yaml"), yaml).unwrap();
    dir.to_owned()
}

/// A configuration whose every chain is the bundle's steps only.
fn bundle_config(dir: &Path, reference: &str) -> PolicyConfig {
    let path = dir.join("policy.yaml");
    let mut yaml = format!("bundles:\n  defaults:\n    reference: {reference}\ndecisions:\n");
    for decision in ["sanitize", "match", "schema", "gate"] {
        yaml.push_str(&format!(
            "  {decision}:\n    steps:\n      - bundle: defaults\n"
        ));
    }
    std::fs::write(&path, yaml).unwrap();
    PolicyConfig::from_file(&path).unwrap()
}

fn client(registry: &Registry) -> OciClient {
    OciClient::new(OciConfig {
        insecure: vec![registry.host()],
        ..OciConfig::default()
    })
    .unwrap()
}
