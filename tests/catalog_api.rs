//! The catalog as the daemon serves it: the REST API (every error an RFC
//! 7807 problem with a `type` per cause), its OpenAPI document, images
//! read from a real registry, and the MCP tools through the official SDK's
//! own client.

use crate::catalog::{SCHEMA, client, image, layer};
use crate::support::{Daemon, Registry, http_request};
use serde_json::{Value, json};
use std::path::{Path, PathBuf};

/// A daemon serving the catalog (and mirroring an empty folder), with
/// `extra` flags.
pub(crate) fn serve(dir: &Path, extra: &[&str]) -> Daemon {
    std::fs::create_dir_all(dir.join("src")).unwrap();
    let mut args: Vec<std::ffi::OsString> = vec!["--catalog".into()];
    if !extra.contains(&"--kubeconfig") {
        args.extend(["--source-dir".into(), dir.join("src").into()]);
        args.extend(["--repo".into(), dir.join("out.git").into()]);
    }
    args.extend(["--state-dir".into(), dir.join("state").into()]);
    args.extend(extra.iter().map(Into::into));
    let args: Vec<&std::ffi::OsStr> = args.iter().map(|a| a.as_os_str()).collect();
    Daemon::start(&args)
}

/// A JSON request: the status and the body, which must be JSON of the
/// content type that goes with the status (a problem for an error).
pub(crate) fn call(address: &str, method: &str, path: &str, body: Option<Value>) -> (u16, Value) {
    call_with(address, method, path, &[], body)
}

fn call_with(
    address: &str,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: Option<Value>,
) -> (u16, Value) {
    let mut all = vec![("Content-Type", "application/json")];
    all.extend_from_slice(headers);
    let text = body.map(|b| b.to_string()).unwrap_or_default();
    let (status, content_type, answer) = http_request(address, method, path, &all, &text);
    let expected = if status >= 400 {
        "application/problem+json"
    } else {
        "application/json"
    };
    assert_eq!(content_type, expected, "{status}: {answer}");
    let value = serde_json::from_str(&answer).unwrap_or_else(|e| panic!("{e}: {answer}"));
    (status, value)
}

fn register_text(address: &str, text: &str) -> (u16, Value) {
    call(
        address,
        "POST",
        "/api/v1/workflows",
        Some(json!({"schema": text})),
    )
}

pub(crate) fn problem_type(body: &Value) -> &str {
    body["type"]
        .as_str()
        .unwrap_or_default()
        .trim_start_matches("https://plumbline.dev/problems/")
}

fn kubernaut(era: &str) -> Vec<PathBuf> {
    let dir = crate::support::root()
        .join("tests/fixtures/kubernaut")
        .join(era);
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    files.sort();
    files
}

/// Every search result of `query`, page after page.
fn everything(address: &str, query: &str) -> Vec<Value> {
    let mut found = Vec::new();
    let mut cursor = String::new();
    loop {
        let path = format!("/api/v1/workflows?limit=7&{query}{cursor}");
        let (status, page) = call(address, "GET", &path, None);
        assert_eq!(status, 200, "{page}");
        found.extend(page["items"].as_array().unwrap().iter().cloned());
        match page["next"].as_str() {
            Some(next) => cursor = format!("&cursor={next}"),
            None => return found,
        }
    }
}

#[test]
fn every_kubernaut_schema_is_registered_once_and_each_version_stays_as_registered() {
    let dir = tempfile::tempdir().unwrap();
    let daemon = serve(dir.path(), &[]);
    let address = daemon.address();
    // Each is a new version, or the same content again (one workflow in
    // two files), or a version registered already with other content
    // (kubernaut's two eras, and two of its files, give some versions
    // twice): refused, naming both contents, never overwritten.
    let mut created = 0;
    for file in kubernaut("crd-era-schemas")
        .into_iter()
        .chain(kubernaut("oci-era-flat-schemas"))
    {
        let (status, body) = register_text(&address, &std::fs::read_to_string(&file).unwrap());
        match status {
            201 => created += 1,
            200 => assert_eq!(body["outcome"], "unchanged"),
            409 => {
                assert_eq!(problem_type(&body), "conflict", "{body}");
                assert!(body["detail"].as_str().unwrap().contains("other content"));
            }
            // `v1.0.0` in one era, `1.0.0` in the other: one version.
            422 => assert!(
                body.to_string().contains("is registered already as"),
                "{body}"
            ),
            _ => panic!("{}: {status} {body}", file.display()),
        }
    }
    assert!(created > 40, "{created}");
    let listed = everything(&address, "lifecycle=active");
    assert_eq!(listed.len(), created);
    let (status, versions) = call(
        &address,
        "GET",
        "/api/v1/workflows/oomkill-increase-memory-v1",
        None,
    );
    assert_eq!(status, 200, "{versions}");
    assert!(
        versions[0]["registeredBy"]
            .as_str()
            .unwrap()
            .starts_with("api (127.0.0.1")
    );

    // Words and labels narrow a search.
    let restarts = everything(&address, "q=restart&severity=critical");
    assert!(!restarts.is_empty());
    for summary in &restarts {
        let text = format!(
            "{} {} {} {}",
            summary["workflowId"], summary["actionType"], summary["what"], summary["whenToUse"]
        )
        .to_lowercase();
        assert!(text.contains("restart"), "{summary}");
        assert!(
            summary["labels"]["severity"]
                .as_array()
                .unwrap()
                .contains(&json!("critical"))
        );
    }
    let stderr = daemon.stderr();
    assert!(!stderr.contains("ERROR"), "{stderr}");
}

const RESTART: &str = "metadata: {workflowId: restart, version: '1.0.0', description: {what: restarts a pod, whenToUse: when it hangs}}\n\
    labels: {severity: [high]}\nexecution: {engine: job, bundle: 'example.com/restart@sha256:0000000000000000000000000000000000000000000000000000000000000000'}\n\
    parameters:\n- {name: POD, type: string, required: true, pattern: '^[a-z0-9-]+$', description: the pod}\n\
    - {name: GRACE, type: integer, minimum: 0, maximum: 600, default: 30, description: seconds to wait}\n";

#[test]
fn each_refusal_is_a_problem_that_names_its_cause_and_lifecycles_and_validation_work() {
    let dir = tempfile::tempdir().unwrap();
    let daemon = serve(dir.path(), &[]);
    let address = daemon.address();
    assert_eq!(register_text(&address, RESTART).0, 201);
    // One version, one spelling.
    let (status, body) = register_text(&address, &RESTART.replace("'1.0.0'", "'v1.0.0'"));
    assert_eq!((status, problem_type(&body)), (422, "validation"), "{body}");
    assert!(
        body.to_string().contains("registered already as `1.0.0`"),
        "{body}"
    );
    // A web page cannot write to a daemon on the same machine.
    let (status, body) = call_with(
        &address,
        "POST",
        "/api/v1/workflows",
        &[("Origin", "http://evil.example")],
        Some(json!({"schema": RESTART})),
    );
    assert_eq!((status, problem_type(&body)), (403, "forbidden"), "{body}");

    // Every violation at once, each at its path.
    let broken = RESTART
        .replace("'1.0.0'", "'one'")
        .replace("default: 30", "default: lots")
        .replace("[a-z0-9-]+$", "([a-z");
    let (status, body) = register_text(&address, &broken);
    assert_eq!((status, problem_type(&body)), (422, "validation"), "{body}");
    let paths: Vec<&str> = body["violations"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v["path"].as_str().unwrap())
        .collect();
    for path in [
        "metadata.version",
        "parameters[0].pattern",
        "parameters[1].default",
    ] {
        assert!(paths.contains(&path), "{path} in {paths:?}");
    }
    let (status, body) = register_text(&address, "just: [text");
    assert_eq!(
        (status, problem_type(&body)),
        (422, "unreadable-schema"),
        "{body}"
    );
    let (status, body) = call(
        &address,
        "POST",
        "/api/v1/workflows",
        Some(json!({"nothing": 1})),
    );
    assert_eq!(
        (status, problem_type(&body)),
        (400, "bad-request"),
        "{body}"
    );
    let (status, body) = call(
        &address,
        "GET",
        "/api/v1/workflows/restart/versions/9.9.9",
        None,
    );
    assert_eq!((status, problem_type(&body)), (404, "not-found"), "{body}");
    let (status, body) = call(&address, "GET", "/api/v1/workflows?cursor=%21", None);
    assert_eq!(
        (status, problem_type(&body)),
        (400, "bad-request"),
        "{body}"
    );

    // Two new versions at once: both land.
    let threads: Vec<_> = ["2.0.0", "2.1.0"]
        .map(|v| {
            let (address, text) = (address.clone(), RESTART.replace("1.0.0", v));
            std::thread::spawn(move || register_text(&address, &text).0)
        })
        .into_iter()
        .collect();
    for thread in threads {
        assert_eq!(thread.join().unwrap(), 201);
    }
    let (_, versions) = call(&address, "GET", "/api/v1/workflows/restart", None);
    let versions: Vec<&str> = versions
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["workflow"]["version"].as_str().unwrap())
        .collect();
    assert_eq!(versions, ["1.0.0", "2.0.0", "2.1.0"]);

    // Deprecated still runs and is found; disabled is found only when asked.
    let lifecycle = |version: &str, to: &str| {
        let path = format!("/api/v1/workflows/restart/versions/{version}/lifecycle");
        call(
            &address,
            "POST",
            &path,
            Some(json!({"lifecycle": to, "reason": "superseded"})),
        )
    };
    let (status, record) = lifecycle("1.0.0", "deprecated");
    assert_eq!(status, 200, "{record}");
    assert_eq!(record["lastChange"]["reason"], "superseded");
    assert_eq!(everything(&address, "q=restarts").len(), 3);
    assert_eq!(lifecycle("2.0.0", "disabled").0, 200);
    assert_eq!(everything(&address, "q=restarts").len(), 2);
    assert_eq!(
        everything(&address, "q=restarts&lifecycle=disabled").len(),
        1
    );
    let (status, body) = call(
        &address,
        "POST",
        "/api/v1/workflows/restart/versions/2.0.0/lifecycle",
        Some(json!({"lifecycle": "active", "reason": " "})),
    );
    assert_eq!(
        (status, problem_type(&body)),
        (400, "bad-request"),
        "{body}"
    );
    // Archived is final.
    assert_eq!(lifecycle("1.0.0", "archived").0, 200);
    let (status, body) = lifecycle("1.0.0", "active");
    assert_eq!((status, problem_type(&body)), (409, "archived"), "{body}");
    assert!(body["detail"].as_str().unwrap().contains("new version"));
    // Archiving again would rewrite who archived it, when and why.
    let (status, body) = lifecycle("1.0.0", "archived");
    assert_eq!((status, problem_type(&body)), (409, "archived"), "{body}");
    let (_, record) = call(
        &address,
        "GET",
        "/api/v1/workflows/restart/versions/1.0.0",
        None,
    );
    assert_eq!(record["lastChange"]["reason"], "superseded", "{record}");
    // What is no route, or not a route's method, is a problem too.
    for path in ["/api/v1/nothing", "/api/v1", "/api/v1/"] {
        let (status, body) = call(&address, "GET", path, None);
        assert_eq!(
            (status, problem_type(&body)),
            (404, "no-route"),
            "{path}: {body}"
        );
    }
    let (status, body) = call(&address, "DELETE", "/api/v1/workflows", None);
    assert_eq!(
        (status, problem_type(&body)),
        (405, "method-not-allowed"),
        "{body}"
    );

    // A parameter set, validated as the gate will.
    let validate = |parameters: Value| {
        let path = "/api/v1/workflows/restart/versions/2.1.0/validate";
        call(
            &address,
            "POST",
            path,
            Some(json!({"parameters": parameters})),
        )
    };
    let (status, answer) = validate(json!({"POD": "web-0"}));
    assert_eq!((status, &answer["valid"]), (200, &json!(true)), "{answer}");
    // Text is read as the declared type, as the gate reads a run's.
    let (_, answer) = validate(json!({"POD": "web-0", "GRACE": "30"}));
    assert_eq!(answer["valid"], true, "{answer}");
    let (_, answer) = validate(json!({"POD": "Web_0", "GRACE": 9000, "EXTRA": 1}));
    assert_eq!(answer["valid"], false);
    let paths: Vec<&str> = answer["violations"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v["path"].as_str().unwrap())
        .collect();
    for path in ["/POD", "/GRACE", "/EXTRA"] {
        assert!(paths.contains(&path), "{path} in {answer}");
    }

    // The document describes these routes, in OpenAPI 3.1.
    let (status, document) = call(&address, "GET", "/api/v1/openapi.json", None);
    assert_eq!(status, 200);
    assert_eq!(document["openapi"], "3.1.0");
    for path in [
        "/api/v1/workflows",
        "/api/v1/workflows/{id}/versions/{version}/validate",
        "/api/v1/workflows/{id}/versions/{version}/lifecycle",
    ] {
        assert!(document["paths"].get(path).is_some(), "{path}");
    }
    assert!(document["components"]["schemas"].get("Problem").is_some());
}

#[test]
fn an_images_schema_is_registered_from_a_real_registry_and_a_registry_down_changes_nothing() {
    let mut registry = Registry::start();
    let reference = format!("{}/workflows/restart:1.0.0", registry.host());
    let pushed = client(&registry)
        .push(
            &reference,
            &image(vec![layer(&[("workflow-schema.yaml", SCHEMA)])]),
        )
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let daemon = serve(dir.path(), &["--insecure-registry", &registry.host()]);
    let address = daemon.address();
    let register = |image: &str| {
        call(
            &address,
            "POST",
            "/api/v1/workflows",
            Some(json!({"schemaImage": image})),
        )
    };
    let (status, body) = register(&reference);
    assert_eq!(status, 201, "{body}");
    let expected = format!("{}/workflows/restart@{pushed}", registry.host());
    assert_eq!(body["record"]["schemaImage"], expected.as_str());
    let (status, body) = register("not a reference");
    assert_eq!(
        (status, problem_type(&body)),
        (422, "bad-reference"),
        "{body}"
    );
    // A tag that is not there is the reference's fault, not the
    // registry's: not counted as the registry down.
    let (status, body) = register(&format!("{}/workflows/none:1.0.0", registry.host()));
    assert_eq!(
        (status, problem_type(&body)),
        (422, "image-not-found"),
        "{body}"
    );
    let empty = format!("{}/workflows/empty:1.0.0", registry.host());
    client(&registry)
        .push(&empty, &image(vec![layer(&[("app/run.sh", b"true\n")])]))
        .unwrap();
    let (status, body) = register(&empty);
    assert_eq!(
        (status, problem_type(&body)),
        (422, "schema-not-found"),
        "{body}"
    );
    assert!(
        body["detail"]
            .as_str()
            .unwrap()
            .contains("/workflow-schema.yaml")
    );
    // `catalog lint` reads images as registration does, before anything
    // is registered.
    let host = registry.host();
    let (ok, out, err) = plumbline(&["catalog", "lint", "--insecure-registry", &host, &reference]);
    assert!(ok, "{out}{err}");
    assert!(err.contains("the schema is /workflow-schema.yaml"), "{err}");
    assert!(out.ends_with(": ok\n"), "{out}");
    let (ok, out, _) = plumbline(&["catalog", "lint", "--insecure-registry", &host, &empty]);
    assert!(
        !ok && out.contains("holds none of /workflow-schema.yaml"),
        "{out}"
    );

    registry.stop();
    let (status, body) = register(&reference.replace("1.0.0", "1.0.1"));
    assert_eq!(
        (status, problem_type(&body)),
        (502, "registry-unreachable"),
        "{body}"
    );
    assert!(
        body["detail"].as_str().unwrap().contains("restart:1.0.1"),
        "{body}"
    );
    assert_eq!(everything(&address, "").len(), 1, "the catalog unchanged");
    // A registry that is down shows in the metrics, by cause; /readyz
    // stays ready, since the reads and the gate serve on without it.
    let failures = |cause: &str| {
        let name = format!("plumbline_catalog_registration_failures_total{{cause=\"{cause}\"}}");
        metric(&address, &name)
    };
    assert_eq!(failures("registry-unreachable"), Some(1.0));
    assert_eq!(failures("image-not-found"), Some(1.0));
    assert_eq!(failures("schema-not-found"), Some(1.0));
    assert_eq!(failures("busy"), Some(0.0));
    assert_eq!(crate::support::http_get(&address, "/readyz").0, 200);
}

/// The read timeout is the client's time to send its request, not the
/// handler's to do its work: a registration from a registry slower than
/// the timeout gets its own answer, not a 408 while it goes on.
#[test]
fn a_registration_slower_than_the_read_timeout_gets_its_answer_not_a_408() {
    use std::io::{Read as _, Write as _};
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let host = listener.local_addr().unwrap().to_string();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { return };
            std::thread::spawn(move || {
                let mut request = [0u8; 4096];
                let _ = stream.read(&mut request);
                std::thread::sleep(std::time::Duration::from_millis(2500));
                let _ = stream.write_all(
                    b"HTTP/1.1 503 Service Unavailable\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
                );
            });
        }
    });
    let dir = tempfile::tempdir().unwrap();
    let daemon = serve(
        dir.path(),
        &["--insecure-registry", &host, "--http-read-timeout", "1"],
    );
    let (status, body) = call(
        &daemon.address(),
        "POST",
        "/api/v1/workflows",
        Some(json!({"schemaImage": format!("{host}/workflows/slow:1.0.0")})),
    );
    assert_eq!(
        (status, problem_type(&body)),
        (502, "registry-unreachable"),
        "{body}"
    );
    assert!(
        body["detail"].as_str().unwrap().contains("slow:1.0.0"),
        "{body}"
    );
}

#[test]
fn writes_need_the_token_when_one_is_set_and_reads_do_not() {
    let dir = tempfile::tempdir().unwrap();
    let token = dir.path().join("token");
    std::fs::write(&token, "s3cret-token\n").unwrap();
    let daemon = serve(
        dir.path(),
        &["--catalog-token-file", token.to_str().unwrap()],
    );
    let address = daemon.address();
    let body = Some(json!({"schema": RESTART}));
    let (status, problem) = call(&address, "POST", "/api/v1/workflows", body.clone());
    assert_eq!(
        (status, problem_type(&problem)),
        (401, "unauthorized"),
        "{problem}"
    );
    let wrong = [("Authorization", "Bearer s3cret-tokem")];
    assert_eq!(
        call_with(&address, "POST", "/api/v1/workflows", &wrong, body.clone()).0,
        401
    );
    let right = [("Authorization", "Bearer s3cret-token")];
    let (status, created) = call_with(&address, "POST", "/api/v1/workflows", &right, body);
    assert_eq!(status, 201, "{created}");
    assert_eq!(created["record"]["registeredBy"], "api (bearer token)");
    assert_eq!(everything(&address, "").len(), 1);
    assert!(
        !daemon.stderr().contains("s3cret"),
        "the token is never printed"
    );
}

#[test]
fn an_agent_finds_and_reads_workflows_through_the_mcp_sdks_own_client() {
    use rmcp::ServiceExt as _;
    use rmcp::model::CallToolRequestParams;
    use rmcp::transport::StreamableHttpClientTransport;
    let dir = tempfile::tempdir().unwrap();
    let daemon = serve(dir.path(), &[]);
    let address = daemon.address();
    assert_eq!(register_text(&address, RESTART).0, 201);
    assert_eq!(
        register_text(&address, &RESTART.replace("1.0.0", "1.1.0")).0,
        201
    );
    // The SDK's client is reqwest's without a provider of its own: it
    // used the one some other test had installed, and failed alone.
    let _ = rustls::crypto::ring::default_provider().install_default();
    let runtime = tokio::runtime::Runtime::new().unwrap();
    runtime.block_on(async {
        let url = format!("http://{address}/mcp");
        let client = ().serve(StreamableHttpClientTransport::from_uri(url)).await.unwrap();
        let tools = client.list_all_tools().await.unwrap();
        let mut names: Vec<&str> = tools.iter().map(|t| t.name.as_ref()).collect();
        names.sort();
        assert_eq!(names, ["get_workflow", "search_workflows"]);
        let call = |name: &'static str, arguments: Value| {
            let arguments = arguments.as_object().unwrap().clone();
            client.call_tool(CallToolRequestParams::new(name).with_arguments(arguments))
        };
        let found = call(
            "search_workflows",
            json!({"query": "restarts", "severity": "high"}),
        )
        .await
        .unwrap();
        let items = &found.structured_content.unwrap()["items"];
        assert_eq!(items.as_array().unwrap().len(), 2, "{items}");
        // Without a version: the newest that may run, with the schema its
        // parameters must fit, as the catalog validates them.
        let got = call("get_workflow", json!({"workflowId": "restart"}))
            .await
            .unwrap();
        let view = got.structured_content.unwrap();
        assert_eq!(view["workflow"]["version"], "1.1.0");
        let schema = &view["parametersSchema"];
        assert_eq!(schema["required"], json!(["POD"]), "{schema}");
        assert_eq!(schema["properties"]["GRACE"]["maximum"], json!(600));
        let missing = call("get_workflow", json!({"workflowId": "nothing"})).await;
        assert!(format!("{missing:?}").contains("nothing"), "{missing:?}");
        client.cancel().await.unwrap();
    });
    // A page elsewhere that rebinds its name to this address is not
    // answered.
    let rebound = [
        ("Host", "attacker.example"),
        ("Accept", "application/json, text/event-stream"),
    ];
    let init = r#"{"jsonrpc":"2.0","id":1,"method":"initialize","params":{"protocolVersion":"2025-06-18","capabilities":{},"clientInfo":{"name":"t","version":"1"}}}"#;
    let mut headers = vec![("Content-Type", "application/json")];
    headers.extend(rebound);
    let (status, _, _) = http_request(&address, "POST", "/mcp", &headers, init);
    assert_eq!(status, 403);
    // What is no JSON, or no JSON-RPC message, is a 400 with the JSON-RPC
    // error the protocol names, not a 415 that blames the content type.
    let headers = [
        ("Content-Type", "application/json"),
        ("Accept", "application/json, text/event-stream"),
    ];
    for (body, code) in [("{", -32700), ("[1]", -32600)] {
        let (status, _, answer) = http_request(&address, "POST", "/mcp", &headers, body);
        let answer: Value = serde_json::from_str(&answer).unwrap();
        assert_eq!(
            (status, &answer["error"]["code"]),
            (400, &json!(code)),
            "{answer}"
        );
    }
}

/// The value of the series `name` (with its labels) in `/metrics`.
fn metric(address: &str, name: &str) -> Option<f64> {
    let (_, text) = crate::support::http_get(address, "/metrics");
    text.lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.trim().parse().ok())
}

#[test]
fn a_push_to_a_watched_repository_is_registered_with_no_api_call() {
    let port = Registry::free_port();
    let host = format!("127.0.0.1:{port}");
    let dir = tempfile::tempdir().unwrap();
    let watch = format!("{host}/workflows/*");
    let daemon = serve(
        dir.path(),
        &[
            "--insecure-registry",
            &host,
            "--catalog-watch",
            &watch,
            "--catalog-resync",
            "3600",
        ],
    );
    let address = daemon.address();
    let registry = Registry::start_notifying(port, &format!("http://{address}/registry-webhook"));
    let layers = vec![layer(&[("workflow-schema.yaml", SCHEMA)])];
    client(&registry)
        .push(&format!("{host}/workflows/restart:1.0.0"), &image(layers))
        .unwrap();
    // Not watched: not registered.
    let other = schema_for("other-pod");
    client(&registry)
        .push(
            &format!("{host}/elsewhere/other:1.0.0"),
            &image(vec![layer(&[("workflow-schema.yaml", other.as_bytes())])]),
        )
        .unwrap();
    let record = crate::support::wait_for("the pushed version registered", || {
        let (status, record) = call(
            &address,
            "GET",
            "/api/v1/workflows/restart-pod/versions/1.0.0",
            None,
        );
        (status == 200).then_some(record)
    });
    assert_eq!(
        record["schemaReference"],
        format!("{host}/workflows/restart:1.0.0")
    );
    assert_eq!(record["registeredBy"], "notification");
    let source = "plumbline_catalog_registered_total{source=\"notification\"}";
    assert_eq!(metric(&address, source), Some(1.0));
    assert_eq!(
        metric(&address, "plumbline_catalog_extraction_seconds_count"),
        Some(1.0)
    );
    let (status, _) = call(&address, "GET", "/api/v1/workflows/other-pod", None);
    assert_eq!(
        status, 404,
        "an unwatched repository's push is not registered"
    );
}

/// A schema like [`SCHEMA`] for the workflow `id`.
pub(crate) fn schema_for(id: &str) -> String {
    String::from_utf8_lossy(SCHEMA).replace("restart-pod", id)
}

#[test]
fn a_moved_tag_is_drift_never_adopted_and_the_gate_denies_the_version_until_a_new_one() {
    let mut registry = Registry::start();
    let host = registry.host();
    let dir = tempfile::tempdir().unwrap();
    let watch = format!("{host}/fixed/scale");
    let daemon = serve(
        dir.path(),
        &[
            "--insecure-registry",
            &host,
            "--catalog-watch",
            &watch,
            "--catalog-resync",
            "1",
        ],
    );
    let address = daemon.address();
    let tag = format!("{host}/workflows/restart:1.0.0");
    let first = client(&registry)
        .push(
            &tag,
            &image(vec![layer(&[("workflow-schema.yaml", SCHEMA)])]),
        )
        .unwrap();
    let (status, body) = call(
        &address,
        "POST",
        "/api/v1/workflows",
        Some(json!({"schemaImage": tag})),
    );
    assert_eq!(status, 201, "{body}");
    let job = |digest: &str| {
        json!({"object": {
            "apiVersion": "batch/v1", "kind": "Job",
            "metadata": {"name": "r", "annotations": {"plumbline.dev/workflow": "restart-pod@1.0.0"}},
            "spec": {"template": {"spec": {"containers": [{"name": "w",
                "image": format!("{host}/workflows/restart@{digest}")}]}}}}})
    };
    let (_, decided) = call(&address, "POST", "/gate", Some(job(&first)));
    assert_eq!(decided["allowed"], true, "{decided}");

    // The tag is pushed again with other content: drift, not adopted.
    let moved = client(&registry)
        .push(
            &tag,
            &image(vec![layer(&[
                ("workflow-schema.yaml", SCHEMA),
                ("app/new", b"1"),
            ])]),
        )
        .unwrap();
    let record = crate::support::wait_for("the drift", || {
        let (_, record) = call(
            &address,
            "GET",
            "/api/v1/workflows/restart-pod/versions/1.0.0",
            None,
        );
        (!record["drift"].is_null()).then_some(record)
    });
    assert_eq!(record["drift"]["registered"], first.as_str());
    assert_eq!(record["drift"]["now"], moved.as_str());
    assert_eq!(
        record["schemaImage"],
        format!("{host}/workflows/restart@{first}"),
        "not adopted"
    );
    assert_eq!(metric(&address, "plumbline_catalog_drift_total"), Some(1.0));
    let (_, decided) = call(&address, "POST", "/gate", Some(job(&first)));
    assert_eq!(decided["allowed"], false);
    assert!(
        decided["reasons"][0]
            .as_str()
            .unwrap()
            .contains("register the new content as a new version"),
        "{decided}"
    );
    // The tag's new content registered as a new version ends the drift:
    // the old version, pinned at its own digest, runs again.
    let next = schema_for("restart-pod").replace("1.0.0", "1.0.1");
    client(&registry)
        .push(
            &tag,
            &image(vec![layer(&[("workflow-schema.yaml", next.as_bytes())])]),
        )
        .unwrap();
    let (status, body) = call(
        &address,
        "POST",
        "/api/v1/workflows",
        Some(json!({"schemaImage": tag})),
    );
    assert_eq!(status, 201, "{body}");
    let (_, record) = call(
        &address,
        "GET",
        "/api/v1/workflows/restart-pod/versions/1.0.0",
        None,
    );
    assert!(record["drift"].is_null(), "{record}");
    let (_, decided) = call(&address, "POST", "/gate", Some(job(&first)));
    assert_eq!(decided["allowed"], true, "{decided}");

    // A tag of a watched repository no notification told of is found.
    client(&registry)
        .push(
            &format!("{host}/fixed/scale:2.0.0"),
            &image(vec![layer(&[(
                "workflow-schema.yaml",
                schema_for("scale").replace("1.0.0", "2.0.0").as_bytes(),
            )])]),
        )
        .unwrap();
    crate::support::wait_for("the missed tag registered", || {
        let (status, _) = call(
            &address,
            "GET",
            "/api/v1/workflows/scale/versions/2.0.0",
            None,
        );
        (status == 200).then_some(())
    });
    let source = "plumbline_catalog_registered_total{source=\"reconciler\"}";
    assert_eq!(metric(&address, source), Some(1.0));

    // The registry down is not drift: what was found stays as it was.
    let drifts = metric(&address, "plumbline_catalog_drift_total");
    assert!(drifts >= Some(1.0), "{drifts:?}");
    registry.stop();
    std::thread::sleep(std::time::Duration::from_millis(2500));
    assert_eq!(metric(&address, "plumbline_catalog_drift_total"), drifts);
    let (_, scale) = call(
        &address,
        "GET",
        "/api/v1/workflows/scale/versions/2.0.0",
        None,
    );
    assert!(scale["drift"].is_null(), "{scale}");
}

/// `plumbline ARGS`: status, standard output and standard error.
fn plumbline(args: &[&str]) -> (bool, String, String) {
    let out = std::process::Command::new(crate::support::binary())
        .args(args)
        .output()
        .unwrap();
    let text = |b: &[u8]| String::from_utf8_lossy(b).into_owned();
    (out.status.success(), text(&out.stdout), text(&out.stderr))
}

#[test]
fn the_cli_registers_lists_changes_and_checks_on_a_store_on_disk_and_through_a_daemon() {
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("state");
    let state = state.to_str().unwrap();
    let schema = dir.path().join("restart.yaml");
    std::fs::write(&schema, RESTART).unwrap();
    let broken = dir.path().join("broken.yaml");
    std::fs::write(&broken, RESTART.replace("'1.0.0'", "'one'")).unwrap();
    let schema = schema.to_str().unwrap();
    let (ok, out, err) = plumbline(&["catalog", "register", "--state-dir", state, schema]);
    assert!(ok, "{err}");
    assert!(out.contains("created restart 1.0.0 (sha256:"), "{out}");
    let (ok, out, _) = plumbline(&["catalog", "register", "--state-dir", state, schema]);
    assert!(ok && out.contains("unchanged restart 1.0.0"), "{out}");
    let (ok, _, err) = plumbline(&[
        "catalog",
        "register",
        "--state-dir",
        state,
        broken.to_str().unwrap(),
    ]);
    assert!(!ok);
    assert!(
        err.contains("The schema breaks rules") && err.contains("  metadata.version: "),
        "{err}"
    );
    let (ok, out, _) = plumbline(&["catalog", "list", "--state-dir", state, "-q", "restarts"]);
    assert!(
        ok && out.starts_with("restart\t1.0.0\tactive\trestarts a pod"),
        "{out}"
    );
    // A mistyped file name is said missing (it was looked up on Docker
    // Hub as an image), a folder is said to be one.
    let missing = dir.path().join("restrat.yaml");
    let (ok, out, _) = plumbline(&["catalog", "lint", missing.to_str().unwrap()]);
    assert!(!ok && out.ends_with(": no such file\n"), "{out}");
    let (ok, _, err) = plumbline(&["catalog", "register", "--state-dir", state, "./nope.json"]);
    assert!(!ok && err.contains("./nope.json: no such file"), "{err}");
    let (ok, out, _) = plumbline(&["catalog", "lint", dir.path().to_str().unwrap()]);
    assert!(!ok && out.contains("a folder, not a file"), "{out}");
    // A shell that names a daemon in PLUMBLINE_API can still use a store
    // on disk (the variable was taken as --api, which --state-dir refuses).
    let out = std::process::Command::new(crate::support::binary())
        .args(["catalog", "list", "--state-dir", state])
        .env("PLUMBLINE_API", "http://127.0.0.1:1")
        .output()
        .unwrap();
    let listed = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success() && listed.starts_with("restart\t1.0.0"),
        "{listed}"
    );

    // The gate, on a manifest an operator would apply.
    let run = dir.path().join("run.yaml");
    let job = |pod: &str| {
        format!(
            "apiVersion: v1\nkind: ConfigMap\nmetadata: {{name: passed-by}}\n---\n\
             apiVersion: batch/v1\nkind: Job\nmetadata:\n  name: restart\n  annotations: {{plumbline.dev/workflow: restart@1.0.0}}\n\
             spec:\n  template:\n    spec:\n      containers:\n      - name: w\n        image: 'example.com/restart@sha256:{}'\n        env: [{{name: POD, value: '{pod}'}}]\n",
            "0".repeat(64)
        )
    };
    std::fs::write(&run, job("web-0")).unwrap();
    let run = run.to_str().unwrap();
    let (ok, out, err) = plumbline(&["gate", "check", "--state-dir", state, run]);
    assert!(ok, "{out}{err}");
    assert!(
        out.contains("Job restart: allowed") && !out.contains("passed-by"),
        "{out}"
    );
    std::fs::write(run, job("Web_0")).unwrap();
    let (ok, out, _) = plumbline(&["gate", "check", "--state-dir", state, run]);
    assert!(
        !ok && out.contains("Job restart: denied\n  invalid parameter: /POD"),
        "{out}"
    );
    let (ok, out, _) = plumbline(&[
        "catalog",
        "disable",
        "--state-dir",
        state,
        "restart",
        "1.0.0",
        "--reason",
        "broken",
    ]);
    assert!(ok && out.contains("restart 1.0.0: disabled"), "{out}");
    let (_, out, _) = plumbline(&["catalog", "show", "--state-dir", state, "restart", "1.0.0"]);
    let shown: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(shown["lastChange"]["reason"], "broken");

    // The same through a daemon's API; one that is not there is said.
    let daemon = serve(&dir.path().join("daemon"), &[]);
    let api = format!("http://{}", daemon.address());
    let (ok, out, err) = plumbline(&["catalog", "register", "--api", &api, schema]);
    assert!(ok && out.contains("created restart 1.0.0"), "{out}{err}");
    let (ok, out, _) = plumbline(&["catalog", "list", "--api", &api]);
    assert!(ok && out.contains("restart\t1.0.0"), "{out}");
    let (ok, out, _) = plumbline(&["gate", "check", "--api", &api, run]);
    assert!(!ok && out.contains("/POD"), "{out}");
    // An id or version is one path segment, whatever it holds.
    let (ok, out, err) = plumbline(&["catalog", "show", "--api", &api, "restart?x=1"]);
    assert!(
        !ok && err.contains("No such workflow version"),
        "{ok} {out} {err}"
    );
    let (ok, _, err) = plumbline(&[
        "catalog",
        "deprecate",
        "--api",
        &api,
        "restart",
        "../../../../registry-webhook?",
        "--reason",
        "x",
    ]);
    assert!(!ok && err.contains("No such workflow version"), "{err}");
    let (ok, _, err) = plumbline(&["catalog", "list", "--api", "http://127.0.0.1:1"]);
    assert!(!ok && err.contains("cannot be reached"), "{err}");
}

/// A test API server with Plumbline's CRDs and kubernaut's
/// RemediationWorkflow one.
fn kubernaut_cluster() -> crate::apiserver::ApiServer {
    let api = crate::apiserver::ApiServer::start();
    crate::cluster::install_crds(&api);
    let crd = std::fs::read_to_string(
        crate::support::root()
            .join("tests/fixtures/kubernaut/api/kubernaut.ai_remediationworkflows.crd.yaml"),
    )
    .unwrap();
    assert!(api.apply_as("alice", &crd).status.success());
    api
}

#[test]
fn remediation_workflows_applied_with_kubectl_are_registered_and_their_status_written() {
    let api = kubernaut_cluster();
    let hello = std::fs::read_to_string(
        crate::support::root()
            .join("tests/fixtures/kubernaut/crd-era-schemas/hello-world.workflow-schema.yaml"),
    )
    .unwrap();
    let applied = api.apply_as("alice", &hello);
    assert!(
        applied.status.success(),
        "{}",
        String::from_utf8_lossy(&applied.stderr)
    );
    let invalid = hello
        .replace("test-hello-world", "broken")
        .replace("\"1.0.0\"", "\"one\"");
    assert!(api.apply_as("alice", &invalid).status.success());

    let dir = tempfile::tempdir().unwrap();
    let kubeconfig = api.kubeconfig();
    let daemon = serve(dir.path(), &["--kubeconfig", kubeconfig.to_str().unwrap()]);
    let address = daemon.address();
    let status = |name: &str| -> Value {
        let text = api.kubectl(&["get", "remediationworkflow", name, "-o", "json"]);
        serde_json::from_str::<Value>(&text).unwrap()["status"].clone()
    };
    let registered = crate::support::wait_for("the resource registered", || {
        let status = status("test-hello-world");
        (status["catalogStatus"] == "Active").then_some(status)
    });
    assert_eq!(registered["workflowId"], "test-hello-world");
    assert!(
        registered["contentHash"]
            .as_str()
            .unwrap()
            .starts_with("sha256:")
    );
    assert_eq!(
        registered["registeredBy"],
        "RemediationWorkflow default/test-hello-world"
    );
    assert_eq!(registered["conditions"][0]["reason"], "Registered");
    let (code, record) = call(
        &address,
        "GET",
        "/api/v1/workflows/test-hello-world/versions/1.0.0",
        None,
    );
    assert_eq!(code, 200, "{record}");
    assert_eq!(record["contentHash"], registered["contentHash"]);
    let broken = crate::support::wait_for("the invalid one said", || {
        let status = status("broken");
        (status["catalogStatus"] == "Invalid").then_some(status)
    });
    assert_eq!(broken["conditions"][0]["reason"], "InvalidSchema");
    assert!(
        broken["conditions"][0]["message"]
            .as_str()
            .unwrap()
            .contains("metadata.version"),
        "{broken}"
    );

    // A lifecycle change through the API shows on the resource.
    let path = "/api/v1/workflows/test-hello-world/versions/1.0.0/lifecycle";
    let (code, _) = call(
        &address,
        "POST",
        path,
        Some(json!({"lifecycle": "deprecated", "reason": "old"})),
    );
    assert_eq!(code, 200);
    crate::support::wait_for("the lifecycle on the resource", || {
        (status("test-hello-world")["catalogStatus"] == "Deprecated").then_some(())
    });

    // With the webhook: the same version with other content is refused,
    // and so is what registration would refuse.
    let url = format!("http://{address}/remediationworkflow-webhook");
    api.enforce_admission_with(
        &url,
        "rw.plumbline.dev",
        &["remediationworkflows"],
        &["CREATE", "UPDATE"],
    );
    let changed = hello.replace("Simple hello-world workflow", "Another workflow");
    let out = api.apply_as("alice", &changed);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        stderr.contains("denied the request: version 1.0.0 is kept but its content changes"),
        "{stderr}"
    );
    let bumped = changed.replace("\"1.0.0\"", "\"1.1.0\"");
    let out = api.apply_as("alice", &bumped);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let out = api.apply_as(
        "alice",
        &invalid.replace("name: broken", "name: broken-two"),
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success() && stderr.contains("metadata.version"),
        "{stderr}"
    );
}

/// What the catalog answers by design that schemathesis would otherwise
/// call a failure: a 422 for a request that reads but cannot be acted on
/// (a schema that breaks rules, a cursor no page gave), a 502 when the
/// registry an image names cannot be reached.
const SCHEMATHESIS: &str = r#"
[checks.positive_data_acceptance]
expected-statuses = ["2xx", "401", "403", "404", "409", "422", "502"]

[[operations]]
include-name = "POST /api/v1/workflows"
checks.not_a_server_error.expected-statuses = ["2xx", "4xx", "502"]
"#;

/// With `--webhook-client-ca`, every webhook the API server calls takes
/// only the certificate the CA signed: the gate's and the
/// RemediationWorkflow one would otherwise record and refuse on the word
/// of anyone who can reach the port. The probes and the catalog's API ask
/// for none.
#[test]
fn with_a_webhook_client_ca_every_webhook_takes_only_the_api_servers_certificate() {
    let api = kubernaut_cluster();
    let dir = tempfile::tempdir().unwrap();
    let certs = crate::cluster::certificates(dir.path());
    let file = |name: &str| certs.join(name).to_string_lossy().into_owned();
    let kubeconfig = api.kubeconfig();
    let daemon = serve(
        dir.path(),
        &[
            "--kubeconfig",
            kubeconfig.to_str().unwrap(),
            "--admission-webhook",
            "--tls-cert",
            &file("server.pem"),
            "--tls-key",
            &file("server.key"),
            "--webhook-client-ca",
            &file("ca.pem"),
        ],
    );
    let review = |object: Value| {
        json!({"kind": "AdmissionReview", "apiVersion": "admission.k8s.io/v1",
            "request": {"uid": "u-1", "operation": "CREATE", "name": "a",
                "resource": {"resource": "configmaps"}, "userInfo": {"username": "x"},
                "object": object}})
        .to_string()
    };
    let job = json!({"apiVersion": "batch/v1", "kind": "Job", "metadata": {"name": "j"},
        "spec": {"template": {"spec": {"containers": [{"name": "w", "image": "example.com/none:1"}]}}}});
    let webhooks = [
        (
            "POST",
            "/process-validating-webhook",
            review(json!({"metadata": {"name": "a"}})),
        ),
        ("POST", "/gate-webhook", review(job)),
        (
            "POST",
            "/remediationworkflow-webhook",
            review(json!({"metadata": {"name": "a"}})),
        ),
    ];
    let webhooks: Vec<(&str, &str, &str)> = webhooks
        .iter()
        .map(|(m, p, b)| (*m, *p, b.as_str()))
        .collect();
    let open = [("GET", "/healthz", ""), ("GET", "/api/v1/workflows", "")];
    let address = daemon.address();
    for answer in crate::cluster::https(&certs, &address, None, &open) {
        assert!(answer.starts_with("200"), "{answer}");
    }
    let answers = crate::cluster::https(&certs, &address, None, &webhooks);
    for ((_, path, _), answer) in webhooks.iter().zip(&answers) {
        assert!(
            answer.starts_with(&format!(
                "401 {path} takes requests with a client certificate the configured CA signed"
            )),
            "{answers:?}"
        );
    }
    // The certificate is asked for before anything else of the route.
    let probe = crate::cluster::https(&certs, &address, None, &[("GET", "/gate-webhook", "")]);
    assert!(probe[0].starts_with("401"), "{probe:?}");
    // Another CA's certificate: the webhooks refuse it, the rest answer.
    let answers = crate::cluster::https(&certs, &address, Some("rogue"), &webhooks);
    assert!(answers.iter().all(|a| a.starts_with("401")), "{answers:?}");
    for answer in crate::cluster::https(&certs, &address, Some("rogue"), &open) {
        assert!(answer.starts_with("200"), "{answer}");
    }
    let answers = crate::cluster::https(&certs, &address, Some("client"), &webhooks);
    for answer in &answers {
        assert!(
            answer.starts_with(r#"200 {"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview","response":{"allowed":"#),
            "{answers:?}"
        );
    }
    assert!(answers[1].contains(r#""allowed":false"#), "{answers:?}");
}

#[test]
fn the_rest_api_answers_as_its_own_openapi_document_says() {
    let dir = tempfile::tempdir().unwrap();
    let daemon = serve(dir.path(), &[]);
    let address = daemon.address();
    assert_eq!(register_text(&address, RESTART).0, 201);
    let config = dir.path().join("schemathesis.toml");
    std::fs::write(&config, SCHEMATHESIS).unwrap();
    let st = crate::support::root().join("target/test-tools/bin/st");
    let out = std::process::Command::new(&st)
        .arg("--config-file")
        .arg(&config)
        .args(["run", &format!("http://{address}/api/v1/openapi.json")])
        .args(["--checks", "all", "--max-examples", "30", "--seed", "7"])
        .current_dir(dir.path())
        .output()
        .unwrap_or_else(|e| panic!("{}: {e} (scripts/test installs schemathesis)", st.display()));
    let report = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{report}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(report.contains(" passed"), "{report}");
    let stderr = daemon.stderr();
    assert!(!stderr.contains("panicked"), "{stderr}");
}
