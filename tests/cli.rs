//! The `plumbline` binary, run as an operator or a plugin author would.

use crate::support::{binary, root};
use std::io::Write;
use std::process::{Command, Output, Stdio};

fn plumbline(args: &[&str], cache: &std::path::Path) -> Output {
    Command::new(binary())
        .args(args)
        .arg("--cache-dir")
        .arg(cache)
        .current_dir(root())
        .output()
        .expect("run plumbline")
}

fn stdout(output: &Output) -> String {
    String::from_utf8_lossy(&output.stdout).into_owned()
}

fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

#[test]
fn sanitize_the_examples_through_the_default_chain() {
    let cache = tempfile::tempdir().unwrap();
    let out = plumbline(
        &[
            "sanitize",
            "examples/cluster/deployment-web.yaml",
            "examples/cluster/secret-registry.yaml",
        ],
        cache.path(),
    );
    assert!(out.status.success(), "{}", stderr(&out));
    let text = stdout(&out);
    let documents: Vec<serde_json::Value> = serde_saphyr::from_multiple(&text).unwrap();
    assert_eq!(documents.len(), 2, "{text}");
    for banned in [
        "managedFields",
        "resourceVersion",
        "creationTimestamp",
        "status:",
        "eyJhdXRocyI6",
    ] {
        assert!(!text.contains(banned), "`{banned}` in output:\n{text}");
    }
    assert!(
        text.contains("kind: Deployment") && text.contains(".dockerconfigjson: <redacted>"),
        "{text}"
    );
}

#[test]
fn sanitize_reads_stdin_and_reports_bad_documents_without_losing_the_rest() {
    let cache = tempfile::tempdir().unwrap();
    let mut child = Command::new(binary())
        .args(["sanitize", "-", "--cache-dir"])
        .arg(cache.path())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let input = "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: good, uid: x}\ndata: {a: b}\n---\napiVersion: v1\nkind: ConfigMap\n";
    child
        .stdin
        .take()
        .unwrap()
        .write_all(input.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stdout(&out).contains("name: good") && !stdout(&out).contains("uid"),
        "{}",
        stdout(&out)
    );
    assert!(
        stderr(&out).contains("<stdin>#2: v1 ConfigMap without metadata.name"),
        "{}",
        stderr(&out)
    );
}

#[test]
fn sanitize_names_a_file_that_is_not_yaml() {
    let dir = tempfile::tempdir().unwrap();
    let bad = dir.path().join("broken.yaml");
    std::fs::write(&bad, "kind: [unclosed\n").unwrap();
    let out = plumbline(
        &[
            "sanitize",
            bad.to_str().unwrap(),
            "examples/cluster/configmap-settings.yaml",
        ],
        dir.path(),
    );
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).contains("broken.yaml: not valid YAML or JSON"),
        "{}",
        stderr(&out)
    );
    assert!(
        stdout(&out).contains("name: cm-a"),
        "the good file is still sanitized"
    );
}

#[test]
fn plugin_test_runs_the_neat_fixtures_and_shows_a_diff_on_failure() {
    let cache = tempfile::tempdir().unwrap();
    let neat = format!("{}/neat.wasm", plumbline::policy::builtin::GUESTS_DIR);
    let out = plumbline(
        &[
            "plugin",
            "test",
            &neat,
            "--fixtures",
            "plugins/neat/fixtures",
        ],
        cache.path(),
    );
    assert!(out.status.success(), "{}{}", stdout(&out), stderr(&out));
    assert!(
        stdout(&out).contains("PASS pod") && stdout(&out).contains("PASS service"),
        "{}",
        stdout(&out)
    );

    let fixtures = tempfile::tempdir().unwrap();
    std::fs::write(
        fixtures.path().join("cm.input.yaml"),
        "kind: ConfigMap\nmetadata: {name: a, uid: u}\n",
    )
    .unwrap();
    std::fs::write(
        fixtures.path().join("cm.expected.yaml"),
        "kind: ConfigMap\nmetadata: {name: b}\n",
    )
    .unwrap();
    let out = plumbline(
        &[
            "plugin",
            "test",
            &neat,
            "--fixtures",
            fixtures.path().to_str().unwrap(),
        ],
        cache.path(),
    );
    assert_eq!(out.status.code(), Some(1));
    let text = stdout(&out);
    assert!(
        text.contains("FAIL cm") && text.contains("-  name: b") && text.contains("+  name: a"),
        "{text}"
    );
}

#[test]
fn policy_check_reports_every_error_at_once() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("policy.yaml");
    std::fs::write(
        &config,
        r#"
decisions:
  sanitize:
    failure: closed
    steps:
      - plugin: no-such-plugin
      - cel: { name: broken, expression: "object.kind ==" }
      - plugin: neat
        settings: { rules: [ { when: always } ] }
  gate:
    steps:
      - cel: { name: typo, expression: "requst.image.digest != ''" }
"#,
    )
    .unwrap();
    let out = plumbline(&["policy", "check", config.to_str().unwrap()], dir.path());
    assert_eq!(out.status.code(), Some(1));
    let err = stderr(&out);
    assert!(
        err.contains("4 error(s) in the policy configuration"),
        "{err}"
    );
    assert!(
        err.contains("decisions.sanitize.steps[0]: no built-in plugin `no-such-plugin`"),
        "{err}"
    );
    assert!(err.contains("decisions.sanitize.steps[1]: CEL policy `broken`: expression `object.kind ==` does not compile"), "{err}");
    assert!(err.contains("decisions.sanitize.steps[2]: plugin `neat` (sanitize): settings refused: rules[0]: a rule needs a `path`"), "{err}");
    assert!(err.contains("decisions.gate.steps[0]: CEL policy `typo`: expression `requst.image.digest != ''`: unknown variable `requst`"), "{err}");
}

#[test]
fn policy_check_refuses_unknown_fields_with_their_line() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("policy.yaml");
    std::fs::write(&config, "decisions:\n  sanitize:\n    failur: open\n").unwrap();
    let out = plumbline(&["policy", "check", config.to_str().unwrap()], dir.path());
    assert_eq!(out.status.code(), Some(1));
    let err = stderr(&out);
    assert!(err.contains("failur") && err.contains("line 3"), "{err}");
}

#[test]
fn second_start_loads_every_component_from_the_cache() {
    let cache = tempfile::tempdir().unwrap();
    let config = "policies/examples/team-payments.yaml";
    let first = plumbline(&["policy", "check", config], cache.path());
    assert!(first.status.success(), "{}", stderr(&first));
    assert!(
        stdout(&first).contains("components: 5 compiled, 0 from the disk cache"),
        "{}",
        stdout(&first)
    );
    let second = plumbline(&["policy", "check", config], cache.path());
    assert!(
        stdout(&second).contains("components: 0 compiled, 5 from the disk cache"),
        "{}",
        stdout(&second)
    );
}

/// `plumbline catalog lint`: every kubernaut schema of both eras passes;
/// a broken one gets every violation with its path, the schema-lint
/// plugin's among them, and a failing exit status.
#[test]
fn catalog_lint_passes_kubernauts_schemas_and_names_every_violation() {
    let root = crate::support::root().join("tests/fixtures/kubernaut");
    let mut files: Vec<std::path::PathBuf> = ["oci-era-flat-schemas", "crd-era-schemas"]
        .iter()
        .flat_map(|era| std::fs::read_dir(root.join(era)).unwrap())
        .map(|e| e.unwrap().path())
        .collect();
    files.sort();
    let out = std::process::Command::new(crate::support::binary())
        .args(["catalog", "lint"])
        .args(&files)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "{stderr}{}",
        String::from_utf8_lossy(&out.stdout)
    );
    assert!(
        stderr.contains("69 schema(s) linted, 0 with violations"),
        "{stderr}"
    );

    let dir = tempfile::tempdir().unwrap();
    let bad = dir.path().join("bad.workflow-schema.yaml");
    std::fs::write(
        &bad,
        "metadata: {workflowId: Bad_Id, version: '1', description: {what: x}}\n\
         execution: {engine: job}\n\
         parameters: [{name: COUNT, type: integer, minimum: 9, maximum: 1}]\n",
    )
    .unwrap();
    let out = std::process::Command::new(crate::support::binary())
        .args(["catalog", "lint"])
        .arg(&bad)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(!out.status.success(), "{stdout}");
    for expected in [
        "metadata.workflowId: `Bad_Id`",
        "metadata.version: `1` is not a semantic version",
        "parameters[0].minimum: 9 is above the maximum 1",
        "parameters schema /properties/COUNT/description: parameter `COUNT` has no description",
    ] {
        assert!(stdout.contains(expected), "{expected} not in {stdout}");
    }
}
