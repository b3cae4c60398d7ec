//! What an execution asks to run, read from the Kubernetes object that
//! runs it: a Tekton `PipelineRun` or `TaskRun` (`tekton.dev/v1` and
//! `v1beta1`, by the `bundles` resolver or v1beta1's `bundle` field) or a
//! `batch/v1` `Job`. The gate then finds its workflow and checks it.
//!
//! - The workflow is the one the annotation [`WORKFLOW_ANNOTATION`] names
//!   (`restart-pod@1.2.0`), else the one whose execution image this is.
//! - The image is the bundle a run resolves, or the Job's first container's.
//! - The parameters are a run's `params` (name and value), or the Job's
//!   first container's `env` values (literal ones; a value taken from a
//!   Secret or ConfigMap cannot be checked and is not read). Tekton and
//!   kubernaut pass every value as text: [`typed`] reads each as the type
//!   its parameter declares.

use crate::workflow::{ParameterType, Workflow};
use serde_json::{Map, Value};

/// The annotation that names an execution's workflow: `<id>@<version>`.
pub const WORKFLOW_ANNOTATION: &str = "plumbline.dev/workflow";

/// The annotation with the content hash of the schema an execution's
/// parameters were chosen against (what `get_workflow` gave the agent).
pub const SCHEMA_ANNOTATION: &str = "plumbline.dev/schema-digest";

/// The kinds of object that run a workflow.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Runner {
    /// `tekton.dev` `PipelineRun`.
    PipelineRun,
    /// `tekton.dev` `TaskRun`.
    TaskRun,
    /// `batch/v1` `Job`.
    Job,
}

/// What an execution asks to run.
#[derive(Debug, Clone, PartialEq)]
pub struct Execution {
    /// What runs it.
    pub runner: Runner,
    /// The workflow it names, `(id, version)`, if it names one.
    pub workflow: Option<(String, String)>,
    /// The image (bundle or container) it runs, as referenced.
    pub image: Option<String>,
    /// Its parameters, as given.
    pub parameters: Map<String, Value>,
    /// The schema digest it names, if any.
    pub schema_digest: Option<String>,
    /// A Job's pod template `spec`: what its action contract bounds.
    pub pod: Option<Value>,
    /// A Job's other images (more containers, init containers): a
    /// workflow's Job runs its own image only.
    pub other_images: Vec<String>,
    /// A Job's environment names whose value the gate cannot read (from a
    /// Secret or ConfigMap) or that are set twice (the last one wins).
    pub unread: Vec<String>,
}

/// Why an object is no execution this reads.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ExecutionError {
    /// Another kind of object.
    #[error("{api_version} {kind} is no execution (PipelineRun, TaskRun or Job)")]
    NotAnExecution {
        /// Its `apiVersion`.
        api_version: String,
        /// Its `kind`.
        kind: String,
    },
    /// The annotation is not `<id>@<version>`.
    #[error("annotation {WORKFLOW_ANNOTATION}: `{0}` is not <workflowId>@<version>")]
    Annotation(String),
}

/// What `object` asks to run.
pub fn read(object: &Value) -> Result<Execution, ExecutionError> {
    let text = |pointer: &str| object.pointer(pointer).and_then(Value::as_str);
    let api_version = text("/apiVersion").unwrap_or_default();
    let kind = text("/kind").unwrap_or_default();
    let runner = match (api_version, kind) {
        ("tekton.dev/v1" | "tekton.dev/v1beta1", "PipelineRun") => Runner::PipelineRun,
        ("tekton.dev/v1" | "tekton.dev/v1beta1", "TaskRun") => Runner::TaskRun,
        ("batch/v1", "Job") => Runner::Job,
        _ => {
            return Err(ExecutionError::NotAnExecution {
                api_version: api_version.to_owned(),
                kind: kind.to_owned(),
            });
        }
    };
    let annotation = |name: &str| {
        object
            .pointer("/metadata/annotations")
            .and_then(|a| a.get(name))
            .and_then(Value::as_str)
    };
    let workflow = annotation(WORKFLOW_ANNOTATION)
        .map(|named| {
            named
                .split_once('@')
                .filter(|(id, version)| !id.is_empty() && !version.is_empty())
                .map(|(id, version)| (id.trim().to_owned(), version.trim().to_owned()))
                .ok_or_else(|| ExecutionError::Annotation(named.to_owned()))
        })
        .transpose()?;
    let (image, parameters) = match runner {
        Runner::PipelineRun => tekton(object.pointer("/spec/pipelineRef"), object),
        Runner::TaskRun => tekton(object.pointer("/spec/taskRef"), object),
        Runner::Job => job(object),
    };
    let pod = (runner == Runner::Job)
        .then(|| object.pointer("/spec/template/spec").cloned())
        .flatten();
    let (other_images, unread) = pod.as_ref().map(job_extras).unwrap_or_default();
    Ok(Execution {
        runner,
        workflow,
        image,
        parameters,
        schema_digest: annotation(SCHEMA_ANNOTATION).map(str::to_owned),
        pod,
        other_images,
        unread,
    })
}

/// A run's bundle (the `bundles` resolver's `bundle` param, or v1beta1's
/// `bundle` field) and its params.
fn tekton(reference: Option<&Value>, object: &Value) -> (Option<String>, Map<String, Value>) {
    let bundle = reference.and_then(|r| {
        let resolver_bundle = (r.get("resolver").and_then(Value::as_str) == Some("bundles"))
            .then(|| named_values(r.get("params")).remove("bundle"))
            .flatten();
        resolver_bundle
            .and_then(|v| v.as_str().map(str::to_owned))
            .or_else(|| r.get("bundle").and_then(Value::as_str).map(str::to_owned))
    });
    (bundle, named_values(object.pointer("/spec/params")))
}

/// A Job's first container's image and literal environment values.
fn job(object: &Value) -> (Option<String>, Map<String, Value>) {
    let container = object.pointer("/spec/template/spec/containers/0");
    let image = container
        .and_then(|c| c.get("image"))
        .and_then(Value::as_str)
        .map(str::to_owned);
    let env = container.and_then(|c| c.get("env"));
    let literal: Vec<Value> = env
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter(|e| e.get("value").is_some())
        .cloned()
        .collect();
    (image, named_values(Some(&Value::Array(literal))))
}

/// A Job pod's images beyond its first container's, and its first
/// container's environment names that cannot be read or are set twice.
fn job_extras(spec: &Value) -> (Vec<String>, Vec<String>) {
    let list = |key: &str| {
        spec.get(key)
            .and_then(Value::as_array)
            .cloned()
            .unwrap_or_default()
    };
    let containers = list("containers");
    let images = containers
        .iter()
        .skip(1)
        .chain(list("initContainers").iter())
        .filter_map(|c| c.get("image").and_then(Value::as_str).map(str::to_owned))
        .collect();
    let env = containers
        .first()
        .and_then(|c| c.get("env"))
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    let mut seen = std::collections::BTreeSet::new();
    let mut unread = Vec::new();
    for entry in &env {
        let Some(name) = entry.get("name").and_then(Value::as_str) else {
            continue;
        };
        if entry.get("value").is_none() || !seen.insert(name) {
            unread.push(name.to_owned());
        }
    }
    (images, unread)
}

/// `[{name, value}]` as a map.
fn named_values(list: Option<&Value>) -> Map<String, Value> {
    list.and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(|item| {
            let name = item.get("name")?.as_str()?;
            Some((
                name.to_owned(),
                item.get("value").cloned().unwrap_or(Value::Null),
            ))
        })
        .collect()
}

/// `given` with each text value read as the type its parameter in
/// `workflow` declares (`"3"` as 3 for an integer); a text that does not
/// read stays text, and validation says why. Values of other parameters
/// are left as they are.
pub fn typed(workflow: &Workflow, given: &Map<String, Value>) -> Map<String, Value> {
    given
        .iter()
        .map(|(name, value)| {
            let declared = workflow.parameters.iter().find(|p| &p.name == name);
            let value = match (declared.map(|p| p.kind), value.as_str()) {
                (Some(kind), Some(text)) => read_as(kind, text).unwrap_or_else(|| value.clone()),
                _ => value.clone(),
            };
            (name.clone(), value)
        })
        .collect()
}

fn read_as(kind: ParameterType, text: &str) -> Option<Value> {
    let text = text.trim();
    match kind {
        ParameterType::String => None,
        ParameterType::Integer => text.parse::<i64>().ok().map(Value::from),
        ParameterType::Number => text
            .parse::<f64>()
            .ok()
            .filter(|n| n.is_finite())
            .map(Value::from),
        ParameterType::Boolean => text.parse::<bool>().ok().map(Value::from),
        ParameterType::Array => serde_json::from_str::<Value>(text)
            .ok()
            .filter(Value::is_array),
    }
}

/// The repository of an image reference, without tag or digest
/// (`registry/repo:tag@sha256:…` → `registry/repo`).
pub fn repository(reference: &str) -> &str {
    let without_digest = reference.split('@').next().unwrap_or(reference);
    // A tag follows the last `:` after the last `/` (a registry's port
    // comes before it).
    match without_digest.rfind(':') {
        Some(colon) if colon > without_digest.rfind('/').unwrap_or(0) => &without_digest[..colon],
        _ => without_digest,
    }
}

/// The digest an image reference pins, if it pins one.
pub fn digest(reference: &str) -> Option<&str> {
    reference
        .split_once('@')
        .map(|(_, digest)| digest.trim())
        .filter(|d| d.starts_with("sha256:") || d.starts_with("sha512:"))
}
