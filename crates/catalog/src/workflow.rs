//! A workflow's schema in the workflow-schema format, read from either era
//! kubernaut wrote it in, into one model:
//!
//! - the flat format an image carried at `/workflow-schema.yaml`
//!   (`schemaVersion`, `metadata.workflowId`, `metadata.version`, then
//!   `actionType`, `labels`, `execution`, `parameters` at the top);
//! - the `RemediationWorkflow` resource (`kubernaut.ai/v1alpha1`), whose
//!   name is the workflow's id and whose `spec` holds the rest;
//! - and, through [`crate::formats`], the playbook schema (parameters as a
//!   JSON Schema) and the action contract.
//!
//! Reading checks shape only (fields, types); what a sound schema must
//! also be is [`crate::check`]'s.

use serde::{Deserialize, Serialize};
use serde_json::Value;

/// One version of one workflow, whatever format it came in.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Workflow {
    /// The workflow's id (`metadata.workflowId`, or the resource's name).
    pub workflow_id: String,
    /// Its version, semver.
    pub version: String,
    /// What it is for, for whoever picks workflows.
    pub description: Description,
    /// The remediation it performs (`RestartPod`, `ScaleReplicas`, …).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub action_type: Option<String>,
    /// What it applies to.
    #[serde(default)]
    pub labels: Labels,
    /// How it runs.
    pub execution: Execution,
    /// Its parameters, in order.
    #[serde(default)]
    pub parameters: Vec<Parameter>,
    /// What an action contract bounds beyond the parameters (read from
    /// `/action-contract.yaml` only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub contract: Option<crate::formats::Contract>,
}

/// What a workflow is for.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Description {
    /// What it does.
    #[serde(default)]
    pub what: String,
    /// When to pick it.
    #[serde(default)]
    pub when_to_use: String,
    /// When not to.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub when_not_to_use: String,
    /// What must hold before it runs.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub preconditions: String,
}

/// What a workflow applies to. kubernaut wrote each of the first three as
/// one value or a list; both read.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Labels {
    /// Severities (`critical`, `high`, …).
    #[serde(default, deserialize_with = "one_or_many")]
    pub severity: Vec<String>,
    /// Environments.
    #[serde(default, deserialize_with = "one_or_many")]
    pub environment: Vec<String>,
    /// Components (`deployment`, `apps/v1/Deployment`, …).
    #[serde(default, deserialize_with = "one_or_many")]
    pub component: Vec<String>,
    /// Priority (`P1`…).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub priority: Option<String>,
    /// Anything else, by name.
    #[serde(default, skip_serializing_if = "serde_json::Map::is_empty")]
    pub custom: serde_json::Map<String, Value>,
}

fn one_or_many<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Vec<String>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum OneOrMany {
        One(String),
        Many(Vec<String>),
    }
    Ok(match Option::<OneOrMany>::deserialize(d)? {
        None => Vec::new(),
        Some(OneOrMany::One(one)) => vec![one],
        Some(OneOrMany::Many(many)) => many,
    })
}

/// How a workflow runs.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Execution {
    /// `tekton`, `job` or `ansible`.
    pub engine: Engine,
    /// The execution bundle or image, as a reference.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bundle: Option<String>,
    /// Its digest, when given apart from the reference.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub digest: Option<String>,
    /// Whatever else the engine reads (an Ansible playbook's path, …).
    #[serde(flatten)]
    pub more: serde_json::Map<String, Value>,
}

/// What runs a workflow.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Engine {
    /// A Tekton bundle (PipelineRun, TaskRun).
    Tekton,
    /// A `batch/v1` Job.
    Job,
    /// An Ansible playbook.
    Ansible,
}

/// One parameter.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Parameter {
    /// Its name, as an execution passes it.
    pub name: String,
    /// Its type.
    #[serde(rename = "type")]
    pub kind: ParameterType,
    /// Whether an execution must pass it.
    #[serde(default)]
    pub required: bool,
    /// What it means.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub description: String,
    /// The values it may take.
    #[serde(default, rename = "enum", skip_serializing_if = "Option::is_none")]
    pub allowed: Option<Vec<Value>>,
    /// A regular expression a string must match.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pattern: Option<String>,
    /// The least number allowed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub minimum: Option<f64>,
    /// The greatest number allowed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub maximum: Option<f64>,
    /// Its value when an execution passes none.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub default: Option<Value>,
    /// Parameters that must be passed with it.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub depends_on: Vec<String>,
}

/// A parameter's type.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ParameterType {
    /// Text.
    String,
    /// A whole number.
    Integer,
    /// Any number.
    Number,
    /// True or false.
    Boolean,
    /// A list.
    Array,
}

impl ParameterType {
    /// Its name in JSON Schema.
    pub fn json_type(self) -> &'static str {
        match self {
            ParameterType::String => "string",
            ParameterType::Integer => "integer",
            ParameterType::Number => "number",
            ParameterType::Boolean => "boolean",
            ParameterType::Array => "array",
        }
    }
}

/// Why a text is no workflow schema.
#[derive(Debug, thiserror::Error)]
pub enum ReadError {
    /// Not YAML (or JSON) at all.
    #[error("not YAML: {0}")]
    Syntax(String),
    /// A field is missing or of the wrong type.
    #[error("{0}")]
    Shape(String),
}

/// The flat format's `metadata` (the rest of its top level is a [`Body`]).
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct FlatMetadata {
    workflow_id: String,
    version: String,
    #[serde(default)]
    description: Description,
}

/// What every format holds beside the id, version and description.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct Body {
    #[serde(default)]
    action_type: Option<String>,
    #[serde(default)]
    labels: Labels,
    execution: Execution,
    #[serde(default)]
    pub(crate) parameters: Vec<Parameter>,
}

/// The resource format's `spec` beside its [`Body`].
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Spec {
    version: String,
    #[serde(default)]
    description: Description,
}

/// The resource kubernaut defines.
pub const RESOURCE_API_VERSION: &str = "kubernaut.ai/v1alpha1";

/// Reads a workflow schema (YAML or JSON) in either format.
///
/// YAML is read by the 1.2 core schema's booleans: `yes`, `no`, `on` and
/// `off` are text, as a schema's author writing `enum: [yes, no]` for a
/// string parameter means (YAML 1.1 made them booleans, and the enum a
/// list of `true` and `false`). A boolean is `true` or `false`.
pub fn read(text: &str) -> Result<Workflow, ReadError> {
    let options = serde_saphyr::options! {
        strict_booleans: true,
        // `1_000` is text in YAML 1.2, as `0755` is a decimal.
        underscored_numbers_as_strings: true,
        // A tag the reader does not know is refused, not ignored.
        reject_unsupported_tags: true,
    };
    // The user-facing wording: the default one advises on the reader's
    // own options ("set DuplicateKeyPolicy in Options").
    let value: Value = serde_saphyr::from_str_with_options(text, options).map_err(|e| {
        ReadError::Syntax(e.render_with_formatter(&serde_saphyr::UserMessageFormatter))
    })?;
    from_value(value)
}

/// `value` read as `T`; a mismatch is a shape error that says where, as
/// `within` followed by the path inside `value` (`parameters[0].enum`).
pub(crate) fn shaped<T: serde::de::DeserializeOwned>(
    value: Value,
    within: &str,
) -> Result<T, ReadError> {
    serde_path_to_error::deserialize(value).map_err(|e| {
        let path = e.path().to_string();
        let path = match (within, path.as_str()) {
            (within, ".") => within.to_owned(),
            ("", path) => path.to_owned(),
            (within, path) => format!("{within}.{path}"),
        };
        if path.is_empty() {
            ReadError::Shape(e.into_inner().to_string())
        } else {
            ReadError::Shape(format!("{path}: {}", e.into_inner()))
        }
    })
}

/// [`read`], from a parsed document.
pub fn from_value(value: Value) -> Result<Workflow, ReadError> {
    if value.get("kind").and_then(Value::as_str) == Some("ActionContract") {
        return crate::formats::contract(value);
    }
    if value.get("parameters").is_some_and(Value::is_object) {
        return crate::formats::playbook(value);
    }
    let is_resource = value.get("kind").and_then(Value::as_str) == Some("RemediationWorkflow");
    if is_resource {
        let api_version = value
            .get("apiVersion")
            .and_then(Value::as_str)
            .unwrap_or_default();
        if api_version != RESOURCE_API_VERSION {
            return Err(ReadError::Shape(format!(
                "a RemediationWorkflow of apiVersion `{api_version}`; this reads {RESOURCE_API_VERSION}"
            )));
        }
        let name = value
            .pointer("/metadata/name")
            .and_then(Value::as_str)
            .ok_or_else(|| ReadError::Shape("metadata.name: missing".into()))?
            .to_owned();
        let spec = value
            .get("spec")
            .cloned()
            .ok_or_else(|| ReadError::Shape("spec: missing".into()))?;
        // Read apart, not as one `#[serde(flatten)]` type: a flattened
        // field's error loses its path.
        let body: Body = shaped(spec.clone(), "spec")?;
        let spec: Spec = shaped(spec, "spec")?;
        return Ok(assemble(name, spec.version, spec.description, body));
    }
    let meta = value
        .get("metadata")
        .cloned()
        .ok_or_else(|| ReadError::Shape("metadata: missing".into()))?;
    let meta: FlatMetadata = shaped(meta, "metadata")?;
    let body: Body = shaped(value, "")?;
    Ok(assemble(
        meta.workflow_id,
        meta.version,
        meta.description,
        body,
    ))
}

pub(crate) fn assemble(
    id: String,
    version: String,
    description: Description,
    body: Body,
) -> Workflow {
    Workflow {
        workflow_id: id,
        version,
        description,
        action_type: body.action_type,
        labels: body.labels,
        execution: body.execution,
        parameters: body.parameters,
        contract: None,
    }
}
