//! Following a cluster: `plumbline run --kubeconfig` against the tests' API
//! server (the real HTTP protocol: paginated lists, chunked watches with
//! bookmarks) holding `CLUSTER_OBJECTS` objects (default 100,000; the seed
//! bench's mix of Deployments, ConfigMaps, Services and Secrets), with
//! `--batch-wait 1`. It measures:
//!
//! - the seed: listing everything into Git, against `git add -A && git
//!   commit && git push` of the same files in a work tree, in the same run;
//! - the rate of watch events to pushed commits: 10,000 objects changed at
//!   once on the server, from the first change to the push holding the
//!   last, against git committing and pushing the same changed files;
//! - the delay from a write to the push holding it, p50 and p99, for 200
//!   changes written one every 50 ms;
//! - Plumbline's peak RSS following the cluster (its own `VmHWM`).
//!
//! `cargo bench --bench cluster`.

#[allow(dead_code, unused_imports)]
#[path = "../../tests/apiserver/mod.rs"]
mod apiserver;

/// What the API server's module takes from the tests' helpers.
#[allow(dead_code)]
mod support {
    use std::path::{Path, PathBuf};
    use std::time::Duration;

    pub fn root() -> PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR"))
            .parent()
            .unwrap()
            .to_owned()
    }

    pub fn binary() -> &'static str {
        env!("CARGO_BIN_EXE_plumbline")
    }

    pub fn wait_for<T>(what: &str, mut probe: impl FnMut() -> Option<T>) -> T {
        let started = std::time::Instant::now();
        loop {
            if let Some(value) = probe() {
                return value;
            }
            assert!(
                started.elapsed().as_secs() < 600,
                "timed out waiting for {what}"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

use apiserver::ApiServer;
use apiserver::store::Write;
use serde_json::{Value, json};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const DEPLOYMENT: &str = include_str!("deployment-5k.json");

fn main() {
    let count: usize = std::env::var("CLUSTER_OBJECTS")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(100_000);
    let api = ApiServer::start();
    fill(&api, count);
    let work = tempfile::tempdir().unwrap();
    let repo = work.path().join("repo.git");
    sh(&format!("git init -q --bare -b main {}", repo.display()));
    let rules = work.path().join("rules.yaml");
    std::fs::write(&rules, config(&repo)).unwrap();

    let started = Instant::now();
    let mut daemon = Command::new(support::binary())
        .args([
            "run",
            "--batch-wait",
            "1",
            "--listen",
            "127.0.0.1:0",
            "--kubeconfig",
        ])
        .arg(api.kubeconfig())
        .arg("--config")
        .arg(&rules)
        .arg("--state-dir")
        .arg(work.path().join("state"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let status = format!("/proc/{}/status", daemon.id());
    let files =
        |repo: &Path| -> usize { git_out(repo, "ls-tree -r --name-only main").lines().count() };
    // The tree is counted only when the tip moved: a listing of 100,000
    // files at every look would take a core from the daemon.
    let mut counted = None;
    support::wait_for("the seed", || {
        let now = tip(&repo)?;
        if counted.as_ref() == Some(&now) {
            return None;
        }
        let done = files(&repo) == count;
        counted = Some(now);
        done.then_some(())
    });
    let seeded = started.elapsed();
    let git_seed = git_baseline(work.path(), &repo, None);

    // 10,000 changes at once.
    let changed = 10_000.min(count / 4);
    let tip_before = tip(&repo).unwrap();
    let started = Instant::now();
    for i in 0..changed {
        change(&api, i * 4 + 1, "burst");
    }
    support::wait_for("the burst", || {
        let now = tip(&repo)?;
        let diff = git_out(&repo, &format!("diff --name-only {tip_before} {now}"));
        (diff.lines().count() == changed).then_some(())
    });
    let burst = started.elapsed();
    let git_burst = git_baseline(work.path(), &repo, Some(&tip_before));

    let delays = delays(&api, &repo, 200);
    let rss = high_water_mark(&std::fs::read_to_string(&status).unwrap_or_default());
    daemon.kill().unwrap();
    let _ = daemon.wait();

    println!("following a cluster of {count} objects (--batch-wait 1):");
    println!(
        "  seed                     {seeded:>8.2?}  ({:.0} objects/s)",
        count as f64 / seeded.as_secs_f64()
    );
    println!(
        "  git add + commit + push  {git_seed:>8.2?}  ratio {:.2}×",
        seeded.as_secs_f64() / git_seed.as_secs_f64()
    );
    println!(
        "  {changed} watch events  {burst:>8.2?}  ({:.0} events/s to pushed commits)",
        changed as f64 / burst.as_secs_f64()
    );
    println!(
        "  git commit + push        {git_burst:>8.2?}  ratio {:.2}×",
        burst.as_secs_f64() / git_burst.as_secs_f64()
    );
    println!(
        "  write to push            p50 {:?}  p99 {:?}",
        delays.0, delays.1
    );
    println!("  plumbline peak RSS       {:>8} MiB", rss / 1024);
}

fn config(repo: &Path) -> String {
    format!(
        "apiVersion: mirror.plumbline.dev/v1alpha1\nkind: GitRepoConfig\nmetadata: {{name: r, namespace: p}}\n\
         spec: {{repoUrl: '{}', allowedBranches: [main]}}\n---\n\
         apiVersion: mirror.plumbline.dev/v1alpha1\nkind: GitDestination\nmetadata: {{name: d, namespace: p}}\n\
         spec: {{repoRef: {{name: r}}, branch: main, baseFolder: ''}}\n---\n\
         apiVersion: mirror.plumbline.dev/v1alpha1\nkind: ClusterWatchRule\nmetadata: {{name: all}}\n\
         spec:\n  destinationRef: {{name: d, namespace: p}}\n  rules:\n\
         \x20 - {{scope: Namespaced, resources: [deployments, configmaps, services, secrets]}}\n",
        repo.display()
    )
}

/// The seed bench's mix, written straight into the server's store.
fn fill(api: &ApiServer, count: usize) {
    let store = api.store();
    let deployment: Value = serde_json::from_str(DEPLOYMENT).unwrap();
    let write = Write {
        user: "bench".into(),
        dry_run: false,
        manager: "bench".into(),
        named: true,
    };
    let namespaces = store.resource("", "v1", "namespaces").unwrap();
    for n in 0..50 {
        let namespace = json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": format!("team-{n:02}")}});
        store.create(&namespaces, None, namespace, &write).unwrap();
    }
    for i in 0..count {
        let (namespace, name) = (format!("team-{:02}", i % 50), format!("app-{i:05}"));
        let (plural, group, object) = match i % 4 {
            0 => {
                let mut d = deployment.clone();
                for field in [
                    "uid",
                    "resourceVersion",
                    "generation",
                    "creationTimestamp",
                    "managedFields",
                ] {
                    d["metadata"].as_object_mut().unwrap().remove(field);
                }
                d["metadata"]["name"] = json!(name);
                d["metadata"]["namespace"] = json!(namespace);
                ("deployments", "apps", d)
            }
            1 => (
                "configmaps",
                "",
                json!({"apiVersion": "v1", "kind": "ConfigMap",
                "metadata": {"name": name, "namespace": namespace, "labels": {"app": name}},
                "data": {"config.yaml": format!("listen: 8080\nworkers: {}\n", i % 16)}}),
            ),
            2 => (
                "services",
                "",
                json!({"apiVersion": "v1", "kind": "Service",
                "metadata": {"name": name, "namespace": namespace},
                "spec": {"ports": [{"name": "http", "port": 80, "protocol": "TCP", "targetPort": 8080}],
                         "selector": {"app": name}, "type": "ClusterIP"}}),
            ),
            _ => (
                "secrets",
                "",
                json!({"apiVersion": "v1", "kind": "Secret", "type": "Opaque",
                "metadata": {"name": name, "namespace": namespace},
                "data": {"password": "aHVudGVyMg=="}}),
            ),
        };
        let resource = store
            .resource(group, "v1", plural)
            .expect("a built-in resource");
        store
            .create(&resource, Some(&namespace), object, &write)
            .unwrap();
    }
}

/// Changes the config map of index `i` (one of every four objects).
fn change(api: &ApiServer, i: usize, value: &str) {
    let store = api.store();
    let resource = store.resource("", "v1", "configmaps").unwrap();
    let (namespace, name) = (format!("team-{:02}", i % 50), format!("app-{i:05}"));
    let object = json!({"apiVersion": "v1", "kind": "ConfigMap",
        "metadata": {"name": name, "namespace": namespace, "labels": {"app": name}},
        "data": {"config.yaml": format!("changed: {value}\n")}});
    let write = Write {
        user: "bench".into(),
        dry_run: false,
        manager: "bench".into(),
        named: true,
    };
    store
        .update(&resource, Some(&namespace), &name, object, false, &write)
        .unwrap();
}

/// p50 and p99 of the delay from a write to the push holding it, for
/// `n` writes one every 50 ms: the remote's tip is polled, and each new
/// tip's changed files are stamped with when it was seen.
fn delays(api: &ApiServer, repo: &Path, n: usize) -> (Duration, Duration) {
    let mut written = Vec::new();
    let mut seen: std::collections::HashMap<String, Instant> = Default::default();
    let mut last = tip(repo).unwrap();
    let mut poll = |seen: &mut std::collections::HashMap<String, Instant>| {
        if let Some(now) = tip(repo).filter(|t| *t != last) {
            let at = Instant::now();
            for file in git_out(repo, &format!("diff --name-only {last} {now}")).lines() {
                seen.entry(file.to_owned()).or_insert(at);
            }
            last = now;
        }
    };
    for k in 0..n {
        let i = (k * 4 + 1) % 40_000;
        change(api, i, &format!("delay-{k}"));
        written.push((
            format!("team-{:02}/core/configmaps/app-{i:05}.yaml", i % 50),
            Instant::now(),
        ));
        let until = Instant::now() + Duration::from_millis(50);
        while Instant::now() < until {
            poll(&mut seen);
            std::thread::sleep(Duration::from_millis(5));
        }
    }
    support::wait_for("every delayed change", || {
        poll(&mut seen);
        written
            .iter()
            .all(|(f, _)| seen.contains_key(f))
            .then_some(())
    });
    let mut all: Vec<Duration> = written
        .iter()
        .map(|(f, at)| seen[f].saturating_duration_since(*at))
        .collect();
    all.sort();
    (all[all.len() / 2], all[all.len() * 99 / 100])
}

/// The time git takes to add, commit and push the files of the remote's
/// tip, from a work tree that holds them: all of them into an empty
/// repository, or only the changes since `since` on top of it.
fn git_baseline(dir: &Path, repo: &Path, since: Option<&str>) -> Duration {
    let base = dir.join(format!("baseline-{}", since.map_or("seed", |_| "burst")));
    let target = dir.join(format!("target-{}.git", since.map_or("seed", |_| "burst")));
    sh(&format!("git init -q --bare -b main {}", target.display()));
    match since {
        None => sh(&format!("git init -q -b main {}", base.display())),
        Some(old) => {
            sh(&format!(
                "git --git-dir {} push -q {} {old}:refs/heads/main",
                repo.display(),
                target.display()
            ));
            sh(&format!(
                "git clone -q {} {}",
                target.display(),
                base.display()
            ));
            sh(&format!(
                "cd {} && git rm -q -r --cached . >/dev/null && find . -path ./.git -prune -o -type f -print | xargs rm -f",
                base.display()
            ));
        }
    }
    sh(&format!(
        "git --git-dir {} archive main | tar -x -C {}",
        repo.display(),
        base.display()
    ));
    let started = Instant::now();
    sh(&format!(
        "cd {} && git add -A && git -c user.name=b -c user.email=b@b commit -q -m x && git push -q {} main",
        base.display(),
        target.display()
    ));
    started.elapsed()
}

fn tip(repo: &Path) -> Option<String> {
    let out = Command::new("git")
        .arg("--git-dir")
        .arg(repo)
        .args(["rev-parse", "--verify", "-q", "main"])
        .output()
        .ok()?;
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).trim().to_owned())
}

fn git_out(repo: &Path, args: &str) -> String {
    let out = Command::new("sh")
        .args(["-c", &format!("git --git-dir {} {args}", repo.display())])
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn sh(script: &str) {
    let status = Command::new("sh")
        .args(["-c", script])
        .env("GIT_CONFIG_GLOBAL", "/dev/null")
        .status()
        .unwrap();
    assert!(status.success(), "{script}");
}

/// `VmHWM` of a `/proc/PID/status`, in KiB.
fn high_water_mark(status: &str) -> u64 {
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0)
}
