//! The test API server, driven by the real `kubectl`: if kubectl reads,
//! writes and watches through it as through a cluster, the server is
//! faithful enough for Plumbline's tests.

#![cfg(test)]

use super::ApiServer;
use serde_json::Value;
use std::io::Read as _;
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};

fn json(text: &str) -> Value {
    serde_json::from_str(text).unwrap_or_else(|e| panic!("not JSON ({e}): {text}"))
}

#[test]
fn kubectl_discovers_the_resources() {
    let api = ApiServer::start();
    let resources = api.kubectl(&["api-resources", "-o", "name"]);
    for name in [
        "configmaps",
        "deployments.apps",
        "customresourcedefinitions.apiextensions.k8s.io",
    ] {
        assert!(
            resources.lines().any(|l| l == name),
            "{name} in {resources}"
        );
    }
    let version = api.kubectl(&["version", "-o", "json"]);
    assert_eq!(json(&version)["serverVersion"]["minor"], "35");
}

#[test]
fn kubectl_creates_applies_patches_and_deletes() {
    let api = ApiServer::start();
    api.kubectl(&["create", "configmap", "shop", "--from-literal=colour=blue"]);
    let got = json(&api.kubectl(&["get", "configmap", "shop", "-o", "json"]));
    assert_eq!(got["data"]["colour"], "blue");
    assert_eq!(got["metadata"]["namespace"], "default");
    let first = got["metadata"]["resourceVersion"]
        .as_str()
        .unwrap()
        .to_owned();

    let table = api.kubectl(&["get", "configmaps"]);
    assert!(table.lines().any(|l| l.starts_with("shop ")), "{table}");

    api.kubectl(&[
        "patch",
        "configmap",
        "shop",
        "--type",
        "merge",
        "-p",
        r#"{"data":{"colour":"red"}}"#,
    ]);
    let patched = json(&api.kubectl(&["get", "configmap", "shop", "-o", "json"]));
    assert_eq!(patched["data"]["colour"], "red");
    assert_ne!(patched["metadata"]["resourceVersion"], first.as_str());

    // A patch that changes nothing persists nothing.
    let before = api.store().revision();
    api.kubectl(&[
        "patch",
        "configmap",
        "shop",
        "--type",
        "merge",
        "-p",
        r#"{"data":{"colour":"red"}}"#,
    ]);
    assert_eq!(api.store().revision(), before);

    let by_bob = api.store().revision();
    let manifest = "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: applied, namespace: default}\ndata: {a: '1'}\n";
    let out = api.apply_as("bob", manifest);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("created"));
    let changes = api.store().changes_since(by_bob);
    assert_eq!(changes.len(), 1);
    assert_eq!(
        (changes[0].kind, changes[0].user.as_str()),
        ("ADDED", "bob")
    );
    let again = api.apply_as("bob", manifest);
    assert!(
        String::from_utf8_lossy(&again.stdout).contains("unchanged"),
        "{:?}",
        again
    );
    let changed = api.apply_as("bob", &manifest.replace("'1'", "'2'"));
    assert!(
        String::from_utf8_lossy(&changed.stdout).contains("configured"),
        "{:?}",
        changed
    );
    let applied = json(&api.kubectl(&["get", "configmap", "applied", "-o", "json"]));
    assert_eq!(applied["data"]["a"], "2");

    api.kubectl(&["delete", "configmap", "shop"]);
    let gone = api.kubectl_as("alice", &["get", "configmap", "shop"]);
    assert!(!gone.status.success());
    assert!(String::from_utf8_lossy(&gone.stderr).contains("configmaps \"shop\" not found"));
}

#[test]
fn a_stale_resource_version_is_a_conflict() {
    let api = ApiServer::start();
    api.kubectl(&["create", "configmap", "c", "--from-literal=a=1"]);
    let stale = api.kubectl(&["get", "configmap", "c", "-o", "json"]);
    api.kubectl(&[
        "patch",
        "configmap",
        "c",
        "--type",
        "merge",
        "-p",
        r#"{"data":{"a":"2"}}"#,
    ]);
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("c.json");
    std::fs::write(&file, stale.replace("\"1\"", "\"3\"")).unwrap();
    let out = api.kubectl_as("alice", &["replace", "-f", file.to_str().unwrap()]);
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("the object has been modified"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn kubectl_pages_through_a_long_list() {
    let api = ApiServer::start();
    for i in 0..7 {
        api.kubectl(&["create", "configmap", &format!("c{i}")]);
    }
    let names = api.kubectl(&["get", "configmaps", "--chunk-size=2", "-o", "name"]);
    assert_eq!(names.lines().count(), 7, "{names}");
    let page = json(&api.kubectl(&[
        "get",
        "--raw",
        "/api/v1/namespaces/default/configmaps?limit=3",
    ]));
    assert_eq!(page["items"].as_array().unwrap().len(), 3);
    assert!(page["metadata"]["continue"].is_string());
    // Built-in lists carry no kind on their items, as the real server's.
    assert!(page["items"][0].get("kind").is_none());
}

#[test]
fn kubectl_watches_changes_as_they_happen() {
    let api = ApiServer::start();
    api.kubectl(&["create", "configmap", "before"]);
    let mut child = Command::new(super::kubectl())
        .arg("--kubeconfig")
        .arg(api.kubeconfig())
        .args([
            "get",
            "configmaps",
            "--watch",
            "--output-watch-events",
            "-o",
            "json",
        ])
        .env("HOME", api.home.path())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let seen = Arc::new(Mutex::new(String::new()));
    let mut stdout = child.stdout.take().unwrap();
    let reader = {
        let seen = seen.clone();
        std::thread::spawn(move || {
            let mut buffer = [0u8; 4096];
            while let Ok(n) = stdout.read(&mut buffer) {
                if n == 0 {
                    break;
                }
                seen.lock()
                    .unwrap()
                    .push_str(&String::from_utf8_lossy(&buffer[..n]));
            }
        })
    };
    let events = || -> Vec<(String, String)> {
        let text = seen.lock().unwrap().clone();
        serde_json::Deserializer::from_str(&text)
            .into_iter::<Value>()
            .map_while(Result::ok)
            .map(|e| {
                let name = e["object"]["metadata"]["name"]
                    .as_str()
                    .unwrap_or_default()
                    .to_owned();
                (e["type"].as_str().unwrap_or_default().to_owned(), name)
            })
            .collect()
    };
    crate::support::wait_for("the watch to list what is there", || {
        events()
            .contains(&("ADDED".into(), "before".into()))
            .then_some(())
    });
    api.kubectl(&["create", "configmap", "during"]);
    api.kubectl(&[
        "patch",
        "configmap",
        "during",
        "--type",
        "merge",
        "-p",
        r#"{"data":{"a":"1"}}"#,
    ]);
    api.kubectl(&["delete", "configmap", "during"]);
    crate::support::wait_for("the watch to report every change", || {
        let events = events();
        let during: Vec<_> = events
            .iter()
            .filter(|(_, n)| n == "during")
            .map(|(t, _)| t.as_str())
            .collect();
        (during == ["ADDED", "MODIFIED", "DELETED"]).then_some(())
    });
    let _ = child.kill();
    let _ = child.wait();
    reader.join().unwrap();
}

#[test]
fn a_watch_from_a_compacted_version_is_gone_and_bookmarks_advance() {
    let api = ApiServer::start();
    api.kubectl(&["create", "configmap", "a"]);
    let old = api.store().revision();
    api.kubectl(&["create", "configmap", "b"]);
    api.store().compact();
    let gone = api.kubectl(&[
        "get",
        "--raw",
        &format!("/api/v1/configmaps?watch=true&resourceVersion={old}&timeoutSeconds=1"),
    ]);
    let event = json(gone.trim());
    assert_eq!(event["type"], "ERROR");
    assert_eq!(event["object"]["code"], 410);

    let now = api.store().revision();
    let bookmarks = api.kubectl(&[
        "get",
        "--raw",
        &format!("/api/v1/configmaps?watch=true&resourceVersion={now}&allowWatchBookmarks=true&timeoutSeconds=3"),
    ]);
    let first = json(bookmarks.lines().next().expect("a bookmark within 3 s"));
    assert_eq!(first["type"], "BOOKMARK");
    assert_eq!(first["object"]["kind"], "ConfigMap");
    assert_eq!(
        first["object"]["metadata"]["resourceVersion"],
        now.to_string()
    );
}

#[test]
fn plumblines_crds_are_served_once_applied() {
    let api = ApiServer::start();
    let crds = Command::new(crate::support::binary())
        .arg("crds")
        .output()
        .unwrap();
    assert!(crds.status.success());
    let out = api.apply_as("alice", &String::from_utf8(crds.stdout).unwrap());
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let repo = "apiVersion: mirror.plumbline.dev/v1alpha1\nkind: GitRepoConfig\n\
                metadata: {name: gitops, namespace: default}\nspec: {repoUrl: 'git://127.0.0.1/r.git'}\n";
    let out = api.apply_as("alice", repo);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let listed = api.kubectl(&["get", "gitrepoconfigs", "-o", "name"]);
    assert_eq!(listed.trim(), "gitrepoconfig.mirror.plumbline.dev/gitops");
    let short = api.kubectl(&["get", "gitrepo", "gitops", "-o", "json"]);
    assert_eq!(json(&short)["spec"]["repoUrl"], "git://127.0.0.1/r.git");
    // The status is a subresource: the main endpoint leaves it alone.
    api.kubectl(&[
        "patch",
        "gitrepo",
        "gitops",
        "--type",
        "merge",
        "-p",
        r#"{"status":{"observedGeneration":9}}"#,
    ]);
    assert!(json(&api.kubectl(&["get", "gitrepo", "gitops", "-o", "json"]))["status"].is_null());
    api.kubectl(&[
        "patch",
        "gitrepo",
        "gitops",
        "--subresource",
        "status",
        "--type",
        "merge",
        "-p",
        r#"{"status":{"observedGeneration":1}}"#,
    ]);
    let status = json(&api.kubectl(&["get", "gitrepo", "gitops", "-o", "json"]));
    assert_eq!(status["status"]["observedGeneration"], 1);
}
