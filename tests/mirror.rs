//! The mirror end to end: the real `plumbline run` binary against real bare
//! repositories served by `git daemon` on 127.0.0.1.

use crate::support::{GitServer, binary, example_source, git, run_once, wait_for};
use std::path::Path;
use std::process::Output;

fn source() -> tempfile::TempDir {
    example_source()
}

fn run(source: &Path, repo: &str, state: &Path, extra: &[&str]) -> Output {
    run_once(source, repo, state, extra)
}

fn ok(out: &Output) -> String {
    let err = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(out.status.success(), "plumbline failed:\n{err}");
    err
}

const EXPECTED_FILES: [&str; 7] = [
    "_cluster/core/persistentvolumes/pvc-54fad2fe-4d7b-11e9-9172-0800271788ca.yaml",
    "default/core/secrets/myreg.yaml",
    "default/core/services/myappservice.yaml",
    "shop/apps/deployments/d1.yaml",
    "shop/core/configmaps/cm-a.yaml",
    "shop/core/services/web.yaml",
    "shop/mutationlab.configbutler.ai/widgets/w1.yaml",
];

#[test]
fn seed_gives_the_tree_in_one_commit_and_a_second_run_changes_nothing() {
    let server = GitServer::start();
    let (src, state) = (source(), tempfile::tempdir().unwrap());
    ok(&run(src.path(), &server.url(), state.path(), &[]));
    let tree = server.tree();
    assert_eq!(
        tree.keys().map(String::as_str).collect::<Vec<_>>(),
        EXPECTED_FILES
    );
    assert_eq!(server.log().len(), 1);
    assert_eq!(server.log()[0].0, "Unknown actor");
    let secret = &tree["default/core/secrets/myreg.yaml"];
    assert!(
        secret.contains(".dockerconfigjson: <redacted>") && !secret.contains("eyJhdXRocyI6"),
        "{secret}"
    );
    for (path, file) in &tree {
        let object: serde_json::Value = serde_saphyr::from_str(file).unwrap();
        for noise in [
            "managedFields",
            "resourceVersion",
            "uid",
            "creationTimestamp",
        ] {
            assert!(
                object["metadata"].get(noise).is_none(),
                "{path} keeps metadata.{noise}"
            );
        }
        assert!(object.get("status").is_none(), "{path} keeps its status");
    }

    // A fresh state folder too: the result depends on the source alone.
    let other_state = tempfile::tempdir().unwrap();
    let err = ok(&run(src.path(), &server.url(), other_state.path(), &[]));
    assert!(err.contains("0 written, 0 deleted, 0 commit(s)"), "{err}");
    assert_eq!(server.log().len(), 1);
    assert_eq!(server.tree(), tree, "bytes changed on a second run");
}

#[test]
fn an_edit_and_a_delete_are_committed_as_the_actor() {
    let server = GitServer::start();
    let (src, state) = (source(), tempfile::tempdir().unwrap());
    ok(&run(src.path(), &server.url(), state.path(), &[]));
    let cm = src.path().join("configmap-settings.yaml");
    let text = std::fs::read_to_string(&cm)
        .unwrap()
        .replace("key: value", "key: changed");
    std::fs::write(&cm, text).unwrap();
    std::fs::remove_file(src.path().join("service-web.yaml")).unwrap();
    let err = ok(&run(
        src.path(),
        &server.url(),
        state.path(),
        &["--actor", "alice"],
    ));
    assert!(err.contains("1 written, 1 deleted"), "{err}");
    let tree = server.tree();
    assert!(tree["shop/core/configmaps/cm-a.yaml"].contains("key: changed"));
    assert!(!tree.contains_key("shop/core/services/web.yaml"));
    let log = server.log();
    assert_eq!(log.len(), 2);
    assert_eq!(log[0].0, "alice", "{log:?}");
}

#[test]
fn narrowing_scope_prunes_orphans_and_a_broken_file_holds_back_only_what_it_held() {
    let server = GitServer::start();
    let (src, state) = (source(), tempfile::tempdir().unwrap());
    ok(&run(src.path(), &server.url(), state.path(), &[]));

    // A broken file, read by a state folder that never saw this folder:
    // what it held is unknown, so the deleted Service stays.
    std::fs::remove_file(src.path().join("service-web.yaml")).unwrap();
    std::fs::write(src.path().join("zz-broken.yaml"), "kind: [unclosed\n").unwrap();
    let fresh = tempfile::tempdir().unwrap();
    let out = run(src.path(), &server.url(), fresh.path(), &[]);
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("zz-broken.yaml: not valid YAML") && err.contains("orphan(s) kept"),
        "{err}"
    );
    assert!(server.tree().contains_key("shop/core/services/web.yaml"));

    // The state that read the folder before knows zz-broken.yaml held
    // nothing: the Service is pruned, and the run still fails.
    let out = run(src.path(), &server.url(), state.path(), &[]);
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("zz-broken.yaml: not valid YAML"), "{err}");
    assert!(
        !server.tree().contains_key("shop/core/services/web.yaml"),
        "{err}"
    );

    // Fixed, and the scope narrowed to the shop namespace's ConfigMaps.
    std::fs::remove_file(src.path().join("zz-broken.yaml")).unwrap();
    let policy = src.path().join("policy.yaml.txt");
    std::fs::write(
        &policy,
        "decisions:\n  match:\n    steps:\n      - plugin: rule-match\n      - cel: { name: configmaps-only, expression: \"event.resource == 'configmaps'\" }\n",
    )
    .unwrap();
    let err = ok(&run(
        src.path(),
        &server.url(),
        state.path(),
        &["--policy", policy.to_str().unwrap()],
    ));
    assert!(err.contains("5 deleted"), "{err}");
    assert_eq!(
        server.tree().keys().collect::<Vec<_>>(),
        ["shop/core/configmaps/cm-a.yaml"]
    );
}

#[test]
fn another_writer_moving_the_branch_is_replayed_and_both_commits_survive() {
    let server = GitServer::start();
    let (src, state) = (source(), tempfile::tempdir().unwrap());
    ok(&run(src.path(), &server.url(), state.path(), &[]));
    // The first push after this moves the branch under Plumbline's feet,
    // between its fetch and the update, as a concurrent writer would.
    racing_writer(&server, true);
    std::fs::remove_file(src.path().join("service-web.yaml")).unwrap();
    let err = ok(&run(
        src.path(),
        &server.url(),
        state.path(),
        &["--actor", "bob"],
    ));
    assert!(err.contains("1 push retries"), "{err}");
    let log = server.log();
    let authors: Vec<&str> = log.iter().map(|(a, _)| a.as_str()).collect();
    assert_eq!(authors, ["bob", "Other Writer", "Unknown actor"], "{log:?}");
    assert!(!server.tree().contains_key("shop/core/services/web.yaml"));
}

#[test]
fn a_remote_that_is_down_only_delays() {
    let mut server = GitServer::start();
    let (src, state) = (source(), tempfile::tempdir().unwrap());
    server.stop();
    let url = server.url();
    let (src_path, state_path) = (src.path().to_owned(), state.path().to_owned());
    let mirror = std::thread::spawn(move || run(&src_path, &url, &state_path, &[]));
    // Once Plumbline has made its clone folder it is talking to the remote
    // (and failing); leave it failing for a while, then come back.
    let started = std::time::Instant::now();
    while std::fs::read_dir(state.path()).unwrap().next().is_none() {
        assert!(
            started.elapsed().as_secs() < 60,
            "plumbline never reached the remote"
        );
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    std::thread::sleep(std::time::Duration::from_millis(1500));
    server.resume();
    let out = mirror.join().unwrap();
    let err = ok(&out);
    assert!(
        err.contains("7 written") && !err.contains("0 push retries"),
        "{err}"
    );
    assert_eq!(server.tree().len(), 7);
}

#[test]
fn a_remote_down_past_the_retry_budget_is_a_clear_error_and_a_rerun_catches_up() {
    let mut server = GitServer::start();
    let (src, state) = (source(), tempfile::tempdir().unwrap());
    server.stop();
    let out = run(
        src.path(),
        &server.url(),
        state.path(),
        &["--retry-for", "1"],
    );
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("destination `default` could not be synced: git fetch (git://127.0.0.1:"),
        "{err}"
    );
    assert!(err.contains("Connection refused"), "{err}");
    server.resume();
    ok(&run(src.path(), &server.url(), state.path(), &[]));
    assert_eq!(server.tree().len(), 7);
}

#[test]
fn a_killed_daemon_converges_on_restart() {
    let server = GitServer::start();
    let (src, state) = (source(), tempfile::tempdir().unwrap());
    // The remote holds the first push until told: the daemon is killed
    // while it is under way, with its commits made and nothing
    // acknowledged, a moment checked rather than guessed.
    let gate = tempfile::tempdir().unwrap();
    let hook = server.bare().join("hooks/pre-receive");
    std::fs::write(
        &hook,
        format!(
            "#!/bin/sh\ntouch '{dir}/blocked'\nwhile [ ! -e '{dir}/release' ]; do sleep 0.05; done\n",
            dir = gate.path().display()
        ),
    )
    .unwrap();
    std::fs::set_permissions(&hook, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    let mut daemon = follow(
        src.path(),
        &server.url(),
        state.path(),
        &["--batch-files", "1", "--seed-batch-files", "1"],
    );
    wait_for("the first push", || {
        gate.path().join("blocked").exists().then_some(())
    });
    daemon.kill().unwrap(); // SIGKILL, mid-push
    daemon.wait().unwrap();
    std::fs::write(gate.path().join("release"), "").unwrap();
    std::fs::remove_file(src.path().join("widget-w1.yaml")).unwrap();
    ok(&run(src.path(), &server.url(), state.path(), &[]));
    let tree = server.tree();
    assert_eq!(tree.len(), 6);
    assert!(!tree.contains_key("shop/mutationlab.configbutler.ai/widgets/w1.yaml"));
}

#[test]
fn names_that_could_escape_are_refused_and_nothing_is_written_outside() {
    let server = GitServer::start();
    let (src, state) = (source(), tempfile::tempdir().unwrap());
    std::fs::write(
        src.path().join("evil.yaml"),
        "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: ../../../../escaped, namespace: shop}\n",
    )
    .unwrap();
    let out = run(src.path(), &server.url(), state.path(), &[]);
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("refusing name `../../../../escaped`"), "{err}");
    assert_eq!(
        server.tree().len(),
        7,
        "the other objects are still mirrored"
    );
    assert!(!state.path().join("escaped.yaml").exists());
    assert!(
        git(&server.bare(), &["ls-tree", "-r", "--name-only", "main"])
            .lines()
            .all(|p| !p.contains(".."))
    );

    let out = run(
        src.path(),
        &server.url(),
        state.path(),
        &["--base-folder", "../outside"],
    );
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("base folder `../outside`"), "{err}");
}

#[test]
fn destinations_and_rules_come_from_custom_resources() {
    let server = GitServer::start();
    let (src, state) = (source(), tempfile::tempdir().unwrap());
    let config = src.path().join("mirror.yaml.txt");
    std::fs::write(
        &config,
        format!(
            "apiVersion: configbutler.ai/v1alpha1\nkind: GitRepoConfig\nmetadata: {{name: gitops, namespace: plumbline}}\n\
             spec: {{repoUrl: '{}', allowedBranches: [main]}}\n---\n\
             apiVersion: configbutler.ai/v1alpha1\nkind: GitDestination\nmetadata: {{name: prod, namespace: plumbline}}\n\
             spec: {{repoRef: {{name: gitops}}, branch: main, baseFolder: clusters/prod}}\n---\n\
             apiVersion: configbutler.ai/v1alpha1\nkind: WatchRule\nmetadata: {{name: shop, namespace: shop}}\n\
             spec:\n  destinationRef: {{name: prod, namespace: plumbline}}\n  rules:\n\
             \x20 - {{resources: [services, configmaps], condition: \"object.metadata.name != 'cm-a'\"}}\n---\n\
             apiVersion: configbutler.ai/v1alpha1\nkind: ClusterWatchRule\nmetadata: {{name: volumes}}\n\
             spec:\n  destinationRef: {{name: prod, namespace: plumbline}}\n  rules:\n  - {{scope: Cluster, resources: [persistentvolumes]}}\n",
            server.url()
        ),
    )
    .unwrap();
    let out = std::process::Command::new(binary())
        .args(["run", "--once", "--config"])
        .arg(&config)
        .arg("--source-dir")
        .arg(src.path())
        .arg("--state-dir")
        .arg(state.path())
        .arg("--cache-dir")
        .arg(Path::new(env!("CARGO_TARGET_TMPDIR")).join("component-cache"))
        .output()
        .unwrap();
    ok(&out);
    assert_eq!(
        server.tree().keys().map(String::as_str).collect::<Vec<_>>(),
        [
            "clusters/prod/_cluster/core/persistentvolumes/pvc-54fad2fe-4d7b-11e9-9172-0800271788ca.yaml",
            "clusters/prod/shop/core/services/web.yaml",
        ]
    );
}

#[test]
fn drifted_gitops_reverser_samples_are_refused_with_every_reason() {
    let dir = crate::support::fixture("gitops-reverser-v0.13.1-samples");
    let mut all = String::new();
    for name in [
        "gitrepoconfig",
        "gitdestination",
        "watchrule",
        "clusterwatchrule",
    ] {
        all.push_str(
            &std::fs::read_to_string(dir.join(format!("configbutler.ai_v1alpha1_{name}.yaml")))
                .unwrap(),
        );
        all.push_str("\n---\n");
    }
    let work = tempfile::tempdir().unwrap();
    let config = work.path().join("samples.yaml");
    std::fs::write(&config, all).unwrap();
    let out = std::process::Command::new(binary())
        .args(["run", "--once", "--config"])
        .arg(&config)
        .arg("--state-dir")
        .arg(work.path())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("error(s) in the mirror configuration"),
        "{err}"
    );
    assert!(err.contains("unknown field `gitRepoConfigRef`"), "{err}");
}

#[test]
fn a_branch_that_keeps_moving_fails_after_the_retry_budget_instead_of_looping() {
    let server = GitServer::start();
    let (src, state) = (source(), tempfile::tempdir().unwrap());
    ok(&run(src.path(), &server.url(), state.path(), &[]));
    // Every push now races another writer, for ever.
    racing_writer(&server, false);
    std::fs::remove_file(src.path().join("service-web.yaml")).unwrap();
    let out = run(
        src.path(),
        &server.url(),
        state.path(),
        &["--retry-for", "2"],
    );
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("the branch keeps moving"), "{err}");
}

/// Installs a pre-receive hook that, like a concurrent writer, commits on
/// the branch between Plumbline's fetch and its push (once, or every time).
fn racing_writer(server: &GitServer, once: bool) {
    let guard = if once {
        "[ -e ../raced ] && exit 0\ntouch ../raced\n"
    } else {
        ""
    };
    let hook = server.bare().join("hooks/pre-receive");
    let script = format!(
        "#!/bin/sh\n{guard}\
         unset GIT_QUARANTINE_PATH GIT_OBJECT_DIRECTORY GIT_ALTERNATE_OBJECT_DIRECTORIES\n\
         export GIT_AUTHOR_NAME='Other Writer' GIT_AUTHOR_EMAIL=o@example.com\n\
         export GIT_COMMITTER_NAME='Other Writer' GIT_COMMITTER_EMAIL=o@example.com\n\
         tip=$(git rev-parse refs/heads/main)\n\
         other=$(echo 'other writer' | git commit-tree \"$tip^{{tree}}\" -p \"$tip\")\n\
         git update-ref refs/heads/main \"$other\" \"$tip\"\n"
    );
    std::fs::write(&hook, script).unwrap();
    std::process::Command::new("chmod")
        .arg("+x")
        .arg(&hook)
        .status()
        .unwrap();
}

#[test]
fn following_survives_a_remote_that_stays_down_past_the_retry_budget() {
    let mut server = GitServer::start();
    let (src, state) = (source(), tempfile::tempdir().unwrap());
    server.stop();
    let mut daemon = follow(
        src.path(),
        &server.url(),
        state.path(),
        &["--retry-for", "1"],
    );
    std::thread::sleep(std::time::Duration::from_secs(4));
    assert!(daemon.try_wait().unwrap().is_none(), "the daemon gave up");
    server.resume();
    let started = std::time::Instant::now();
    while server.log_len() == 0 && started.elapsed().as_secs() < 60 {
        std::thread::sleep(std::time::Duration::from_millis(200));
    }
    daemon.kill().unwrap();
    daemon.wait().unwrap();
    assert_eq!(server.tree().len(), 7);
}

/// Starts `plumbline run` following `source` (a pass a second), in the background.
fn follow(source: &Path, repo: &str, state: &Path, extra: &[&str]) -> std::process::Child {
    std::process::Command::new(binary())
        .args(["run", "--interval", "1", "--batch-wait", "0.2"])
        .args(["--listen", "127.0.0.1:0", "--repo", repo, "--source-dir"])
        .arg(source)
        .arg("--state-dir")
        .arg(state)
        .arg("--cache-dir")
        .arg(Path::new(env!("CARGO_TARGET_TMPDIR")).join("component-cache"))
        .args(extra)
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("start plumbline")
}
