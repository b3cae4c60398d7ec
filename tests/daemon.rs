//! The daemon changed while it runs: destinations added to and removed
//! from the `--config` file take effect without a restart (the supervisor
//! starts and stops sink workers, the source lists everything again), and
//! a file that does not read leaves the old configuration routing; and a
//! seed frames only the destinations and resources of its scope.

use crate::support::{Daemon, GitServer, example_source, http_get, wait_for};
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

#[test]
fn destinations_added_to_and_removed_from_the_config_take_effect_without_a_restart() {
    let (one, two) = (GitServer::start(), GitServer::start());
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
    let settings = src.path().join("configmap-settings.yaml");
    let text = std::fs::read_to_string(&settings).unwrap();
    std::fs::write(&settings, text.replace("key: value", "key: changed")).unwrap();
    wait_for("the change in a", || {
        one.tree()[&format!("a/{CM}")]
            .contains("key: changed")
            .then_some(())
    });
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
        one.tree()[&format!("a/{CM}")]
            .contains("key: again")
            .then_some(())
    });
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
