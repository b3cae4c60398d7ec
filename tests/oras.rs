//! Interoperability with ORAS (the `oras` Python package, which the test
//! command installs): a bundle another OCI tool pushed is served by
//! Plumbline, and one Plumbline pushed is pulled by that tool.

use crate::support::{Registry, binary, git, guest, python_in as python};
use plumbline::bundle::{CEL_MEDIA_TYPE, CONFIG_MEDIA_TYPE, WASM_MEDIA_TYPE};
use plumbline::model::digest::content_digest;
use std::path::Path;
use std::process::Command;

#[test]
fn a_bundle_pushed_by_oras_is_served_by_plumbline() {
    let registry = Registry::start();
    let dir = tempfile::tempdir().unwrap();
    let component = guest("neat");
    let policy = b"name: named\nexpression: object.metadata.name != ''\n";
    std::fs::write(dir.path().join("neat.wasm"), &component).unwrap();
    std::fs::write(dir.path().join("named.yaml"), policy).unwrap();
    // The config an author writes by hand for another tool: the layers by digest.
    let config = serde_json::json!({"steps": [
        {"decision": "sanitize", "plugin": {
            "name": "drop-team", "component": content_digest(&component),
            "settings": {"rules": [{"path": "metadata.labels['team']"}]}}},
        {"decision": "sanitize", "policy": {"name": "named", "file": content_digest(policy)}},
    ]});
    std::fs::write(dir.path().join("config.json"), config.to_string()).unwrap();
    let reference = format!("{}/policies/from-oras:v1", registry.host());
    python(
        dir.path(),
        &format!(
            "import oras.client\n\
             c = oras.client.OrasClient(hostname='{host}', insecure=True)\n\
             c.push(target='{reference}', files=['neat.wasm:{WASM_MEDIA_TYPE}', 'named.yaml:{CEL_MEDIA_TYPE}'],\n\
                    manifest_config='config.json:{CONFIG_MEDIA_TYPE}', quiet=True)\n",
            host = registry.host()
        ),
    );

    // Served: a one-shot mirror with the bundle appended to the defaults.
    let source = tempfile::tempdir().unwrap();
    std::fs::write(
        source.path().join("cm.yaml"),
        "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: cm\n  namespace: a\n  labels: {team: x, app: web}\n",
    )
    .unwrap();
    let repo = source.path().join("out.git");
    let out = Command::new(binary())
        .args(["run", "--once", "--bundle", &reference])
        .args(["--insecure-registry", &registry.host(), "--cache-dir"])
        .arg(Path::new(env!("CARGO_TARGET_TMPDIR")).join("component-cache"))
        .arg("--source-dir")
        .arg(source.path())
        .arg("--repo")
        .arg(&repo)
        .arg("--state-dir")
        .arg(source.path().join("state"))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let file = git(&repo, &["show", "main:a/core/configmaps/cm.yaml"]);
    assert!(
        file.contains("app: web") && !file.contains("team"),
        "the bundle's sanitizer ran:\n{file}"
    );
}

#[test]
fn a_bundle_pushed_by_plumbline_is_pulled_by_oras() {
    let registry = Registry::start();
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("neat.wasm"), guest("neat")).unwrap();
    std::fs::write(
        dir.path().join("bundle.yaml"),
        "steps:\n  - decision: sanitize\n    plugin: neat.wasm\n  - decision: gate\n    cel: {name: named, expression: \"request.name != ''\"}\n",
    )
    .unwrap();
    let reference = format!("{}/policies/to-oras:v1", registry.host());
    let out = Command::new(binary())
        .args(["bundle", "push"])
        .arg(dir.path())
        .arg(&reference)
        .args(["--insecure-registry", &registry.host(), "--cache-dir"])
        .arg(Path::new(env!("CARGO_TARGET_TMPDIR")).join("component-cache"))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    let pulled = tempfile::tempdir().unwrap();
    let listing = python(
        pulled.path(),
        &format!(
            "import oras.client\n\
             c = oras.client.OrasClient(hostname='{host}', insecure=True)\n\
             print(c.get_manifest('{reference}')['config']['mediaType'])\n\
             for f in sorted(c.pull(target='{reference}', outdir='.')): print(f.split('/')[-1])\n",
            host = registry.host()
        ),
    );
    assert_eq!(
        listing.lines().collect::<Vec<_>>(),
        [CONFIG_MEDIA_TYPE, "named.cel.yaml", "neat.wasm"]
    );
    assert_eq!(
        std::fs::read(pulled.path().join("neat.wasm")).unwrap(),
        guest("neat")
    );
    let cel = std::fs::read_to_string(pulled.path().join("named.cel.yaml")).unwrap();
    assert!(cel.contains("request.name != ''"), "{cel}");
}
