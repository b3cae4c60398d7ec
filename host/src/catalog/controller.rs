//! kubernaut's `RemediationWorkflow` resources (`kubernaut.ai/v1alpha1`,
//! its current shape: the schema inline in `spec`), registered through the
//! same path as the API, with the outcome written back to each resource's
//! status: `workflowId`, `contentHash`, `catalogStatus`, `registeredBy`,
//! `registeredAt`, `previouslyExisted` and a `Ready` condition whose
//! reason says why not. A resource annotated
//! [`IMAGE_ANNOTATION`]`: registry/repo:tag` is registered from that image
//! instead.
//!
//! Resources are read again every interval; a generation already
//! registered is not registered again (its image is not pulled again), but
//! its `catalogStatus` follows lifecycle changes made through the API.
//! `/remediationworkflow-webhook` is the validating webhook that refuses
//! what registration would (every violation), and an update that keeps the
//! version but changes the content.

use super::Catalog;
use super::register::{Offer, RegisterError};
use super::store::{Lifecycle, Record, Registered, StoreError};
use axum::Router;
use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use kube::api::{Api, ApiResource, DynamicObject, Patch, PatchParams};
use serde_json::{Value, json};
use std::sync::Arc;
use std::time::Duration;

/// The annotation that names the image a resource's schema comes from.
pub const IMAGE_ANNOTATION: &str = "plumbline.dev/schema-image";

/// The largest review read.
const MAX_REVIEW_BYTES: usize = 4 << 20;

fn resource() -> ApiResource {
    ApiResource {
        group: "kubernaut.ai".into(),
        version: "v1alpha1".into(),
        api_version: "kubernaut.ai/v1alpha1".into(),
        kind: "RemediationWorkflow".into(),
        plural: "remediationworkflows".into(),
    }
}

/// Registers the cluster's RemediationWorkflows into a catalog.
pub struct Controller {
    /// The cluster.
    pub client: kube::Client,
    /// The runtime the client runs on.
    pub runtime: tokio::runtime::Handle,
    /// The catalog.
    pub catalog: Arc<Catalog>,
}

impl Controller {
    /// Reads the resources every `interval` on a thread of its own.
    pub fn follow(self, interval: Duration) -> std::io::Result<()> {
        std::thread::Builder::new()
            .name("remediation-workflows".into())
            .spawn(move || {
                let mut said = String::new();
                loop {
                    match self.once() {
                        Ok(()) => said.clear(),
                        Err(error) if error != said => {
                            tracing::warn!("RemediationWorkflows: {error}");
                            said = error;
                        }
                        Err(_) => {}
                    }
                    std::thread::sleep(interval);
                }
            })
            .map(drop)
    }

    /// One pass over every resource.
    pub fn once(&self) -> Result<(), String> {
        let api: Api<DynamicObject> = Api::all_with(self.client.clone(), &resource());
        let list = match self.runtime.block_on(api.list(&Default::default())) {
            Ok(list) => list,
            Err(kube::Error::Api(status)) if status.code == 404 => {
                return Err("the cluster serves no kubernaut.ai/v1alpha1 remediationworkflows (kubernaut's CRD is not installed)".into());
            }
            Err(error) => return Err(format!("listing them: {error}")),
        };
        for object in list.items {
            if let Some(status) = self.status_of(&object) {
                self.write(&object, status);
            }
        }
        Ok(())
    }

    /// The status `object` should have now, if it differs from its own.
    fn status_of(&self, object: &DynamicObject) -> Option<Value> {
        let generation = object.metadata.generation;
        let current = object.data.get("status").cloned().unwrap_or(Value::Null);
        let observed = current["observedGeneration"].as_i64();
        if observed.is_some() && observed == generation {
            // Registered at this generation: only the lifecycle may move.
            let id = current["workflowId"].as_str()?;
            let version = object.data.pointer("/spec/version")?.as_str()?;
            let record = self.catalog.get(id, version).ok()?;
            let now = catalog_status(record.lifecycle);
            return (current["catalogStatus"] != now).then(|| {
                let mut status = current.clone();
                status["catalogStatus"] = json!(now);
                status
            });
        }
        let offer = offer(object);
        let who = format!(
            "RemediationWorkflow {}/{}",
            object.metadata.namespace.as_deref().unwrap_or_default(),
            object.metadata.name.as_deref().unwrap_or_default()
        );
        let status = match self.catalog.register(&offer, &who) {
            Ok(Registered::Created(record)) => registered(&record, false, generation),
            Ok(Registered::Unchanged(record)) => registered(&record, true, generation),
            Err(error) => refused(&error, generation),
        };
        let same = status["conditions"][0]["message"] == current["conditions"][0]["message"]
            && status["catalogStatus"] == current["catalogStatus"]
            && status["observedGeneration"] == current["observedGeneration"];
        (!same).then_some(status)
    }

    fn write(&self, object: &DynamicObject, status: Value) {
        let name = object.metadata.name.clone().unwrap_or_default();
        let api: Api<DynamicObject> = match &object.metadata.namespace {
            Some(ns) => Api::namespaced_with(self.client.clone(), ns, &resource()),
            None => Api::all_with(self.client.clone(), &resource()),
        };
        let patch = Patch::Merge(json!({"status": status}));
        let params = PatchParams::default();
        if let Err(error) = self
            .runtime
            .block_on(api.patch_status(&name, &params, &patch))
        {
            tracing::warn!(%error, "cannot write the status of RemediationWorkflow {name}; trying again later");
        }
    }
}

/// What registering `object` offers: its image, or itself.
fn offer(object: &DynamicObject) -> Offer {
    let image = object
        .metadata
        .annotations
        .as_ref()
        .and_then(|a| a.get(IMAGE_ANNOTATION));
    match image {
        Some(image) => Offer::Image(image.clone()),
        None => {
            let mut value = serde_json::to_value(object).unwrap_or(Value::Null);
            value["apiVersion"] = json!("kubernaut.ai/v1alpha1");
            value["kind"] = json!("RemediationWorkflow");
            Offer::Inline(value.to_string())
        }
    }
}

/// kubernaut's name of a lifecycle.
fn catalog_status(lifecycle: Lifecycle) -> &'static str {
    match lifecycle {
        Lifecycle::Active => "Active",
        Lifecycle::Disabled => "Disabled",
        Lifecycle::Deprecated => "Deprecated",
        Lifecycle::Archived => "Archived",
    }
}

fn condition(ready: bool, reason: &str, message: &str, generation: Option<i64>) -> Value {
    json!({
        "type": "Ready", "status": if ready { "True" } else { "False" },
        "reason": reason, "message": message, "observedGeneration": generation,
        "lastTransitionTime": crate::telemetry::timestamp(),
    })
}

fn registered(record: &Record, before: bool, generation: Option<i64>) -> Value {
    let w = &record.workflow;
    let message = format!(
        "{} {} is in the catalog ({})",
        w.workflow_id, w.version, record.content_hash
    );
    json!({
        "workflowId": w.workflow_id, "contentHash": record.content_hash,
        "catalogStatus": catalog_status(record.lifecycle),
        "registeredBy": record.registered_by, "registeredAt": record.registered_at,
        "previouslyExisted": before,
        "conditions": [condition(true, "Registered", &message, generation)],
        "observedGeneration": generation,
    })
}

fn refused(error: &RegisterError, generation: Option<i64>) -> Value {
    let (reason, status, done) = match error {
        RegisterError::Invalid { .. } | RegisterError::Unreadable { .. } => {
            ("InvalidSchema", "Invalid", true)
        }
        RegisterError::Store(StoreError::Conflict { .. }) => ("VersionConflict", "Invalid", true),
        RegisterError::Extract(_) | RegisterError::Busy(_) => {
            ("SchemaUnavailable", "Pending", false)
        }
        RegisterError::Store(_) => ("CatalogUnavailable", "Pending", false),
        // Signed later, it registers at a later try.
        RegisterError::Unverified(_) => ("ImageUnverified", "Pending", false),
    };
    // What may work later (a registry, the store) is tried again: the
    // generation is not marked as observed.
    let observed = if done { generation } else { None };
    json!({
        "catalogStatus": status,
        "conditions": [condition(false, reason, &error.to_string(), generation)],
        "observedGeneration": observed,
    })
}

/// The validating webhook's route; with `certified`, only for clients
/// whose certificate the server's client CA signed.
pub fn routes(catalog: Arc<Catalog>, certified: bool) -> Router {
    let certified_only =
        axum::middleware::from_fn_with_state(certified, crate::api::tls::certified_only);
    Router::new()
        .route(
            "/remediationworkflow-webhook",
            post(review).layer(certified_only),
        )
        .layer(DefaultBodyLimit::max(MAX_REVIEW_BYTES))
        .with_state(catalog)
}

async fn review(State(catalog): State<Arc<Catalog>>, body: Bytes) -> Response {
    let review: Value = match serde_json::from_slice(&body) {
        Ok(review) => review,
        Err(error) => {
            return (StatusCode::BAD_REQUEST, format!("not JSON: {error}\n")).into_response();
        }
    };
    let request = &review["request"];
    let Some(uid) = request["uid"].as_str() else {
        let message = "not an admission.k8s.io/v1 AdmissionReview with a request uid\n";
        return (StatusCode::BAD_REQUEST, message).into_response();
    };
    let reasons = match request["operation"].as_str() {
        Some("CREATE" | "UPDATE") => {
            let catalog = catalog.clone();
            let (object, old) = (request["object"].clone(), request["oldObject"].clone());
            tokio::task::spawn_blocking(move || judge(&catalog, &object, &old))
                .await
                .unwrap_or_else(|e| vec![format!("the review failed: {e}")])
        }
        _ => Vec::new(),
    };
    let mut response = json!({"uid": uid, "allowed": reasons.is_empty()});
    if !reasons.is_empty() {
        response["status"] =
            json!({"code": 403, "reason": "Forbidden", "message": reasons.join("; ")});
    }
    let answer = json!({"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview", "response": response});
    (
        [(header::CONTENT_TYPE, "application/json")],
        answer.to_string(),
    )
        .into_response()
}

/// Every reason to refuse `object` (replacing `old`, for an update).
fn judge(catalog: &Catalog, object: &Value, old: &Value) -> Vec<String> {
    let workflow = match plumbline_catalog::workflow::from_value(object.clone()) {
        Ok(workflow) => workflow,
        Err(error) => return vec![format!("no workflow schema: {error}")],
    };
    let mut reasons: Vec<String> = catalog
        .problems(&workflow)
        .into_iter()
        .map(|v| format!("{}: {}", v.path, v.message))
        .collect();
    if let Ok(before) = plumbline_catalog::workflow::from_value(old.clone())
        && before.version == workflow.version
        && super::store::content_hash(&before) != super::store::content_hash(&workflow)
    {
        reasons.push(format!(
            "version {} is kept but its content changes: a registered version never changes; give the new content a new version",
            workflow.version
        ));
    }
    reasons
}
