//! Policy bundles against a real registry: `bundle push|inspect|pull`, and
//! a running mirror that follows a bundle's tag, swapping policy sets whole,
//! keeping the old set when a new one is broken or does not match its
//! digests, and starting from its store when the registry is gone.

use crate::support::{Daemon, GitServer, Registry, binary, guest, http_get, wait_for};
use plumbline::bundle::format;
use plumbline::model::digest::content_digest;
use std::path::Path;
use std::process::Command;

/// A bundle folder: the neat component, run with `settings`, and a CEL
/// step that drops objects annotated `ignore`.
pub(crate) fn bundle_dir(settings: &str) -> tempfile::TempDir {
    bundle_keeping(
        settings,
        "not-ignored",
        "!has(object.metadata.annotations) || !('ignore' in object.metadata.annotations)",
    )
}

/// A bundle folder: the neat component, run with `settings`, and a CEL
/// step `name` keeping only the objects `keep` is true of.
fn bundle_keeping(settings: &str, name: &str, keep: &str) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("neat.wasm"), guest("neat")).unwrap();
    std::fs::write(
        dir.path().join("bundle.yaml"),
        format!(
            "steps:\n  - decision: sanitize\n    plugin: neat.wasm\n    name: labels\n    settings: {settings}\n  - decision: sanitize\n    cel:\n      name: {name}\n      expression: \"{keep}\"\n"
        ),
    )
    .unwrap();
    dir
}

/// neat settings that drop one label.
pub(crate) fn dropping(label: &str) -> String {
    format!(r#"{{"rules": [{{"path": "metadata.labels['{label}']"}}]}}"#)
}

/// `plumbline ARGS` with the registry allowed over plain HTTP.
pub(crate) fn plumbline(registry: &Registry, args: &[&str]) -> std::process::Output {
    Command::new(binary())
        .args(args)
        .args(["--insecure-registry", &registry.host(), "--cache-dir"])
        .arg(Path::new(env!("CARGO_TARGET_TMPDIR")).join("component-cache"))
        .output()
        .unwrap()
}

pub(crate) fn push(registry: &Registry, dir: &Path, reference: &str) -> String {
    let out = plumbline(
        registry,
        &["bundle", "push", dir.to_str().unwrap(), reference],
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap().trim().to_owned()
}

#[test]
fn a_bundle_is_pushed_inspected_and_pulled_back_into_an_identical_bundle() {
    let registry = Registry::start();
    let reference = format!("{}/policies/team:v1", registry.host());
    let dir = bundle_dir(&dropping("team"));
    let digest = push(&registry, dir.path(), &reference);
    assert!(digest.starts_with("sha256:"), "{digest}");

    let out = plumbline(&registry, &["bundle", "inspect", &reference]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(text.contains(&format!("digest   {digest}")), "{text}");
    assert!(text.contains(format::CONFIG_MEDIA_TYPE), "{text}");
    let neat = content_digest(&guest("neat"));
    assert!(text.contains(&format!("plugin labels  {neat}")), "{text}");
    assert!(text.contains("metadata.labels['team']"), "{text}");
    assert!(text.contains("cel    not-ignored"), "{text}");

    // Pulled into a folder, pushed again: the same bytes, the same digest.
    let pulled = tempfile::tempdir().unwrap();
    let out = plumbline(
        &registry,
        &[
            "bundle",
            "pull",
            &reference,
            pulled.path().to_str().unwrap(),
        ],
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        std::fs::read(pulled.path().join("neat.wasm")).unwrap(),
        guest("neat")
    );
    let again = format!("{}/policies/copy:v1", registry.host());
    assert_eq!(push(&registry, pulled.path(), &again), digest);
}

#[test]
fn a_bundle_that_would_not_load_is_not_pushed() {
    let registry = Registry::start();
    let reference = format!("{}/policies/bad:v1", registry.host());
    let refused = |dir: &Path, expected: &str| {
        let out = plumbline(
            &registry,
            &["bundle", "push", dir.to_str().unwrap(), &reference],
        );
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success());
        assert!(stderr.contains(expected), "{stderr}");
    };
    let wrong_world = bundle_dir("{}");
    let yaml = wrong_world.path().join("bundle.yaml");
    let text = std::fs::read_to_string(&yaml).unwrap();
    std::fs::write(
        &yaml,
        text.replacen("decision: sanitize", "decision: gate", 1),
    )
    .unwrap();
    refused(wrong_world.path(), "drift-gate");

    refused(
        bundle_dir(r#"{"bogus": 1}"#).path(),
        "unknown setting `bogus`",
    );

    let bad_cel = bundle_dir("{}");
    let yaml = bad_cel.path().join("bundle.yaml");
    let text = std::fs::read_to_string(&yaml).unwrap();
    std::fs::write(&yaml, text.replace("!has(", "!!has((")).unwrap();
    refused(bad_cel.path(), "not-ignored");

    let missing = tempfile::tempdir().unwrap();
    refused(missing.path(), "bundle.yaml");

    let out = plumbline(&registry, &["bundle", "inspect", &reference]);
    assert!(!out.status.success(), "nothing was pushed");
}

/// A ConfigMap carrying both labels; the sanitizer serving drops one.
pub(crate) fn configmap(name: &str) -> String {
    format!(
        "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: {name}\n  namespace: team\n  labels:\n    kept-by-v1: \"yes\"\n    kept-by-v2: \"yes\"\ndata:\n  k: v\n"
    )
}

/// Which sanitizer wrote a file: exactly one of the labels survives.
pub(crate) fn decided_by(file: &str) -> &'static str {
    match (file.contains("kept-by-v1"), file.contains("kept-by-v2")) {
        (true, false) => "v1",
        (false, true) => "v2",
        (true, true) => panic!("decided by neither:\n{file}"),
        (false, false) => panic!("decided by both:\n{file}"),
    }
}

pub(crate) fn metric(address: &str, line_start: &str) -> Option<f64> {
    let (_, text) = http_get(address, "/metrics");
    text.lines()
        .find_map(|l| l.strip_prefix(line_start))
        .and_then(|v| v.trim().parse().ok())
}

/// The arguments of a daemon following `src` into `server` with the
/// policies of `policy`, the registry allowed over plain HTTP.
pub(crate) fn following(
    server: &GitServer,
    src: &Path,
    state: &Path,
    policy: &Path,
    registry: &Registry,
) -> Vec<String> {
    [
        "--repo".to_owned(),
        server.url(),
        "--source-dir".into(),
        src.display().to_string(),
        "--state-dir".into(),
        state.display().to_string(),
        "--policy".into(),
        policy.display().to_string(),
        "--insecure-registry".into(),
        registry.host(),
    ]
    .into()
}

#[test]
fn a_running_mirror_follows_its_bundle_tag_and_keeps_serving_through_bad_pushes() {
    let mut registry = Registry::start();
    let server = GitServer::start();
    let (src, state) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let tag = format!("{}/policies/team:stable", registry.host());
    push(&registry, bundle_dir(&dropping("kept-by-v2")).path(), &tag);
    let policy = state.path().join("policy.yaml");
    std::fs::write(
        &policy,
        format!(
            "bundleRefreshSeconds: 1\nbundles:\n  team:\n    reference: {tag}\ndecisions:\n  sanitize:\n    steps:\n      - plugin: neat\n      - bundle: team\n"
        ),
    )
    .unwrap();
    std::fs::write(src.path().join("cm-0.yaml"), configmap("cm-0")).unwrap();
    let args = following(&server, src.path(), state.path(), &policy, &registry);
    let args: Vec<&std::ffi::OsStr> = args.iter().map(|a| a.as_ref()).collect();
    let mut daemon = Daemon::start(&args);
    let address = daemon.address();
    let file = |name: &str| {
        server
            .tree()
            .get(&format!("team/core/configmaps/{name}.yaml"))
            .cloned()
    };
    let written = |name: &str| wait_for(&format!("{name} in Git"), || file(name));
    assert_eq!(decided_by(&written("cm-0")), "v1");

    // v2 goes to the same tag while objects keep arriving: each is decided
    // wholly by v1 or wholly by v2, and v2 from some point on.
    let v2 = push(&registry, bundle_dir(&dropping("kept-by-v1")).path(), &tag);
    let mut n = 1;
    let reloaded = |address: &str| {
        metric(
            address,
            "plumbline_policy_reloads_total{result=\"loaded\"} ",
        )
    };
    while reloaded(&address).is_none() {
        std::fs::write(
            src.path().join(format!("cm-{n}.yaml")),
            configmap(&format!("cm-{n}")),
        )
        .unwrap();
        n += 1;
        std::thread::sleep(std::time::Duration::from_millis(150));
        assert!(n < 400, "v2 never loaded:\n{}", daemon.stderr());
    }
    std::fs::write(src.path().join("after-v2.yaml"), configmap("after-v2")).unwrap();
    assert_eq!(decided_by(&written("after-v2")), "v2");
    // Every object written while v2 loaded was decided by v1 up to some
    // point and by v2 from then on, never back.
    let deciders: Vec<&str> = (0..n)
        .map(|i| decided_by(&written(&format!("cm-{i}"))))
        .collect();
    let first_v2 = deciders.iter().position(|d| *d == "v2").unwrap_or(n);
    assert!(
        deciders[first_v2..].iter().all(|d| *d == "v2"),
        "{deciders:?}"
    );
    for i in 1..n {
        decided_by(&written(&format!("cm-{i}")));
    }
    let (_, metrics) = http_get(&address, "/metrics");
    assert!(
        metrics.contains(&format!(
            "plumbline_bundle_serving{{bundle=\"team\",digest=\"{v2}\"}} 1"
        )),
        "{metrics}"
    );

    // v3 has settings neat refuses: v2 keeps serving, and says why.
    push_unchecked(&registry, &bundle_dir(r#"{"bogus": 1}"#), &tag);
    wait_for("the failed load", || {
        metric(
            &address,
            "plumbline_policy_reloads_total{result=\"failed\"} ",
        )
        .filter(|n| *n >= 1.0)
    });
    assert_eq!(
        metric(&address, "plumbline_policy_reload_failing "),
        Some(1.0)
    );
    let (status, readyz) = http_get(&address, "/readyz");
    assert_eq!(status, 200, "the old set serves: {readyz}");
    assert!(
        readyz.contains("[!] policies: a new policy set failed to load, still serving team@"),
        "{readyz}"
    );
    assert!(readyz.contains("unknown setting `bogus`"), "{readyz}");
    std::fs::write(src.path().join("after-v3.yaml"), configmap("after-v3")).unwrap();
    assert_eq!(decided_by(&written("after-v3")), "v2");

    // v4's config is changed in the registry's storage after the push: its
    // digest does not match, so it is refused and v2 keeps serving.
    let v4 = bundle_dir(
        r#"{"rules": [{"path": "metadata.labels['kept-by-v1']"}, {"path": "data.other"}]}"#,
    );
    let config = format::build(v4.path()).unwrap().config.data;
    push(&registry, v4.path(), &tag);
    let stored = registry.blob_path(&content_digest(&config));
    let mut tampered = config.clone();
    tampered[config.len() / 2] ^= 0x20;
    std::fs::write(&stored, tampered).unwrap();
    wait_for("the refused load", || {
        metric(
            &address,
            "plumbline_policy_reloads_total{result=\"failed\"} ",
        )
        .filter(|n| *n >= 2.0)
    });
    let (_, readyz) = http_get(&address, "/readyz");
    assert!(readyz.to_lowercase().contains("digest"), "{readyz}");
    std::fs::write(src.path().join("after-v4.yaml"), configmap("after-v4")).unwrap();
    assert_eq!(decided_by(&written("after-v4")), "v2");

    // The registry goes away: the daemon keeps serving; a restart loads v2
    // from its store.
    registry.stop();
    std::fs::write(src.path().join("offline.yaml"), configmap("offline")).unwrap();
    assert_eq!(decided_by(&written("offline")), "v2");
    daemon.kill();
    let daemon = Daemon::start(&args);
    let address = daemon.address();
    std::fs::write(src.path().join("restarted.yaml"), configmap("restarted")).unwrap();
    assert_eq!(decided_by(&written("restarted")), "v2");
    assert!(
        daemon.stderr().contains("from the store"),
        "{}",
        daemon.stderr()
    );
    // Ready (once the sink has caught up), with the reason to look.
    let readyz = wait_for("/readyz to be 200", || {
        let (status, text) = http_get(&address, "/readyz");
        (status == 200).then_some(text)
    });
    assert!(
        readyz.contains("[!] policies: bundle `team`: the registry did not answer")
            && readyz.contains(&format!("using {v2} from the store")),
        "{readyz}"
    );
    let (_, metrics) = http_get(&address, "/metrics");
    assert!(metrics.contains(&format!("digest=\"{v2}\"")), "{metrics}");
}

#[test]
fn a_moved_bundle_is_a_rule_change_and_git_shows_what_the_new_set_makes_of_everything() {
    let registry = Registry::start();
    let server = GitServer::start();
    let (src, state) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let tag = format!("{}/policies/tiers:stable", registry.host());
    push(&registry, bundle_dir(&dropping("kept-by-v2")).path(), &tag);
    let policy = state.path().join("policy.yaml");
    std::fs::write(
        &policy,
        format!(
            "bundleRefreshSeconds: 1\nbundles:\n  tiers:\n    reference: {tag}\ndecisions:\n  sanitize:\n    steps:\n      - plugin: neat\n      - bundle: tiers\n"
        ),
    )
    .unwrap();
    for tier in ["one", "two"] {
        let manifest =
            configmap(tier).replace("  labels:\n", &format!("  labels:\n    tier: {tier}\n"));
        std::fs::write(src.path().join(format!("{tier}.yaml")), manifest).unwrap();
    }
    let args = following(&server, src.path(), state.path(), &policy, &registry);
    let args: Vec<&std::ffi::OsStr> = args.iter().map(|a| a.as_ref()).collect();
    let daemon = Daemon::start(&args);
    let path = |tier: &str| format!("team/core/configmaps/{tier}.yaml");
    let tree = wait_for("v1's seed", || {
        let tree = server.tree();
        (tree.len() == 2).then_some(tree)
    });
    assert_eq!(decided_by(&tree[&path("one")]), "v1");
    assert_eq!(decided_by(&tree[&path("two")]), "v1");

    // v2 drops tier two and sanitizes differently. Nothing changes in the
    // folder: Git shows v2's result all the same, without a restart.
    push(
        &registry,
        bundle_keeping(
            &dropping("kept-by-v1"),
            "not-tier-two",
            "object.metadata.labels['tier'] != 'two'",
        )
        .path(),
        &tag,
    );
    let tree = wait_for("v2's result in Git", || {
        let tree = server.tree();
        let rewritten = tree
            .get(&path("one"))
            .is_some_and(|f| f.contains("kept-by-v2"));
        (rewritten && !tree.contains_key(&path("two"))).then_some(tree)
    });
    assert_eq!(decided_by(&tree[&path("one")]), "v2");
    assert_eq!(tree.len(), 1, "{tree:?}\n{}", daemon.stderr());
}

/// Pushes a bundle `bundle push` would refuse, as another tool could.
fn push_unchecked(registry: &Registry, dir: &tempfile::TempDir, reference: &str) {
    let artifact = format::build(dir.path()).unwrap();
    let client = plumbline::oci::OciClient::new(plumbline::oci::OciConfig {
        insecure: vec![registry.host()],
        ..Default::default()
    })
    .unwrap();
    client.push(reference, &artifact).unwrap();
}

#[test]
fn a_digest_pinned_bundle_never_moves_and_needs_no_registry_to_resolve() {
    use plumbline::bundle::{BundleSource, BundleStore, PolicyLoader};
    use plumbline::oci::{OciClient, OciConfig};
    use plumbline::policy::config::PolicyConfig;

    let mut registry = Registry::start();
    let tag = format!("{}/policies/pinned:v1", registry.host());
    let first = push(&registry, bundle_dir("{}").path(), &tag);
    let pinned = format!("{}/policies/pinned@{first}", registry.host());
    let dir = tempfile::tempdir().unwrap();
    let config = |reference: &str| {
        let path = dir.path().join("policy.yaml");
        std::fs::write(
            &path,
            format!("bundles:\n  b:\n    reference: {reference}\ndecisions:\n  sanitize:\n    steps:\n      - bundle: b\n"),
        )
        .unwrap();
        PolicyConfig::from_file(&path).unwrap()
    };
    let loader = |reference: &str| {
        let client = OciClient::new(OciConfig {
            insecure: vec![registry.host()],
            ..OciConfig::default()
        })
        .unwrap();
        let source = BundleSource::new(client, BundleStore::new(dir.path().join("store")));
        PolicyLoader::new(config(reference), crate::support::runtime(), source)
    };
    let (mut by_tag, mut by_digest) = (loader(&tag), loader(&pinned));
    assert_eq!(by_tag.load().unwrap().digests["b"], first);
    assert_eq!(by_digest.load().unwrap().digests["b"], first);
    assert!(by_tag.refresh().unwrap().loaded.is_none(), "nothing moved");

    // The tag moves; the pinned reference does not.
    let second = push(&registry, bundle_dir(&dropping("team")).path(), &tag);
    let moved = by_tag.refresh().unwrap().loaded.expect("the tag moved");
    assert_eq!(moved.digests["b"], second);
    assert!(by_digest.refresh().unwrap().loaded.is_none());

    // Without the registry, a pinned reference resolves by itself and the
    // tag falls back to what last loaded, saying so.
    registry.stop();
    let refresh = by_digest.refresh().unwrap();
    assert!(refresh.loaded.is_none() && refresh.offline.is_empty());
    let refresh = by_tag.refresh().unwrap();
    assert!(refresh.loaded.is_none());
    assert!(
        refresh.offline[0].contains(&format!("using {second} from the store")),
        "{:?}",
        refresh.offline
    );
}
