//! The model against kubernaut's own workflow schemas, both eras, and
//! the checks against schemas made wrong on purpose.

use super::*;
use serde_json::json;
use std::path::PathBuf;

fn fixtures(era: &str) -> Vec<PathBuf> {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../tests/fixtures/kubernaut")
        .join(era);
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "yaml"))
        .collect();
    files.sort();
    files
}

fn fixture(era: &str, name: &str) -> Workflow {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../tests/fixtures/kubernaut")
        .join(era)
        .join(format!("{name}.workflow-schema.yaml"));
    read(&std::fs::read_to_string(path).unwrap()).unwrap()
}

#[test]
fn every_kubernaut_schema_of_both_eras_reads_and_passes_the_checks() {
    let mut count = 0;
    for era in ["oci-era-flat-schemas", "crd-era-schemas"] {
        for file in fixtures(era) {
            let text = std::fs::read_to_string(&file).unwrap();
            let workflow = read(&text).unwrap_or_else(|e| panic!("{}: {e}", file.display()));
            assert_eq!(check(&workflow), [], "{}", file.display());
            let schema = parameters_schema(&workflow);
            assert_eq!(
                schema["properties"].as_object().unwrap().len(),
                workflow.parameters.len(),
                "{}",
                file.display()
            );
            count += 1;
        }
    }
    assert_eq!(count, 69, "the fixtures kubernaut's SOURCES names");
}

#[test]
fn one_workflow_in_both_eras_is_one_model() {
    let flat = fixture("oci-era-flat-schemas", "hello-world");
    let resource = fixture("crd-era-schemas", "hello-world");
    assert_eq!(flat.workflow_id, "test-hello-world");
    assert_eq!(
        (&flat.workflow_id, &flat.version, flat.execution.engine),
        (
            &resource.workflow_id,
            &resource.version,
            resource.execution.engine
        )
    );
    assert_eq!(flat.action_type, resource.action_type);
}

#[test]
fn parameters_become_the_json_schema_executions_are_checked_against() {
    let workflow = fixture("crd-era-schemas", "param-validation-test");
    let schema = parameters_schema(&workflow);
    assert_eq!(schema["type"], "object");
    assert_eq!(schema["additionalProperties"], false);
    assert_eq!(
        schema["properties"]["REPLICA_COUNT"],
        json!({"type": "integer", "description": "Number of replicas to scale to", "minimum": 1, "maximum": 20})
    );
    let required = schema["required"].as_array().unwrap();
    assert!(required.contains(&json!("REPLICA_COUNT")));
    assert!(required.contains(&json!("TARGET_RESOURCE_NAME")));
}

const BROKEN: &str = r#"
schemaVersion: "1.0"
metadata:
  workflowId: Not_An_Id
  version: "one"
  description: {what: "", whenToUse: x}
execution: {engine: job, bundle: "example.com/x@sha256:00"}
parameters:
  - {name: COUNT, type: integer, minimum: 5, maximum: 1, default: 2.5}
  - {name: COUNT, type: string}
  - {name: MODE, type: string, enum: [fast, 3], pattern: "^[a-z]+$", default: "SLOW"}
  - {name: FLAG, type: boolean, minimum: 1, dependsOn: [NOPE]}
  - {name: HUGE, type: string, pattern: "(a{1000}){1000}"}
"#;

#[test]
fn ids_versions_and_names_are_what_keys_and_executions_can_carry() {
    let schema = |id: &str, version: &str, name: &str| {
        read(&format!(
            "metadata: {{workflowId: '{id}', version: '{version}', description: {{what: x}}}}\n\
             execution: {{engine: job}}\nparameters: [{{name: '{name}', type: string}}]\n"
        ))
        .unwrap()
    };
    let paths = |w: &Workflow| -> Vec<String> { check(w).into_iter().map(|v| v.path).collect() };
    assert!(paths(&schema("restart.pod-v1", "v1.2.3-rc.1", "POD_NAME")).is_empty());
    for (id, version, name, path) in [
        ("a..b", "1.0.0", "N", "metadata.workflowId"),
        ("a.", "1.0.0", "N", "metadata.workflowId"),
        ("-a", "1.0.0", "N", "metadata.workflowId"),
        ("a", "1.0.0+evil", "N", "metadata.version"),
        (
            "a",
            &format!("1.0.0-{}", "a".repeat(100)),
            "N",
            "metadata.version",
        ),
        ("a", "1.0.0", "A B", "parameters[0].name"),
        ("a", "1.0.0", &"N".repeat(200), "parameters[0].name"),
    ] {
        assert_eq!(
            paths(&schema(id, version, name)),
            [path],
            "{id} {version} {name}"
        );
    }
}

#[test]
fn every_violation_is_found_at_once_with_its_path() {
    let workflow = read(BROKEN).unwrap();
    let found: Vec<String> = check(&workflow)
        .into_iter()
        .map(|v| format!("{}: {}", v.path, v.message))
        .collect();
    for expected in [
        "metadata.workflowId: `Not_An_Id` is not",
        "metadata.version: `one` is not a semantic version",
        "metadata.description.what: is empty",
        "parameters[0].minimum: 5 is above the maximum 1",
        "parameters[0].default: 2.5 is not of type integer",
        "parameters[1].name: `COUNT` is named twice",
        "parameters[2].enum[1]: 3 is not of type string",
        "parameters[2].default: `SLOW` does not match the pattern",
        "parameters[3].minimum: bounds on a boolean parameter",
        "parameters[3].dependsOn[0]: `NOPE` is no parameter of this workflow",
        "parameters[4].pattern: does not compile",
    ] {
        assert!(
            found.iter().any(|f| f.starts_with(expected)),
            "{expected} not in {found:#?}"
        );
    }
}

/// A shape error says where it is, in each format (a flattened field's
/// error lost its path); YAML 1.1's `yes`/`no` are text, not booleans.
#[test]
fn a_shape_error_says_where_and_yes_and_no_are_text() {
    let flat = "metadata: {workflowId: x, version: 1.0.0}\nexecution: {engine: job}\n\
                parameters: [{name: A, type: string, enum: {a: 1}}]\n";
    let error = read(flat).unwrap_err().to_string();
    assert!(
        error.contains("parameters[0].enum: invalid type: map"),
        "{error}"
    );
    let resource = "apiVersion: kubernaut.ai/v1alpha1\nkind: RemediationWorkflow\n\
                    metadata: {name: x}\nspec: {version: 1.0.0, execution: {engine: 3}}\n";
    let error = read(resource).unwrap_err().to_string();
    assert!(error.contains("spec.execution.engine: "), "{error}");
    let error = read("metadata: {workflowId: [x], version: 1.0.0}\nexecution: {engine: job}\n")
        .unwrap_err()
        .to_string();
    assert!(
        error.contains("metadata.workflowId: invalid type"),
        "{error}"
    );

    let answers = "metadata: {workflowId: x, version: 1.0.0, description: {what: asks, whenToUse: always}}\n\
                   execution: {engine: job}\n\
                   parameters: [{name: A, type: string, enum: [yes, no, on, off]}]\n";
    let workflow = read(answers).unwrap();
    // YAML 1.2 core: `1_000` is text; a tag the reader does not know is
    // refused, not ignored.
    let numbers = answers.replace("[yes, no, on, off]", "[1_000, x]");
    assert_eq!(
        read(&numbers).unwrap().parameters[0].allowed,
        Some(vec!["1_000".into(), "x".into()])
    );
    let tagged = answers.replace("type: string", "type: !custom string");
    assert!(read(&tagged).is_err());
    // A reader's error in the author's words, not advice on its options.
    let twice = answers.replace(
        "execution: {engine: job}",
        "execution: {engine: job}\nexecution: {engine: job}",
    );
    let said = read(&twice).unwrap_err().to_string();
    assert!(
        said.contains("duplicate") && !said.contains("Options"),
        "{said}"
    );
    let documents = format!("{answers}---\n{answers}");
    let said = read(&documents).unwrap_err().to_string();
    assert!(!said.contains("from_str_multiple"), "{said}");
    assert_eq!(
        workflow.parameters[0].allowed,
        Some(vec!["yes".into(), "no".into(), "on".into(), "off".into()])
    );
    assert!(check(&workflow).is_empty(), "{:?}", check(&workflow));
}

#[test]
fn what_is_no_workflow_schema_says_why() {
    let error = read("metadata: {workflowId: x, version: 1.0.0}\n").unwrap_err();
    assert!(
        error.to_string().contains("missing field `execution`"),
        "{error}"
    );
    let other =
        "apiVersion: kubernaut.ai/v2\nkind: RemediationWorkflow\nmetadata: {name: x}\nspec: {}\n";
    let error = read(other).unwrap_err();
    assert!(error.to_string().contains("kubernaut.ai/v2"), "{error}");
    let error = read("parameters: [").unwrap_err();
    assert!(error.to_string().starts_with("not YAML"), "{error}");
    let typo = "metadata: {workflowId: x, version: 1.0.0}\nexecution: {engine: job}\n\
                parameters: [{name: A, type: string, requird: true}]\n";
    let error = read(typo).unwrap_err();
    assert!(
        error.to_string().contains("unknown field `requird`"),
        "{error}"
    );
}

mod layers {
    use crate::layers::{Caps, DEFAULT_PATHS, Layer, LayerError, find};
    use std::io::Write as _;

    /// A tarball of `files` (path, content); a content of `None` is a
    /// symbolic link.
    fn tarball(files: &[(&str, Option<&[u8]>)]) -> Vec<u8> {
        let mut builder = tar::Builder::new(Vec::new());
        for (path, content) in files {
            let mut header = tar::Header::new_gnu();
            match content {
                Some(bytes) => {
                    header.set_size(bytes.len() as u64);
                    header.set_entry_type(tar::EntryType::Regular);
                    header.set_mode(0o644);
                    header.set_cksum();
                    builder.append_data(&mut header, path, *bytes).unwrap();
                }
                None => {
                    header.set_size(0);
                    header.set_entry_type(tar::EntryType::Symlink);
                    header.set_cksum();
                    builder
                        .append_link(&mut header, path, "/elsewhere")
                        .unwrap();
                }
            }
        }
        builder.into_inner().unwrap()
    }

    fn gzip(bytes: &[u8]) -> Vec<u8> {
        let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        encoder.write_all(bytes).unwrap();
        encoder.finish().unwrap()
    }

    /// Layers given bottom-up, as an image lists them, searched top-down.
    fn search(
        bottom_up: Vec<Vec<u8>>,
        caps: Caps,
    ) -> Result<Option<(String, String, usize)>, LayerError> {
        let layers: Vec<Layer<'static>> = bottom_up
            .into_iter()
            .rev()
            .map(|bytes| Layer {
                media_type: "application/vnd.oci.image.layer.v1.tar+gzip".into(),
                content: Box::new(std::io::Cursor::new(gzip(&bytes))),
            })
            .collect();
        Ok(find(layers, DEFAULT_PATHS, caps)?
            .map(|f| (f.path, String::from_utf8(f.bytes).unwrap(), f.layer)))
    }

    #[test]
    fn the_upper_layer_wins_and_a_whiteout_hides_what_is_below() {
        let base = tarball(&[
            ("bin/sh", Some(b"elf")),
            ("workflow-schema.yaml", Some(b"old")),
        ]);
        let upper = tarball(&[("./workflow-schema.yaml", Some(b"new"))]);
        let found = search(vec![base.clone(), upper], Caps::default()).unwrap();
        assert_eq!(
            found,
            Some(("/workflow-schema.yaml".into(), "new".into(), 0))
        );
        let whiteout = tarball(&[(".wh.workflow-schema.yaml", Some(b""))]);
        assert_eq!(
            search(vec![base.clone(), whiteout], Caps::default()).unwrap(),
            None
        );
        // An opaque root hides everything below; a schema beside it counts.
        let opaque = tarball(&[
            (".wh..wh..opq", Some(b"")),
            ("playbook-schema.json", Some(b"{}")),
        ]);
        let found = search(vec![base, opaque], Caps::default()).unwrap();
        assert_eq!(
            found,
            Some(("/playbook-schema.json".into(), "{}".into(), 0))
        );
    }

    #[test]
    fn within_a_layer_the_paths_go_in_their_order_and_links_are_not_followed() {
        let both = tarball(&[
            ("action-contract.yaml", Some(b"c")),
            ("workflow-schema.yaml", Some(b"w")),
        ]);
        let found = search(vec![both], Caps::default()).unwrap().unwrap();
        assert_eq!(found.0, "/workflow-schema.yaml");
        let link = tarball(&[("workflow-schema.yaml", None)]);
        let lower = tarball(&[("workflow-schema.yaml", Some(b"real"))]);
        // A link is no schema, and does not hide the file below either.
        let found = search(vec![lower, link], Caps::default()).unwrap().unwrap();
        assert_eq!((found.1.as_str(), found.2), ("real", 1));
    }

    #[test]
    fn each_cap_is_an_error_that_names_itself() {
        let big = vec![b'x'; 2048];
        let layer = tarball(&[("workflow-schema.yaml", Some(&big))]);
        let caps = Caps {
            max_file_bytes: 1024,
            ..Caps::default()
        };
        let error = search(vec![layer], caps).unwrap_err().to_string();
        assert!(
            error.contains("the cap on a schema file is 1024"),
            "{error}"
        );
        let empty = tarball(&[("etc/hostname", Some(b"x"))]);
        let caps = Caps {
            max_layers: 2,
            ..Caps::default()
        };
        let error = search(vec![empty.clone(), empty.clone(), empty.clone()], caps)
            .unwrap_err()
            .to_string();
        assert!(error.contains("the cap on layers read"), "{error}");
        let caps = Caps {
            max_read_bytes: 64,
            ..Caps::default()
        };
        let error = search(vec![empty], caps).unwrap_err().to_string();
        assert!(error.contains("the cap on bytes read"), "{error}");
    }

    #[test]
    fn zstd_and_plain_layers_read_too_and_others_are_named() {
        let layer = tarball(&[("workflow-schema.yaml", Some(b"z"))]);
        let plain = Layer {
            media_type: "application/vnd.oci.image.layer.v1.tar".into(),
            content: Box::new(std::io::Cursor::new(layer.clone())),
        };
        assert!(
            find([plain], DEFAULT_PATHS, Caps::default())
                .unwrap()
                .is_some()
        );
        let zstd = ruzstd::encoding::compress_to_vec(
            layer.as_slice(),
            ruzstd::encoding::CompressionLevel::Fastest,
        );
        let compressed = Layer {
            media_type: "application/vnd.oci.image.layer.v1.tar+zstd".into(),
            content: Box::new(std::io::Cursor::new(zstd)),
        };
        let found = find([compressed], DEFAULT_PATHS, Caps::default())
            .unwrap()
            .unwrap();
        assert_eq!(found.bytes, b"z");
        let odd = Layer {
            media_type: "application/vnd.cncf.helm.chart.content.v1.tar+gzip".into(),
            content: Box::new(std::io::empty()),
        };
        let error = find([odd], DEFAULT_PATHS, Caps::default())
            .unwrap_err()
            .to_string();
        assert!(error.contains("no filesystem layer"), "{error}");
    }
}

mod execution {
    use crate::execution::validate;
    use serde_json::{Map, Value, json};

    fn given(value: Value) -> Map<String, Value> {
        value.as_object().unwrap().clone()
    }

    fn workflow() -> crate::Workflow {
        crate::read(
            "metadata: {workflowId: scale, version: 1.0.0, description: {what: x}}\n\
             execution: {engine: tekton}\n\
             parameters:\n\
             - {name: NAMESPACE, type: string, required: true, pattern: '^[a-z0-9-]+$'}\n\
             - {name: REPLICAS, type: integer, required: true, minimum: 1, maximum: 20}\n\
             - {name: MODE, type: string, enum: [fast, safe], default: safe}\n\
             - {name: REASON, type: string, dependsOn: [TICKET]}\n\
             - {name: TICKET, type: string}\n",
        )
        .unwrap()
    }

    #[test]
    fn a_valid_set_passes_and_defaults_fill_in() {
        let ok = given(json!({"NAMESPACE": "shop", "REPLICAS": 3}));
        assert_eq!(validate(&workflow(), &ok), []);
    }

    #[test]
    fn a_flood_of_unknown_names_makes_a_bounded_answer() {
        let flood: serde_json::Map<String, Value> = (0..10_000)
            .map(|i| (format!("{}{i}", "X".repeat(1000)), json!(1)))
            .collect();
        let found = validate(&workflow(), &flood);
        assert_eq!(found.len(), crate::execution::MAX_VIOLATIONS + 1);
        assert!(found.last().unwrap().message.starts_with("… and "));
        let said: usize = found.iter().map(|v| v.path.len() + v.message.len()).sum();
        assert!(said < 64 << 10, "{said} bytes");
    }

    #[test]
    fn every_problem_of_a_set_is_said_at_its_parameter() {
        let bad = given(json!({
            "NAMESPACE": "Shop_1", "REPLICAS": "3", "MODE": "slow",
            "REASON": "oom", "COLOUR": "blue"
        }));
        let found: Vec<String> = validate(&workflow(), &bad)
            .into_iter()
            .map(|v| format!("{}: {}", v.path, v.message))
            .collect();
        for expected in [
            "/COLOUR: no such parameter",
            ": the parameters this workflow takes: NAMESPACE, REPLICAS, MODE, REASON, TICKET",
            "/NAMESPACE: `Shop_1` does not match the pattern",
            "/REPLICAS: \"3\" is not of type integer",
            "/MODE: \"slow\" is not one of \"fast\", \"safe\"",
            "/REASON: needs `TICKET` too",
        ] {
            assert!(
                found.iter().any(|f| f == expected),
                "{expected} not in {found:#?}"
            );
        }
        let missing = validate(&workflow(), &given(json!({"REPLICAS": 99})));
        let said: Vec<String> = missing
            .iter()
            .map(|v| format!("{}: {}", v.path, v.message))
            .collect();
        assert!(
            said.contains(&"/NAMESPACE: required, and not given".to_owned()),
            "{said:?}"
        );
        assert!(
            said.contains(&"/REPLICAS: 99 is out of the bounds [1, 20]".to_owned()),
            "{said:?}"
        );
    }
}

mod executions {
    use crate::executions::{Runner, digest, read, repository, typed};
    use serde_json::{Value, json};
    use std::path::PathBuf;

    /// The documents of a fixture under `tests/fixtures/tekton/`.
    fn documents(path: &str) -> Vec<Value> {
        let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
            .join("../../tests/fixtures/tekton")
            .join(path);
        let text = std::fs::read_to_string(path).unwrap();
        serde_saphyr::from_multiple(&text).unwrap()
    }

    fn first(path: &str, kind: &str) -> Value {
        documents(path)
            .into_iter()
            .find(|d| d["kind"] == kind)
            .unwrap()
    }

    #[test]
    fn a_taskrun_by_the_bundles_resolver_runs_its_pinned_bundle_with_its_params() {
        let run = read(&first("taskruns/beta-bundles-resolver.yaml", "TaskRun")).unwrap();
        assert_eq!(run.runner, Runner::TaskRun);
        let image = run.image.unwrap();
        assert_eq!(
            repository(&image),
            "ghcr.io/tektoncd/catalog/upstream/tasks/git-clone"
        );
        assert!(digest(&image).unwrap().starts_with("sha256:65e61544"));
        assert_eq!(
            run.parameters.get("revision"),
            Some(&json!("master")),
            "{:?}",
            run.parameters
        );
        assert_eq!(run.workflow, None);
    }

    #[test]
    fn v1beta1_runs_by_the_resolver_and_by_the_old_bundle_field_are_read() {
        let old = read(&first(
            "taskruns/v1beta1-no-ci-tekton-bundles.yaml",
            "TaskRun",
        ))
        .unwrap();
        assert!(digest(old.image.as_deref().unwrap()).is_some(), "{old:?}");
        let pipeline = first(
            "resolvers/bundle-resolver-md-03-pipelinerun-pipeline-resolution.yaml",
            "PipelineRun",
        );
        let run = read(&pipeline).unwrap();
        assert_eq!(run.runner, Runner::PipelineRun);
        assert_eq!(
            run.image.as_deref(),
            Some("10.96.190.208:5000/simple/pipeline:latest")
        );
        assert_eq!(
            repository("10.96.190.208:5000/simple/pipeline:latest"),
            "10.96.190.208:5000/simple/pipeline"
        );
        assert_eq!(digest("10.96.190.208:5000/simple/pipeline:latest"), None);
    }

    #[test]
    fn a_job_runs_its_first_containers_image_with_its_literal_env_values() {
        let job = read(&first("jobs/rabbitmq-job.yaml", "Job")).unwrap();
        assert_eq!(job.runner, Runner::Job);
        assert_eq!(job.image.as_deref(), Some("gcr.io/<project>/job-wq-1"));
        assert_eq!(job.parameters.get("QUEUE"), Some(&json!("job1")));
        let sketch = read(&first(
            "kubernaut/doc-spike-s11-job-executor-job.yaml",
            "Job",
        ))
        .unwrap();
        assert!(
            sketch.parameters.contains_key("TARGET_RESOURCE"),
            "{sketch:?}"
        );
    }

    #[test]
    fn the_annotation_names_the_workflow_and_other_kinds_are_no_executions() {
        let mut run = first("taskruns/beta-bundles-resolver.yaml", "TaskRun");
        run["metadata"]["annotations"] = json!({"plumbline.dev/workflow": "git-clone@0.10.0"});
        let read_run = read(&run).unwrap();
        assert_eq!(
            read_run.workflow,
            Some(("git-clone".to_owned(), "0.10.0".to_owned()))
        );
        run["metadata"]["annotations"] = json!({"plumbline.dev/workflow": "git-clone"});
        assert!(
            read(&run)
                .unwrap_err()
                .to_string()
                .contains("<workflowId>@<version>")
        );
        let cron = first("jobs/cronjob.yaml", "CronJob");
        assert!(
            read(&cron)
                .unwrap_err()
                .to_string()
                .contains("CronJob is no execution")
        );
    }

    #[test]
    fn text_values_are_read_as_their_parameters_declare() {
        let workflow = crate::read(
            "metadata: {workflowId: scale, version: 1.0.0, description: {what: x}}\n\
             execution: {engine: job}\n\
             parameters:\n\
             - {name: REPLICAS, type: integer}\n- {name: RATIO, type: number}\n\
             - {name: DRY, type: boolean}\n- {name: NAMES, type: array}\n- {name: NOTE, type: string}\n",
        )
        .unwrap();
        let given = json!({"REPLICAS": "3", "RATIO": "0.5", "DRY": "true", "NAMES": "[\"a\"]",
                           "NOTE": "7", "OTHER": "1", "BAD": "x"})
        .as_object()
        .unwrap()
        .clone();
        let read = typed(&workflow, &given);
        assert_eq!(read["REPLICAS"], json!(3));
        assert_eq!(read["RATIO"], json!(0.5));
        assert_eq!(read["DRY"], json!(true));
        assert_eq!(read["NAMES"], json!(["a"]));
        assert_eq!(read["NOTE"], json!("7"), "a string stays text");
        assert_eq!(read["OTHER"], json!("1"), "undeclared: left as given");
        let wrong = json!({"REPLICAS": "three"}).as_object().unwrap().clone();
        assert_eq!(typed(&workflow, &wrong)["REPLICAS"], json!("three"));
    }
}

mod formats {
    use crate::formats::Contract;
    use crate::{parameters_schema, read};

    const FLAT: &str = "metadata: {workflowId: scale, version: 1.0.0, description: {what: scales}}\n\
        execution: {engine: job}\n\
        parameters:\n\
        - {name: REPLICAS, type: integer, required: true, minimum: 1, maximum: 20, description: how many}\n\
        - {name: REASON, type: string, dependsOn: [TICKET]}\n\
        - {name: TICKET, type: string, pattern: '^T-[0-9]+$'}\n";

    #[test]
    fn a_playbook_schema_is_the_same_workflow_as_its_flat_schema() {
        let playbook = r#"{
          "metadata": {"workflowId": "scale", "version": "1.0.0", "description": {"what": "scales"}},
          "execution": {"engine": "job"},
          "parameters": {
            "$schema": "https://json-schema.org/draft/2020-12/schema",
            "type": "object",
            "properties": {
              "REASON": {"type": "string"},
              "REPLICAS": {"type": "integer", "minimum": 1, "maximum": 20, "description": "how many"},
              "TICKET": {"type": "string", "pattern": "^T-[0-9]+$"}
            },
            "required": ["REPLICAS"],
            "dependentRequired": {"REASON": ["TICKET"]}
          }
        }"#;
        let from_playbook = read(playbook).unwrap();
        let from_flat = read(FLAT).unwrap();
        assert_eq!(
            parameters_schema(&from_playbook),
            parameters_schema(&from_flat)
        );
        assert!(crate::check(&from_playbook).is_empty());
    }

    #[test]
    fn a_keyword_the_catalog_cannot_carry_is_refused_by_name() {
        let playbook = r#"{"metadata": {"workflowId": "x", "version": "1.0.0"}, "execution": {"engine": "job"},
            "parameters": {"type": "object", "properties": {"URL": {"type": "string", "format": "uri"}}}}"#;
        let error = read(playbook).unwrap_err().to_string();
        assert!(
            error.contains("properties.URL.format: not carried"),
            "{error}"
        );
        let referring = r#"{"metadata": {"workflowId": "x", "version": "1.0.0"}, "execution": {"engine": "job"},
            "parameters": {"$ref": "https://example.com/schema.json"}}"#;
        let error = read(referring).unwrap_err().to_string();
        assert!(error.contains("`$ref` is not carried"), "{error}");
    }

    #[test]
    fn an_action_contract_carries_its_inputs_and_its_bounds() {
        let text = "apiVersion: plumbline.dev/v1alpha1\nkind: ActionContract\n\
            metadata: {workflowId: scale, version: 1.0.0, description: {what: scales}}\n\
            execution: {engine: job}\n\
            inputs:\n- {name: REPLICAS, type: integer, required: true, minimum: 1, maximum: 20, description: how many}\n\
            outputs:\n- {name: PREVIOUS, type: integer, description: the count before}\n\
            resources: {limits: {cpu: 500m, memory: 256Mi}}\n\
            securityContext: {runAsNonRoot: true, allowPrivilegeEscalation: false, capabilities: {add: []}}\n";
        let workflow = read(text).unwrap();
        assert_eq!(workflow.parameters.len(), 1);
        let contract: &Contract = workflow.contract.as_ref().unwrap();
        assert_eq!(contract.outputs[0].name, "PREVIOUS");
        assert_eq!(contract.resources.limits["memory"], "256Mi");
        assert_eq!(contract.security_context.run_as_non_root, Some(true));
        let wrong = text.replace("runAsNonRoot", "runAsRoot");
        let error = read(&wrong).unwrap_err().to_string();
        assert!(error.contains("runAsRoot"), "{error}");
    }
}
