//! The execution gate: `POST /gate`, and the admission webhook an API
//! server (the test one, driven by the real `kubectl`) calls before a
//! PipelineRun or Job is created. What fits the catalog runs and is
//! recorded; what does not is denied with every reason.

use crate::apiserver::ApiServer;
use crate::support::{Daemon, http_request, root};
use serde_json::{Value, json};
use std::path::Path;

/// The pinned bundle the workflow registers.
const BUNDLE: &str = "registry.example/wf/restart@sha256:1111111111111111111111111111111111111111111111111111111111111111";
/// The image the Job workflow runs.
const JOB_IMAGE: &str = "registry.example/wf/restart-job@sha256:1111111111111111111111111111111111111111111111111111111111111111";

fn restart(engine: &str) -> String {
    let image = if engine == "job" { JOB_IMAGE } else { BUNDLE };
    format!(
        "metadata: {{workflowId: restart-{engine}, version: '1.0.0', description: {{what: restarts a pod, whenToUse: when it hangs}}}}\n\
         execution: {{engine: {engine}, bundle: '{image}'}}\n\
         parameters:\n\
         - {{name: POD, type: string, required: true, pattern: '^[a-z0-9-]+$', description: the pod}}\n\
         - {{name: GRACE, type: integer, minimum: 0, maximum: 600, default: 30, description: seconds to wait}}\n\
         - {{name: MODE, type: string, enum: [fast, safe], default: safe, description: how}}\n"
    )
}

/// A daemon serving the catalog, with `restart-tekton` and `restart-job`
/// registered.
fn gated(dir: &Path) -> (Daemon, String) {
    std::fs::create_dir_all(dir.join("src")).unwrap();
    let args: Vec<std::ffi::OsString> = vec![
        "--catalog".into(),
        "--source-dir".into(),
        dir.join("src").into(),
        "--repo".into(),
        dir.join("out.git").into(),
        "--state-dir".into(),
        dir.join("state").into(),
    ];
    let args: Vec<&std::ffi::OsStr> = args.iter().map(|a| a.as_os_str()).collect();
    let daemon = Daemon::start(&args);
    let address = daemon.address();
    for engine in ["tekton", "job"] {
        let (status, answer) = post(
            &address,
            "/api/v1/workflows",
            &json!({"schema": restart(engine)}),
        );
        assert_eq!(status, 201, "{answer}");
    }
    (daemon, address)
}

fn post(address: &str, path: &str, body: &Value) -> (u16, Value) {
    let headers = [("Content-Type", "application/json")];
    let (status, _, answer) = http_request(address, "POST", path, &headers, &body.to_string());
    (
        status,
        serde_json::from_str(&answer).unwrap_or_else(|e| panic!("{e}: {answer}")),
    )
}

/// kubernaut's executor's PipelineRun (its documented sketch), running
/// `bundle` with `params`.
fn pipeline_run(bundle: &str, params: &[(&str, &str)]) -> Value {
    let text = std::fs::read_to_string(
        root()
            .join("tests/fixtures/tekton/kubernaut/doc-spike-s11-tekton-executor-pipelinerun.yaml"),
    )
    .unwrap();
    let mut run: Value = serde_saphyr::from_str(&text).unwrap();
    run["metadata"] = json!({"name": "wfe-1", "namespace": "default"});
    run["spec"]["pipelineRef"]["params"][0]["value"] = json!(bundle);
    let mut all = vec![json!({"name": "TARGET_RESOURCE", "value": "default/Pod/web-0"})];
    all.extend(params.iter().map(|(n, v)| json!({"name": n, "value": v})));
    run["spec"]["params"] = json!(all);
    run.as_object_mut().unwrap().remove("status");
    run["spec"].as_object_mut().unwrap().remove("workspaces");
    run
}

/// The `restart-job` Job with `env` (a value, or a `valueFrom`).
fn job_of(env: &[(&str, Value)]) -> Value {
    let env: Vec<Value> = env
        .iter()
        .map(|(name, value)| match value {
            Value::String(text) => json!({"name": name, "value": text}),
            from => json!({"name": name, "valueFrom": from}),
        })
        .collect();
    json!({
        "apiVersion": "batch/v1", "kind": "Job",
        "metadata": {"name": "restart", "annotations": {"plumbline.dev/workflow": "restart-job@1.0.0"}},
        "spec": {"template": {"spec": {"restartPolicy": "Never", "containers": [{
            "name": "workflow", "image": JOB_IMAGE, "env": env}]}}}
    })
}

fn decide(address: &str, object: Value) -> (bool, Vec<String>) {
    let (status, decided) = post(address, "/gate", &json!({"object": object}));
    assert_eq!(status, 200, "{decided}");
    let reasons = decided["reasons"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r.as_str().unwrap().to_owned())
        .collect();
    (decided["allowed"] == true, reasons)
}

fn denied_for(address: &str, object: Value, expected: &[&str]) {
    let (allowed, reasons) = decide(address, object);
    assert!(!allowed, "allowed");
    for want in expected {
        assert!(
            reasons.iter().any(|r| r.contains(want)),
            "{want} in {reasons:?}"
        );
    }
}

#[test]
fn the_gate_allows_what_fits_the_catalog_and_denies_with_every_reason() {
    let dir = tempfile::tempdir().unwrap();
    let (_daemon, address) = gated(dir.path());
    let fits = [("POD", "web-0"), ("GRACE", "60")];
    let (allowed, reasons) = decide(&address, pipeline_run(BUNDLE, &fits));
    assert!(allowed, "{reasons:?}");

    // Missing, mistyped, out of range, outside the enum, off the pattern:
    // all said at once.
    denied_for(
        &address,
        pipeline_run(BUNDLE, &[("GRACE", "soon"), ("MODE", "reckless")]),
        &["/POD: required", "/GRACE", "/MODE"],
    );
    denied_for(
        &address,
        pipeline_run(BUNDLE, &[("POD", "web-0"), ("GRACE", "9000")]),
        &["/GRACE"],
    );
    denied_for(
        &address,
        pipeline_run(BUNDLE, &[("POD", "Web_0")]),
        &["/POD"],
    );
    denied_for(
        &address,
        pipeline_run(BUNDLE, &[("POD", "web-0"), ("EXTRA", "1")]),
        &["/EXTRA"],
    );

    // What runs must be what the catalog holds.
    let moved = BUNDLE.replace("sha256:1111", "sha256:2222");
    denied_for(
        &address,
        pipeline_run(&moved, &fits),
        &["differs from the catalog's"],
    );
    let tagged = "registry.example/wf/restart:1.0.0";
    denied_for(
        &address,
        pipeline_run(tagged, &fits),
        &["not pinned by digest"],
    );
    let stranger = "registry.example/other@sha256:3333333333333333333333333333333333333333333333333333333333333333";
    denied_for(
        &address,
        pipeline_run(stranger, &fits),
        &["register it first", "schemaImage"],
    );
    let mut unknown = pipeline_run(BUNDLE, &fits);
    unknown["metadata"]["annotations"] = json!({"plumbline.dev/workflow": "nothing@1.0.0"});
    denied_for(&address, unknown, &["no version 1.0.0 of workflow nothing"]);
    // Two workflows running one image: the run must say which (the gate
    // picked one before, and judged the run by the other's schema).
    let copy = restart("tekton").replace("restart-tekton", "restart-copy");
    let (status, _) = post(&address, "/api/v1/workflows", &json!({"schema": copy}));
    assert_eq!(status, 201);
    denied_for(
        &address,
        pipeline_run(BUNDLE, &fits),
        &["runs several workflows (restart-copy, restart-tekton)"],
    );
    let mut named = pipeline_run(BUNDLE, &fits);
    named["metadata"]["annotations"] = json!({"plumbline.dev/workflow": "restart-copy@1.0.0"});
    assert!(decide(&address, named).0);
    // A review is answered in its own version; a CREATE without its object
    // is denied, not waved through as "no execution".
    let review = |version: &str, operation: &str, object: Value| {
        json!({"apiVersion": version, "kind": "AdmissionReview", "request": {
            "uid": "u-1", "operation": operation, "object": object,
            "kind": {"group": "batch", "version": "v1", "kind": "Job"}}})
    };
    let (_, old) = post(
        &address,
        "/gate-webhook",
        &review("admission.k8s.io/v1beta1", "UPDATE", json!({})),
    );
    assert_eq!(old["apiVersion"], "admission.k8s.io/v1beta1", "{old}");
    let (_, empty) = post(
        &address,
        "/gate-webhook",
        &review("admission.k8s.io/v1", "CREATE", Value::Null),
    );
    assert_eq!(empty["response"]["allowed"], false, "{empty}");
    // A run that names no image (a git resolver) is denied for that, not
    // with the pinning rule's evaluation error.
    let mut git = pipeline_run(BUNDLE, &fits);
    git["metadata"]["annotations"] = json!({"plumbline.dev/workflow": "restart-copy@1.0.0"});
    git["spec"]["pipelineRef"] = json!({"resolver": "git", "params": []});
    let (allowed, reasons) = decide(&address, git);
    assert!(!allowed);
    assert!(
        reasons
            .iter()
            .any(|r| r.contains("must be pinned by a sha256 digest")),
        "{reasons:?}"
    );
    assert!(
        !reasons.iter().any(|r| r.contains("overload")),
        "{reasons:?}"
    );

    // A deprecated version is denied by the default gate.
    let path = "/api/v1/workflows/restart-tekton/versions/1.0.0/lifecycle";
    let (status, _) = post(
        &address,
        path,
        &json!({"lifecycle": "deprecated", "reason": "use 2.0.0"}),
    );
    assert_eq!(status, 200);
    let mut named = pipeline_run(BUNDLE, &fits);
    named["metadata"]["annotations"] = json!({"plumbline.dev/workflow": "restart-tekton@1.0.0"});
    denied_for(&address, named, &["is deprecated, not active"]);

    // A Job passes its parameters as environment: only declared names
    // count, the platform's own variables are not parameters.
    let job = json!({
        "apiVersion": "batch/v1", "kind": "Job",
        "metadata": {"name": "restart", "annotations": {"plumbline.dev/workflow": "restart-job@1.0.0"}},
        "spec": {"template": {"spec": {"restartPolicy": "Never", "containers": [{
            "name": "workflow", "image": JOB_IMAGE,
            "env": [{"name": "POD", "value": "web-0"}, {"name": "HOME", "value": "/root"},
                    {"name": "TOKEN", "valueFrom": {"secretKeyRef": {"name": "s", "key": "k"}}}]}]}}}
    });
    let (allowed, reasons) = decide(&address, job);
    assert!(allowed, "{reasons:?}");
    // Another image beside it, or a declared parameter the gate cannot
    // read (from a ConfigMap, or set twice: the last one wins), is denied.
    let mut sneaky = job_of(&[
        ("POD", json!("web-0")),
        ("POD", json!({"configMapKeyRef": {"name": "c", "key": "k"}})),
    ]);
    sneaky["spec"]["template"]["spec"]["initContainers"] =
        json!([{"name": "init", "image": "docker.io/attacker/miner:latest"}]);
    denied_for(
        &address,
        sneaky,
        &[
            "also runs docker.io/attacker/miner:latest",
            "/POD: set from a Secret or ConfigMap, or set twice",
        ],
    );

    // What was allowed is recorded: which version, at which digests, for
    // whom; the parameters by their hash only.
    let (status, _, listed) = http_request(&address, "GET", "/api/v1/executions", &[], "");
    assert_eq!(status, 200);
    let listed: Value = serde_json::from_str(&listed).unwrap();
    let listed = listed.as_array().unwrap();
    assert_eq!(listed.len(), 3, "{listed:?}");
    assert_eq!(listed[0]["workflowId"], "restart-job", "newest first");
    assert_eq!(listed[2]["imageDigest"], BUNDLE.split_once('@').unwrap().1);
    assert!(
        listed[2]["parametersHash"]
            .as_str()
            .unwrap()
            .starts_with("sha256:")
    );
    assert!(
        !listed[2].to_string().contains("web-0"),
        "no parameter values"
    );
}

#[test]
fn kubectl_creates_what_the_gate_allows_and_is_refused_what_it_denies() {
    let dir = tempfile::tempdir().unwrap();
    let (daemon, address) = gated(dir.path());
    let api = ApiServer::start();
    let crd = std::fs::read_to_string(
        root().join("tests/fixtures/tekton/kubernaut/tekton-pipelineruns-crd-v0.59.0.yaml"),
    )
    .unwrap();
    let applied = api.apply_as("alice", &crd);
    assert!(
        applied.status.success(),
        "{}",
        String::from_utf8_lossy(&applied.stderr)
    );
    let url = format!("http://{address}/gate-webhook");
    api.enforce_admission_with(
        &url,
        "gate.plumbline.dev",
        &["pipelineruns", "jobs"],
        &["CREATE"],
    );
    let create = |run: &Value| api.with_input_as("bob", &["create", "-f", "-"], &run.to_string());
    let fits = pipeline_run(BUNDLE, &[("POD", "web-0")]);
    let out = create(&fits);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    let mut wrong = pipeline_run(BUNDLE, &[("POD", "Web_0"), ("GRACE", "-1")]);
    wrong["metadata"]["name"] = json!("wfe-2");
    let out = create(&wrong);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        stderr.contains(
            "admission webhook \"gate.plumbline.dev\" denied the request: plumbline gate:"
        ) && stderr.contains("/POD")
            && stderr.contains("/GRACE"),
        "{stderr}"
    );
    let listed = api.kubectl(&["get", "pipelineruns", "-o", "name"]);
    assert_eq!(listed.trim(), "pipelinerun.tekton.dev/wfe-1");
    // A ConfigMap is not the gate's: created as ever.
    api.kubectl(&["create", "configmap", "settings"]);

    let (_, _, executions) = http_request(&address, "GET", "/api/v1/executions", &[], "");
    let executions: Value = serde_json::from_str(&executions).unwrap();
    assert_eq!(executions.as_array().unwrap().len(), 1, "{executions}");
    assert_eq!(executions[0]["requester"], "bob");
    assert_eq!(executions[0]["runner"], "PipelineRun default/wfe-1");
    assert!(!daemon.stderr().contains("ERROR"), "{}", daemon.stderr());
}

#[test]
fn a_job_is_held_to_the_action_contract_its_image_carries() {
    use crate::catalog::{client, image, layer};
    let registry = crate::support::Registry::start();
    let contract = "apiVersion: plumbline.dev/v1alpha1\nkind: ActionContract\n\
        metadata: {workflowId: scale, version: 1.0.0, description: {what: scales a deployment, whenToUse: when asked}}\n\
        execution: {engine: job}\n\
        inputs:\n- {name: REPLICAS, type: integer, required: true, minimum: 1, maximum: 20, description: how many}\n\
        outputs:\n- {name: PREVIOUS, type: integer, description: the count before}\n\
        resources: {limits: {cpu: 500m, memory: 256Mi}}\n\
        securityContext: {runAsNonRoot: true, allowPrivilegeEscalation: false}\n";
    let reference = format!("{}/workflows/scale:1.0.0", registry.host());
    let pushed = client(&registry)
        .push(
            &reference,
            &image(vec![layer(&[(
                "action-contract.yaml",
                contract.as_bytes(),
            )])]),
        )
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(dir.path().join("src")).unwrap();
    let args: Vec<std::ffi::OsString> = vec![
        "--catalog".into(),
        "--insecure-registry".into(),
        registry.host().into(),
        "--source-dir".into(),
        dir.path().join("src").into(),
        "--repo".into(),
        dir.path().join("out.git").into(),
        "--state-dir".into(),
        dir.path().join("state").into(),
    ];
    let args: Vec<&std::ffi::OsStr> = args.iter().map(|a| a.as_os_str()).collect();
    let daemon = Daemon::start(&args);
    let address = daemon.address();
    let (status, answer) = post(
        &address,
        "/api/v1/workflows",
        &json!({"schemaImage": reference}),
    );
    assert_eq!(status, 201, "{answer}");
    assert_eq!(
        answer["record"]["workflow"]["contract"]["resources"]["limits"]["cpu"],
        "500m"
    );
    let job = |limits: Value, security: Value| {
        json!({
            "apiVersion": "batch/v1", "kind": "Job", "metadata": {"name": "scale"},
            "spec": {"template": {"spec": {"securityContext": {"runAsNonRoot": true}, "containers": [{
                "name": "w", "image": format!("{}/workflows/scale@{pushed}", registry.host()),
                "env": [{"name": "REPLICAS", "value": "3"}],
                "resources": {"limits": limits}, "securityContext": security}]}}}
        })
    };
    let within = job(
        json!({"cpu": "250m", "memory": "128Mi"}),
        json!({"allowPrivilegeEscalation": false}),
    );
    let (allowed, reasons) = decide(&address, within);
    assert!(allowed, "{reasons:?}");
    let beyond = job(json!({"cpu": "2"}), json!({"runAsNonRoot": false}));
    let (allowed, reasons) = decide(&address, beyond);
    assert!(!allowed);
    for want in [
        "limit of cpu is 2",
        "sets no limit of memory",
        "runAsNonRoot: true",
        "allowPrivilegeEscalation: false",
    ] {
        assert!(
            reasons.iter().any(|r| r.contains(want)),
            "{want} in {reasons:?}"
        );
    }
}
