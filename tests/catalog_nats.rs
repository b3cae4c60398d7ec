//! The catalog on NATS JetStream (the scale-out issue, part 4): the same
//! rules as the embedded store, with several replicas writing one bucket
//! at once, against real nats-servers (one, and a cluster of three with
//! three replicas of the bucket, one of them killed).

use crate::nats::Nats;
use crate::support::{Daemon, http_request, wait_for};
use plumbline::catalog::store::jetstream::JetStreamCatalog;
use plumbline::catalog::store::{
    CatalogStore, Change, ExecutionRecord, Lifecycle, Record, Registered, StoreError,
};
use serde_json::{Value, json};
use std::sync::Arc;

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
}

fn record(id: &str, version: &str, what: &str) -> Record {
    let text = format!(
        "metadata: {{workflowId: {id}, version: '{version}', description: {{what: '{what}', whenToUse: x}}}}\n\
         execution: {{engine: job}}\n"
    );
    Record::new(
        plumbline_catalog::read(&text).unwrap(),
        "alice",
        "2026-12-06T00:00:00Z",
    )
}

fn change(lifecycle: Lifecycle) -> Change {
    Change {
        lifecycle,
        reason: "why".into(),
        actor: "bob".into(),
        at: "2026-12-06T00:00:01Z".into(),
    }
}

fn execution(n: usize) -> ExecutionRecord {
    ExecutionRecord {
        workflow_id: "restart.pod".into(),
        version: "1.0.0".into(),
        runner: format!("Job default/run-{n}"),
        image: None,
        image_digest: None,
        schema_digest: "sha256:00".into(),
        parameters_hash: "sha256:11".into(),
        requester: "alice".into(),
        at: "2026-12-06T00:00:02Z".into(),
    }
}

#[test]
fn two_replicas_share_one_catalog_with_the_embedded_stores_rules() {
    let nats = Nats::start();
    let runtime = runtime();
    let open = || JetStreamCatalog::connect(runtime.handle().clone(), &nats.url(), 1).unwrap();
    let (a, b) = (Arc::new(open()), Arc::new(open()));

    // Written once; the same content again changes nothing, on either
    // replica; other content is a conflict, never an overwrite.
    let first = record("restart.pod", "1.0.0", "restarts a pod");
    assert!(matches!(
        a.register(first.clone()).unwrap(),
        Registered::Created(_)
    ));
    assert!(matches!(
        b.register(first.clone()).unwrap(),
        Registered::Unchanged(_)
    ));
    let other = record("restart.pod", "1.0.0", "restarts another pod");
    assert!(matches!(
        b.register(other),
        Err(StoreError::Conflict { .. })
    ));
    assert_eq!(b.get("restart.pod", "1.0.0").unwrap(), first);
    // What no version can be called is not found, not a wildcard's match.
    for (id, version) in [
        ("*", "1.0.0"),
        ("restart.pod", ">"),
        ("restart pod", "1.0.0"),
    ] {
        assert!(matches!(
            a.get(id, version),
            Err(StoreError::NotFound { .. })
        ));
    }

    // Concurrent registrations from both replicas all land.
    std::thread::scope(|scope| {
        for (n, store) in [a.clone(), b.clone(), a.clone(), b.clone()]
            .into_iter()
            .enumerate()
        {
            scope.spawn(move || {
                for minor in 0..10 {
                    let version = format!("1.{}.{n}", minor + 1);
                    store
                        .register(record("restart.pod", &version, "restarts a pod"))
                        .unwrap();
                }
            });
        }
    });
    let versions = b.versions("restart.pod").unwrap();
    assert_eq!(versions.len(), 41);
    let names: Vec<&str> = versions
        .iter()
        .map(|r| r.workflow.version.as_str())
        .collect();
    assert_eq!((names[0], names[40]), ("1.0.0", "1.10.3"), "semver order");
    // An id that is a prefix of another's is not its versions.
    a.register(record("restart", "1.0.0", "restarts")).unwrap();
    assert_eq!(a.versions("restart").unwrap().len(), 1);
    assert!(a.versions("nothing").unwrap().is_empty());
    assert_eq!(a.all().unwrap().len(), 42);

    // Changes from both replicas at once: none is lost (compare-and-swap).
    std::thread::scope(|scope| {
        scope.spawn(|| a.set_lifecycle("restart.pod", "1.0.0", change(Lifecycle::Deprecated)));
        scope.spawn(|| {
            let drift = plumbline::catalog::store::Drift {
                reference: "example.com/restart:1".into(),
                registered: "sha256:aa".into(),
                now: "sha256:bb".into(),
                found_at: "2026-12-06T00:00:03Z".into(),
            };
            b.set_drift("restart.pod", "1.0.0", Some(drift))
        });
    });
    let changed = a.get("restart.pod", "1.0.0").unwrap();
    assert_eq!(changed.lifecycle, Lifecycle::Deprecated);
    assert!(changed.drift.is_some());
    // Archived is final here too.
    b.set_lifecycle("restart.pod", "1.0.0", change(Lifecycle::Archived))
        .unwrap();
    assert!(matches!(
        a.set_lifecycle("restart.pod", "1.0.0", change(Lifecycle::Active)),
        Err(StoreError::Archived { .. })
    ));
    assert!(matches!(
        a.set_lifecycle("restart.pod", "9.9.9", change(Lifecycle::Active)),
        Err(StoreError::NotFound { .. })
    ));

    // Executions, from both replicas, newest first.
    a.record_executions(&[execution(1), execution(2)]).unwrap();
    b.record_executions(&[execution(3)]).unwrap();
    let runners: Vec<String> = a
        .executions(2)
        .unwrap()
        .into_iter()
        .map(|e| e.runner)
        .collect();
    assert_eq!(runners, ["Job default/run-3", "Job default/run-2"]);
}

#[test]
fn a_store_that_cannot_reach_nats_says_where() {
    let runtime = runtime();
    let error = match JetStreamCatalog::connect(runtime.handle().clone(), "nats://127.0.0.1:1", 1) {
        Err(error) => error.to_string(),
        Ok(_) => panic!("connected to nothing"),
    };
    assert!(error.contains("NATS nats://127.0.0.1:1"), "{error}");
}

/// A daemon serving the catalog from `nats` on `dir`.
fn daemon(dir: &std::path::Path, nats: &Nats, replicas: &str) -> Daemon {
    std::fs::create_dir_all(dir.join("src")).unwrap();
    let args: Vec<std::ffi::OsString> = vec![
        "--catalog".into(),
        "--nats".into(),
        nats.url().into(),
        "--nats-replicas".into(),
        replicas.into(),
        "--source-dir".into(),
        dir.join("src").into(),
        "--repo".into(),
        dir.join("out.git").into(),
        "--state-dir".into(),
        dir.join("state").into(),
    ];
    let args: Vec<&std::ffi::OsStr> = args.iter().map(|a| a.as_os_str()).collect();
    Daemon::start(&args)
}

fn post(address: &str, path: &str, body: &Value) -> (u16, Value) {
    let headers = [("Content-Type", "application/json")];
    let (status, _, text) = http_request(address, "POST", path, &headers, &body.to_string());
    (status, serde_json::from_str(&text).unwrap_or(Value::Null))
}

fn search(address: &str, words: &str) -> Vec<Value> {
    let (_, text) = crate::support::http_get(address, &format!("/api/v1/workflows?q={words}"));
    let page: Value = serde_json::from_str(&text).unwrap();
    page["items"].as_array().cloned().unwrap_or_default()
}

const SCHEMA: &str = "metadata: {workflowId: drain.node, version: '1.0.0', description: {what: drains a node, whenToUse: before maintenance}}\nexecution: {engine: job}\n";

#[test]
fn replicas_on_a_three_node_cluster_see_each_others_versions_through_a_nodes_loss() {
    let mut nats = Nats::cluster(3);
    let (one, two) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let (a, b) = (
        daemon(one.path(), &nats, "3"),
        daemon(two.path(), &nats, "3"),
    );
    let (a, b) = (a.address(), b.address());
    let register = |address: &str, schema: &str| {
        post(address, "/api/v1/workflows", &json!({"schema": schema}))
    };
    assert_eq!(register(&a, SCHEMA).0, 201);
    // The other replica reads it at once and finds it in its search as
    // its watch of the bucket brings it.
    let (status, _) = crate::support::http_get(&b, "/api/v1/workflows/drain.node/versions/1.0.0");
    assert_eq!(status, 200);
    wait_for("the other replica's search to find it", || {
        (search(&b, "drains").len() == 1).then_some(())
    });
    // The same version from the other replica: unchanged; other content:
    // a conflict.
    assert_eq!(register(&b, SCHEMA).0, 200);
    let (status, problem) = register(&b, &SCHEMA.replace("drains a node", "drains two"));
    assert_eq!(status, 409, "{problem}");

    // A node killed: the bucket has two copies left, and both replicas
    // keep registering and reading.
    nats.kill(0);
    let next = SCHEMA.replace("'1.0.0'", "'1.1.0'");
    let (status, body) = wait_for("a registration with a node down", || {
        let (status, body) = register(&b, &next);
        (status != 500 && status != 502).then_some((status, body))
    });
    assert_eq!(status, 201, "{body}");
    wait_for("the first replica's search to find the new version", || {
        (search(&a, "drains").len() == 2).then_some(())
    });
    let lifecycle = json!({"lifecycle": "deprecated", "reason": "superseded"});
    let path = "/api/v1/workflows/drain.node/versions/1.0.0/lifecycle";
    assert_eq!(post(&a, path, &lifecycle).0, 200);
    let (_, text) = crate::support::http_get(&b, "/api/v1/workflows/drain.node/versions/1.0.0");
    let record: Value = serde_json::from_str(&text).unwrap();
    assert_eq!(record["lifecycle"], "deprecated", "{record}");
}
