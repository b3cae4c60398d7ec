//! End-to-end seed benchmark: 10,000 generated objects of realistic size
//! through `plumbline run --once` (match + sanitize through Wasm, canonical
//! YAML, commit, push) into an empty repository, against a baseline
//! measured in the same run: `git add -A && git commit && git push` of the
//! same sanitized files, already in a fresh work tree (their creation is not
//! timed), which is the least any tool that commits those files must do.
//!
//! Then every object changes, and the same daemon state mirrors the
//! updates: the sustained rate of update events.
//!
//! Each round also seeds with every commit signed (`--signing-key`, an
//! ed25519 key): the cost of signing, as a ratio to the unsigned seed.
//!
//! Then 1,000 Secrets (`SEED_SECRETS`) are seeded with the default chain
//! (values redacted) and with a `sops` step (values encrypted for an age
//! recipient): the cost of encryption, as a ratio; and seeded again
//! unchanged with encryption, which must commit nothing.
//!
//! `cargo bench --bench seed` (`SEED_OBJECTS` changes the count, default
//! 10,000; `SEED_ROUNDS` the rounds, default 3). Prints the median of the
//! rounds of each, their ratio, objects per second, updates per second and
//! Plumbline's peak RSS (its own `VmHWM`, without the `git` processes it runs).

use serde_json::{Value, json};
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

const DEPLOYMENT: &str = include_str!("deployment-5k.json");

fn main() {
    let count: usize = std::env::var("SEED_OBJECTS")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(10_000);
    let rounds: usize = std::env::var("SEED_ROUNDS")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(3);
    let work = tempfile::tempdir().unwrap();
    let source = work.path().join("source");
    generate(&source, count, 0);
    let cache = work.path().join("cache");
    let key = work.path().join("id_ed25519");
    sh(&format!(
        "ssh-keygen -q -t ed25519 -N '' -f {}",
        key.display()
    ));
    let signing = ["--signing-key".as_ref(), key.as_os_str()];
    let mut ours = Vec::new();
    let mut signed = Vec::new();
    let mut baseline = Vec::new();
    let mut rss_kib = 0;
    for round in 0..rounds {
        let repo = bare(work.path(), &format!("ours-{round}.git"));
        let state = work.path().join(format!("state-{round}"));
        let (elapsed, rss) = mirror(&source, &repo, &state, &cache, &[]);
        ours.push(elapsed);
        rss_kib = rss_kib.max(rss);
        let signed_repo = bare(work.path(), &format!("signed-{round}.git"));
        let state = work.path().join(format!("signed-state-{round}"));
        signed.push(mirror(&source, &signed_repo, &state, &cache, &signing).0);

        // The baseline commits exactly the files Plumbline wrote.
        let files = work.path().join(format!("files-{round}"));
        sh(&format!(
            "mkdir -p {files} && git --git-dir {repo} archive main | tar -x -C {files}",
            files = files.display(),
            repo = repo.display()
        ));
        let target = bare(work.path(), &format!("baseline-{round}.git"));
        let clone = work.path().join(format!("baseline-clone-{round}"));
        sh(&format!(
            "git init -q -b main {clone} && cp -r {files}/. {clone}/",
            clone = clone.display(),
            files = files.display(),
        ));
        // Only what git does with files already in a work tree is timed.
        let started = Instant::now();
        sh(&format!(
            "cd {clone} && git add -A && \
             git -c user.name=b -c user.email=b@b commit -q -m seed && \
             git push -q {target} main",
            clone = clone.display(),
            target = target.display()
        ));
        baseline.push(started.elapsed());
    }
    // Every object changes; the first round's daemon state mirrors them.
    generate(&source, count, 1);
    let (updates, rss) = mirror(
        &source,
        &work.path().join("ours-0.git"),
        &work.path().join("state-0"),
        &cache,
        &[],
    );
    rss_kib = rss_kib.max(rss);
    let (signed_updates, _) = mirror(
        &source,
        &work.path().join("signed-0.git"),
        &work.path().join("signed-state-0"),
        &cache,
        &signing,
    );
    let (ours, signed, baseline) = (median(ours), median(signed), median(baseline));
    println!("seed of {count} objects (median of {rounds}):");
    println!(
        "  plumbline run --once     {:>8.2?}  ({:.0} objects/s)",
        ours,
        count as f64 / ours.as_secs_f64()
    );
    println!("  git add + commit + push  {:>8.2?}", baseline);
    println!(
        "  ratio                    {:>8.2}×",
        ours.as_secs_f64() / baseline.as_secs_f64()
    );
    println!(
        "  {count} updates           {:>8.2?}  ({:.0} updates/s)",
        updates,
        count as f64 / updates.as_secs_f64()
    );
    println!(
        "  {count} updates, signed   {:>8.2?}  ({:.2}× unsigned)",
        signed_updates,
        signed_updates.as_secs_f64() / updates.as_secs_f64()
    );
    println!(
        "  seed, every commit signed {:>7.2?}  ({:.2}× unsigned)",
        signed,
        signed.as_secs_f64() / ours.as_secs_f64()
    );
    println!("  plumbline peak RSS       {:>8} MiB", rss_kib / 1024);
    secrets(work.path(), &cache, rounds);
}

/// An age recipient: encryption needs no identity.
const RECIPIENT: &str = "age1ql3z7hjy54pw3hyww5ayyfg7zqgvc7w3j2elw8zmrj2kg5sfn9aqmcac8p";

/// Seeds of Secrets redacted (the default chain) and encrypted (`sops`).
fn secrets(work: &Path, cache: &Path, rounds: usize) {
    let count: usize = std::env::var("SEED_SECRETS")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(1_000);
    let source = work.join("secrets");
    std::fs::create_dir_all(&source).unwrap();
    for i in 0..count {
        let secret = json!({"apiVersion": "v1", "kind": "Secret", "type": "Opaque",
            "metadata": {"name": format!("secret-{i:05}"), "namespace": format!("team-{:02}", i % 50), "uid": format!("uid-{i}")},
            "data": {"password": "aHVudGVyMg==", "token": format!("dG9rZW4t{i:05}"), "ca.crt": "LS0tLS1CRUdJTiBDRVJUSUZJQ0FURS0tLS0t"}});
        std::fs::write(source.join(format!("{i:05}.json")), secret.to_string()).unwrap();
    }
    let policy = work.join("sops-policies.yaml");
    std::fs::write(
        &policy,
        format!("decisions:\n  sanitize:\n    steps:\n      - plugin: neat\n      - sops: {{ age: [{RECIPIENT}] }}\n"),
    )
    .unwrap();
    let encrypting = ["--policy".as_ref(), policy.as_os_str()];
    let (mut redacted, mut encrypted) = (Vec::new(), Vec::new());
    for round in 0..rounds {
        let repo = bare(work, &format!("redacted-{round}.git"));
        let state = work.join(format!("redacted-state-{round}"));
        redacted.push(mirror(&source, &repo, &state, cache, &[]).0);
        let repo = bare(work, &format!("encrypted-{round}.git"));
        let state = work.join(format!("encrypted-state-{round}"));
        encrypted.push(mirror(&source, &repo, &state, cache, &encrypting).0);
    }
    let repo = work.join("encrypted-0.git");
    let commits = || {
        let out = Command::new("git")
            .arg("--git-dir")
            .arg(&repo)
            .args(["rev-list", "--count", "main"])
            .output()
            .unwrap();
        String::from_utf8(out.stdout).unwrap()
    };
    let before = commits();
    let (again, _) = mirror(
        &source,
        &repo,
        &work.join("encrypted-state-0"),
        cache,
        &encrypting,
    );
    assert_eq!(commits(), before, "an unchanged encrypted seed committed");
    let (redacted, encrypted) = (median(redacted), median(encrypted));
    println!("seed of {count} Secrets (median of {rounds}):");
    println!("  redacted (default chain) {:>8.2?}", redacted);
    println!(
        "  encrypted (sops, age)    {:>8.2?}  ({:.2}× redacted)",
        encrypted,
        encrypted.as_secs_f64() / redacted.as_secs_f64()
    );
    println!(
        "  encrypted, unchanged     {:>8.2?}  (no commit: ciphertext kept)",
        again
    );
}

/// `plumbline run --once` of `source` into `repo`: how long it took and its
/// peak RSS in KiB (its own high-water mark from `/proc`, sampled until it
/// exits; the `git` processes it runs are not counted).
fn mirror(
    source: &Path,
    repo: &Path,
    state: &Path,
    cache: &Path,
    extra: &[&std::ffi::OsStr],
) -> (Duration, u64) {
    let started = Instant::now();
    let mut child = Command::new(env!("CARGO_BIN_EXE_plumbline"))
        .args(["run", "--once", "--repo"])
        .arg(repo)
        .arg("--source-dir")
        .arg(source)
        .arg("--state-dir")
        .arg(state)
        .arg("--cache-dir")
        .arg(cache)
        .args(extra)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let status = format!("/proc/{}/status", child.id());
    let mut peak = 0;
    while child.try_wait().unwrap().is_none() {
        if let Ok(text) = std::fs::read_to_string(&status) {
            peak = peak.max(high_water_mark(&text));
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let elapsed = started.elapsed();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    (elapsed, peak)
}

/// `VmHWM` of a `/proc/PID/status`, in KiB.
fn high_water_mark(status: &str) -> u64 {
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0)
}

fn median(mut times: Vec<Duration>) -> Duration {
    times.sort();
    times[times.len() / 2]
}

fn bare(dir: &Path, name: &str) -> std::path::PathBuf {
    let path = dir.join(name);
    sh(&format!("git init -q --bare -b main {}", path.display()));
    path
}

fn sh(script: &str) {
    let status = Command::new("sh")
        .args(["-c", script])
        .env("GIT_CONFIG_GLOBAL", "/dev/null")
        .status()
        .unwrap();
    assert!(status.success(), "{script}");
}

/// Writes `count` objects: a realistic mix of Deployments (~5 KiB, with
/// managedFields and status), ConfigMaps, Services and Secrets across 50
/// namespaces, one JSON file each, as `kubectl get -o json` writes them.
/// Each `generation` changes every object.
fn generate(dir: &Path, count: usize, generation: usize) {
    std::fs::create_dir_all(dir).unwrap();
    let deployment: Value = serde_json::from_str(DEPLOYMENT).unwrap();
    for i in 0..count {
        let namespace = format!("team-{:02}", i % 50);
        let name = format!("app-{i:05}");
        let object = match i % 4 {
            0 => {
                let mut d = deployment.clone();
                d["metadata"]["name"] = json!(name);
                d["metadata"]["namespace"] = json!(namespace);
                d["spec"]["replicas"] = json!(1 + i % 5 + generation);
                d
            }
            1 => json!({"apiVersion": "v1", "kind": "ConfigMap",
                "metadata": {"name": name, "namespace": namespace, "uid": format!("uid-{i}"), "resourceVersion": format!("{}", 1000 + i),
                             "creationTimestamp": "2026-10-14T09:21:07Z", "labels": {"app": name}},
                "data": {"config.yaml": format!("listen: 8080\nworkers: {}\nfeature_flags:\n  checkout_v2: true\n  region: eu-{}\n", i % 16 + generation, i % 3)}}),
            2 => json!({"apiVersion": "v1", "kind": "Service",
                "metadata": {"name": name, "namespace": namespace, "uid": format!("uid-{i}"), "resourceVersion": format!("{}", 1000 + i)},
                "spec": {"clusterIP": format!("10.43.{}.{}", i / 250 % 250, i % 250), "clusterIPs": [format!("10.43.{}.{}", i / 250 % 250, i % 250)],
                         "ports": [{"name": "http", "port": 80 + generation, "protocol": "TCP", "targetPort": 8080}], "selector": {"app": name},
                         "sessionAffinity": "None", "type": "ClusterIP"}, "status": {"loadBalancer": {}}}),
            _ => json!({"apiVersion": "v1", "kind": "Secret", "type": "Opaque",
                "metadata": {"name": name, "namespace": namespace, "uid": format!("uid-{i}")},
                "data": {"password": "aHVudGVyMg==", "token": "c2VjcmV0LXRva2Vu"}, "immutable": generation > 0}),
        };
        std::fs::write(dir.join(format!("{i:05}.json")), object.to_string()).unwrap();
    }
}
