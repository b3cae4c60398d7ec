//! The gate's routes: `POST /gate` for a caller that asks before it runs
//! something, `/gate-webhook` for the API server (a validating admission
//! webhook for `PipelineRun`, `TaskRun` and `Job`), and
//! `GET /api/v1/executions`, the executions allowed.
//!
//! Both deciding routes are fail-closed under a deadline: a decision not
//! made in time (a policy that hangs, a store that stalls) is a denial
//! that says so.

use super::Catalog;
use super::api::{Access, Body, Problem, writer};
use super::gate::{Decided, Gate};
use super::store::ExecutionRecord;
use crate::api::tls::Peer;
use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Extension, Json, Router};
use plumbline_catalog::executions::{self, Execution, Runner};
use serde::Deserialize;
use serde_json::{Map, Value, json};
use std::sync::Arc;
use std::time::Duration;

/// The largest review or request read (a PipelineRun is far smaller).
const MAX_BODY_BYTES: usize = 4 << 20;

#[derive(Clone)]
pub(super) struct GateState {
    gate: Arc<Gate>,
    catalog: Arc<Catalog>,
    access: Access,
    deadline: Duration,
}

/// The gate's routes over `gate`, each decision within `deadline`; with
/// `certified`, the webhook's only for clients whose certificate the
/// server's client CA signed.
pub fn routes(
    gate: Arc<Gate>,
    catalog: Arc<Catalog>,
    access: Access,
    deadline: Duration,
    certified: bool,
) -> Router {
    let certified_only =
        axum::middleware::from_fn_with_state(certified, crate::api::tls::certified_only);
    // The certificate first, whatever the method: a client without one
    // learns nothing of the route.
    let webhook = Router::new()
        .route("/gate-webhook", post(webhook))
        .layer(certified_only);
    Router::new()
        .route("/gate", post(check))
        .route("/api/v1/executions", get(allowed))
        .method_not_allowed_fallback(super::api::wrong_method)
        .merge(webhook)
        .layer(DefaultBodyLimit::max(MAX_BODY_BYTES))
        .with_state(GateState {
            gate,
            catalog,
            access,
            deadline,
        })
}

/// Decides on a blocking thread within the deadline; too late is a denial.
async fn decide(
    state: &GateState,
    execution: Execution,
    requester: String,
    runner: String,
    dry_run: bool,
) -> Decided {
    let gate = state.gate.clone();
    let work =
        tokio::task::spawn_blocking(move || gate.decide(&execution, &requester, &runner, dry_run));
    match tokio::time::timeout(state.deadline, work).await {
        Ok(Ok(decided)) => decided,
        Ok(Err(error)) => denied(format!("the gate failed: {error}")),
        Err(_) => denied(format!(
            "the gate did not decide within {:?}; denied (fail-closed)",
            state.deadline
        )),
    }
}

fn denied(reason: String) -> Decided {
    Decided {
        allowed: false,
        reasons: vec![reason],
        workflow_id: None,
        version: None,
    }
}

/// What `POST /gate` takes: an execution object, or its parts.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct GateBody {
    /// A PipelineRun, TaskRun or Job, as it would be created.
    #[serde(default)]
    #[schema(value_type = Option<Object>)]
    pub object: Option<Value>,
    /// Or: the workflow.
    #[serde(default)]
    pub workflow_id: Option<String>,
    /// Its version.
    #[serde(default)]
    pub version: Option<String>,
    /// The image or bundle it runs.
    #[serde(default)]
    pub image: Option<String>,
    /// Its parameters.
    #[serde(default)]
    #[schema(value_type = Object)]
    pub parameters: Map<String, Value>,
    /// Who asks for it.
    #[serde(default)]
    pub requester: Option<String>,
}

/// Whether an execution may run.
#[utoipa::path(
    post, path = "/gate", request_body = GateBody,
    responses(
        (status = 200, body = Decided),
        (status = 400, body = Problem, content_type = "application/problem+json"),
        (status = 401, body = Problem, content_type = "application/problem+json"),
        (status = 403, body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "The object is no execution", body = Problem, content_type = "application/problem+json"),
    )
)]
pub(super) async fn check(
    State(state): State<GateState>,
    Extension(peer): Extension<Peer>,
    headers: HeaderMap,
    Body(body): Body<GateBody>,
) -> Result<Json<Decided>, Problem> {
    let actor = writer(&state.access, &headers, &peer)?;
    let execution = match body.object {
        Some(object) => executions::read(&object).map_err(|e| {
            Problem::unprocessable("not-an-execution", "No execution", e.to_string())
        })?,
        None => Execution {
            runner: Runner::PipelineRun,
            workflow: body.workflow_id.zip(body.version),
            image: body.image,
            parameters: body.parameters,
            schema_digest: None,
            pod: None,
            other_images: Vec::new(),
            unread: Vec::new(),
        },
    };
    // Who asked is the caller the server knows; whom it names is said
    // beside, never instead.
    let requester = match body.requester {
        Some(named) => format!("{actor} for {named}"),
        None => actor,
    };
    Ok(Json(
        decide(&state, execution, requester, "api".into(), false).await,
    ))
}

/// The executions allowed, newest first (the last 100).
#[utoipa::path(
    get, path = "/api/v1/executions",
    responses((status = 200, body = Vec<ExecutionRecord>))
)]
pub(super) async fn allowed(
    State(state): State<GateState>,
) -> Result<Json<Vec<ExecutionRecord>>, Problem> {
    Ok(Json(state.catalog.executions(100)?))
}

/// The admission webhook: an `admission.k8s.io/v1` AdmissionReview in, its
/// answer out. A create is decided; anything else (a controller updating
/// a run's status, a delete) is allowed, as is a kind that is no
/// execution (the webhook's rules should not send one).
async fn webhook(State(state): State<GateState>, body: Bytes) -> Response {
    let review: Value = match serde_json::from_slice(&body) {
        Ok(review) => review,
        Err(error) => return bad_review(format!("not JSON: {error}")),
    };
    let request = &review["request"];
    let Some(uid) = request["uid"].as_str().map(str::to_owned) else {
        return bad_review("not an admission.k8s.io/v1 AdmissionReview with a request uid".into());
    };
    // An API server reads the answer in the version it asked in.
    let version = review["apiVersion"].as_str().unwrap_or_default();
    if !matches!(version, "admission.k8s.io/v1" | "admission.k8s.io/v1beta1") {
        return bad_review(format!(
            "an AdmissionReview of apiVersion `{version}`: admission.k8s.io/v1 or v1beta1 is read"
        ));
    }
    let version = version.to_owned();
    let answer = |response: Value| {
        let mut response = response;
        response["uid"] = json!(uid);
        let review =
            json!({"apiVersion": version, "kind": "AdmissionReview", "response": response});
        (
            [(header::CONTENT_TYPE, "application/json")],
            review.to_string(),
        )
            .into_response()
    };
    if request["operation"] != "CREATE" {
        return answer(json!({"allowed": true}));
    }
    // A create always carries its object: one without is no review an API
    // server sends, and nothing can be decided on it.
    if !request["object"].is_object() {
        return answer(deny_response(&[
            "the review's CREATE carries no object".to_owned()
        ]));
    }
    let execution = match executions::read(&request["object"]) {
        Ok(execution) => execution,
        Err(error @ executions::ExecutionError::NotAnExecution { .. }) => {
            return answer(
                json!({"allowed": true, "warnings": [format!("plumbline gate: {error}")]}),
            );
        }
        Err(error) => return answer(deny_response(&[error.to_string()])),
    };
    let requester = request
        .pointer("/userInfo/username")
        .and_then(Value::as_str)
        .unwrap_or("unknown");
    let runner = format!(
        "{} {}/{}",
        request
            .pointer("/kind/kind")
            .and_then(Value::as_str)
            .unwrap_or("object"),
        request["namespace"].as_str().unwrap_or_default(),
        request["name"]
            .as_str()
            .or_else(|| request
                .pointer("/object/metadata/generateName")
                .and_then(Value::as_str))
            .unwrap_or_default()
    );
    let dry_run = request["dryRun"] == true;
    let decided = decide(&state, execution, requester.to_owned(), runner, dry_run).await;
    if decided.allowed {
        answer(json!({"allowed": true}))
    } else {
        answer(deny_response(&decided.reasons))
    }
}

fn deny_response(reasons: &[String]) -> Value {
    json!({
        "allowed": false,
        "status": {"code": 403, "reason": "Forbidden",
                   "message": format!("plumbline gate: {}", reasons.join("; "))},
    })
}

fn bad_review(message: String) -> Response {
    (StatusCode::BAD_REQUEST, format!("{message}\n")).into_response()
}
