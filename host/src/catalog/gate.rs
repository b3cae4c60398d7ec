//! The gate: whether an execution may run, decided against the catalog, so
//! that what runs is what was registered and its parameters fit the
//! schema the agent was given.
//!
//! For an execution ([`plumbline_catalog::executions`]) it finds the
//! workflow (the annotation, else the version whose execution image is in
//! the same repository: the one at the same digest, else the newest that
//! may run), reads its parameters as their declared types, validates them,
//! and hands the drift-gate chain (`digest-gate` and CEL, from the
//! policies) the request its contract describes. Every reason to deny is
//! kept. It is fail-closed: an execution it cannot place in the catalog
//! is denied, with the command that would register it.

use super::Catalog;
use super::store::{ExecutionRecord, Record};
use crate::policy::Decision;
use crate::policy::PolicySet;
use crate::policy::bindings::Verdict;
use plumbline_catalog::executions::{Execution, digest, repository, typed};
use serde::Serialize;
use serde_json::{Value, json};
use sha2::{Digest as _, Sha256};
use std::sync::Arc;

/// The policies' drift-gate chain as it is now.
pub type Policies = Arc<dyn Fn() -> Arc<PolicySet> + Send + Sync>;

/// What the gate decided.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Decided {
    /// Whether the execution may run.
    pub allowed: bool,
    /// Every reason it may not.
    pub reasons: Vec<String>,
    /// The workflow it was checked against, if one was found.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub workflow_id: Option<String>,
    /// Its version.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub version: Option<String>,
}

impl Decided {
    fn deny(reason: String) -> Decided {
        Decided {
            allowed: false,
            reasons: vec![reason],
            workflow_id: None,
            version: None,
        }
    }
}

/// The gate over one catalog.
pub struct Gate {
    catalog: Arc<Catalog>,
    policies: Policies,
    recorder: super::recorder::Recorder,
}

impl Gate {
    /// The gate of `catalog`, running the drift-gate chain `policies` give;
    /// its recorder runs on a thread of its own.
    pub fn new(catalog: Arc<Catalog>, policies: Policies) -> std::io::Result<Gate> {
        let recorder = super::recorder::Recorder::start(catalog.clone())?;
        Ok(Gate {
            catalog,
            policies,
            recorder,
        })
    }

    /// Decides `execution`, asked for by `requester` through `runner`
    /// (`PipelineRun ns/name`, `api`); an allowed one is recorded unless
    /// `dry_run`.
    pub fn decide(
        &self,
        execution: &Execution,
        requester: &str,
        runner: &str,
        dry_run: bool,
    ) -> Decided {
        let record = match self.find(execution) {
            Ok(record) => record,
            Err(reason) => return Decided::deny(reason),
        };
        let parameters = typed(
            &record.workflow,
            &without_engine_parameters(execution, &record),
        );
        let violations = plumbline_catalog::execution::validate(&record.workflow, &parameters);
        let errors: Vec<String> = violations
            .iter()
            .map(|v| format!("{}: {}", v.path, v.message))
            .collect();
        let image_digest = execution.image.as_deref().and_then(digest);
        let request = json!({
            "image": {"reference": execution.image, "digest": image_digest},
            "catalog": {
                "workflowId": record.workflow.workflow_id,
                "version": record.workflow.version,
                "digest": record.execution_digest(),
                "schemaDigest": record.content_hash,
                "lifecycle": record.lifecycle,
                // Whether the image's cosign signature verified when it was
                // registered: `request.catalog.signed` in a gate policy.
                "signed": record.signed_by.is_some(),
            },
            "schemaDigest": execution.schema_digest.as_deref().unwrap_or(&record.content_hash),
            "parameters": {"valid": errors.is_empty(), "errors": errors},
        });
        let verdict = (self.policies)()
            .chain(Decision::Gate)
            .decide(&request.to_string());
        let mut reasons: Vec<String> = record.drift.iter().map(drifted).collect();
        if let (Some(contract), Some(pod)) = (&record.workflow.contract, &execution.pod) {
            reasons.extend(super::contract::breaches(contract, pod));
        }
        reasons.extend(unchecked(execution, &record));
        if let Verdict::Deny(denied) = verdict {
            reasons.extend(denied);
        }
        let decided = Decided {
            allowed: reasons.is_empty(),
            reasons,
            workflow_id: Some(record.workflow.workflow_id.clone()),
            version: Some(record.workflow.version.clone()),
        };
        if decided.allowed && !dry_run {
            let allowed = ExecutionRecord {
                workflow_id: record.workflow.workflow_id.clone(),
                version: record.workflow.version.clone(),
                runner: runner.to_owned(),
                image: execution.image.clone(),
                image_digest: image_digest.map(str::to_owned),
                schema_digest: record.content_hash.clone(),
                parameters_hash: hash(&Value::Object(parameters)),
                requester: requester.to_owned(),
                at: crate::telemetry::timestamp(),
            };
            // Recording is the gate's duty too: an execution that cannot be
            // recorded does not run.
            if let Err(error) = self.recorder.record(allowed) {
                return Decided::deny(format!("the execution cannot be recorded: {error}"));
            }
        }
        decided
    }

    /// The version `execution` runs, or why there is none.
    fn find(&self, execution: &Execution) -> Result<Record, String> {
        if let Some((id, version)) = &execution.workflow {
            return self.catalog.get(id, version).map_err(|e| e.to_string());
        }
        let Some(image) = &execution.image else {
            return Err(format!(
                "the execution names no workflow (annotation {}) and runs no image the gate can read",
                plumbline_catalog::executions::WORKFLOW_ANNOTATION
            ));
        };
        let mut candidates: Vec<Record> = self
            .catalog
            .running(repository(image))
            .into_iter()
            .filter_map(|(id, version)| self.catalog.get(&id, &version).ok())
            .collect();
        if candidates.is_empty() {
            return Err(format!(
                "{image} runs no workflow in the catalog: register it first \
                 (POST /api/v1/workflows {{\"schemaImage\": \"{image}\"}}, or `plumbline catalog register {image}`)"
            ));
        }
        let wanted = digest(image);
        let at_digest: Vec<Record> = candidates
            .iter()
            .filter(|r| wanted.is_some() && r.execution_digest().as_deref() == wanted)
            .cloned()
            .collect();
        // At this digest if any, else all of the repository's (the newest,
        // whose digest the chain compares): of one workflow only, or the
        // run must say which.
        if !at_digest.is_empty() {
            candidates = at_digest;
        }
        let mut ids: Vec<&str> = candidates
            .iter()
            .map(|r| r.workflow.workflow_id.as_str())
            .collect();
        ids.sort_unstable();
        ids.dedup();
        if ids.len() > 1 {
            return Err(format!(
                "{image} runs several workflows ({}): the run must name one (annotation {}: <id>@<version>)",
                ids.join(", "),
                plumbline_catalog::executions::WORKFLOW_ANNOTATION
            ));
        }
        candidates.sort_by_key(|r| plumbline_catalog::check::version(&r.workflow.version).ok());
        Ok(candidates.pop().expect("not empty"))
    }
}

/// The parameters an engine adds of its own and a schema need not declare:
/// kubernaut passes `TARGET_RESOURCE` to every run. A Job's environment
/// holds whatever its platform adds: only declared names count there.
fn without_engine_parameters(
    execution: &Execution,
    record: &Record,
) -> serde_json::Map<String, Value> {
    let declared = |name: &str| record.workflow.parameters.iter().any(|p| p.name == name);
    execution
        .parameters
        .iter()
        .filter(|(name, _)| {
            declared(name)
                || (execution.runner != plumbline_catalog::executions::Runner::Job
                    && name.as_str() != "TARGET_RESOURCE")
        })
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect()
}

/// What of a Job the gate cannot vouch for: other images than the
/// workflow's, and declared parameters whose value it cannot read.
fn unchecked(execution: &Execution, record: &Record) -> Vec<String> {
    let mut found: Vec<String> = execution
        .other_images
        .iter()
        .filter(|image| Some(image.as_str()) != execution.image.as_deref())
        .map(|image| format!("the Job also runs {image}: a workflow's Job runs its own image only"))
        .collect();
    let declared = |name: &str| record.workflow.parameters.iter().any(|p| p.name == name);
    found.extend(
        execution
            .unread
            .iter()
            .filter(|name| declared(name))
            .map(|name| format!("/{name}: set from a Secret or ConfigMap, or set twice: its value cannot be checked")),
    );
    found
}

/// Why a drifted version does not run.
fn drifted(drift: &super::store::Drift) -> String {
    format!(
        "{} names {} since {}, but this version was registered at {}: the catalog does not adopt it; register the new content as a new version",
        drift.reference, drift.now, drift.found_at, drift.registered
    )
}

fn hash(value: &Value) -> String {
    format!("sha256:{}", hex::encode(Sha256::digest(value.to_string())))
}
