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
