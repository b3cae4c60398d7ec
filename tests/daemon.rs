//! The daemon changed while it runs: destinations added to and removed
//! from the `--config` file take effect without a restart (the supervisor
//! starts and stops sink workers, the source lists everything again), and
//! a file that does not read leaves the old configuration routing; and a
//! seed frames only the destinations and resources of its scope.

use crate::support::{Daemon, GitServer, example_source, http_get, run_once, wait_for};
use plumbline::mirror::{Intake, Listing, Pipeline, Router, SeedScope};
use plumbline::model::{GroupResource, Operation};
use plumbline::policy::config::PolicyConfig;
use plumbline::queue::disk::DiskQueue;
use plumbline::queue::{Entry, Partition, Position, Queue};
use plumbline::telemetry::Metrics;
use std::collections::BTreeSet;
use std::path::Path;
use std::sync::Arc;

/// A repository `name` at `url`, a destination `name` of it writing under
/// `base`, and a rule sending the shop's config maps and services there.
fn destination(name: &str, url: &str, base: &str) -> String {
    format!(
        "apiVersion: configbutler.ai/v1alpha1\nkind: GitRepoConfig\nmetadata: {{name: {name}, namespace: plumbline}}\n\
         spec: {{repoUrl: '{url}', allowedBranches: [main]}}\n---\n\
         apiVersion: configbutler.ai/v1alpha1\nkind: GitDestination\nmetadata: {{name: {name}, namespace: plumbline}}\n\
         spec: {{repoRef: {{name: {name}}}, branch: main, baseFolder: '{base}'}}\n---\n\
         apiVersion: configbutler.ai/v1alpha1\nkind: WatchRule\nmetadata: {{name: {name}, namespace: shop}}\n\
         spec:\n  destinationRef: {{name: {name}, namespace: plumbline}}\n  rules:\n  - {{resources: [services, configmaps]}}\n"
    )
}

fn write_config(path: &Path, destinations: &[String]) {
    std::fs::write(path, destinations.join("---\n")).unwrap();
}

/// How many times the daemon said it took a new configuration.
fn taken(daemon: &Daemon) -> usize {
    daemon.stderr().matches("config: ").count()
}

const CM: &str = "shop/core/configmaps/cm-a.yaml";

/// Changes the config map's `key: value` to `to` in the source `src`, and
/// waits for destination a (under `a/` in `one`) to show it; returns the
/// file and its text before.
fn change_in_a(one: &GitServer, src: &Path, to: &str) -> (std::path::PathBuf, String) {
    let settings = src.join("configmap-settings.yaml");
    let text = std::fs::read_to_string(&settings).unwrap();
    std::fs::write(&settings, text.replace("key: value", to)).unwrap();
    wait_for("the change in a", || {
        // The folder source may read the file as it is being rewritten
        // (empty: its object deleted, then back): absent is "not yet".
        let tree = one.tree();
        tree.get(&format!("a/{CM}"))?.contains(to).then_some(())
    });
    (settings, text)
}

/// A daemon following the example folder with a `--config` file holding
/// destination a (under `a/` in `one`), once a's seed is in.
struct Following {
    src: tempfile::TempDir,
    _state: tempfile::TempDir,
    work: tempfile::TempDir,
    config: std::path::PathBuf,
    a: String,
    daemon: Daemon,
}

fn follow_a(one: &GitServer) -> Following {
    let (src, state, work) = (
        example_source(),
        tempfile::tempdir().unwrap(),
        tempfile::tempdir().unwrap(),
    );
    let config = work.path().join("mirror.yaml");
    let a = destination("a", &one.url(), "a");
    write_config(&config, std::slice::from_ref(&a));
    let daemon = Daemon::start(&[
        "--config".as_ref(),
        config.as_os_str(),
        "--source-dir".as_ref(),
        src.path().as_os_str(),
        "--state-dir".as_ref(),
        state.path().as_os_str(),
    ]);
    wait_for("the seed into a", || {
        one.tree().contains_key(&format!("a/{CM}")).then_some(())
    });
    Following {
        src,
        _state: state,
        work,
        config,
        a,
        daemon,
    }
}

#[test]
fn destinations_added_to_and_removed_from_the_config_take_effect_without_a_restart() {
    let (one, two) = (GitServer::start(), GitServer::start());
    // Every part bound: a folder dropped here would be deleted under the daemon.
    let Following {
        src,
        _state,
        work: _work,
        config,
        a,
        daemon,
    } = follow_a(&one);

    // b writes to the same branch as a (its worker is replaced), c to
    // another repository (a worker of its own starts): both are listed
    // into at once.
    let b = destination("b", &one.url(), "b");
    let c = destination("c", &two.url(), "");
    write_config(&config, &[a.clone(), b, c]);
    wait_for("the seed into b and c", || {
        let (tree_one, tree_two) = (one.tree(), two.tree());
        (tree_one.contains_key(&format!("b/{CM}")) && tree_two.contains_key(CM)).then_some(())
    });
    assert!(
        one.tree().contains_key(&format!("a/{CM}")),
        "a keeps its files"
    );
    assert_eq!(taken(&daemon), 1, "{}", daemon.stderr());

    // b and c go: a later change reaches a only, and what b and c wrote
    // stays as it was.
    write_config(&config, std::slice::from_ref(&a));
    wait_for("the configuration without b and c", || {
        (taken(&daemon) == 2).then_some(())
    });
    let commits_two = two.log_len();
    let (settings, text) = change_in_a(&one, src.path(), "key: changed");
    let tree_one = one.tree();
    assert!(
        tree_one[&format!("b/{CM}")].contains("key: value"),
        "a removed destination gets nothing more, and its files stay"
    );
    assert_eq!(two.log_len(), commits_two, "{}", daemon.stderr());

    // A configuration that does not read is said, and degrades /readyz;
    // the old one goes on routing.
    std::fs::write(&config, "apiVersion: configbutler.ai/v1alpha1\nkind: GitDestination\nmetadata: {name: x}\nspec: {repoRef: {name: nowhere}}\n").unwrap();
    wait_for("the refusal", || {
        daemon
            .stderr()
            .contains("changed and was not taken")
            .then_some(())
    });
    let (status, body) = http_get(&daemon.address(), "/readyz");
    assert_eq!(status, 200, "{body}");
    assert!(body.contains("[!] config:"), "{body}");
    std::fs::write(&settings, text.replace("key: value", "key: again")).unwrap();
    wait_for("a change after the refusal", || {
        let tree = one.tree();
        tree.get(&format!("a/{CM}"))?
            .contains("key: again")
            .then_some(())
    });
}

#[test]
fn a_config_that_would_lose_or_misplace_changes_is_refused_and_the_old_one_keeps_routing() {
    let one = GitServer::start();
    let Following {
        src,
        _state,
        work,
        config,
        a,
        daemon,
    } = follow_a(&one);
    let refusals = || daemon.stderr().matches("changed and was not taken").count();
    let address = daemon.address();
    // Each file is made beside the config and renamed over it, so that the
    // daemon never reads one half made.
    let next = work.path().join("next.yaml");
    let refuse = |what: &str, make: &dyn Fn(&Path), says: &str| {
        let before = refusals();
        make(&next);
        std::fs::rename(&next, &config).unwrap();
        wait_for(what, || {
            let (_, body) = http_get(&address, "/readyz");
            (refusals() > before && body.contains("[!] config:") && body.contains(says))
                .then_some(())
        });
    };
    // An editor that truncates before it writes; a name given twice (the
    // second would move a's files); a second destination in a's folder
    // (each would prune the other's files); a FIFO (it would block the
    // reader for ever) and a device that never ends.
    refuse(
        "an empty file",
        &|at| std::fs::write(at, "").unwrap(),
        "holds no resources",
    );
    let twice = destination("a", &one.url(), "elsewhere");
    refuse(
        "a destination defined twice",
        &|at| write_config(at, &[a.clone(), twice.clone()]),
        "defined again",
    );
    let same_folder = destination("a2", &one.url(), "a");
    refuse(
        "two destinations in one folder",
        &|at| write_config(at, &[a.clone(), same_folder.clone()]),
        "each would prune the other's files",
    );
    refuse(
        "a FIFO",
        &|at| {
            let made = std::process::Command::new("mkfifo")
                .arg(at)
                .status()
                .unwrap();
            assert!(made.success());
        },
        "not a regular file",
    );
    refuse(
        "a device",
        &|at| std::os::unix::fs::symlink("/dev/zero", at).unwrap(),
        "not a regular file",
    );
    assert_eq!(taken(&daemon), 0, "{}", daemon.stderr());

    // The old configuration routed all along, and a good file is taken
    // again: the reader was never stuck.
    change_in_a(&one, src.path(), "key: changed");
    std::fs::remove_file(&config).unwrap();
    write_config(&config, &[destination("a", &one.url(), "moved")]);
    wait_for("the good file", || (taken(&daemon) == 1).then_some(()));
    wait_for("the seed into the moved folder", || {
        one.tree()
            .contains_key(&format!("moved/{CM}"))
            .then_some(())
    });
    let (_, body) = http_get(&daemon.address(), "/readyz");
    assert!(body.contains("[+] config"), "{body}");
}

#[test]
fn a_config_error_never_shows_a_credential_it_quotes() {
    let (src, state, work) = (
        example_source(),
        tempfile::tempdir().unwrap(),
        tempfile::tempdir().unwrap(),
    );
    let config = work.path().join("mirror.yaml");
    // A YAML error quotes the line it stopped at, credentials and all.
    let text = destination("a", "https://user:s3cr3tPW@127.0.0.1:9/x.git", "a")
        .replace("allowedBranches: [main]}", "allowedBranches: [main]}}");
    assert_ne!(
        text,
        destination("a", "https://user:s3cr3tPW@127.0.0.1:9/x.git", "a")
    );
    std::fs::write(&config, text).unwrap();
    let out = run_once(
        src.path(),
        "unused.git",
        state.path(),
        &["--config", config.to_str().unwrap()],
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(stderr.contains("mirror.yaml"), "{stderr}");
    assert!(
        stderr.contains("127.0.0.1:9/x.git"),
        "the quote is shown: {stderr}"
    );
    assert!(!stderr.contains("s3cr3tPW"), "{stderr}");
}

#[test]
fn sigterm_stops_following_and_the_run_ends_cleanly() {
    let one = GitServer::start();
    let (src, state) = (example_source(), tempfile::tempdir().unwrap());
    let repo = one.url();
    let mut daemon = Daemon::start(&[
        "--repo".as_ref(),
        repo.as_ref(),
        "--source-dir".as_ref(),
        src.path().as_os_str(),
        "--state-dir".as_ref(),
        state.path().as_os_str(),
    ]);
    wait_for("the seed", || (one.log_len() > 0).then_some(()));
    daemon.signal("TERM");
    let status = daemon.exited();
    let stderr = daemon.stderr();
    assert!(status.success(), "{status}: {stderr}");
    assert!(stderr.contains("SIGTERM: stopping"), "{stderr}");
}

/// The router with the built-in policies, routing everything to a
/// (repository x) and to b (repository y), into a queue in `dir`.
fn router(dir: &Path) -> (Router, Arc<DiskQueue>) {
    use plumbline::layout::BaseFolder;
    use plumbline::mirror::{Destination, MirrorConfig, Prune, WatchRule};
    let set = PolicyConfig::builtin()
        .load(&crate::support::runtime())
        .unwrap();
    let destination = |name: &str, repo: &str| Destination {
        name: name.into(),
        repo_url: repo.into(),
        branch: "main".into(),
        base_folder: BaseFolder::new("").unwrap(),
        prune: Prune::Always,
        commit: Default::default(),
        credentials: None,
        signing: None,
    };
    let rule = |destination| WatchRule {
        name: "all".into(),
        rule: serde_json::json!({"resources": ["*"]}),
        destination,
        condition: None,
    };
    let config = MirrorConfig {
        destinations: vec![destination("a", "/x"), destination("b", "/y")],
        rules: vec![rule(0), rule(1)],
    };
    let queue = Arc::new(DiskQueue::open(&dir.join("queue.redb"), 1000).unwrap());
    let (metrics, _) = Metrics::new();
    let router = Router::new(
        Arc::new(Pipeline::new(Arc::new(set), config)),
        queue.clone(),
        metrics,
        Arc::default(),
        "test",
    );
    (router, queue)
}

fn entries(queue: &DiskQueue, repo: &str) -> Vec<Entry> {
    let partition = Partition {
        repo: repo.into(),
        branch: "main".into(),
    };
    let read = queue
        .read(&partition, Position::START, 100, std::time::Duration::ZERO)
        .unwrap();
    read.into_iter().map(|(_, entry)| entry).collect()
}

#[test]
fn a_seed_is_framed_only_for_the_destinations_and_resources_of_its_scope() {
    let dir = tempfile::tempdir().unwrap();
    let (router, queue) = router(dir.path());
    let configmaps = GroupResource::new("", "configmaps");
    let scope = SeedScope {
        destinations: Some(BTreeSet::from(["b".to_owned()])),
        resources: Some(BTreeSet::from([configmaps.clone()])),
    };
    let seed = router.begin_seed(&scope).unwrap();
    let object = serde_json::json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "cm", "namespace": "ns"}});
    let event = plumbline::ingest::directory::event_of(&object, Operation::Update, None);
    let routing = Intake::submit(&router, &[event]).unwrap();
    assert_eq!((routing.events, routing.errors.len()), (1, 0));
    let listing = Listing {
        complete: true,
        ..Listing::default()
    };
    router.end_seed(seed, &listing).unwrap();

    // a gets the change, but no seed: its orphans are not this seed's.
    let a = entries(&queue, "/x");
    assert!(
        matches!(&a[..], [Entry::File(change)] if change.path == "ns/core/configmaps/cm.yaml"),
        "{a:?}"
    );
    // b gets the seed, scoped to config maps.
    let b = entries(&queue, "/y");
    match &b[..] {
        [
            Entry::SeedStart {
                destination,
                seed: start,
                resources,
            },
            Entry::File(_),
            Entry::SeedEnd {
                seed: end,
                complete: true,
                ..
            },
        ] => {
            assert_eq!(destination, "b");
            assert_eq!(start, end);
            assert_eq!(resources.as_deref(), Some(&[configmaps][..]));
        }
        other => panic!("{other:?}"),
    }
}

/// The destinations and rules of `destinations` (as [`destination`]
/// writes them), as the library reads them.
fn mirror_config(destinations: &[String]) -> plumbline::mirror::MirrorConfig {
    let text = destinations.join("---\n");
    plumbline::mirror::resources::read(&text, "test", Default::default()).unwrap()
}

/// A policy set that keeps no config map.
const DROP_CONFIG_MAPS: &str = "decisions:
  sanitize:
    failure: closed
    steps:
      - plugin: neat
      - plugin: redact-secrets
      - cel:
          name: no-config-maps
          expression: \"object.kind != 'ConfigMap'\"
";

/// The paths under `prefix` in `tree`, without it.
fn under(tree: &std::collections::BTreeMap<String, String>, prefix: &str) -> BTreeSet<String> {
    tree.keys()
        .filter_map(|path| path.strip_prefix(prefix))
        .map(str::to_owned)
        .collect()
}

#[test]
fn the_daemon_runs_from_the_library_and_its_supervisor_follows_the_destinations() {
    use plumbline::api::ServerLimits;
    use plumbline::daemon::{self, Setup};
    use plumbline::ingest::directory::{DirectorySource, SourceOptions};
    use plumbline::sink::worker::SinkOptions;
    use plumbline::telemetry::notices::Stderr;

    let (one, two) = (GitServer::start(), GitServer::start());
    let (src, state) = (example_source(), tempfile::tempdir().unwrap());
    let a = destination("a", &one.url(), "a");
    let c = destination("c", &two.url(), "");
    let policies = PolicyConfig::builtin()
        .load(&crate::support::runtime())
        .unwrap();
    let setup = Setup {
        runtime: daemon::runtime().unwrap(),
        routes: Default::default(),
        policies: plumbline::bundle::Serving::new(Arc::new(policies), Default::default()),
        bundles: None,
        config: mirror_config(std::slice::from_ref(&a)),
        state: state.path().to_owned(),
        queue_capacity: 1000,
        nats: None,
        sink: SinkOptions::new("library"),
        listen: Some(("127.0.0.1:0".parse().unwrap(), ServerLimits::default())),
        once: false,
        export: Vec::new(),
        tls: None,
    };
    let daemon = daemon::Daemon::start(setup, "library").unwrap();
    let (handle, address) = (daemon.handle(), daemon.address().unwrap().to_string());
    let policies = daemon.policies();
    let mut source = DirectorySource::new(
        src.path(),
        SourceOptions::default(),
        std::time::Duration::from_millis(100),
    );
    let running = std::thread::spawn(move || daemon.run(&mut source, &Stderr));
    let (partition_one, partition_two) = (
        Partition {
            repo: one.url().into(),
            branch: "main".into(),
        },
        Partition {
            repo: two.url().into(),
            branch: "main".into(),
        },
    );
    wait_for("the seed into a", || {
        one.tree().contains_key(&format!("a/{CM}")).then_some(())
    });
    assert_eq!(handle.partitions(), vec![partition_one.clone()]);
    // The probes are served from the daemon's one runtime.
    assert_eq!(http_get(&address, "/healthz"), (200, "ok\n".into()));

    // c comes: its worker starts, and the source lists everything again.
    handle
        .set_config(mirror_config(&[a.clone(), c.clone()]))
        .unwrap();
    let mut partitions = handle.partitions();
    partitions.sort();
    let mut expected = vec![partition_one.clone(), partition_two.clone()];
    expected.sort();
    assert_eq!(partitions, expected);
    let wanted = under(&one.tree(), "a/");
    wait_for("the seed into c", || {
        (under(&two.tree(), "") == wanted).then_some(())
    });

    // c goes: its worker stops, and nothing more reaches its repository;
    // nothing meant for c was written into a's repository either.
    handle
        .set_config(mirror_config(std::slice::from_ref(&a)))
        .unwrap();
    assert_eq!(handle.partitions(), vec![partition_one]);
    let commits_two = two.log_len();
    change_in_a(&one, src.path(), "key: changed");
    assert_eq!(two.log_len(), commits_two);
    assert!(two.tree()[CM].contains("key: value"));
    let tree_one = one.tree();
    assert_eq!(under(&tree_one, "a/"), wanted);
    assert_eq!(
        under(&tree_one, ""),
        under(&tree_one, "a/")
            .iter()
            .map(|p| format!("a/{p}"))
            .collect()
    );

    // A set swapped into the serving handle, by whomever, is a rule
    // change: the mirror lists everything again, and what it drops goes.
    let dropping = PolicyConfig::from_yaml(DROP_CONFIG_MAPS, Path::new("drop.yaml"))
        .unwrap()
        .load(&crate::support::runtime())
        .unwrap();
    policies.swap(plumbline::bundle::Served {
        set: Arc::new(dropping),
        digests: Default::default(),
    });
    wait_for("the config maps gone from a", || {
        let tree = one.tree();
        let left = under(&tree, "a/");
        left.iter()
            .all(|path| !path.contains("/configmaps/"))
            .then_some(left)
    });
    let left = under(&one.tree(), "a/");
    assert!(
        left.iter().any(|path| path.contains("/services/")),
        "{left:?}"
    );

    handle.stop();
    let outcome = running.join().unwrap().unwrap();
    assert!(outcome.sinks.iter().all(|(_, ended)| ended.is_ok()));
}
