//! The default plugins' behaviour, run through wasmtime on real manifests as
//! the API server returns them (with managedFields and status), and what the
//! default match chain leaves out, through the real binary.

use crate::support::{json_of, load, root, runtime};
use plumbline::model::{Event, Operation, Target};
use plumbline::policy::Decision;
use plumbline::policy::bindings::Verdict;
use serde_json::{Value, json};

fn sanitized(plugin: &str, settings: &str, example: &str) -> Value {
    let runtime = runtime();
    let plugin = load(&runtime, plugin, Decision::Sanitize, settings);
    let object = json_of(&root().join("examples/cluster").join(example));
    let out = plugin.sanitize(&object).unwrap().expect("kept");
    serde_json::from_str(&out).unwrap()
}

fn assert_server_state_gone(object: &Value) {
    let meta = &object["metadata"];
    for field in [
        "managedFields",
        "uid",
        "resourceVersion",
        "generation",
        "creationTimestamp",
        "selfLink",
    ] {
        assert!(
            meta.get(field).is_none(),
            "metadata.{field} kept in {object}"
        );
    }
    assert!(object.get("status").is_none(), "status kept in {object}");
}

#[test]
fn neat_cleans_a_deployment_and_keeps_its_spec() {
    let d = sanitized("neat", "{}", "deployment-web.yaml");
    assert_server_state_gone(&d);
    assert_eq!(d["spec"]["replicas"], 0);
    assert_eq!(d["spec"]["paused"], true);
    assert_eq!(
        d["spec"]["template"]["spec"]["containers"][0]["command"],
        json!(["sleep", "3600"])
    );
    let pod = &d["spec"]["template"]["spec"];
    for default in [
        "dnsPolicy",
        "restartPolicy",
        "schedulerName",
        "securityContext",
        "terminationGracePeriodSeconds",
    ] {
        assert!(pod.get(default).is_none(), "{default} kept");
    }
    assert!(
        d["spec"].get("strategy").is_none(),
        "the default strategy is noise"
    );
    assert!(
        d["spec"]["template"]["metadata"]
            .get("creationTimestamp")
            .is_none()
    );
}

#[test]
fn neat_drops_assigned_addresses_of_a_service_and_keeps_its_ports() {
    let s = sanitized("neat", "{}", "service-web.yaml");
    assert_server_state_gone(&s);
    assert!(
        s["metadata"].get("annotations").is_none(),
        "last-applied annotation kept"
    );
    assert_eq!(
        s["spec"],
        json!({"ports": [{"name": "http", "port": 80, "targetPort": 8080}], "selector": {"app": "web"}})
    );
}

#[test]
fn neat_keeps_configmap_data_and_custom_resource_spec() {
    let cm = sanitized("neat", "{}", "configmap-settings.yaml");
    assert_server_state_gone(&cm);
    assert_eq!(cm["data"], json!({"key": "value"}));
    let widget = sanitized("neat", "{}", "widget-w1.yaml");
    assert_server_state_gone(&widget);
    assert_eq!(widget["spec"], json!({"size": "1024"}));
    assert_eq!(widget["apiVersion"], "mutationlab.configbutler.ai/v2");
}

#[test]
fn redact_secrets_never_lets_a_value_through() {
    let raw =
        std::fs::read_to_string(root().join("examples/cluster/secret-registry.yaml")).unwrap();
    let secret_value = raw
        .lines()
        .find(|l| l.contains(".dockerconfigjson:"))
        .unwrap()
        .split(": ")
        .nth(1)
        .unwrap();
    let dropped = sanitized("redact-secrets", "{}", "secret-registry.yaml");
    assert_eq!(dropped["data"][".dockerconfigjson"], "<redacted>");
    let key = r#"{"mode": "digest", "key": "an operator's key of some length"}"#;
    let digested = sanitized("redact-secrets", key, "secret-registry.yaml");
    let digest = digested["data"][".dockerconfigjson"].as_str().unwrap();
    assert!(digest.starts_with("hmac-sha256:"), "{digest}");
    for out in [&dropped, &digested] {
        assert!(
            !out.to_string().contains(secret_value),
            "secret value leaked: {out}"
        );
    }
    let config_map = sanitized("redact-secrets", "{}", "configmap-settings.yaml");
    assert_eq!(config_map["data"], json!({"key": "value"}));
}

/// An event for `resource` in `namespace` (a ConfigMap-like object).
pub fn event(resource: &str, namespace: Option<&str>) -> Event {
    Event {
        operation: Operation::Update,
        target: Target {
            group: String::new(),
            version: "v1".into(),
            kind: "ConfigMap".into(),
            resource: resource.into(),
            subresource: None,
            namespace: namespace.map(str::to_owned),
            name: "a".into(),
        },
        object: r#"{"kind":"ConfigMap"}"#.into(),
        username: Some("alice".into()),
        uid: None,
        resource_version: None,
        watched: false,
    }
}

#[test]
fn rule_match_decides_all_rules_in_one_call() {
    let runtime = runtime();
    let matcher = load(&runtime, "rule-match", Decision::Match, "{}");
    let rules: Vec<String> = [
        json!({"resources": ["configmaps"]}),
        json!({"resources": ["deployments"]}),
        json!({"resources": ["*"], "scope": "Cluster"}),
        json!({"operations": ["UPDATE"], "apiGroups": [""], "resources": ["*"], "namespaces": ["prod"]}),
        json!({"resources": ["deployments/scale"], "apiGroups": ["apps"]}),
    ]
    .iter()
    .map(Value::to_string)
    .collect();
    assert_eq!(
        matcher
            .matches(&event("configmaps", Some("prod")), &rules)
            .unwrap(),
        [0, 3]
    );
    // A scale change of a Deployment, as the audit corpus records it.
    let mut scale = event("deployments", Some("shop"));
    scale.target.group = "apps".into();
    scale.target.subresource = Some("scale".into());
    assert_eq!(matcher.matches(&scale, &rules).unwrap(), [4]);
    let error = matcher
        .matches(&scale, &[r#"{"resources": []}"#.into()])
        .unwrap_err();
    assert!(
        error
            .to_string()
            .contains("rule 0: `resources` must name at least one resource"),
        "{error}"
    );
}

#[test]
fn schema_lint_checks_a_kubernaut_workflow_schema() {
    let runtime = runtime();
    let lint = load(&runtime, "schema-lint", Decision::Schema, "{}");
    // The parameters of kubernaut's audit-test workflow, as a JSON Schema.
    let good = json!({"type": "object", "required": ["NAMESPACE", "POD_NAME"], "properties": {
        "NAMESPACE": {"type": "string", "description": "Target namespace containing the affected pod"},
        "POD_NAME": {"type": "string", "description": "Name of the pod to restart"}}});
    assert!(lint.check(&good.to_string(), "{}").unwrap().is_empty());
    let bad = json!({"type": "object", "required": ["NAMESPACE", "POD"], "properties": {
        "NAMESPACE": {"type": "string"}, "MODE": {"type": "string", "description": "m", "enum": []}}});
    let found = lint.check(&bad.to_string(), "{}").unwrap();
    let paths: Vec<&str> = found.iter().map(|v| v.path.as_str()).collect();
    assert_eq!(
        paths,
        [
            "/properties/MODE/enum",
            "/properties/NAMESPACE/description",
            "/required/1"
        ]
    );
}

#[test]
fn digest_gate_denies_drift_with_every_reason() {
    let runtime = runtime();
    let gate = load(&runtime, "digest-gate", Decision::Gate, "{}");
    let mut request = json!({"image": {"digest": "sha256:aa"},
        "catalog": {"workflowId": "restart-pod", "version": "1.0.0", "digest": "sha256:aa", "lifecycle": "active"},
        "parameters": {"valid": true}});
    assert!(matches!(
        gate.decide(&request.to_string()).unwrap(),
        Verdict::Allow
    ));
    request["image"]["digest"] = json!("sha256:bb");
    request["catalog"]["lifecycle"] = json!("disabled");
    let Verdict::Deny(reasons) = gate.decide(&request.to_string()).unwrap() else {
        panic!("drift allowed")
    };
    assert_eq!(
        reasons,
        [
            "image digest sha256:bb differs from the catalog's sha256:aa for restart-pod@1.0.0",
            "restart-pod@1.0.0 is disabled, not active"
        ]
    );
}

#[test]
fn neat_handles_deep_nesting_within_its_small_stack() {
    // Plugins are linked with a 64 KiB stack (.cargo/config.toml); serde_json
    // stops at 128 levels, so the deepest object it accepts must fit.
    let runtime = runtime();
    let neat = load(&runtime, "neat", Decision::Sanitize, "{}");
    let mut deep = json!("leaf");
    for _ in 0..120 {
        deep = json!({ "nested": deep });
    }
    let object = json!({"apiVersion": "example.com/v1", "kind": "Deep", "metadata": {"name": "d"}, "spec": deep});
    let out: Value =
        serde_json::from_str(&neat.sanitize(&object.to_string()).unwrap().unwrap()).unwrap();
    assert_eq!(out, object);
}

/// The events of the recorded objects under `tests/fixtures/controller-owned/`
/// (a Deployment with its ReplicaSet and Pod, a CronJob with the Job it
/// started, a Job and a ConfigMap people wrote, a Node, a PodMetrics, a
/// Lease), as the directory source makes them, by file name.
fn controller_owned_events() -> Vec<(String, Event)> {
    let dir = crate::support::fixture("controller-owned");
    let mut events: Vec<(String, Event)> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|entry| {
            let path = entry.unwrap().path();
            let object: Value = serde_json::from_str(&json_of(&path)).unwrap();
            let event =
                plumbline::ingest::directory::event_of(&object, Operation::Create, Some("alice"));
            (
                path.file_stem().unwrap().to_string_lossy().into_owned(),
                event,
            )
        })
        .collect();
    // A NodeMetrics as the Kubernetes documentation shows metrics-server's
    // answer (cluster-scoped, so beside the folder's namespaced objects).
    let node_metrics = json!({"kind": "NodeMetrics", "apiVersion": "metrics.k8s.io/v1",
        "metadata": {"name": "minikube"}, "timestamp": "2022-01-27T18:48:33Z", "window": "30s",
        "usage": {"cpu": "487558164n", "memory": "732212Ki"}});
    events.push((
        "nodemetrics-minikube".into(),
        plumbline::ingest::directory::event_of(&node_metrics, Operation::Update, None),
    ));
    events.sort_by(|a, b| a.0.cmp(&b.0));
    events
}

/// What the rule-match component with `settings` selects of those events
/// through the default rule, every kind.
fn mirrored_by_default_rule(settings: &str) -> Vec<String> {
    let runtime = runtime();
    let matcher = load(&runtime, "rule-match", Decision::Match, settings);
    let rules = [json!({"resources": ["*"]}).to_string()];
    controller_owned_events()
        .into_iter()
        .filter(|(_, event)| !matcher.matches(event, &rules).unwrap().is_empty())
        .map(|(name, _)| name)
        .collect()
}

/// ReplicaSets, Nodes and `metrics.k8s.io` objects were mirrored by the
/// default match chain (issue 10).
#[test]
fn replicasets_nodes_and_metrics_are_not_mirrored_by_default() {
    assert_eq!(
        mirrored_by_default_rule("{}"),
        [
            "configmap-child",
            "cronjob-report",
            "deployment-web",
            "job-migrate"
        ]
    );
}

#[test]
fn an_operator_can_mirror_what_controllers_own() {
    assert_eq!(
        mirrored_by_default_rule(r#"{"skip": {"controlled": false}}"#),
        [
            "configmap-child",
            "cronjob-report",
            "deployment-web",
            "job-migrate",
            "job-report-run",
            "replicaset-web"
        ]
    );
    let nothing_skipped = r#"{"skip": {"controlled": false, "resources": [], "apiGroups": []}}"#;
    assert_eq!(
        mirrored_by_default_rule(nothing_skipped).len(),
        controller_owned_events().len()
    );
    let runtime = runtime();
    let Err(error) = crate::support::try_load(
        &runtime,
        "rule-match",
        Decision::Match,
        r#"{"skip": {"kinds": ["Pod"]}}"#,
        Default::default(),
    ) else {
        panic!("bad settings must be refused at load")
    };
    assert!(
        error.to_string().contains("unknown setting `skip.kinds`"),
        "{error}"
    );
}

/// The README's list of noisy kinds was not the one the code used (issue
/// 10): its table must be the plugin's lists, item for item.
#[test]
fn the_readme_lists_the_noisy_kinds_the_code_skips() {
    let readme = std::fs::read_to_string(root().join("README.md")).unwrap();
    let row = |label: &str| -> Vec<String> {
        let line = readme
            .lines()
            .find(|l| l.starts_with(&format!("| {label} |")))
            .unwrap_or_else(|| panic!("README has no `| {label} |` row"));
        line.split('`')
            .skip(1)
            .step_by(2)
            .map(str::to_owned)
            .collect()
    };
    assert_eq!(row("resources"), rule_match::NOISY_RESOURCES);
    assert_eq!(row("API groups"), rule_match::NOISY_GROUPS);
}

/// `plumbline run --once` over the recorded objects: only what people wrote
/// reaches Git, by default and with a policy file that changes the skip.
#[test]
fn the_binary_mirrors_owners_not_what_they_control() {
    let files = |policy: Option<&str>| -> Vec<String> {
        let work = tempfile::tempdir().unwrap();
        let repo = work.path().join("mirror.git");
        let mut command = std::process::Command::new(crate::support::binary());
        command
            .args(["run", "--once", "--retry-for", "20", "--source-dir"])
            .arg(crate::support::fixture("controller-owned"))
            .arg("--repo")
            .arg(&repo)
            .arg("--state-dir")
            .arg(work.path().join("state"))
            .arg("--cache-dir")
            .arg(std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join("component-cache"));
        if let Some(policy) = policy {
            let path = work.path().join("policy.yaml");
            std::fs::write(&path, policy).unwrap();
            command.arg("--policy").arg(path);
        }
        let out = command.output().unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        crate::support::git(&repo, &["ls-tree", "-r", "--name-only", "main"])
            .lines()
            .map(str::to_owned)
            .collect()
    };
    assert_eq!(
        files(None),
        [
            "shop/apps/deployments/web.yaml",
            "shop/batch/cronjobs/nightly-report.yaml",
            "shop/batch/jobs/migrate-schema.yaml",
            "shop/core/configmaps/cm-child.yaml",
        ]
    );
    let pods_too = "decisions:\n  match:\n    steps:\n      - plugin: rule-match\n        settings: { skip: { controlled: false, resources: [] } }\n";
    let all = files(Some(pods_too));
    for expected in [
        "shop/apps/replicasets/web-7c5ddbdf54.yaml",
        "shop/batch/jobs/nightly-report-28637460.yaml",
        "shop/core/pods/web-7c5ddbdf54-x8kq2.yaml",
        "_cluster/core/nodes/kind-worker.yaml",
        "kube-system/coordination.k8s.io/leases/kube-scheduler.yaml",
    ] {
        assert!(
            all.iter().any(|f| f == expected),
            "{expected} not in {all:?}"
        );
    }
    assert!(
        !all.iter().any(|f| f.contains("metrics.k8s.io")),
        "the metrics group is still skipped: {all:?}"
    );
}

/// The default sanitize chain, as the daemon loads it.
fn default_sanitize() -> plumbline::policy::chain::PolicySet {
    plumbline::policy::config::PolicyConfig::builtin()
        .load(&runtime())
        .unwrap()
}

#[test]
fn the_default_chain_redacts_a_secret_however_its_kind_is_spelled() {
    let set = default_sanitize();
    let chain = set.chain(Decision::Sanitize);
    for kind in ["Secret", "secret", " SECRET "] {
        let secret = json!({"apiVersion": "v1", "kind": kind,
            "metadata": {"name": "s", "namespace": "a"}, "data": {"password": "aHVudGVyMg=="}});
        let out = chain.sanitize(&secret.to_string()).unwrap().expect("kept");
        assert!(!out.contains("aHVudGVyMg=="), "{kind}: {out}");
    }
    // A config map goes through neat only: the redaction step is for
    // Secrets, and says so.
    let only = chain.kinds_of(1).expect("redact-secrets is for Secrets");
    assert!(only.admits("Secret") && !only.admits("ConfigMap"));
    let cm = json!({"apiVersion": "v1", "kind": "ConfigMap",
        "metadata": {"name": "c", "namespace": "a", "uid": "u"}, "data": {"k": "v"}});
    let out: Value =
        serde_json::from_str(&chain.sanitize(&cm.to_string()).unwrap().unwrap()).unwrap();
    assert_eq!(out["data"]["k"], "v");
    assert!(out["metadata"].get("uid").is_none(), "neat ran: {out}");
}

const KINDS_CONFIG: &str = r#"
decisions:
  sanitize:
    steps:
      - cel:
          name: no-secrets
          expression: "false"
        kinds: [Secret]
      - cel:
          name: no-team-search
          expression: "!has(object.metadata.labels) || object.metadata.labels.team != 'search'"
"#;

#[test]
fn a_step_with_kinds_sees_only_objects_of_those_kinds() {
    let set = plumbline::policy::config::PolicyConfig::from_yaml(
        KINDS_CONFIG,
        std::path::Path::new("kinds.yaml"),
    )
    .unwrap()
    .load(&runtime())
    .unwrap();
    let chain = set.chain(Decision::Sanitize);
    let object = |kind: &str, team: &str| {
        json!({"apiVersion": "v1", "kind": kind,
            "metadata": {"name": "x", "labels": {"team": team}}})
        .to_string()
    };
    assert_eq!(chain.sanitize(&object("secret", "payments")).unwrap(), None);
    let cm = object("ConfigMap", "payments");
    assert_eq!(chain.sanitize(&cm).unwrap().as_deref(), Some(cm.as_str()));
    // The step without kinds still sees every kind.
    assert_eq!(
        chain.sanitize(&object("ConfigMap", "search")).unwrap(),
        None
    );
}

#[test]
fn kinds_on_a_step_that_sees_no_object_or_naming_nothing_is_refused() {
    let text = r#"
decisions:
  gate:
    steps:
      - cel: {name: g, expression: "true"}
        kinds: [Secret]
  sanitize:
    steps:
      - plugin: neat
        kinds: []
"#;
    let error = plumbline::policy::config::PolicyConfig::from_yaml(text, "k.yaml".as_ref())
        .unwrap()
        .load(&runtime())
        .unwrap_err()
        .to_string();
    assert!(
        error.contains("decisions.gate.steps[0]: `kinds` belongs to match and sanitize steps"),
        "{error}"
    );
    assert!(
        error.contains("decisions.sanitize.steps[0]: `kinds` needs at least one kind"),
        "{error}"
    );
}
