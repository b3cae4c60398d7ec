//! The cluster as the source: `plumbline run --kubeconfig` against the test
//! API server, whose objects are made and changed by the real `kubectl`.

use crate::apiserver::ApiServer;
use crate::support::{Daemon, GitServer, binary, git as git_in, wait_for};
use std::path::Path;

/// A repository at `url`, a destination in it, and a cluster-wide rule
/// selecting `resources`.
fn config(path: &Path, url: &str, resources: &str) {
    let text = format!(
        "apiVersion: mirror.plumbline.dev/v1alpha1\nkind: GitRepoConfig\nmetadata: {{name: gitops, namespace: plumbline}}\n\
         spec: {{repoUrl: '{url}', allowedBranches: [main]}}\n---\n\
         apiVersion: mirror.plumbline.dev/v1alpha1\nkind: GitDestination\nmetadata: {{name: live, namespace: plumbline}}\n\
         spec: {{repoRef: {{name: gitops}}, branch: main, baseFolder: live}}\n---\n\
         apiVersion: mirror.plumbline.dev/v1alpha1\nkind: ClusterWatchRule\nmetadata: {{name: everything}}\n\
         spec:\n  destinationRef: {{name: live, namespace: plumbline}}\n  rules:\n  - {{scope: Namespaced, resources: [{resources}]}}\n"
    );
    std::fs::write(path, text).unwrap();
}

/// `plumbline run --once` of the cluster `kubeconfig` by `rules`, its
/// state in `state`.
fn run_once(kubeconfig: &Path, rules: &Path, state: &Path) -> std::process::Output {
    std::process::Command::new(binary())
        .args(["run", "--once", "--kubeconfig"])
        .arg(kubeconfig)
        .arg("--config")
        .arg(rules)
        .arg("--state-dir")
        .arg(state)
        .output()
        .unwrap()
}

/// `plumbline run` following the cluster `api` by `rules`, with `extra`
/// flags.
fn follow(api: &ApiServer, rules: &Path, state: &Path, extra: &[&str]) -> Daemon {
    let kubeconfig = api.kubeconfig();
    let mut args: Vec<&std::ffi::OsStr> = vec![
        "--kubeconfig".as_ref(),
        kubeconfig.as_os_str(),
        "--config".as_ref(),
        rules.as_os_str(),
        "--state-dir".as_ref(),
        state.as_os_str(),
    ];
    args.extend(extra.iter().map(|a| std::ffi::OsStr::new(*a)));
    Daemon::start(&args)
}

#[test]
fn a_cluster_is_seeded_through_its_kubeconfig_with_what_the_rules_select() {
    let api = ApiServer::start();
    api.kubectl(&["create", "configmap", "shop", "--from-literal=colour=blue"]);
    api.kubectl(&[
        "create",
        "secret",
        "generic",
        "token",
        "--from-literal=t=s3cret",
    ]);
    let service = "apiVersion: v1\nkind: Service\nmetadata: {name: web, namespace: default}\nspec: {ports: [{port: 80}]}\n";
    assert!(api.apply_as("alice", service).status.success());
    let work = tempfile::tempdir().unwrap();
    let git = GitServer::start();
    let rules = work.path().join("rules.yaml");
    config(&rules, &git.url(), "configmaps, secrets");
    let out = run_once(&api.kubeconfig(), &rules, &work.path().join("state"));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    let tree = git.tree();
    let shop = tree
        .get("live/default/core/configmaps/shop.yaml")
        .unwrap_or_else(|| panic!("{tree:?}\n{stderr}"));
    assert!(shop.contains("colour: blue"), "{shop}");
    assert!(!shop.contains("resourceVersion"), "sanitized: {shop}");
    let token = &tree["live/default/core/secrets/token.yaml"];
    assert!(!tree.values().any(|f| f.contains("czNjcmV0")), "{token}");
    assert!(
        !tree.keys().any(|p| p.contains("services")),
        "no rule selects services: {tree:?}"
    );
    let message = git_in(&git.bare(), &["log", "-1", "--format=%B", "main"]);
    assert!(
        message.contains(&format!("cluster {}", api.url())),
        "the source is named in the trailers: {message}"
    );
}

#[test]
fn a_followed_cluster_commits_what_kubectl_creates_changes_and_deletes() {
    let api = ApiServer::start();
    api.kubectl(&["create", "configmap", "before", "--from-literal=a=1"]);
    let git = GitServer::start();
    let work = tempfile::tempdir().unwrap();
    let rules = work.path().join("rules.yaml");
    config(&rules, &git.url(), "configmaps");
    let state = work.path().join("state");
    let daemon = follow(&api, &rules, &state, &[]);
    const BEFORE: &str = "live/default/core/configmaps/before.yaml";
    const DURING: &str = "live/default/core/configmaps/during.yaml";
    wait_for("the seed", || git.tree().contains_key(BEFORE).then_some(()));

    api.kubectl(&["create", "configmap", "during", "--from-literal=b=2"]);
    wait_for("the created object", || {
        git.tree().contains_key(DURING).then_some(())
    });
    api.kubectl(&[
        "patch",
        "configmap",
        "during",
        "--type=merge",
        "-p",
        r#"{"data":{"b":"3"}}"#,
    ]);
    wait_for("the change", || {
        git.tree().get(DURING)?.contains("b: \"3\"").then_some(())
    });
    api.kubectl(&["delete", "configmap", "before"]);
    wait_for("the delete", || {
        (!git.tree().contains_key(BEFORE)).then_some(())
    });
    let stderr = daemon.stderr();
    assert!(!stderr.contains("error"), "{stderr}");
}

#[test]
fn a_watch_that_expires_lists_its_resource_again_and_prunes_only_its_orphans() {
    let api = ApiServer::start();
    api.kubectl(&["create", "configmap", "kept"]);
    api.kubectl(&["create", "configmap", "unheard"]);
    api.kubectl(&["create", "secret", "generic", "token", "--from-literal=t=x"]);
    let git = GitServer::start();
    let work = tempfile::tempdir().unwrap();
    let rules = work.path().join("rules.yaml");
    config(&rules, &git.url(), "configmaps, secrets");
    let state = work.path().join("state");
    let daemon = follow(&api, &rules, &state, &[]);
    const UNHEARD: &str = "live/default/core/configmaps/unheard.yaml";
    const TOKEN: &str = "live/default/core/secrets/token.yaml";
    wait_for("the seed", || {
        git.tree().contains_key(UNHEARD).then_some(())
    });

    // The object goes while no watch hears of it, and the history is lost:
    // the watches resume from versions that are gone.
    let configmaps = api.store().resource("", "v1", "configmaps").unwrap();
    api.store()
        .delete_unheard(&configmaps, Some("default"), "unheard");
    // The secret goes from the store too, unheard: a listing of config
    // maps alone must not prune it (only the secrets' own listing could).
    let secrets = api.store().resource("", "v1", "secrets").unwrap();
    api.store()
        .delete_unheard(&secrets, Some("default"), "token");
    api.expire_watches("configmaps");
    wait_for("the unheard delete", || {
        (!git.tree().contains_key(UNHEARD)).then_some(())
    });
    let tree = git.tree();
    assert!(
        tree.contains_key("live/default/core/configmaps/kept.yaml"),
        "{tree:?}"
    );

    // The watches go on from the new listings.
    api.kubectl(&["create", "configmap", "after"]);
    wait_for("a change after the listing", || {
        git.tree()
            .contains_key("live/default/core/configmaps/after.yaml")
            .then_some(())
    });
    // Well after the listing (a regression: each scoped listing asked for
    // every other resource to be listed again, secrets included, which
    // pruned the Secret that went unheard).
    api.kubectl(&["create", "configmap", "later"]);
    wait_for("a later change", || {
        git.tree()
            .contains_key("live/default/core/configmaps/later.yaml")
            .then_some(())
    });
    let tree = git.tree();
    assert!(
        tree.contains_key(TOKEN),
        "only the config maps were listed again: {tree:?}"
    );
    let stderr = daemon.stderr();
    assert!(!stderr.contains("error"), "{stderr}");
}

#[test]
fn a_cluster_that_cannot_be_reached_prunes_nothing_and_fails_the_run() {
    let git = GitServer::start();
    let work = tempfile::tempdir().unwrap();
    let rules = work.path().join("rules.yaml");
    config(&rules, &git.url(), "configmaps");
    let run = |kubeconfig: &Path| run_once(kubeconfig, &rules, &work.path().join("state"));
    let kubeconfig = {
        let api = ApiServer::start();
        api.kubectl(&["create", "configmap", "shop"]);
        assert!(run(&api.kubeconfig()).status.success());
        let copy = work.path().join("kubeconfig");
        std::fs::copy(api.kubeconfig(), &copy).unwrap();
        copy
        // The server stops here.
    };
    let out = run(&kubeconfig);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{stderr}");
    assert!(
        stderr.contains("discovering the cluster's resources"),
        "{stderr}"
    );
    assert!(stderr.contains("nothing was pruned"), "{stderr}");
    assert!(
        git.tree()
            .contains_key("live/default/core/configmaps/shop.yaml"),
        "kept while the cluster cannot be read"
    );
}

const WIDGETS: &str = r#"apiVersion: apiextensions.k8s.io/v1
kind: CustomResourceDefinition
metadata: {name: widgets.example.com}
spec:
  group: example.com
  scope: Namespaced
  names: {plural: widgets, singular: widget, kind: Widget}
  versions:
  - name: v1
    served: true
    storage: true
    schema: {openAPIV3Schema: {type: object, x-kubernetes-preserve-unknown-fields: true}}
"#;

#[test]
fn a_crd_installed_while_following_is_followed_within_one_discovery() {
    let api = ApiServer::start();
    api.kubectl(&["create", "configmap", "shop"]);
    let git = GitServer::start();
    let work = tempfile::tempdir().unwrap();
    let rules = work.path().join("rules.yaml");
    config(&rules, &git.url(), "configmaps, widgets");
    let state = work.path().join("state");
    let daemon = follow(&api, &rules, &state, &["--discovery-interval", "1"]);
    wait_for("the seed", || {
        git.tree()
            .contains_key("live/default/core/configmaps/shop.yaml")
            .then_some(())
    });
    let applied = api.apply_as("alice", WIDGETS);
    assert!(
        applied.status.success(),
        "{}",
        String::from_utf8_lossy(&applied.stderr)
    );
    let widget = "apiVersion: example.com/v1\nkind: Widget\nmetadata: {name: w1, namespace: default}\nspec: {size: 3}\n";
    let applied = api.apply_as("alice", widget);
    assert!(
        applied.status.success(),
        "{}",
        String::from_utf8_lossy(&applied.stderr)
    );
    let file = wait_for("the new resource's object", || {
        git.tree()
            .get("live/default/example.com/widgets/w1.yaml")
            .cloned()
    });
    assert!(file.contains("size: 3"), "{file}");
    // Its watch follows from the listing on.
    api.kubectl(&[
        "patch",
        "widget",
        "w1",
        "--type=merge",
        "-p",
        r#"{"spec":{"size":4}}"#,
    ]);
    wait_for("the change to the widget", || {
        git.tree()
            .get("live/default/example.com/widgets/w1.yaml")?
            .contains("size: 4")
            .then_some(())
    });
    let stderr = daemon.stderr();
    assert!(!stderr.contains("error"), "{stderr}");
}

/// The author of the last commit that touched `path`.
fn author_of(git: &GitServer, path: &str) -> String {
    git_in(
        &git.bare(),
        &["log", "-1", "--format=%an", "main", "--", path],
    )
    .trim()
    .to_owned()
}

/// Bob creates a config map, mallory dry-runs another, carol changes
/// Bob's: Git shows bob's and carol's commits under their names, and
/// nothing of mallory's.
fn made_changed_and_dry_run(api: &ApiServer, git: &GitServer, daemon: &Daemon) {
    const BOBS: &str = "live/default/core/configmaps/bobs.yaml";
    let made = api.kubectl_as(
        "bob",
        &["create", "configmap", "bobs", "--from-literal=a=1"],
    );
    assert!(made.status.success());
    wait_for("bob's config map", || {
        git.tree().contains_key(BOBS).then_some(())
    });
    assert_eq!(author_of(git, BOBS), "bob", "{}", daemon.stderr());
    // A dry run persists nothing: no file, and nothing said of mallory.
    let dry = api.kubectl_as(
        "mallory",
        &["create", "configmap", "dry", "--dry-run=server"],
    );
    assert!(dry.status.success());
    let patch = [
        "patch",
        "configmap",
        "bobs",
        "--type=merge",
        "-p",
        r#"{"data":{"a":"2"}}"#,
    ];
    assert!(api.kubectl_as("carol", &patch).status.success());
    wait_for("carol's change", || {
        git.tree().get(BOBS)?.contains("a: \"2\"").then_some(())
    });
    assert_eq!(author_of(git, BOBS), "carol");
}

/// `count` bodies POSTed to `url` from `threads` connections at once, half
/// random bytes and half `real` (a Python expression of JSON) mangled:
/// each answered 4xx (or 200 for a mangling that still reads), none a 5xx
/// or a dropped connection.
fn flood(url: &str, real: &str, count: usize, threads: usize) {
    let script = r"import urllib.request, urllib.error, concurrent.futures, random, json, collections
random.seed(7)
real = json.dumps(REAL).encode()
def body(i):
    if i % 2: return bytes(random.getrandbits(8) for _ in range(random.randrange(300)))
    b = bytearray(real)
    for _ in range(1 + i % 5): b[random.randrange(len(b))] = random.getrandbits(8)
    return bytes(b[:random.randrange(len(b) + 1)])
def post(b):
    try:
        return urllib.request.urlopen(urllib.request.Request('URL', data=b, method='POST'), timeout=30).status
    except urllib.error.HTTPError as e:
        return e.code
    except Exception as e:
        return type(e).__name__
with concurrent.futures.ThreadPoolExecutor(THREADS) as pool:
    counts = collections.Counter(pool.map(post, [body(i) for i in range(COUNT)]))
print(json.dumps({str(k): v for k, v in counts.items()}))
"
    .replace("REAL", real)
    .replace("URL", url)
    .replace("THREADS", &threads.to_string())
    .replace("COUNT", &count.to_string());
    let answered = crate::support::python(&script);
    let counts: std::collections::BTreeMap<String, u64> =
        serde_json::from_str(answered.trim()).unwrap();
    assert!(
        counts
            .keys()
            .all(|code| code.starts_with('4') || code == "200"),
        "{answered}"
    );
    assert_eq!(counts.values().sum::<u64>(), count as u64, "{answered}");
}

#[test]
fn changes_are_authored_by_the_user_the_audit_webhook_names() {
    let api = ApiServer::start();
    api.kubectl(&["create", "configmap", "before"]);
    let git = GitServer::start();
    let work = tempfile::tempdir().unwrap();
    let rules = work.path().join("rules.yaml");
    config(&rules, &git.url(), "configmaps");
    let state = work.path().join("state");
    let daemon = follow(&api, &rules, &state, &["--audit-webhook"]);
    api.send_audit_to(&format!("http://{}/audit-webhook", daemon.address()));
    const BEFORE: &str = "live/default/core/configmaps/before.yaml";
    wait_for("the seed", || git.tree().contains_key(BEFORE).then_some(()));
    assert_eq!(author_of(&git, BEFORE), "Unknown actor", "listed, not made");

    made_changed_and_dry_run(&api, &git, &daemon);

    let deleted = api.kubectl_as("dave", &["delete", "configmap", "before"]);
    assert!(deleted.status.success());
    wait_for("dave's delete", || {
        (!git.tree().contains_key(BEFORE)).then_some(())
    });
    assert_eq!(author_of(&git, BEFORE), "dave");

    let authors = git_in(&git.bare(), &["log", "--format=%an", "main"]);
    assert!(!authors.contains("mallory"), "{authors}");
    let stderr = daemon.stderr();
    assert!(!stderr.contains("error"), "{stderr}");

    // A body that is not an EventList is refused with why, and the
    // webhook goes on.
    let answers = crate::support::python(&format!(
        "import urllib.request, urllib.error\n\
         for body in [b'{{not json', b'42', b'', bytes(range(256))]:\n\
         \x20   try:\n\
         \x20       r = urllib.request.urlopen(urllib.request.Request('http://{}/audit-webhook', data=body, method='POST'))\n\
         \x20       print(r.status)\n\
         \x20   except urllib.error.HTTPError as e:\n\
         \x20       print(e.code, e.read().decode().strip())\n",
        daemon.address()
    ));
    let codes: Vec<&str> = answers.lines().map(|l| &l[..3]).collect();
    assert_eq!(codes, ["400"; 4], "{answers}");
    // 10,000 more, random and mangled real ones, from 16 connections.
    let real = "{'items': [{'stage': 'ResponseComplete', 'verb': 'patch', 'user': {'username': 'x'}, \
                'objectRef': {'resource': 'configmaps', 'namespace': 'default', 'name': 'nope'}, \
                'responseStatus': {'code': 200}}]}";
    flood(
        &format!("http://{}/audit-webhook", daemon.address()),
        real,
        10_000,
        16,
    );
    assert!(
        answers.contains("not an audit.k8s.io/v1 EventList"),
        "{answers}"
    );
    // A flood of bad bodies must not flood the log: said at the 1st,
    // 2nd, 4th… 8,192nd refusal, not at each.
    let said = daemon
        .stderr()
        .matches("an audit webhook body was refused")
        .count();
    assert!(said <= 14, "{said} lines for about 10,000 refusals");
    assert!(!git.tree().keys().any(|p| p.contains("dry")));
}

#[test]
fn changes_are_authored_by_the_user_the_admission_webhook_names() {
    let api = ApiServer::start();
    api.kubectl(&["create", "configmap", "before"]);
    let git = GitServer::start();
    let work = tempfile::tempdir().unwrap();
    let rules = work.path().join("rules.yaml");
    config(&rules, &git.url(), "configmaps");
    let state = work.path().join("state");
    let daemon = follow(&api, &rules, &state, &["--admission-webhook"]);
    let webhook = format!("http://{}/process-validating-webhook", daemon.address());
    api.send_admission_to(&webhook);
    const BEFORE: &str = "live/default/core/configmaps/before.yaml";
    wait_for("the seed", || git.tree().contains_key(BEFORE).then_some(()));

    made_changed_and_dry_run(&api, &git, &daemon);

    // A deletecollection is reviewed item by item, each without a name in
    // the request; an owner's delete takes its dependents with it, the
    // garbage collector's doing.
    for name in ["tmp-a", "tmp-b"] {
        api.kubectl(&["create", "configmap", name]);
        api.kubectl(&["label", "configmap", name, "tmp=yes"]);
    }
    let owner = "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: owner, namespace: default}\n";
    assert!(api.apply_as("alice", owner).status.success());
    let uid = api.kubectl(&[
        "get",
        "configmap",
        "owner",
        "-o",
        "jsonpath={.metadata.uid}",
    ]);
    let child = format!(
        "apiVersion: v1\nkind: ConfigMap\nmetadata: {{name: child, namespace: default, \
         ownerReferences: [{{apiVersion: v1, kind: ConfigMap, name: owner, uid: {uid}}}]}}\n"
    );
    assert!(api.apply_as("alice", &child).status.success());
    let path = |name: &str| format!("live/default/core/configmaps/{name}.yaml");
    wait_for("the child", || {
        git.tree().contains_key(&path("child")).then_some(())
    });
    let swept = api.kubectl_as("erin", &["delete", "configmap", "-l", "tmp=yes"]);
    assert!(swept.status.success());
    assert!(
        api.kubectl_as("dave", &["delete", "configmap", "owner"])
            .status
            .success()
    );
    wait_for("the deletes", || {
        let tree = git.tree();
        ["tmp-a", "tmp-b", "owner", "child"]
            .iter()
            .all(|n| !tree.contains_key(&path(n)))
            .then_some(())
    });
    let deleted_by = |name: &str| {
        git_in(
            &git.bare(),
            &[
                "log",
                "-1",
                "--diff-filter=D",
                "--format=%an",
                "main",
                "--",
                &path(name),
            ],
        )
        .trim()
        .to_owned()
    };
    assert_eq!(deleted_by("tmp-a"), "erin");
    assert_eq!(deleted_by("tmp-b"), "erin");
    assert_eq!(deleted_by("owner"), "dave");
    assert_eq!(
        deleted_by("child"),
        "system:serviceaccount:kube-system:generic-garbage-collector"
    );
    let authors = git_in(&git.bare(), &["log", "--format=%an", "main"]);
    assert!(!authors.contains("mallory"), "{authors}");
    assert!(!git.tree().keys().any(|p| p.contains("dry")));

    let stderr = daemon.stderr();
    assert!(!stderr.contains("error"), "{stderr}");
    let (_, metrics) = crate::support::http_get(&daemon.address(), "/metrics");
    assert!(
        metrics.contains("plumbline_attribution_hits_total{source=\"admission\"}"),
        "{metrics}"
    );
    assert!(
        metrics.contains("plumbline_attribution_evictions_total"),
        "{metrics}"
    );

    // What is no AdmissionReview gets a 400 that says why; 2,000 random
    // and mangled bodies from 8 connections: each a 4xx, none dropped.
    let said = crate::support::python(&format!(
        "import urllib.request, urllib.error\n\
         try: urllib.request.urlopen(urllib.request.Request('{webhook}', data=b'{{}}', method='POST'))\n\
         except urllib.error.HTTPError as e: print(e.code, e.read().decode().strip())\n"
    ));
    assert!(
        said.starts_with("400 an AdmissionReview without a request"),
        "{said}"
    );
    let real = "{'kind': 'AdmissionReview', 'request': {'uid': 'u', 'operation': 'CREATE', \
                'resource': {'resource': 'configmaps'}, 'name': 'n', 'userInfo': {'username': 'x'}, \
                'object': {'a': 1}}}";
    flood(&webhook, real, 2_000, 8);
}

/// Asks the daemon at `address` over HTTPS, trusting `ca.pem` of `dir`,
/// with the client certificate `client` (a stem of `dir`) if any: each
/// request's status and body, or the name of the error that ended it, one
/// a line.
/// A `certs` folder in `dir` holding what `tests/tools/certs.py` writes (a
/// CA, server and client certificates, a rogue client).
pub(crate) fn certificates(dir: &Path) -> std::path::PathBuf {
    let certs = dir.join("certs");
    std::fs::create_dir(&certs).unwrap();
    crate::support::python_in(
        &certs,
        &std::fs::read_to_string(crate::support::root().join("tests/tools/certs.py")).unwrap(),
    );
    certs
}

pub(crate) fn https(
    dir: &Path,
    address: &str,
    client: Option<&str>,
    requests: &[(&str, &str, &str)],
) -> Vec<String> {
    std::fs::write(
        dir.join("requests.json"),
        serde_json::to_string(requests).unwrap(),
    )
    .unwrap();
    let client = match client {
        Some(stem) => format!("ctx.load_cert_chain('{stem}.pem', '{stem}.key')"),
        None => String::new(),
    };
    let (host, port) = address.rsplit_once(':').unwrap();
    let out = crate::support::python_in(
        dir,
        &format!(
            "import http.client, json, ssl\n\
             ctx = ssl.create_default_context(cafile='ca.pem')\n\
             {client}\n\
             for method, path, body in json.load(open('requests.json')):\n\
             \x20   try:\n\
             \x20       c = http.client.HTTPSConnection('{host}', {port}, context=ctx, timeout=20)\n\
             \x20       c.request(method, path, body=body.encode() or None, headers={{'Content-Type': 'application/json'}})\n\
             \x20       r = c.getresponse()\n\
             \x20       print(r.status, r.read().decode().strip().replace(chr(10), ' ')[:200])\n\
             \x20   except Exception as e:\n\
             \x20       print(type(e).__name__)\n"
        ),
    );
    out.lines().map(str::to_owned).collect()
}

#[test]
fn the_webhooks_serve_tls_and_the_audit_one_takes_only_the_api_servers_certificate() {
    let api = ApiServer::start();
    let git = GitServer::start();
    let work = tempfile::tempdir().unwrap();
    let certs = certificates(work.path());
    let rules = work.path().join("rules.yaml");
    config(&rules, &git.url(), "configmaps");
    let file = |name: &str| certs.join(name).to_string_lossy().into_owned();
    let (cert, key, ca) = (file("tls.pem"), file("tls.key"), file("ca.pem"));
    std::fs::copy(certs.join("server.pem"), &cert).unwrap();
    std::fs::copy(certs.join("server.key"), &key).unwrap();
    let daemon = follow(
        &api,
        &rules,
        &work.path().join("state"),
        &[
            "--audit-webhook",
            "--admission-webhook",
            "--tls-cert",
            &cert,
            "--tls-key",
            &key,
            "--audit-client-ca",
            &ca,
        ],
    );
    let address = daemon.address();
    assert!(
        daemon.stderr().contains("on https://"),
        "{}",
        daemon.stderr()
    );
    let events = r#"{"kind": "EventList", "apiVersion": "audit.k8s.io/v1", "items": []}"#;
    let review = r#"{"kind": "AdmissionReview", "apiVersion": "admission.k8s.io/v1",
        "request": {"uid": "u-1", "operation": "CREATE", "resource": {"resource": "configmaps"},
        "name": "a", "userInfo": {"username": "x"}, "object": {"metadata": {"name": "a"}}}}"#;
    let requests = [
        ("GET", "/healthz", ""),
        ("POST", "/audit-webhook", events),
        ("POST", "/process-validating-webhook", review),
    ];
    // Without a client certificate: the probes and the admission webhook
    // answer; the audit webhook says what it wants.
    let answers = https(&certs, &address, None, &requests);
    assert!(answers[0].starts_with("200"), "{answers:?}");
    assert!(
        answers[1].starts_with("401 the audit webhook takes requests with a client certificate"),
        "{answers:?}"
    );
    assert!(
        answers[2].starts_with(r#"200 {"apiVersion":"admission.k8s.io/v1""#)
            && answers[2].contains(r#""allowed":true"#)
            && answers[2].contains("u-1"),
        "{answers:?}"
    );
    // With the certificate the CA signed, the audit webhook takes the batch.
    let answers = https(&certs, &address, Some("client"), &requests[1..2]);
    assert!(answers[0].starts_with("200"), "{answers:?}");
    // A certificate another CA signed does not reach the audit webhook,
    // but does not end the handshake either: the probes answer whatever a
    // client presents.
    let answers = https(&certs, &address, Some("rogue"), &requests[..2]);
    assert!(answers[0].starts_with("200"), "{answers:?}");
    assert!(answers[1].starts_with("401"), "{answers:?}");
    // Plain HTTP to the TLS port is no request; the server goes on.
    if let Ok(mut stream) = std::net::TcpStream::connect(&address) {
        use std::io::{Read as _, Write as _};
        stream
            .set_read_timeout(Some(std::time::Duration::from_secs(30)))
            .unwrap();
        let _ = stream.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n");
        let mut buffer = Vec::new();
        let _ = stream.read_to_end(&mut buffer);
        assert!(!String::from_utf8_lossy(&buffer).contains("200 OK"));
    }
    // A renewed certificate serves from the next connection, no restart;
    // a half-written renewal keeps the old pair serving.
    let port = address.rsplit_once(':').unwrap().1.to_owned();
    let served = || {
        crate::support::python_in(
            &certs,
            &format!(
                "import ssl, hashlib\n\
                 pem = ssl.get_server_certificate(('127.0.0.1', {port}), ca_certs='ca.pem')\n\
                 print(hashlib.sha256(ssl.PEM_cert_to_DER_cert(pem)).hexdigest())\n"
            ),
        )
    };
    let before = served();
    std::fs::write(&key, "not a key").unwrap();
    assert_eq!(served(), before, "the old pair serves on");
    std::fs::copy(certs.join("server2.pem"), &cert).unwrap();
    std::fs::copy(certs.join("server2.key"), &key).unwrap();
    wait_for("the renewed certificate", || {
        (served() != before).then_some(())
    });
    let stderr = daemon.stderr();
    assert!(
        stderr.contains("does not load; the old one serves on"),
        "{stderr}"
    );
    assert!(https(&certs, &address, None, &requests[..1])[0].starts_with("200"));
}

#[test]
fn a_certificate_that_does_not_load_stops_the_start_and_names_the_file() {
    let work = tempfile::tempdir().unwrap();
    let (cert, key) = (work.path().join("tls.pem"), work.path().join("tls.key"));
    std::fs::write(&cert, "-----BEGIN NOTHING-----\n").unwrap();
    std::fs::write(&key, "").unwrap();
    let source = work.path().join("src");
    std::fs::create_dir(&source).unwrap();
    let out = std::process::Command::new(binary())
        .args(["run", "--once", "--listen", "127.0.0.1:0", "--source-dir"])
        .arg(&source)
        .arg("--repo")
        .arg(work.path().join("repo.git"))
        .arg("--state-dir")
        .arg(work.path().join("state"))
        .arg("--tls-cert")
        .arg(&cert)
        .arg("--tls-key")
        .arg(&key)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{stderr}");
    assert!(
        stderr.contains(&format!("{}: no PEM certificate in it", cert.display())),
        "{stderr}"
    );
    assert!(
        !work.path().join("repo.git").exists(),
        "nothing was started"
    );
}

/// Each file's history under `live/default/core/configmaps/`, oldest
/// first: the value of its `v` after each commit that changed it, `None`
/// where a commit deleted it.
fn histories(git: &GitServer) -> std::collections::BTreeMap<String, Vec<Option<u32>>> {
    let log = git_in(
        &git.bare(),
        &[
            "log",
            "--reverse",
            "-p",
            "--no-renames",
            "--format=commit %H",
            "main",
            "--",
            "live/default/core/configmaps/",
        ],
    );
    let mut histories: std::collections::BTreeMap<String, Vec<Option<u32>>> = Default::default();
    let mut file = String::new();
    for line in log.lines() {
        if let Some(path) = line.strip_prefix("diff --git a/") {
            file = path
                .split(' ')
                .next()
                .unwrap()
                .rsplit('/')
                .next()
                .unwrap()
                .to_owned();
        } else if line.starts_with("deleted file mode") {
            histories.entry(file.clone()).or_default().push(None);
        } else if let Some(value) = line.strip_prefix("+  v: \"") {
            let value = value.trim_end_matches('"').parse().unwrap();
            histories.entry(file.clone()).or_default().push(Some(value));
        }
    }
    histories
}

#[test]
fn a_restarted_daemon_resumes_its_watches_and_commits_what_changed_while_it_was_down() {
    let api = ApiServer::start();
    api.kubectl(&["create", "configmap", "a", "--from-literal=v=1"]);
    api.kubectl(&["create", "configmap", "b", "--from-literal=v=1"]);
    let git = GitServer::start();
    let work = tempfile::tempdir().unwrap();
    let rules = work.path().join("rules.yaml");
    config(&rules, &git.url(), "configmaps");
    let state = work.path().join("state");
    let path = |name: &str| format!("live/default/core/configmaps/{name}.yaml");
    let mut daemon = follow(&api, &rules, &state, &[]);
    wait_for("the seed", || {
        git.tree().contains_key(&path("b")).then_some(())
    });
    daemon.signal("TERM");
    daemon.exited();

    // While it is down: a change, two changes of one object, a delete, a
    // create.
    let patch = |name: &str, v: u32| {
        let body = format!(r#"{{"data":{{"v":"{v}"}}}}"#);
        api.kubectl(&["patch", "configmap", name, "--type=merge", "-p", &body]);
    };
    patch("a", 2);
    patch("a", 3);
    api.kubectl(&["delete", "configmap", "b"]);
    api.kubectl(&["create", "configmap", "c", "--from-literal=v=1"]);

    let daemon = follow(&api, &rules, &state, &["--log", "info"]);
    wait_for("what changed while it was down", || {
        let tree = git.tree();
        (tree.get(&path("a"))?.contains("v: \"3\"")
            && !tree.contains_key(&path("b"))
            && tree.contains_key(&path("c")))
        .then_some(())
    });
    let stderr = daemon.stderr();
    assert!(
        stderr.contains("resuming watches from the versions saved"),
        "{stderr}"
    );
    // Nothing was listed: what changed came as the watch's events.
    assert!(stderr.contains("seeded from cluster"), "{stderr}");
    assert!(stderr.contains("objects=0"), "{stderr}");
    assert!(!stderr.contains("error"), "{stderr}");
    let history = histories(&git);
    assert_eq!(history["b.yaml"], [Some(1), None], "{history:?}");
    assert_eq!(history["a.yaml"].last(), Some(&Some(3)), "{history:?}");

    // Another configuration is another scope: everything is listed.
    drop(daemon);
    let text = std::fs::read_to_string(&rules)
        .unwrap()
        .replace("configmaps", "configmaps, secrets");
    std::fs::write(&rules, text).unwrap();
    let daemon = follow(&api, &rules, &state, &["--log", "info"]);
    wait_for("the listing", || {
        let stderr = daemon.stderr();
        stderr.contains("seeded from cluster").then_some(())
    });
    let stderr = daemon.stderr();
    assert!(!stderr.contains("resuming"), "{stderr}");
    assert!(stderr.contains("objects=2"), "a and c listed: {stderr}");
}

#[test]
fn a_daemon_killed_at_random_moments_under_a_stream_of_changes_commits_each_change_once() {
    use crate::apiserver::store::Write;
    let api = ApiServer::start();
    let git = GitServer::start();
    let work = tempfile::tempdir().unwrap();
    let rules = work.path().join("rules.yaml");
    config(&rules, &git.url(), "configmaps");
    let state = work.path().join("state");
    // Random moments, reproducible from the seed printed on failure.
    let seed = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .subsec_nanos() as u64
        | 1;
    let mut random = seed;
    let mut next = move |below: u64| {
        random ^= random << 13;
        random ^= random >> 7;
        random ^= random << 17;
        random % below
    };
    let store = api.store();
    let configmaps = store.resource("", "v1", "configmaps").unwrap();
    let write = Write {
        user: "alice".into(),
        dry_run: false,
        manager: "kubectl".into(),
        named: true,
    };
    // 40 objects, each created at 1, raised to 5, and two in three then
    // deleted; never made again, never lowered: a history that goes back
    // was a change committed twice.
    const OBJECTS: u32 = 40;
    let object = |i: u32, v: u32| {
        serde_json::json!({"apiVersion": "v1", "kind": "ConfigMap",
            "metadata": {"name": format!("cm-{i}"), "namespace": "default"},
            "data": {"v": v.to_string()}})
    };
    let done = std::sync::atomic::AtomicBool::new(false);
    std::thread::scope(|scope| {
        scope.spawn(|| {
            for step in 0..6 {
                for i in 0..OBJECTS {
                    let name = format!("cm-{i}");
                    let ns = Some("default");
                    match step {
                        0 => drop(store.create(&configmaps, ns, object(i, 1), &write).unwrap()),
                        1..=4 => drop(
                            store
                                .update(&configmaps, ns, &name, object(i, step + 1), false, &write)
                                .unwrap(),
                        ),
                        _ if i % 3 != 0 => {
                            drop(store.delete(&configmaps, ns, &name, &write).unwrap())
                        }
                        _ => {}
                    }
                    std::thread::sleep(std::time::Duration::from_millis(15));
                }
            }
            done.store(true, std::sync::atomic::Ordering::SeqCst);
        });
        let mut kills = 0;
        while !done.load(std::sync::atomic::Ordering::SeqCst) {
            let mut daemon = follow(&api, &rules, &state, &[]);
            std::thread::sleep(std::time::Duration::from_millis(300 + next(1200)));
            daemon.kill();
            kills += 1;
        }
        assert!(kills >= 2, "seed {seed}: the stream outran the kills");
    });
    let daemon = follow(&api, &rules, &state, &[]);
    let path = |i: u32| format!("live/default/core/configmaps/cm-{i}.yaml");
    wait_for("Git to converge", || {
        let tree = git.tree();
        (0..OBJECTS)
            .all(|i| match i % 3 {
                0 => tree.get(&path(i)).is_some_and(|t| t.contains("v: \"5\"")),
                _ => !tree.contains_key(&path(i)),
            })
            .then_some(())
    });
    for (file, history) in histories(&git) {
        let values: Vec<u32> = history.iter().map_while(|v| *v).collect();
        assert!(
            values.windows(2).all(|w| w[0] < w[1]),
            "seed {seed}: {file} went {history:?}"
        );
        assert!(
            history.len() <= values.len() + 1,
            "seed {seed}: {file} came back after its delete: {history:?}"
        );
    }
    let stderr = daemon.stderr();
    assert!(!stderr.contains("error"), "seed {seed}: {stderr}");
}

/// `plumbline run` following `api` by the cluster's own resources (no
/// `--config`).
fn follow_the_clusters_rules(api: &ApiServer, state: &Path) -> Daemon {
    let kubeconfig = api.kubeconfig();
    Daemon::start(&[
        "--kubeconfig".as_ref(),
        kubeconfig.as_os_str(),
        "--state-dir".as_ref(),
        state.as_os_str(),
    ])
}

/// Plumbline's CRDs, installed in `api` as an operator would.
pub(crate) fn install_crds(api: &ApiServer) {
    let crds = std::process::Command::new(binary())
        .arg("crds")
        .output()
        .unwrap();
    assert!(crds.status.success());
    let applied = api.apply_as("alice", &String::from_utf8(crds.stdout).unwrap());
    assert!(
        applied.status.success(),
        "{}",
        String::from_utf8_lossy(&applied.stderr)
    );
}

/// The `Ready` condition of a resource: (status, reason, message).
fn ready(api: &ApiServer, what: &[&str]) -> (String, String, String) {
    condition(api, what, "Ready")
}

/// The condition `kind` of a resource: (status, reason, message).
fn condition(api: &ApiServer, what: &[&str], kind: &str) -> (String, String, String) {
    let mut args = vec!["get"];
    args.extend(what);
    args.extend(["-o", "json"]);
    let object: serde_json::Value = serde_json::from_str(&api.kubectl(&args)).unwrap();
    let conditions = object["status"]["conditions"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    let Some(ready) = conditions.iter().find(|c| c["type"] == kind) else {
        return Default::default();
    };
    let text = |f: &str| ready[f].as_str().unwrap_or_default().to_owned();
    (text("status"), text("reason"), text("message"))
}

#[test]
fn the_clusters_own_resources_configure_the_mirror_each_with_its_status_and_followed_live() {
    let api = ApiServer::start();
    install_crds(&api);
    let git = GitServer::start();
    api.kubectl(&["create", "namespace", "plumbline"]);
    api.kubectl(&["create", "configmap", "shop", "--from-literal=a=1"]);
    api.kubectl(&["create", "secret", "generic", "token", "--from-literal=t=x"]);
    let resources = format!(
        "apiVersion: mirror.plumbline.dev/v1alpha1\nkind: GitRepoConfig\nmetadata: {{name: gitops, namespace: plumbline}}\n\
         spec: {{repoUrl: '{}', allowedBranches: [main]}}\n---\n\
         apiVersion: mirror.plumbline.dev/v1alpha1\nkind: GitDestination\nmetadata: {{name: live, namespace: plumbline}}\n\
         spec: {{repoRef: {{name: gitops}}, branch: main, baseFolder: live}}\n---\n\
         apiVersion: mirror.plumbline.dev/v1alpha1\nkind: GitDestination\nmetadata: {{name: dev, namespace: plumbline}}\n\
         spec: {{repoRef: {{name: gitops}}, branch: dev, baseFolder: dev}}\n---\n\
         apiVersion: mirror.plumbline.dev/v1alpha1\nkind: WatchRule\nmetadata: {{name: to-dev, namespace: plumbline}}\n\
         spec: {{destinationRef: {{name: dev}}, rules: [{{resources: [configmaps]}}]}}\n---\n\
         apiVersion: mirror.plumbline.dev/v1alpha1\nkind: ClusterWatchRule\nmetadata: {{name: everything}}\n\
         spec:\n  destinationRef: {{name: live, namespace: plumbline}}\n  rules:\n  - {{scope: Namespaced, resources: [configmaps, secrets]}}\n",
        git.url()
    );
    assert!(api.apply_as("alice", &resources).status.success());
    let work = tempfile::tempdir().unwrap();
    let daemon = follow_the_clusters_rules(&api, &work.path().join("state"));
    const SHOP: &str = "live/default/core/configmaps/shop.yaml";
    const TOKEN: &str = "live/default/core/secrets/token.yaml";
    wait_for("the seed", || {
        let tree = git.tree();
        (tree.contains_key(SHOP) && tree.contains_key(TOKEN)).then_some(())
    });
    assert!(
        daemon.stderr().contains(
            "5 mirror.plumbline.dev/v1alpha1 resource(s) read from the cluster, 2 not ready"
        ),
        "{}",
        daemon.stderr()
    );
    // Each resource says whether it takes effect, and why not.
    let accepted = |what: &[&str]| {
        let (status, reason, _) = ready(&api, what);
        assert_eq!(
            (status.as_str(), reason.as_str()),
            ("True", "Accepted"),
            "{what:?}"
        );
    };
    accepted(&["gitrepoconfig", "gitops", "-n", "plumbline"]);
    accepted(&["gitdestination", "live", "-n", "plumbline"]);
    accepted(&["clusterwatchrule", "everything"]);
    let (status, reason, message) = ready(&api, &["gitdestination", "dev", "-n", "plumbline"]);
    assert_eq!(
        (status.as_str(), reason.as_str()),
        ("False", "BranchNotAllowed")
    );
    assert!(message.contains("branch `dev` is not among"), "{message}");
    let (status, reason, _) = ready(&api, &["watchrule", "to-dev", "-n", "plumbline"]);
    assert_eq!(
        (status.as_str(), reason.as_str()),
        ("False", "ReferenceNotReady")
    );
    let events = api.kubectl(&["get", "events", "-n", "plumbline", "-o", "json"]);
    assert!(
        events.contains("BranchNotAllowed") && events.contains("\"Warning\""),
        "{events}"
    );
    // Nothing was written for what is not ready.
    let branches = git_in(&git.bare(), &["branch", "--list"]);
    assert!(!branches.contains("dev"), "{branches}");

    // The rule narrowed while the daemon runs: the secrets' files go, in
    // one commit.
    let commits = || {
        git_in(&git.bare(), &["rev-list", "--count", "main"])
            .trim()
            .parse::<u32>()
            .unwrap()
    };
    let before = commits();
    api.kubectl(&[
        "patch",
        "clusterwatchrule",
        "everything",
        "--type=merge",
        "-p",
        r#"{"spec":{"rules":[{"scope":"Namespaced","resources":["configmaps"]}]}}"#,
    ]);
    wait_for("the orphans pruned", || {
        (!git.tree().contains_key(TOKEN)).then_some(())
    });
    assert!(git.tree().contains_key(SHOP));
    assert_eq!(commits(), before + 1, "one commit for the orphans");

    // The branch allowed: the destination becomes ready, and writes.
    api.kubectl(&[
        "patch",
        "gitrepoconfig",
        "gitops",
        "-n",
        "plumbline",
        "--type=merge",
        "-p",
        r#"{"spec":{"allowedBranches":["main","dev"]}}"#,
    ]);
    // A WatchRule sees its own namespace only.
    api.kubectl(&["create", "configmap", "settings", "-n", "plumbline"]);
    wait_for("the dev branch", || {
        if git_in(&git.bare(), &["branch", "--list", "dev"]).is_empty() {
            return None;
        }
        let files = git_in(&git.bare(), &["ls-tree", "-r", "--name-only", "dev"]);
        files
            .contains("dev/plumbline/core/configmaps/settings.yaml")
            .then_some(())
    });
    let (status, reason, _) = ready(&api, &["gitdestination", "dev", "-n", "plumbline"]);
    assert_eq!((status.as_str(), reason.as_str()), ("True", "Accepted"));
    let stderr = daemon.stderr();
    assert!(!stderr.contains("error"), "{stderr}");
}

#[test]
fn a_resource_the_daemon_may_not_list_is_said_on_the_rules_that_select_it() {
    let api = ApiServer::start();
    install_crds(&api);
    let git = GitServer::start();
    api.kubectl(&["create", "namespace", "plumbline"]);
    api.kubectl(&["create", "configmap", "shop", "--from-literal=a=1"]);
    let resources = format!(
        "apiVersion: mirror.plumbline.dev/v1alpha1\nkind: GitRepoConfig\nmetadata: {{name: gitops, namespace: plumbline}}\n\
         spec: {{repoUrl: '{}', allowedBranches: [main]}}\n---\n\
         apiVersion: mirror.plumbline.dev/v1alpha1\nkind: GitDestination\nmetadata: {{name: live, namespace: plumbline}}\n\
         spec: {{repoRef: {{name: gitops}}, branch: main, baseFolder: live}}\n---\n\
         apiVersion: mirror.plumbline.dev/v1alpha1\nkind: WatchRule\nmetadata: {{name: maps, namespace: plumbline}}\n\
         spec: {{destinationRef: {{name: live}}, rules: [{{resources: [configmaps]}}]}}\n---\n\
         apiVersion: mirror.plumbline.dev/v1alpha1\nkind: ClusterWatchRule\nmetadata: {{name: everything}}\n\
         spec:\n  destinationRef: {{name: live, namespace: plumbline}}\n  rules:\n  - {{scope: Namespaced, resources: [configmaps, secrets]}}\n",
        git.url()
    );
    assert!(api.apply_as("alice", &resources).status.success());
    api.forbid("secrets", true);
    let work = tempfile::tempdir().unwrap();
    let _daemon = follow_the_clusters_rules(&api, &work.path().join("state"));
    let everything = ["clusterwatchrule", "everything"];
    let (status, reason, message) = wait_for("the refusal on the rule", || {
        let said = condition(&api, &everything, "Readable");
        (said.0 == "False").then_some(said)
    });
    assert_eq!((status.as_str(), reason.as_str()), ("False", "Forbidden"));
    assert!(
        message.contains("listing secrets") && message.contains("403"),
        "{message}"
    );
    // The rule itself is sound, and what else it selects is mirrored.
    assert_eq!(ready(&api, &everything).0, "True");
    wait_for("the config map", || {
        git.tree()
            .contains_key("live/default/core/configmaps/shop.yaml")
            .then_some(())
    });
    // A rule that does not select secrets is not blamed.
    let maps = ["watchrule", "maps", "-n", "plumbline"];
    let (status, reason, _) = condition(&api, &maps, "Readable");
    assert_eq!((status.as_str(), reason.as_str()), ("True", "Listed"));
    let events = api.kubectl(&["get", "events", "-n", "default", "-o", "json"]);
    assert!(
        events.contains("\"Forbidden\"") && events.contains("everything"),
        "{events}"
    );

    // Allowed again: listed, and the rule says so.
    api.forbid("secrets", false);
    wait_for("the rule readable again", || {
        let (status, reason, _) = condition(&api, &everything, "Readable");
        (status == "True" && reason == "Listed").then_some(())
    });
}

#[test]
fn a_cluster_without_plumblines_crds_says_how_to_install_them() {
    let api = ApiServer::start();
    let work = tempfile::tempdir().unwrap();
    let out = std::process::Command::new(binary())
        .args(["run", "--once", "--kubeconfig"])
        .arg(api.kubeconfig())
        .arg("--state-dir")
        .arg(work.path().join("state"))
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        stderr.contains("plumbline crds | kubectl apply -f -"),
        "{stderr}"
    );
}

#[test]
fn the_desired_state_preset_follows_what_a_team_writes_and_not_what_runs() {
    let api = ApiServer::start();
    api.kubectl(&["create", "configmap", "settings"]);
    // Written straight into the server: kubectl validates apps and RBAC
    // objects against OpenAPI documents the test server does not serve.
    let store = api.store();
    let write = crate::apiserver::store::Write {
        user: "alice".into(),
        manager: "kubectl".into(),
        named: true,
        ..Default::default()
    };
    for (group, version, plural, object) in [
        (
            "apps",
            "v1",
            "deployments",
            serde_json::json!({"apiVersion": "apps/v1", "kind": "Deployment",
            "metadata": {"name": "web", "namespace": "default"},
            "spec": {"selector": {"matchLabels": {"app": "web"}}, "template": {"metadata": {"labels": {"app": "web"}},
                "spec": {"containers": [{"name": "c", "image": "nginx"}]}}}}),
        ),
        (
            "",
            "v1",
            "pods",
            serde_json::json!({"apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": "debug", "namespace": "default"},
            "spec": {"containers": [{"name": "c", "image": "busybox"}]}}),
        ),
        (
            "",
            "v1",
            "serviceaccounts",
            serde_json::json!({"apiVersion": "v1", "kind": "ServiceAccount",
            "metadata": {"name": "builder", "namespace": "default"}}),
        ),
        (
            "coordination.k8s.io",
            "v1",
            "leases",
            serde_json::json!({"apiVersion": "coordination.k8s.io/v1", "kind": "Lease",
            "metadata": {"name": "lock", "namespace": "default"}}),
        ),
    ] {
        let resource = store.resource(group, version, plural).unwrap();
        store
            .create(&resource, Some("default"), object, &write)
            .unwrap();
    }
    let git = GitServer::start();
    let work = tempfile::tempdir().unwrap();
    let rules = work.path().join("rules.yaml");
    config(&rules, &git.url(), "'@desired-state'");
    let out = run_once(&api.kubeconfig(), &rules, &work.path().join("state"));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    let files: Vec<String> = git.tree().into_keys().collect();
    for wanted in [
        "live/default/core/configmaps/settings.yaml",
        "live/default/apps/deployments/web.yaml",
        "live/default/core/serviceaccounts/builder.yaml",
    ] {
        assert!(
            files.iter().any(|f| f == wanted),
            "{wanted} not in {files:?}"
        );
    }
    assert!(
        !files
            .iter()
            .any(|f| f.contains("/pods/") || f.contains("/leases/")),
        "{files:?}"
    );
}

/// A Git HTTP server asking user `bot` for `password` (changed by writing
/// `root/password`), serving a bare `repo.git` under `root`.
struct PasswordGit {
    child: std::process::Child,
    root: tempfile::TempDir,
    port: String,
}

impl PasswordGit {
    fn start(password: &str) -> PasswordGit {
        let root = tempfile::tempdir().unwrap();
        git_in(
            root.path(),
            &["init", "-q", "--bare", "-b", "main", "repo.git"],
        );
        let port_file = root.path().join("port");
        let child =
            std::process::Command::new(crate::support::root().join("target/test-tools/bin/python"))
                .arg(crate::support::root().join("tests/tools/git_http.py"))
                .arg(root.path())
                .args(["bot", password])
                .arg(&port_file)
                .spawn()
                .unwrap();
        let port = wait_for("the git HTTP server", || {
            std::fs::read_to_string(&port_file).ok()
        });
        PasswordGit { child, root, port }
    }

    fn url(&self) -> String {
        format!("http://127.0.0.1:{}/repo.git", self.port)
    }

    fn files(&self) -> String {
        let bare = self.root.path().join("repo.git");
        if git_in(&bare, &["branch", "--list", "main"]).is_empty() {
            return String::new();
        }
        git_in(&bare, &["ls-tree", "-r", "--name-only", "main"])
    }
}

impl Drop for PasswordGit {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[test]
fn git_credentials_come_from_the_secret_a_repository_names_and_follow_its_changes() {
    let api = ApiServer::start();
    install_crds(&api);
    let git = PasswordGit::start("s3cret-one");
    api.kubectl(&["create", "namespace", "plumbline"]);
    api.kubectl(&["create", "configmap", "shop", "--from-literal=a=1"]);
    let resources = format!(
        "apiVersion: mirror.plumbline.dev/v1alpha1\nkind: GitRepoConfig\nmetadata: {{name: gitops, namespace: plumbline}}\n\
         spec: {{repoUrl: '{}', allowedBranches: [main], secretRef: {{name: git-creds}}}}\n---\n\
         apiVersion: mirror.plumbline.dev/v1alpha1\nkind: GitDestination\nmetadata: {{name: live, namespace: plumbline}}\n\
         spec: {{repoRef: {{name: gitops}}, branch: main, baseFolder: live}}\n---\n\
         apiVersion: mirror.plumbline.dev/v1alpha1\nkind: ClusterWatchRule\nmetadata: {{name: everything}}\n\
         spec:\n  destinationRef: {{name: live, namespace: plumbline}}\n  rules:\n  - {{scope: Namespaced, resources: [configmaps]}}\n",
        git.url()
    );
    assert!(api.apply_as("alice", &resources).status.success());
    let work = tempfile::tempdir().unwrap();
    let daemon = follow_the_clusters_rules(&api, &work.path().join("state"));
    // No Secret yet: the repository says so, and nothing is written.
    daemon.address();
    let (status, reason, message) = ready(&api, &["gitrepoconfig", "gitops", "-n", "plumbline"]);
    assert_eq!(
        (status.as_str(), reason.as_str()),
        ("False", "CredentialsMissing")
    );
    assert!(
        message.contains("Secret `git-creds`: there is no such Secret"),
        "{message}"
    );

    // The Secret made: the repository is ready, and the mirror writes.
    api.kubectl(&[
        "create",
        "secret",
        "generic",
        "git-creds",
        "-n",
        "plumbline",
        "--from-literal=username=bot",
        "--from-literal=password=s3cret-one",
    ]);
    const SHOP: &str = "live/default/core/configmaps/shop.yaml";
    wait_for("the seed over HTTP", || {
        git.files().contains(SHOP).then_some(())
    });
    let (status, ..) = ready(&api, &["gitrepoconfig", "gitops", "-n", "plumbline"]);
    assert_eq!(status, "True");

    // The server's password changes, then the Secret follows: changes wait,
    // then go with the new password.
    std::fs::write(git.root.path().join("password"), "s3cret-two").unwrap();
    api.kubectl(&["create", "configmap", "later"]);
    std::thread::sleep(std::time::Duration::from_secs(2));
    assert!(
        !git.files().contains("later.yaml"),
        "pushed with a stale password?"
    );
    api.kubectl(&[
        "patch",
        "secret",
        "git-creds",
        "-n",
        "plumbline",
        "--type=merge",
        "-p",
        r#"{"stringData":{"password":"s3cret-two"}}"#,
    ]);
    wait_for("the change with the new password", || {
        git.files()
            .contains("live/default/core/configmaps/later.yaml")
            .then_some(())
    });
    // No password reached the log, in any form.
    let stderr = daemon.stderr();
    for secret in ["s3cret-one", "s3cret-two", "czNjcmV0"] {
        assert!(!stderr.contains(secret), "{secret} in {stderr}");
    }
}

/// A repository signs with the key in the Secret its `signingKeyRef`
/// names: until that key can be used, the repository is not ready and
/// nothing is written (never unsigned); then every commit verifies.
#[test]
fn a_repository_signs_with_the_key_its_secret_holds_and_writes_nothing_unsigned() {
    use crate::signing::{allowed_signer, keygen, verify};
    let api = ApiServer::start();
    install_crds(&api);
    let git = GitServer::start();
    let work = tempfile::tempdir().unwrap();
    let (good, locked) = (
        keygen(work.path(), "ed25519", ""),
        keygen(work.path(), "ecdsa", "a passphrase"),
    );
    api.kubectl(&["create", "namespace", "plumbline"]);
    api.kubectl(&["create", "configmap", "shop", "--from-literal=a=1"]);
    let resources = format!(
        "apiVersion: mirror.plumbline.dev/v1alpha1\nkind: GitRepoConfig\nmetadata: {{name: gitops, namespace: plumbline}}\n\
         spec: {{repoUrl: '{}', commit: {{signingKeyRef: {{name: signing}}}}}}\n---\n\
         apiVersion: mirror.plumbline.dev/v1alpha1\nkind: GitDestination\nmetadata: {{name: live, namespace: plumbline}}\n\
         spec: {{repoRef: {{name: gitops}}, branch: main, baseFolder: live}}\n---\n\
         apiVersion: mirror.plumbline.dev/v1alpha1\nkind: ClusterWatchRule\nmetadata: {{name: everything}}\n\
         spec:\n  destinationRef: {{name: live, namespace: plumbline}}\n  rules:\n  - {{scope: Namespaced, resources: [configmaps]}}\n",
        git.url()
    );
    assert!(api.apply_as("alice", &resources).status.success());
    let secret = |key: &Path| {
        let from = format!("--from-file=signing-key={}", key.display());
        let _ = api.kubectl_as("alice", &["delete", "secret", "signing", "-n", "plumbline"]);
        api.kubectl(&[
            "create",
            "secret",
            "generic",
            "signing",
            "-n",
            "plumbline",
            &from,
        ]);
    };
    let daemon = follow_the_clusters_rules(&api, &work.path().join("state"));
    daemon.address();
    let unusable = |why: &str| {
        wait_for(why, || {
            let (status, reason, message) =
                ready(&api, &["gitrepoconfig", "gitops", "-n", "plumbline"]);
            (status == "False" && reason == "SigningKeyUnusable" && message.contains(why))
                .then_some(())
        })
    };
    // No Secret, then a key with a passphrase: not ready, nothing written.
    unusable("there is no such Secret");
    secret(&locked);
    unusable("passphrase");
    assert!(git.tree().is_empty(), "written without a usable key");
    wait_for("/readyz to say why", || {
        let (status, text) = crate::support::http_get(&daemon.address(), "/readyz");
        (status == 200 && text.contains("[!] rules: writing nothing until a signing key"))
            .then_some(())
    });

    // A usable key: the repository is ready and every commit verifies.
    secret(&good);
    const SHOP: &str = "live/default/core/configmaps/shop.yaml";
    wait_for("the seed, signed", || {
        git.tree().contains_key(SHOP).then_some(())
    });
    let allowed = work.path().join("allowed_signers");
    std::fs::write(&allowed, allowed_signer(&good)).unwrap();
    let commits = git_in(&git.bare(), &["rev-list", "main"]);
    for commit in commits.lines() {
        let (good, said) = verify(&git.bare(), &allowed, commit);
        assert!(good, "{commit}: {said}");
    }
    wait_for("/readyz to clear", || {
        let (_, text) = crate::support::http_get(&daemon.address(), "/readyz");
        text.contains("[+] rules: ok").then_some(())
    });
    // The status shows the public key, for the forge: ssh-keygen's own.
    let public = std::fs::read_to_string(good.with_extension("pub")).unwrap();
    let public: Vec<&str> = public.split_whitespace().take(2).collect();
    wait_for("the status to show the public key", || {
        let shown = api.kubectl(&[
            "get",
            "gitrepoconfig",
            "gitops",
            "-n",
            "plumbline",
            "-o",
            "jsonpath={.status.signingKey}",
        ]);
        (shown.split_whitespace().take(2).collect::<Vec<_>>() == public).then_some(())
    });
    let stderr = daemon.stderr();
    crate::signing::assert_no_key_material(&stderr, &good);
    crate::signing::assert_no_key_material(&stderr, &locked);
}

#[test]
fn each_recorded_scenario_gives_the_commits_a_person_would_expect() {
    let api = ApiServer::start();
    let git = GitServer::start();
    let work = tempfile::tempdir().unwrap();
    let rules = work.path().join("rules.yaml");
    config(&rules, &git.url(), "configmaps, deployments");
    let state = work.path().join("state");
    let daemon = follow(
        &api,
        &rules,
        &state,
        &["--audit-webhook", "--attribution-grace", "2"],
    );
    api.send_audit_to(&format!("http://{}/audit-webhook", daemon.address()));
    let path = |name: &str| format!("live/default/core/configmaps/{name}.yaml");
    api.kubectl(&["create", "configmap", "first"]);
    wait_for("the first commit", || {
        git.tree().contains_key(&path("first")).then_some(())
    });
    let count = || -> u32 {
        git_in(&git.bare(), &["rev-list", "--count", "main"])
            .trim()
            .parse()
            .unwrap()
    };
    // Each scenario: what it does, and how many commits a person expects.
    // Scenarios that commit are waited for; those that must not are given
    // the time a commit would take (--batch-wait 0.2, grace 2 s) and then
    // checked.
    let expect =
        |what: &str,
         commits: u32,
         done: &dyn Fn(&std::collections::BTreeMap<String, String>) -> bool| {
            let before = count();
            wait_for(what, || done(&git.tree()).then_some(()));
            if commits == 0 {
                std::thread::sleep(std::time::Duration::from_millis(3500));
            } else {
                wait_for(what, || (count() >= before + commits).then_some(()));
                std::thread::sleep(std::time::Duration::from_millis(500));
            }
            assert_eq!(count() - before, commits, "{what}: {}", daemon.stderr());
        };
    let kubectl_as = |user: &str, args: &[&str]| {
        let out = api.kubectl_as(user, args);
        assert!(
            out.status.success(),
            "{args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    };

    kubectl_as(
        "bob",
        &["create", "configmap", "made", "--from-literal=a=1"],
    );
    expect("create", 1, &|t| t.contains_key(&path("made")));
    assert_eq!(author_of(&git, &path("made")), "bob");

    kubectl_as(
        "carol",
        &[
            "patch",
            "configmap",
            "made",
            "--type=merge",
            "-p",
            r#"{"data":{"a":"2"}}"#,
        ],
    );
    expect("update", 1, &|t| t[&path("made")].contains("a: \"2\""));
    assert_eq!(author_of(&git, &path("made")), "carol");

    let applied = "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: applied, namespace: default}\ndata: {a: '1'}\n";
    let server_side = api.with_input_as("dave", &["apply", "--server-side", "-f", "-"], applied);
    assert!(
        server_side.status.success(),
        "{}",
        String::from_utf8_lossy(&server_side.stderr)
    );
    expect("server-side apply", 1, &|t| {
        t.contains_key(&path("applied"))
    });
    assert_eq!(author_of(&git, &path("applied")), "dave");
    let again = api.with_input_as("dave", &["apply", "--server-side", "-f", "-"], applied);
    assert!(again.status.success());
    expect("no-op apply", 0, &|_| true);

    kubectl_as(
        "mallory",
        &["create", "configmap", "dry", "--dry-run=server"],
    );
    expect("dry run", 0, &|_| true);

    let rejected = "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: rejected, namespace: default, \
                    labels: {test.plumbline.dev/reject: 'true'}}\n";
    let refused = api.apply_as("mallory", rejected);
    assert!(!refused.status.success(), "rejected by the later webhook");
    expect("record and reject", 0, &|_| true);

    let stale = api.kubectl(&["get", "configmap", "made", "-o", "json"]);
    let mut stale: serde_json::Value = serde_json::from_str(&stale).unwrap();
    kubectl_as(
        "carol",
        &[
            "patch",
            "configmap",
            "made",
            "--type=merge",
            "-p",
            r#"{"data":{"a":"3"}}"#,
        ],
    );
    expect("the update before the conflict", 1, &|t| {
        t[&path("made")].contains("a: \"3\"")
    });
    stale["data"]["a"] = "stale".into();
    let conflicted = api.with_input_as("mallory", &["replace", "-f", "-"], &stale.to_string());
    assert!(
        !conflicted.status.success(),
        "a stale resourceVersion conflicts"
    );
    expect("conflict", 0, &|_| true);

    let generated =
        "apiVersion: v1\nkind: ConfigMap\nmetadata: {generateName: gen-, namespace: default}\n";
    let made = api.with_input_as("erin", &["create", "-f", "-"], generated);
    assert!(
        made.status.success(),
        "{}",
        String::from_utf8_lossy(&made.stderr)
    );
    expect("generateName", 1, &|t| {
        t.keys().any(|p| p.contains("/configmaps/gen-"))
    });

    let held = "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: held, namespace: default, \
                finalizers: [example.com/hold]}\n";
    assert!(api.apply_as("alice", held).status.success());
    expect("the finalized object", 1, &|t| {
        t.contains_key(&path("held"))
    });
    kubectl_as("frank", &["delete", "configmap", "held", "--wait=false"]);
    expect("a delete held by a finalizer", 0, &|t| {
        t.contains_key(&path("held"))
    });
    kubectl_as(
        "system:serviceaccount:ops:finalizer",
        &[
            "patch",
            "configmap",
            "held",
            "--type=merge",
            "-p",
            r#"{"metadata":{"finalizers":null}}"#,
        ],
    );
    expect("the finalizer removed", 1, &|t| {
        !t.contains_key(&path("held"))
    });

    for name in ["swept-a", "swept-b"] {
        api.kubectl(&["create", "configmap", name]);
        api.kubectl(&["label", "configmap", name, "sweep=yes"]);
    }
    // Made in four writes: as many commits as batches took them.
    wait_for("the swept ones made", || {
        let tree = git.tree();
        (tree.contains_key(&path("swept-a")) && tree.contains_key(&path("swept-b"))).then_some(())
    });
    kubectl_as("grace", &["delete", "configmap", "-l", "sweep=yes"]);
    wait_for("deletecollection", || {
        let tree = git.tree();
        (!tree.contains_key(&path("swept-a")) && !tree.contains_key(&path("swept-b"))).then_some(())
    });
    for name in ["swept-a", "swept-b"] {
        let by = git_in(
            &git.bare(),
            &[
                "log",
                "-1",
                "--diff-filter=D",
                "--format=%an",
                "main",
                "--",
                &path(name),
            ],
        );
        assert_eq!(by.trim(), "grace", "{name}");
    }

    // A status-only update and a scale of a Deployment.
    let store = api.store();
    let deployments = store.resource("apps", "v1", "deployments").unwrap();
    let write = crate::apiserver::store::Write {
        user: "alice".into(),
        manager: "kubectl".into(),
        named: true,
        ..Default::default()
    };
    let web = serde_json::json!({"apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": "web", "namespace": "default"},
        "spec": {"replicas": 1, "selector": {"matchLabels": {"app": "web"}},
            "template": {"metadata": {"labels": {"app": "web"}}, "spec": {"containers": [{"name": "c", "image": "nginx"}]}}}});
    store
        .create(&deployments, Some("default"), web, &write)
        .unwrap();
    let web_path = "live/default/apps/deployments/web.yaml";
    expect("the deployment", 1, &|t| t.contains_key(web_path));
    let mut status = store.get(&deployments, Some("default"), "web").unwrap();
    status["status"] = serde_json::json!({"replicas": 1, "readyReplicas": 1});
    let controller = crate::apiserver::store::Write {
        user: "system:serviceaccount:kube-system:deployment-controller".into(),
        ..write.clone()
    };
    store
        .update(
            &deployments,
            Some("default"),
            "web",
            status,
            true,
            &controller,
        )
        .unwrap();
    expect("status-only update", 0, &|_| true);
    kubectl_as("heidi", &["scale", "deployment", "web", "--replicas=3"]);
    expect("scale", 1, &|t| t[web_path].contains("replicas: 3"));
    assert_eq!(author_of(&git, web_path), "heidi");

    let authors = git_in(&git.bare(), &["log", "--format=%an", "main"]);
    assert!(!authors.contains("mallory"), "{authors}");
}

/// A body sent a byte at a time held its connection for the whole
/// connection lifetime (120 s), so a few hundred of them took the probes
/// down: the body has the read timeout too (found by a hostile-input
/// campaign).
#[test]
fn a_request_body_that_trickles_gets_a_408_within_the_read_timeout() {
    use std::io::{Read as _, Write as _};
    let api = ApiServer::start();
    let git = GitServer::start();
    let work = tempfile::tempdir().unwrap();
    let rules = work.path().join("rules.yaml");
    config(&rules, &git.url(), "configmaps");
    let state = work.path().join("state");
    let extra = ["--admission-webhook", "--http-read-timeout", "1"];
    let daemon = follow(&api, &rules, &state, &extra);
    let address = daemon.address();
    let mut stream = std::net::TcpStream::connect(&address).unwrap();
    stream
        .write_all(
            b"POST /process-validating-webhook HTTP/1.1\r\nHost: x\r\nContent-Length: 1000\r\n\r\n",
        )
        .unwrap();
    let writer = stream.try_clone().unwrap();
    let trickle = std::thread::spawn(move || {
        let mut writer = writer;
        for _ in 0..30 {
            if writer.write_all(b"a").is_err() {
                return;
            }
            std::thread::sleep(std::time::Duration::from_millis(200));
        }
    });
    stream
        .set_read_timeout(Some(std::time::Duration::from_secs(30)))
        .unwrap();
    let mut answer = Vec::new();
    let _ = stream.read_to_end(&mut answer);
    let answer = String::from_utf8_lossy(&answer);
    assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
    trickle.join().unwrap();
}

#[test]
fn a_resource_that_may_not_be_listed_is_said_prunes_nothing_and_is_listed_once_it_may() {
    let api = ApiServer::start();
    api.kubectl(&["create", "configmap", "shop"]);
    api.kubectl(&["create", "secret", "generic", "token", "--from-literal=t=x"]);
    let git = GitServer::start();
    let work = tempfile::tempdir().unwrap();
    let rules = work.path().join("rules.yaml");
    config(&rules, &git.url(), "configmaps, secrets");
    const TOKEN: &str = "live/default/core/secrets/token.yaml";
    const SHOP: &str = "live/default/core/configmaps/shop.yaml";
    let once = || run_once(&api.kubeconfig(), &rules, &work.path().join("state"));
    assert!(once().status.success());
    assert!(git.tree().contains_key(TOKEN));

    // Secrets may not be listed now: said, and the Secret's file stays
    // while the config map's change is mirrored.
    api.forbid("secrets", true);
    api.kubectl(&[
        "patch",
        "configmap",
        "shop",
        "--type=merge",
        "-p",
        r#"{"data":{"a":"1"}}"#,
    ]);
    let out = once();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{stderr}");
    assert!(
        stderr.contains("listing secrets: ") && stderr.contains("403"),
        "{stderr}"
    );
    let tree = git.tree();
    assert!(tree.contains_key(TOKEN), "not pruned: {stderr}");
    assert!(tree[SHOP].contains("a: \"1\""), "{tree:?}");

    // Following, it stands in /readyz until it may be listed again.
    let state = work.path().join("state");
    let daemon = follow(&api, &rules, &state, &[]);
    let address = daemon.address();
    let body = wait_for("the refusal in /readyz", || {
        let (status, body) = crate::support::http_get(&address, "/readyz");
        (status == 503 && body.contains("source secrets")).then_some(body)
    });
    assert!(body.contains("403"), "{body}");
    api.forbid("secrets", false);
    api.kubectl(&["create", "secret", "generic", "later", "--from-literal=t=y"]);
    wait_for("the secret listed once it may be", || {
        git.tree()
            .contains_key("live/default/core/secrets/later.yaml")
            .then_some(())
    });
    wait_for("ready again", || {
        let (status, _) = crate::support::http_get(&address, "/readyz");
        (status == 200).then_some(())
    });
}

/// The README's CEL recipes, one destination each: what a rule's
/// condition lets through, against objects that match and objects that
/// do not.
const RECIPES: [(&str, &str); 5] = [
    (
        "not-controller-owned",
        "!has(object.metadata.ownerReferences) || !object.metadata.ownerReferences.exists(r, has(r.controller) && r.controller)",
    ),
    (
        "not-ignored",
        "!has(object.metadata.labels) || !('plumbline.dev/ignore' in object.metadata.labels)",
    ),
    (
        "not-kube-namespaces",
        "!has(object.metadata.namespace) || !object.metadata.namespace.matches('^kube-')",
    ),
    (
        "not-by-flux",
        "!has(event.username) || !event.username.startsWith('system:serviceaccount:flux-system:')",
    ),
    (
        "tier-two",
        "has(object.metadata.labels) && 'tier' in object.metadata.labels && object.metadata.labels['tier'] == 'two'",
    ),
];

#[test]
fn the_readmes_cel_recipes_each_let_through_what_they_say() {
    let api = ApiServer::start();
    api.kubectl(&["create", "configmap", "plain"]);
    let objects = "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: owned\n  namespace: default\n  ownerReferences:\n  - {apiVersion: apps/v1, kind: ReplicaSet, name: web-1, uid: 5d2a1c9e-0000-4000-8000-000000000001, controller: true}\n---\n\
        apiVersion: v1\nkind: ConfigMap\nmetadata: {name: ignored, namespace: default, labels: {plumbline.dev/ignore: 'true'}}\n---\n\
        apiVersion: v1\nkind: ConfigMap\nmetadata: {name: tier-two, namespace: default, labels: {tier: two}}\n---\n\
        apiVersion: v1\nkind: ConfigMap\nmetadata: {name: system, namespace: kube-system}\n";
    let applied = api.apply_as("alice", objects);
    assert!(
        applied.status.success(),
        "{}",
        String::from_utf8_lossy(&applied.stderr)
    );
    let git = GitServer::start();
    let mut text = format!(
        "apiVersion: mirror.plumbline.dev/v1alpha1\nkind: GitRepoConfig\nmetadata: {{name: gitops, namespace: plumbline}}\n\
         spec: {{repoUrl: '{}', allowedBranches: [main]}}\n",
        git.url()
    );
    for (name, condition) in RECIPES {
        text.push_str(&format!(
            "---\napiVersion: mirror.plumbline.dev/v1alpha1\nkind: GitDestination\nmetadata: {{name: {name}, namespace: plumbline}}\n\
             spec: {{repoRef: {{name: gitops}}, branch: main, baseFolder: {name}}}\n---\n\
             apiVersion: mirror.plumbline.dev/v1alpha1\nkind: ClusterWatchRule\nmetadata: {{name: {name}}}\n\
             spec:\n  destinationRef: {{name: {name}, namespace: plumbline}}\n  rules:\n\
             \x20 - {{scope: Namespaced, resources: [configmaps], condition: \"{condition}\"}}\n"
        ));
    }
    let work = tempfile::tempdir().unwrap();
    let rules = work.path().join("rules.yaml");
    std::fs::write(&rules, text).unwrap();
    let state = work.path().join("state");
    let daemon = follow(&api, &rules, &state, &["--audit-webhook"]);
    api.send_audit_to(&format!("http://{}/audit-webhook", daemon.address()));
    wait_for("the seed", || {
        git.tree()
            .contains_key("tier-two/default/core/configmaps/tier-two.yaml")
            .then_some(())
    });
    // A change by Flux's controller, which would loop back otherwise.
    let flux = "system:serviceaccount:flux-system:kustomize-controller";
    assert!(
        api.kubectl_as(flux, &["create", "configmap", "by-flux"])
            .status
            .success()
    );
    // The other destinations show it; then every commit is in.
    wait_for("the change by Flux", || {
        let tree = git.tree();
        RECIPES
            .iter()
            .filter(|(name, _)| !["not-by-flux", "tier-two"].contains(name))
            .all(|(name, _)| {
                tree.contains_key(&format!("{name}/default/core/configmaps/by-flux.yaml"))
            })
            .then_some(())
    });
    let tree = git.tree();
    let names = |folder: &str| -> Vec<String> {
        let mut names: Vec<String> = tree
            .keys()
            .filter_map(|path| path.strip_prefix(&format!("{folder}/")))
            .map(|rest| {
                rest.rsplit('/')
                    .next()
                    .unwrap()
                    .trim_end_matches(".yaml")
                    .to_owned()
            })
            .collect();
        names.sort();
        names
    };
    assert_eq!(
        names("not-controller-owned"),
        ["by-flux", "ignored", "plain", "system", "tier-two"]
    );
    assert_eq!(
        names("not-ignored"),
        ["by-flux", "owned", "plain", "system", "tier-two"]
    );
    assert_eq!(
        names("not-kube-namespaces"),
        ["by-flux", "ignored", "owned", "plain", "tier-two"]
    );
    assert_eq!(
        names("not-by-flux"),
        ["ignored", "owned", "plain", "system", "tier-two"]
    );
    assert_eq!(names("tier-two"), ["tier-two"]);
}

#[test]
fn in_cluster_outside_a_pod_says_so_and_creates_nothing() {
    let work = tempfile::tempdir().unwrap();
    let repo = work.path().join("repo.git");
    let out = std::process::Command::new(binary())
        .args(["run", "--once", "--in-cluster", "--repo"])
        .arg(&repo)
        .env_remove("KUBERNETES_SERVICE_HOST")
        .env_remove("KUBERNETES_SERVICE_PORT")
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        stderr.contains("reading the in-cluster configuration"),
        "{stderr}"
    );
    assert!(
        !repo.exists(),
        "nothing is created for a run that cannot start"
    );
    // The audit webhook is the cluster source's: refused without one.
    let out = std::process::Command::new(binary())
        .args(["run", "--once", "--audit-webhook"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("--kubeconfig") && stderr.contains("--in-cluster"),
        "{stderr}"
    );
}
