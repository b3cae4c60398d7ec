//! The mirror following its source: a running daemon turns file changes
//! into create, update and delete events, queued durably and committed as
//! the actor; a change that means nothing in Git makes no commit; the HTTP
//! server reports what happened.

use crate::support::{Daemon, GitServer, git, http_get, root, wait_for};
use std::path::Path;

/// The example folder, plus the mutationlab Deployment as first captured.
fn source_with_lab_deployment() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    for entry in std::fs::read_dir(root().join("examples/cluster")).unwrap() {
        let path = entry.unwrap().path();
        std::fs::copy(&path, dir.path().join(path.file_name().unwrap())).unwrap();
    }
    std::fs::write(dir.path().join("lab.yaml"), status_update(1)).unwrap();
    dir
}

/// Capture `n` of the mutationlab status-update scenario: the watch
/// event's object, as a manifest, in a namespace of its own.
fn status_update(n: u32) -> String {
    let path = root().join(format!(
        "tests/fixtures/mutationlab/deployment/status-update/watch.modified.{n}.yaml"
    ));
    std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
        .lines()
        .filter_map(|line| line.strip_prefix("  "))
        .collect::<Vec<_>>()
        .join("\n")
        .replace("<ns-1>", "lab")
}

fn start(source: &Path, repo: &str, state: &Path) -> Daemon {
    Daemon::start(&[
        "--actor".as_ref(),
        "carol".as_ref(),
        "--repo".as_ref(),
        repo.as_ref(),
        "--source-dir".as_ref(),
        source.as_os_str(),
        "--state-dir".as_ref(),
        state.as_os_str(),
    ])
}

/// The files the newest commit on `main` touched.
fn last_commit_files(server: &GitServer) -> Vec<String> {
    git(
        &server.bare(),
        &["show", "--name-only", "--format=", "main"],
    )
    .lines()
    .map(str::to_owned)
    .collect()
}

#[test]
fn edits_and_deletes_become_commits_and_a_status_only_change_none() {
    let server = GitServer::start();
    let (src, state) = (source_with_lab_deployment(), tempfile::tempdir().unwrap());
    let daemon = start(src.path(), &server.url(), state.path());
    let deployment = "lab/apps/deployments/d1.yaml";
    wait_for("the seed", || (server.tree().len() == 8).then_some(()));
    assert!(!server.tree()[deployment].contains("observedGeneration"));
    let seeded = server.log_len();

    // Status only (and managedFields, resourceVersion): the sanitized
    // object is the same, so no commit; then a real edit, in a later look.
    std::fs::write(src.path().join("lab.yaml"), status_update(2)).unwrap();
    std::thread::sleep(std::time::Duration::from_millis(2500));
    let cm = src.path().join("configmap-settings.yaml");
    let text = std::fs::read_to_string(&cm).unwrap();
    std::fs::write(&cm, text.replace("key: value", "key: changed")).unwrap();
    wait_for("the edit", || {
        server.tree()["shop/core/configmaps/cm-a.yaml"]
            .contains("key: changed")
            .then_some(())
    });
    assert_eq!(server.log_len(), seeded + 1, "{:?}", server.log());
    assert_eq!(
        last_commit_files(&server),
        ["shop/core/configmaps/cm-a.yaml"]
    );
    assert_eq!(server.log()[0].0, "carol");

    std::fs::remove_file(src.path().join("service-web.yaml")).unwrap();
    wait_for("the delete", || {
        (!server.tree().contains_key("shop/core/services/web.yaml")).then_some(())
    });
    assert_eq!(server.log()[0].0, "carol");
    assert!(
        server.log()[0]
            .1
            .starts_with("delete: 1 file(s) of services"),
        "{:?}",
        server.log()
    );

    // What the HTTP server says about it.
    let address = daemon.address();
    assert_eq!(http_get(&address, "/healthz"), (200, "ok\n".to_owned()));
    let (status, ready) = http_get(&address, "/readyz");
    assert_eq!(status, 200, "{ready}");
    assert!(ready.contains("[+] sink git://127.0.0.1:"), "{ready}");
    let labels = format!("repo=\"{}\",branch=\"main\"", server.url());
    let depth = format!("plumbline_queue_depth{{{labels}}} 0");
    // Acknowledged right after the push the test saw.
    let metrics = wait_for("an empty queue", || {
        let (status, metrics) = http_get(&address, "/metrics");
        assert_eq!(status, 200);
        metrics.contains(&depth).then_some(metrics)
    });
    for expected in [
        // Every commit on the branch is the daemon's (a loaded machine may
        // split the seed in two when a batch waits longer than 0.2 s).
        format!("plumbline_commits_total{{{labels}}} {}", server.log_len()),
        format!("plumbline_files_written_total{{{labels}}} 9"),
        format!("plumbline_files_deleted_total{{{labels}}} 1"),
    ] {
        assert!(metrics.contains(&expected), "{expected} not in\n{metrics}");
    }
    assert!(
        metrics.contains("plumbline_objects_scanned_total"),
        "{metrics}"
    );
}

#[test]
fn a_stream_of_changes_while_the_remote_is_down_arrives_whole_and_once() {
    let mut server = GitServer::start();
    let (src, state) = (source_with_lab_deployment(), tempfile::tempdir().unwrap());
    let daemon = start(src.path(), &server.url(), state.path());
    wait_for("the seed", || (server.tree().len() == 8).then_some(()));
    server.stop();
    for i in 0..5 {
        std::fs::write(
            src.path().join(format!("stream-{i}.yaml")),
            format!("apiVersion: v1\nkind: ConfigMap\nmetadata: {{name: stream-{i}, namespace: shop}}\ndata: {{n: \"{i}\"}}\n"),
        )
        .unwrap();
        std::thread::sleep(std::time::Duration::from_millis(700));
    }
    let address = daemon.address();
    let (status, ready) = http_get(&address, "/readyz");
    assert_eq!(status, 503, "not ready while the remote is down: {ready}");
    assert!(
        ready.contains("Connection refused") || ready.contains("git push"),
        "{ready}"
    );
    server.resume();
    wait_for("every change", || {
        let tree = server.tree();
        (0..5)
            .all(|i| tree.contains_key(&format!("shop/core/configmaps/stream-{i}.yaml")))
            .then_some(())
    });
    // Each file was added exactly once.
    for i in 0..5 {
        let path = format!("shop/core/configmaps/stream-{i}.yaml");
        let adds = git(
            &server.bare(),
            &["log", "--format=%H", "--diff-filter=A", "main", "--", &path],
        );
        assert_eq!(adds.lines().count(), 1, "{path}");
    }
}
