//! The Git sink against hostile and awkward input, with the real binary,
//! real `git daemon` remotes and real `git clone`: credentials in the
//! repository URL, names Git refuses, names too long for a file name, the
//! state folder's modes, a new local repository's `HEAD`, commit subjects.

use crate::support::{
    Daemon, GitServer, binary, example_source, git, http_get, run_once, wait_for,
};
use plumbline::model::Operation;
use plumbline::queue::disk::DiskQueue;
use plumbline::queue::{Entry, FileChange, Partition, Queue};
use std::path::Path;
use std::process::Output;

fn source() -> tempfile::TempDir {
    example_source()
}

fn run(source: &Path, repo: &str, state: &Path, extra: &[&str]) -> Output {
    run_once(source, repo, state, extra)
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

fn ok(out: &Output) -> String {
    let err = stderr(out);
    assert!(out.status.success(), "plumbline failed:\n{err}");
    err
}

/// A port nothing listens on.
fn closed_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn daemon(source: &Path, repo: &str, state: &Path) -> Daemon {
    Daemon::start(&[
        "--repo".as_ref(),
        repo.as_ref(),
        "--source-dir".as_ref(),
        source.as_os_str(),
        "--state-dir".as_ref(),
        state.as_os_str(),
    ])
}

/// The redaction split the URL by hand, so a token given as the user name
/// (and a password with `/` or `@`) reached the logs, `/readyz` and the
/// metric labels.
#[test]
fn a_token_in_the_repo_url_never_reaches_stderr_readyz_or_metrics() {
    let src = source();
    let port = closed_port();
    let forms = [
        (
            format!("https://ghp_plumblineTestToken0123456789@127.0.0.1:{port}/org/repo.git"),
            format!("https://***@127.0.0.1:{port}/org/repo.git"),
            vec!["ghp_plumblineTestToken0123456789"],
        ),
        (
            format!("http://bot:pa%2Fss%40w0rd@127.0.0.1:{port}/org/repo.git"),
            format!("http://***@127.0.0.1:{port}/org/repo.git"),
            vec!["pa%2Fss%40w0rd", "pa/ss@w0rd"],
        ),
    ];
    // Both at once: the remote is down, so each keeps failing and saying so.
    let states: Vec<_> = forms.iter().map(|_| tempfile::tempdir().unwrap()).collect();
    let daemons: Vec<Daemon> = forms
        .iter()
        .zip(&states)
        .map(|((url, _, _), state)| daemon(src.path(), url, state.path()))
        .collect();
    for (daemon, (_, shown, secrets)) in daemons.iter().zip(&forms) {
        let address = daemon.address();
        let (readyz, metrics) = wait_for("the sink to fail, and say so", || {
            let (status, readyz) = http_get(&address, "/readyz");
            let (_, metrics) = http_get(&address, "/metrics");
            let failing = status == 503
                && readyz.contains("Failed to connect")
                && metrics.contains("plumbline_push_retries_total{")
                // The backlog of a remote never reached is shown too.
                && metrics.lines().any(|l| {
                    l.starts_with("plumbline_queue_depth{") && !l.ends_with(" 0")
                })
                && daemon.stderr().contains("git failed; retrying");
            failing.then_some((readyz, metrics))
        });
        let stderr = daemon.stderr();
        assert!(readyz.contains(shown.as_str()), "{readyz}");
        assert!(metrics.contains(&format!("repo=\"{shown}\"")), "{metrics}");
        assert!(stderr.contains(shown.as_str()), "{stderr}");
        for secret in secrets {
            for (what, text) in [
                ("stderr", &stderr),
                ("/readyz", &readyz),
                ("/metrics", &metrics),
            ] {
                assert!(!text.contains(secret), "{what} shows {secret}:\n{text}");
            }
        }
    }
}

/// The state folder (queue, local repositories) was created with the
/// umask's modes: readable by everyone on most systems.
#[test]
fn the_state_folder_is_owner_only_whatever_the_umask() {
    use std::os::unix::fs::PermissionsExt as _;
    let server = GitServer::start();
    let src = source();
    let parent = tempfile::tempdir().unwrap();
    let state = parent.path().join("state");
    let out = std::process::Command::new("sh")
        .arg("-c")
        .arg("umask 000 && exec \"$@\"")
        .arg("sh")
        .arg(binary())
        .args(["run", "--once", "--repo", &server.url(), "--source-dir"])
        .arg(src.path())
        .arg("--state-dir")
        .arg(&state)
        .arg("--cache-dir")
        .arg(Path::new(env!("CARGO_TARGET_TMPDIR")).join("component-cache"))
        .output()
        .unwrap();
    ok(&out);
    assert_eq!(server.tree().len(), 7);
    let mut seen = 0;
    let mut stack = vec![state.clone()];
    while let Some(path) = stack.pop() {
        let meta = std::fs::symlink_metadata(&path).unwrap();
        let mode = meta.permissions().mode() & 0o777;
        assert_eq!(mode & 0o077, 0, "{} is {mode:o}", path.display());
        if meta.is_dir() {
            assert_eq!(mode, 0o700, "{}", path.display());
            stack.extend(std::fs::read_dir(&path).unwrap().map(|e| e.unwrap().path()));
        }
        seen += 1;
    }
    assert!(state.join("queue.redb").is_file());
    assert!(seen > 10, "only {seen} entries: no repository?");
}

/// Queues `paths` as written files, as a version whose name check let
/// them through would have: they are in the queue when the binary starts.
fn queue_bad_entries(state: &Path, repo: &str, paths: &[&str]) {
    let queue = DiskQueue::open(&state.join("queue.redb"), 1000).unwrap();
    let partition = Partition {
        repo: repo.into(),
        branch: "main".into(),
    };
    let entries: Vec<Entry> = paths
        .iter()
        .map(|path| {
            Entry::File(FileChange {
                destination: "default".into(),
                path: (*path).into(),
                content: Some("apiVersion: v1\nkind: ConfigMap\n".into()),
                operation: Operation::Create,
                actor: None,
                resource: "configmaps".into(),
                replay: None,
                trace: None,
            })
        })
        .collect();
    queue.append(&partition, &entries).unwrap();
}

/// One namespace or group such as `.GIT` made gix refuse the tree, and the
/// worker retried it for ever while nothing else reached Git.
#[test]
fn one_object_git_refuses_stops_nothing_else() {
    // Refused at routing, per object, with a message.
    let server = GitServer::start();
    let (src, state) = (source(), tempfile::tempdir().unwrap());
    for (file, namespace) in [("a.yaml", ".GIT"), ("b.yaml", "git~1"), ("c.yaml", ".git.")] {
        std::fs::write(
            src.path().join(file),
            format!("apiVersion: v1\nkind: ConfigMap\nmetadata: {{name: bad, namespace: '{namespace}'}}\n"),
        )
        .unwrap();
    }
    let out = run(src.path(), &server.url(), state.path(), &[]);
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(1), "{err}");
    for namespace in [".GIT", "git~1", ".git."] {
        assert!(
            err.contains(&format!("object configmaps.core {namespace}/bad: refusing namespace `{namespace}`: Git refuses it")),
            "{err}"
        );
    }
    assert_eq!(server.tree().len(), 7, "the good objects are mirrored");

    // Already queued (by a version that let them through): set aside,
    // reported, and the run goes on and finishes. It exits 1, as for a file
    // that does not parse: what was set aside is not in Git.
    let server = GitServer::start();
    let (src, state) = (source(), tempfile::tempdir().unwrap());
    let bad = [".GIT/core/configmaps/a.yaml", "shop/core/configmaps/.git "];
    queue_bad_entries(state.path(), &server.url(), &bad);
    let out = run(src.path(), &server.url(), state.path(), &[]);
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(err.contains("2 change(s) set aside"), "{err}");
    assert!(
        err.contains("object configmaps.core .GIT/a: set aside, the sink cannot write it")
            && err.contains("refusing `.git `"),
        "{err}"
    );
    assert_eq!(server.tree().len(), 7, "{err}");
    // Set aside means acknowledged: the next run does not meet them again.
    let err = ok(&run(src.path(), &server.url(), state.path(), &[]));
    assert!(!err.contains("set aside"), "{err}");

    // Following, the same: counted in /metrics, and the sink catches up.
    let server = GitServer::start();
    let (src, state) = (source(), tempfile::tempdir().unwrap());
    queue_bad_entries(state.path(), &server.url(), &bad);
    let daemon = daemon(src.path(), &server.url(), state.path());
    let address = daemon.address();
    wait_for("the good objects", || {
        (server.tree().len() == 7).then_some(())
    });
    wait_for("the sink to catch up", || {
        let (status, _) = http_get(&address, "/readyz");
        let (_, metrics) = http_get(&address, "/metrics");
        let rejected = format!(
            "plumbline_files_rejected_total{{repo=\"{}\",branch=\"main\"}} 2",
            server.url()
        );
        (status == 200 && metrics.contains(&rejected)).then_some(())
    });
}

/// A Kubernetes name of `length` characters: DNS labels of at most 63,
/// joined by dots, ending in `tail`.
fn dns_name(length: usize, tail: char) -> String {
    let mut name = String::new();
    while name.len() < length - 1 {
        if name.len() % 64 == 63 {
            name.push('.');
        } else {
            name.push('n');
        }
    }
    name.push(tail);
    name
}

/// Names of 251–253 characters took the file name past 255 bytes, and the
/// repository could not be checked out.
#[test]
fn names_of_251_to_253_characters_check_out_and_prune() {
    let server = GitServer::start();
    let (src, state) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let names: Vec<String> = [250, 251, 252, 253]
        .into_iter()
        .flat_map(|n| [dns_name(n, 'a'), dns_name(n, 'b')])
        .collect();
    for (i, name) in names.iter().enumerate() {
        std::fs::write(
            src.path().join(format!("cm-{i}.yaml")),
            format!("apiVersion: v1\nkind: ConfigMap\nmetadata: {{name: {name}, namespace: shop}}\ndata: {{i: '{i}'}}\n"),
        )
        .unwrap();
    }
    // Folders near their limits: a 63-character namespace, a 253-character
    // group.
    let (namespace, group) = ("s".repeat(63), dns_name(253, 'g'));
    std::fs::write(
        src.path().join("widget.yaml"),
        format!("apiVersion: {group}/v1\nkind: Widget\nmetadata: {{name: {}, namespace: {namespace}}}\n", dns_name(253, 'w')),
    )
    .unwrap();
    ok(&run(src.path(), &server.url(), state.path(), &[]));

    let clone = |dir: &Path| {
        git(
            Path::new("."),
            &[
                "clone",
                "--quiet",
                server.bare().to_str().unwrap(),
                dir.to_str().unwrap(),
            ],
        );
        assert_eq!(
            git(dir, &["status", "--porcelain"]),
            "",
            "checked out whole"
        );
    };
    let work = tempfile::tempdir().unwrap();
    let checkout = work.path().join("first");
    clone(&checkout);
    // Every object is checked out, in a file holding its whole name.
    let mut found = std::collections::BTreeMap::new();
    let files = git(&checkout, &["ls-files"]);
    for file in files.lines() {
        for component in file.split('/') {
            assert!(component.len() <= 255, "{file}");
        }
        let text = std::fs::read_to_string(checkout.join(file)).unwrap();
        let object: serde_json::Value = serde_saphyr::from_str(&text).unwrap();
        found.insert(
            object["metadata"]["name"].as_str().unwrap().to_owned(),
            file.to_owned(),
        );
    }
    assert_eq!(found.len(), names.len() + 1, "{files}");
    for name in &names {
        assert!(
            found.contains_key(name),
            "{} characters missing",
            name.len()
        );
    }
    assert!(found[&dns_name(253, 'w')].starts_with(&format!("{namespace}/{group}/widgets/")));

    // The same again: nothing changes; then long names deleted are pruned.
    let err = ok(&run(src.path(), &server.url(), state.path(), &[]));
    assert!(err.contains("0 written, 0 deleted"), "{err}");
    for i in [5, 7] {
        // 252 'b', 253 'b'
        std::fs::remove_file(src.path().join(format!("cm-{i}.yaml"))).unwrap();
    }
    let err = ok(&run(src.path(), &server.url(), state.path(), &[]));
    assert!(err.contains("0 written, 2 deleted"), "{err}");
    let checkout = work.path().join("second");
    clone(&checkout);
    let files = git(&checkout, &["ls-files"]);
    assert_eq!(files.lines().count(), names.len() - 1, "{files}");
    for i in [5, 7] {
        assert!(
            !files.contains(found[&names[i]].as_str()),
            "{} kept",
            names[i].len()
        );
    }
    for i in [4, 6] {
        assert!(
            files.contains(found[&names[i]].as_str()),
            "{} pruned",
            names[i].len()
        );
    }
}

/// `git init --bare` gave the new repository `HEAD` → `master` while the
/// mirror wrote `main`, so a clone checked out nothing.
#[test]
fn a_new_local_repository_clones_to_the_branch_mirrored() {
    let (src, state, work) = (
        source(),
        tempfile::tempdir().unwrap(),
        tempfile::tempdir().unwrap(),
    );
    for branch in ["main", "mirror"] {
        let repo = work.path().join(format!("{branch}.git"));
        ok(&run(
            src.path(),
            repo.to_str().unwrap(),
            state.path(),
            &["--branch", branch],
        ));
        let checkout = work.path().join(branch);
        let out = std::process::Command::new("git")
            .env("GIT_CONFIG_GLOBAL", "/dev/null")
            .arg("clone")
            .arg(&repo)
            .arg(&checkout)
            .output()
            .unwrap();
        let said = String::from_utf8_lossy(&out.stderr);
        assert!(
            out.status.success() && !said.contains("remote HEAD refers to nonexistent ref"),
            "{said}"
        );
        assert_eq!(git(&checkout, &["branch", "--show-current"]).trim(), branch);
        assert_eq!(git(&checkout, &["ls-files"]).lines().count(), 7);
    }
}

/// The subject said `… in default`, the destination's name read as a
/// namespace, and counted a file written twice in a batch twice.
#[test]
fn the_commit_subject_counts_files_that_changed_and_names_no_false_namespace() {
    let server = GitServer::start();
    let (src, state) = (source(), tempfile::tempdir().unwrap());
    // The same object in two files: two writes of one path in one batch.
    for (file, value) in [("dup-1.yaml", "one"), ("dup-2.yaml", "two")] {
        std::fs::write(
            src.path().join(file),
            format!("apiVersion: v1\nkind: ConfigMap\nmetadata: {{name: dup, namespace: shop}}\ndata: {{v: {value}}}\n"),
        )
        .unwrap();
    }
    run(src.path(), &server.url(), state.path(), &[]);
    let subject = |rev: &str| {
        git(&server.bare(), &["log", "-1", "--format=%s", rev])
            .trim()
            .to_owned()
    };
    let files = |rev: &str| {
        git(&server.bare(), &["show", "--name-only", "--format=", rev])
            .lines()
            .count()
    };
    assert_eq!(server.log_len(), 1);
    assert_eq!(files("main"), 8);
    assert_eq!(
        subject("main"),
        "create: 8 file(s) of configmaps, deployments, persistentvolumes, secrets, services, widgets"
    );
    let body = git(&server.bare(), &["log", "-1", "--format=%b", "main"]);
    assert!(body.contains("Plumbline-Destination: default\n"), "{body}");

    std::fs::remove_file(src.path().join("dup-2.yaml")).unwrap();
    let cm = src.path().join("configmap-settings.yaml");
    let text = std::fs::read_to_string(&cm).unwrap();
    std::fs::write(&cm, text.replace("key: value", "key: changed")).unwrap();
    run(
        src.path(),
        &server.url(),
        state.path(),
        &["--actor", "alice"],
    );
    let changed = files("main");
    assert!(
        subject("main").ends_with(&format!(": {changed} file(s) of configmaps")),
        "{}",
        git(&server.bare(), &["show", "--stat", "main"])
    );
    assert!(!subject("main").contains(" in "));
}
