//! `cargo bench --bench replicas`: changes per second from a folder to
//! pushed commits with one, two and three replicas of the release binary
//! sharing a three-node NATS JetStream cluster (replicas 3), against one
//! replica on the embedded redb queue in the same run.
//!
//! Twelve partitions (four repositories, three branches each), one
//! namespace of `REPLICAS_MAPS` config maps (default 200) per partition.
//! Each shape first seeds, then every map changes at once, twice: the time
//! from the writes to the last partition's branch holding every new value,
//! the median of the two waves.

#[allow(dead_code)] // one server alone is not used here
#[path = "../../tests/nats.rs"]
mod nats;

mod common;

#[path = "../../tests/twelve.rs"]
mod twelve;

use nats::Nats;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};
use twelve::{BRANCHES, PARTITIONS, REPOS, configuration};

fn main() {
    let maps: usize = std::env::var("REPLICAS_MAPS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(200);
    let events = PARTITIONS * maps;
    let embedded = shape(None, 1, maps);
    println!(
        "events to pushed commits, {PARTITIONS} partitions, {events} changes a wave: embedded queue, 1 replica: {:.0}/s",
        rate(events, embedded)
    );
    for replicas in 1..=3 {
        let nats = Nats::cluster(3);
        let took = shape(Some(&nats), replicas, maps);
        println!(
            "  JetStream (3 nodes, R3), {replicas} replica(s): {:.0}/s ({:.2}x the embedded time)",
            rate(events, took),
            took.as_secs_f64() / embedded.as_secs_f64()
        );
    }
}

fn rate(events: usize, took: Duration) -> f64 {
    events as f64 / took.as_secs_f64()
}

/// Seeds `replicas` replicas (on `nats`, or embedded), then times two
/// waves of changes to every map; the median wave.
fn shape(nats: Option<&Nats>, replicas: usize, maps: usize) -> Duration {
    let work = tempfile::tempdir().unwrap();
    let repos: Vec<PathBuf> = (0..REPOS)
        .map(|r| {
            let repo = work.path().join(format!("r{r}.git"));
            git(
                work.path(),
                &[
                    "init",
                    "-q",
                    "--bare",
                    "-b",
                    "main",
                    &repo.to_string_lossy(),
                ],
            );
            repo
        })
        .collect();
    let source = work.path().join("source");
    write_wave(&source, maps, 0);
    let config = work.path().join("mirror.yaml");
    let urls: Vec<String> = repos
        .iter()
        .map(|r| format!("file://{}", r.display()))
        .collect();
    std::fs::write(&config, configuration(&urls)).unwrap();
    let mut running: Vec<Child> = (0..replicas)
        .map(|i| {
            start(
                &work.path().join(format!("state-{i}")),
                &config,
                &source,
                nats,
            )
        })
        .collect();
    wait_for_wave(&repos, maps, 0);
    let mut waves = Vec::new();
    for wave in 1..=2 {
        let started = Instant::now();
        write_wave(&source, maps, wave);
        wait_for_wave(&repos, maps, wave);
        waves.push(started.elapsed());
    }
    for child in &mut running {
        let _ = child.kill();
        let _ = child.wait();
    }
    waves.sort();
    waves[0] + (waves[1] - waves[0]) / 2
}

/// A replica of the release binary.
fn start(state: &Path, config: &Path, source: &Path, nats: Option<&Nats>) -> Child {
    let mut command = Command::new(env!("CARGO_BIN_EXE_plumbline"));
    command
        .args([
            "run",
            "--interval",
            "1",
            "--batch-wait",
            "0.2",
            "--listen",
            "127.0.0.1:0",
        ])
        .arg("--config")
        .arg(config)
        .arg("--source-dir")
        .arg(source)
        .arg("--state-dir")
        .arg(state)
        .stderr(Stdio::piped());
    if let Some(nats) = nats {
        command.args(["--nats", &nats.url(), "--nats-replicas", "3"]);
    }
    let mut child = command.spawn().expect("plumbline");
    common::listening_address(child.stderr.take().unwrap());
    child
}

/// Every map of every namespace set to `wave`, one file per namespace
/// written whole and renamed into place.
fn write_wave(source: &Path, maps: usize, wave: usize) {
    for i in 0..PARTITIONS {
        let mut text = String::new();
        for m in 0..maps {
            text.push_str(&format!(
                "---\napiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: cm-{m}\n  namespace: n{i}\ndata:\n  v: wave-{wave}\n"
            ));
        }
        let dir = source.join(format!("n{i}"));
        std::fs::create_dir_all(&dir).unwrap();
        let scratch = source.with_extension(format!("n{i}.tmp"));
        std::fs::write(&scratch, text).unwrap();
        std::fs::rename(&scratch, dir.join("maps.yaml")).unwrap();
    }
}

/// Waits until every branch holds `maps` files of `wave`.
fn wait_for_wave(repos: &[PathBuf], maps: usize, wave: usize) {
    let needle = format!("v: wave-{wave}");
    let started = Instant::now();
    loop {
        let done = (0..PARTITIONS).all(|i| {
            let out = Command::new("git")
                .current_dir(&repos[i % REPOS])
                .args(["grep", "-c", "-F", &needle, BRANCHES[i / REPOS], "--"])
                .output()
                .unwrap();
            let count: usize = String::from_utf8_lossy(&out.stdout)
                .lines()
                .filter_map(|l| l.rsplit(':').next()?.parse::<usize>().ok())
                .sum();
            count == maps
        });
        if done {
            return;
        }
        assert!(
            started.elapsed() < Duration::from_secs(600),
            "wave {wave} never arrived"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn git(dir: &Path, args: &[&str]) {
    let status = Command::new("git")
        .current_dir(dir)
        .args(args)
        .status()
        .unwrap();
    assert!(status.success(), "git {args:?}");
}
