//! Signed bundles: cosign's key-based signature format, made and checked
//! by Python's `cryptography` against the registry's HTTP API
//! (`tests/tools/cosign.py`), an implementation that is not ours. A
//! signature Python made verifies; a tampered payload, a wrong key, a
//! signature of another digest and none at all are refused, each saying
//! why. `plumbline bundle sign` makes signatures Python verifies. A
//! following mirror whose bundle must be signed refuses a tag moved to an
//! unsigned digest and keeps serving the old set, saying why.

use crate::bundles::{
    bundle_dir, configmap, decided_by, dropping, following, metric, plumbline, push,
};
use crate::support::{Daemon, GitServer, Registry, http_get, root, wait_for};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// `tests/tools/cosign.py ARGS` with the tests' Python.
fn python(args: &[&str]) -> Output {
    Command::new(root().join("target/test-tools/bin/python"))
        .arg(root().join("tests/tools/cosign.py"))
        .args(args)
        .output()
        .unwrap()
}

/// A P-256 key pair made by Python: (private PKCS#8, public) PEM files.
fn keys(dir: &Path, name: &str) -> (PathBuf, PathBuf) {
    let folder = dir.join(name);
    std::fs::create_dir_all(&folder).unwrap();
    let out = python(&["keygen", folder.to_str().unwrap()]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    (folder.join("key.pem"), folder.join("pub.pem"))
}

/// Python signs `digest` of `repo` with `key`, with `extra` options.
fn python_signs(registry: &Registry, repo: &str, digest: &str, key: &Path, extra: &[&str]) {
    let host = registry.host();
    let mut args = vec!["sign", &host, repo, digest, key.to_str().unwrap()];
    args.extend(extra);
    let out = python(&args);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// `plumbline bundle verify REF --key PUBLIC`: whether it verified, and
/// what it said.
fn verify(registry: &Registry, reference: &str, public: &Path) -> (bool, String) {
    let out = plumbline(
        registry,
        &[
            "bundle",
            "verify",
            reference,
            "--key",
            public.to_str().unwrap(),
        ],
    );
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn a_signature_python_made_verifies_and_tampered_wrong_or_missing_ones_are_refused() {
    let registry = Registry::start();
    let dir = tempfile::tempdir().unwrap();
    let (key, public) = keys(dir.path(), "trusted");
    let (_, other) = keys(dir.path(), "other");
    let repo = "policies/team";
    let reference = |tag: &str| format!("{}/{repo}:{tag}", registry.host());
    let bundle = |label: &str, tag: &str| {
        push(
            &registry,
            bundle_dir(&dropping(label)).path(),
            &reference(tag),
        )
    };

    let signed = bundle("a", "signed");
    python_signs(&registry, repo, &signed, &key, &[]);
    let (ok, said) = verify(&registry, &reference("signed"), &public);
    assert!(ok, "{said}");
    assert!(said.contains("signed with the key"), "{said}");

    let (ok, said) = verify(&registry, &reference("signed"), &other);
    assert!(
        !ok && said.contains("none of its 1 cosign signature(s) verifies"),
        "{said}"
    );

    bundle("b", "unsigned");
    let (ok, said) = verify(&registry, &reference("unsigned"), &public);
    assert!(
        !ok && said.contains("is not signed") && said.contains(".sig"),
        "{said}"
    );

    let tampered = bundle("c", "tampered");
    python_signs(&registry, repo, &tampered, &key, &["--tamper"]);
    let (ok, said) = verify(&registry, &reference("tampered"), &public);
    assert!(!ok && said.contains("no trusted key made"), "{said}");

    // A good signature of another digest, put where this one's would be.
    let elsewhere = bundle("d", "elsewhere");
    python_signs(&registry, repo, &elsewhere, &key, &["--names", &signed]);
    let (ok, said) = verify(&registry, &reference("elsewhere"), &public);
    assert!(!ok && said.contains("not this digest"), "{said}");
}

#[test]
fn plumbline_bundle_sign_makes_a_signature_python_verifies() {
    let registry = Registry::start();
    let dir = tempfile::tempdir().unwrap();
    let (key, public) = keys(dir.path(), "author");
    let reference = format!("{}/policies/signed:v1", registry.host());
    let digest = push(&registry, bundle_dir(&dropping("a")).path(), &reference);
    let out = plumbline(
        &registry,
        &["bundle", "sign", &reference, "--key", key.to_str().unwrap()],
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), digest);
    let host = registry.host();
    let checked = python(&[
        "verify",
        &host,
        "policies/signed",
        &digest,
        public.to_str().unwrap(),
    ]);
    assert!(
        checked.status.success(),
        "{}",
        String::from_utf8_lossy(&checked.stderr)
    );
    // And it verifies with ours.
    let (ok, said) = verify(&registry, &reference, &public);
    assert!(ok, "{said}");
}

#[test]
fn a_following_mirror_refuses_a_bundle_moved_to_an_unsigned_digest_and_keeps_serving() {
    let mut registry = Registry::start();
    let server = GitServer::start();
    let (src, state) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let (key, _) = keys(state.path(), "trusted");
    let tag = format!("{}/policies/team:stable", registry.host());
    let v1 = push(&registry, bundle_dir(&dropping("kept-by-v2")).path(), &tag);
    python_signs(&registry, "policies/team", &v1, &key, &[]);
    let policy = state.path().join("policy.yaml");
    std::fs::write(
        &policy,
        format!(
            "bundleRefreshSeconds: 1\nbundles:\n  team:\n    reference: {tag}\n    verify: {{keys: [trusted/pub.pem]}}\ndecisions:\n  sanitize:\n    steps:\n      - plugin: neat\n      - bundle: team\n"
        ),
    )
    .unwrap();
    std::fs::write(src.path().join("cm-0.yaml"), configmap("cm-0")).unwrap();
    let args = following(&server, src.path(), state.path(), &policy, &registry);
    let args: Vec<&std::ffi::OsStr> = args.iter().map(|a| a.as_ref()).collect();
    let mut daemon = Daemon::start(&args);
    let address = daemon.address();
    let written = |name: &str| {
        wait_for(&format!("{name} in Git"), || {
            server
                .tree()
                .get(&format!("team/core/configmaps/{name}.yaml"))
                .cloned()
        })
    };
    assert_eq!(decided_by(&written("cm-0")), "v1");

    // The tag moves to a bundle no one signed: refused, v1 serves on.
    push(&registry, bundle_dir(&dropping("kept-by-v1")).path(), &tag);
    wait_for("the refused load", || {
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
    // Ready (the old set serves; once the sink is not between pushes),
    // with the reason.
    let readyz = wait_for("/readyz to be 200", || {
        let (status, text) = http_get(&address, "/readyz");
        (status == 200).then_some(text)
    });
    assert!(
        readyz.contains("[!] policies: a new policy set failed to load")
            && readyz.contains("bundle `team`")
            && readyz.contains("is not signed"),
        "{readyz}"
    );
    std::fs::write(src.path().join("after.yaml"), configmap("after")).unwrap();
    assert_eq!(decided_by(&written("after")), "v1");
    let (_, metrics) = http_get(&address, "/metrics");
    assert!(
        metrics.contains(&format!(
            "plumbline_bundle_serving{{bundle=\"team\",digest=\"{v1}\"}} 1"
        )),
        "{metrics}"
    );

    // The registry goes: a restart serves v1 from the store (its signature
    // was verified when it first loaded), and says the registry is gone.
    registry.stop();
    daemon.kill();
    let daemon = Daemon::start(&args);
    let address = daemon.address();
    std::fs::write(src.path().join("restarted.yaml"), configmap("restarted")).unwrap();
    assert_eq!(
        decided_by(&written("restarted")),
        "v1",
        "{}",
        daemon.stderr()
    );
    let (_, readyz) = http_get(&address, "/readyz");
    assert!(readyz.contains("the registry did not answer"), "{readyz}");
}

/// With trusted keys, a workflow image is registered only if Python's
/// signature of its digest verifies, and the record names the key; an
/// unsigned one is refused as a problem of its own type. A gate policy
/// (`request.catalog.signed`) then allows executions of signed versions
/// only.
#[test]
fn a_workflow_image_registers_only_signed_and_a_gate_policy_can_require_it() {
    use crate::catalog::{SCHEMA, client, image, layer};
    use crate::catalog_api::{call, problem_type, schema_for, serve};
    use serde_json::json;
    let registry = Registry::start();
    let host = registry.host();
    let dir = tempfile::tempdir().unwrap();
    let (key, public) = keys(dir.path(), "team");
    let signed_tag = format!("{host}/workflows/restart:1.0.0");
    let digest = client(&registry)
        .push(
            &signed_tag,
            &image(vec![layer(&[("workflow-schema.yaml", SCHEMA)])]),
        )
        .unwrap();
    python_signs(&registry, "workflows/restart", &digest, &key, &[]);
    let unsigned_tag = format!("{host}/workflows/scale:1.0.0");
    let scale = schema_for("scale");
    client(&registry)
        .push(
            &unsigned_tag,
            &image(vec![layer(&[("workflow-schema.yaml", scale.as_bytes())])]),
        )
        .unwrap();
    let policy = dir.path().join("policy.yaml");
    std::fs::write(
        &policy,
        "decisions:\n  gate:\n    steps:\n      - plugin: digest-gate\n      - cel:\n          name: signed-only\n          expression: \"request.catalog.signed\"\n          message: \"the workflow's image must carry a trusted signature\"\n",
    )
    .unwrap();
    let daemon = serve(
        dir.path(),
        &[
            "--insecure-registry",
            &host,
            "--catalog-trusted-key",
            public.to_str().unwrap(),
            "--policy",
            policy.to_str().unwrap(),
        ],
    );
    let address = daemon.address();
    let register = |tag: &str| {
        call(
            &address,
            "POST",
            "/api/v1/workflows",
            Some(json!({"schemaImage": tag})),
        )
    };
    let (status, body) = register(&signed_tag);
    assert_eq!(status, 201, "{body}");
    assert_eq!(body["record"]["signedBy"], "pub.pem", "{body}");
    let (status, body) = register(&unsigned_tag);
    assert_eq!(status, 422, "{body}");
    assert_eq!(problem_type(&body), "image-unverified", "{body}");
    assert!(
        body["detail"].as_str().unwrap().contains("is not signed"),
        "{body}"
    );

    // An inline schema carries no signature: the gate policy denies it.
    let inline = schema_for("inline-pod");
    let (status, body) = call(
        &address,
        "POST",
        "/api/v1/workflows",
        Some(json!({"schema": inline})),
    );
    assert_eq!(status, 201, "{body}");
    let job = |workflow: &str, image: &str| {
        json!({"object": {
            "apiVersion": "batch/v1", "kind": "Job",
            "metadata": {"name": "r", "annotations": {"plumbline.dev/workflow": workflow}},
            "spec": {"template": {"spec": {"containers": [{"name": "w", "image": image}]}}}}})
    };
    let pinned = format!("{host}/workflows/restart@{digest}");
    let (_, decided) = call(
        &address,
        "POST",
        "/gate",
        Some(job("restart-pod@1.0.0", &pinned)),
    );
    assert_eq!(decided["allowed"], true, "{decided}");
    let (_, decided) = call(
        &address,
        "POST",
        "/gate",
        Some(job("inline-pod@1.0.0", &pinned)),
    );
    assert_eq!(decided["allowed"], false, "{decided}");
    assert!(
        decided
            .to_string()
            .contains("must carry a trusted signature"),
        "{decided}"
    );
}
