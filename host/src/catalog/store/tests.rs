//! The embedded store's contract: written once, idempotent, conflicts
//! refused, concurrent registrations all kept, and all of it durable.

use super::*;
use std::sync::Arc;

fn workflow(version: &str, what: &str) -> Workflow {
    let text = format!(
        "metadata: {{workflowId: restart-pod, version: '{version}', description: {{what: '{what}', whenToUse: x}}}}\n\
         execution: {{engine: job, bundle: 'example.com/restart@sha256:00'}}\n\
         parameters: [{{name: POD, type: string, required: true}}]\n"
    );
    plumbline_catalog::read(&text).unwrap()
}

fn record(workflow: Workflow) -> Record {
    Record::new(workflow, "alice", "2026-12-06T00:00:00Z")
}

#[test]
fn a_version_is_written_once_the_same_again_changes_nothing_other_content_conflicts() {
    let dir = tempfile::tempdir().unwrap();
    let store = DiskCatalog::open(&dir.path().join("catalog.redb")).unwrap();
    let first = record(workflow("1.0.0", "restarts a pod"));
    assert!(matches!(
        store.register(first.clone()).unwrap(),
        Registered::Created(_)
    ));
    let mut again = first.clone();
    again.registered_by = "bob".into();
    match store.register(again).unwrap() {
        Registered::Unchanged(kept) => assert_eq!(kept.registered_by, "alice", "not overwritten"),
        other => panic!("{other:?}"),
    }
    let other = record(workflow("1.0.0", "restarts a pod, differently"));
    let error = store.register(other).unwrap_err();
    assert!(matches!(error, StoreError::Conflict { .. }), "{error}");
    assert!(
        error.to_string().contains("register it as a new version"),
        "{error}"
    );
    assert_eq!(store.get("restart-pod", "1.0.0").unwrap(), first);
}

#[test]
fn concurrent_registrations_of_new_versions_all_land_and_survive_a_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("catalog.redb");
    {
        let store = Arc::new(DiskCatalog::open(&path).unwrap());
        std::thread::scope(|scope| {
            for i in 0..8 {
                let store = store.clone();
                scope.spawn(move || {
                    for j in 0..5 {
                        let version = format!("1.{i}.{j}");
                        let made = store.register(record(workflow(&version, "x"))).unwrap();
                        assert!(matches!(made, Registered::Created(_)), "{version}");
                    }
                });
            }
        });
    }
    let store = DiskCatalog::open(&path).unwrap();
    let versions = store.versions("restart-pod").unwrap();
    assert_eq!(versions.len(), 40);
    // In semver order, not text order: 1.0.10 would sort before 1.0.2.
    let listed: Vec<&str> = versions
        .iter()
        .map(|r| r.workflow.version.as_str())
        .collect();
    assert_eq!(listed.first(), Some(&"1.0.0"));
    assert_eq!(listed.last(), Some(&"1.7.4"));
}

#[test]
fn only_the_lifecycle_changes_after_registration() {
    let dir = tempfile::tempdir().unwrap();
    let store = DiskCatalog::open(&dir.path().join("catalog.redb")).unwrap();
    store.register(record(workflow("2.0.0", "x"))).unwrap();
    let change = Change {
        lifecycle: Lifecycle::Deprecated,
        reason: "2.1.0 handles sidecars".into(),
        actor: "carol".into(),
        at: "2026-12-06T01:00:00Z".into(),
    };
    let changed = store
        .set_lifecycle("restart-pod", "2.0.0", change.clone())
        .unwrap();
    assert_eq!(changed.lifecycle, Lifecycle::Deprecated);
    assert_eq!(
        store.get("restart-pod", "2.0.0").unwrap().last_change,
        Some(change)
    );
    let missing = store
        .set_lifecycle("restart-pod", "9.9.9", changed.last_change.clone().unwrap())
        .unwrap_err();
    assert!(matches!(missing, StoreError::NotFound { .. }), "{missing}");
}
