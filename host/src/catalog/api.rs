//! The catalog's REST API, `/api/v1/workflows`, on the one HTTP server,
//! with its OpenAPI 3.1 document (generated from these handlers' types by
//! `utoipa`) at `/api/v1/openapi.json`.
//!
//! Every error is an RFC 7807 `application/problem+json` body whose `type`
//! names the cause, so a client can tell a schema that breaks rules
//! (`validation`, with every violation) from a registry that is down
//! (`registry-unreachable`) without reading prose.
//!
//! Writes (registering, lifecycle changes) need the bearer token of
//! `--catalog-token-file`; without one configured they are taken from
//! loopback clients only. Reads are open, as the probes are.

use super::Catalog;
use super::register::{Offer, RegisterError};
use super::search::{BadCursor, Page, Query, Summary};
use super::store::{Lifecycle, Record, Registered, StoreError};
use crate::api::tls::Peer;
use axum::extract::rejection::QueryRejection;
use axum::extract::{DefaultBodyLimit, Path, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{any, get, post};
use axum::{Extension, Json, Router};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use std::sync::Arc;
use utoipa::{OpenApi, ToSchema};

/// The largest request body taken (an inline schema is far smaller).
const MAX_BODY_BYTES: usize = 4 << 20;

/// The longest lifecycle reason kept.
const MAX_REASON_BYTES: usize = 1024;

/// The longest `detail` a problem carries (an error may quote its input).
const MAX_DETAIL_BYTES: usize = 4096;

/// Where problem types are named.
const PROBLEMS: &str = "https://plumbline.dev/problems/";

/// Who may write.
#[derive(Clone, Default)]
pub struct Access {
    /// The bearer token writes need; none: loopback clients only.
    pub token: Option<Arc<str>>,
}

#[derive(Clone)]
struct Api {
    catalog: Arc<Catalog>,
    access: Access,
}

/// The catalog's routes.
pub fn routes(catalog: Arc<Catalog>, access: Access) -> Router {
    Router::new()
        .route("/api/v1/openapi.json", get(openapi))
        .route("/api/v1/workflows", post(register).get(search))
        .route("/api/v1/workflows/{id}", get(versions))
        .route("/api/v1/workflows/{id}/versions/{version}", get(version))
        .route(
            "/api/v1/workflows/{id}/versions/{version}/lifecycle",
            post(lifecycle),
        )
        .route(
            "/api/v1/workflows/{id}/versions/{version}/validate",
            post(validate),
        )
        // What is under the API but no route of it, or a method a route
        // does not take, is a problem too, not an empty body.
        .route("/api/v1", any(no_route))
        .route("/api/v1/", any(no_route))
        .route("/api/v1/{*rest}", any(no_route))
        .method_not_allowed_fallback(wrong_method)
        .layer(DefaultBodyLimit::max(MAX_BODY_BYTES))
        .with_state(Api { catalog, access })
}

async fn no_route(uri: axum::http::Uri) -> Problem {
    let detail = format!(
        "{} is no route of the catalog's API (see /api/v1/openapi.json)",
        uri.path()
    );
    Problem::new(StatusCode::NOT_FOUND, "no-route", "No such route", detail)
}

pub(super) async fn wrong_method(method: axum::http::Method, uri: axum::http::Uri) -> Problem {
    let detail = format!(
        "{} does not take {method} (see /api/v1/openapi.json)",
        uri.path()
    );
    let title = "Method not allowed";
    Problem::new(
        StatusCode::METHOD_NOT_ALLOWED,
        "method-not-allowed",
        title,
        detail,
    )
}

/// The OpenAPI document of these routes.
#[derive(OpenApi)]
#[openapi(
    info(title = "Plumbline workflow catalog", version = "1"),
    paths(
        register,
        search,
        versions,
        version,
        lifecycle,
        validate,
        super::gate_api::check,
        super::gate_api::allowed
    ),
    components(schemas(Problem, Record, Summary, Page, Lifecycle, Registration))
)]
pub struct Document;

/// The OpenAPI document.
pub async fn openapi() -> Response {
    let json = Document::openapi()
        .to_json()
        .expect("the document serializes");
    ([(header::CONTENT_TYPE, "application/json")], json).into_response()
}

/// An RFC 7807 problem.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct Problem {
    /// What kind of problem: `https://plumbline.dev/problems/<cause>`.
    #[serde(rename = "type")]
    pub kind: String,
    /// The cause, in a few words.
    pub title: String,
    /// The HTTP status.
    pub status: u16,
    /// What happened, naming what is wrong.
    pub detail: String,
    /// Every violation, each at its path (a schema that breaks rules, a
    /// parameter set that does not fit).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub violations: Vec<ViolationBody>,
}

/// One violation.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct ViolationBody {
    /// Where.
    pub path: String,
    /// What is wrong.
    pub message: String,
}

impl Problem {
    fn new(status: StatusCode, cause: &str, title: &str, mut detail: String) -> Problem {
        if detail.len() > MAX_DETAIL_BYTES {
            let mut cut = MAX_DETAIL_BYTES;
            while !detail.is_char_boundary(cut) {
                cut -= 1;
            }
            detail.truncate(cut);
            detail.push_str(" …");
        }
        Problem {
            kind: format!("{PROBLEMS}{cause}"),
            title: title.to_owned(),
            status: status.as_u16(),
            detail,
            violations: Vec::new(),
        }
    }

    fn with(mut self, violations: &[plumbline_catalog::Violation]) -> Problem {
        self.violations = violations
            .iter()
            .map(|v| ViolationBody {
                path: v.path.clone(),
                message: v.message.clone(),
            })
            .collect();
        self
    }
}

impl IntoResponse for Problem {
    fn into_response(self) -> Response {
        let status = StatusCode::from_u16(self.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        let body = serde_json::to_vec(&self).expect("a problem serializes");
        let headers = [(header::CONTENT_TYPE, "application/problem+json")];
        (status, headers, body).into_response()
    }
}

impl From<StoreError> for Problem {
    fn from(error: StoreError) -> Problem {
        if let StoreError::Store { .. } = error {
            tracing::error!("{error}");
        }
        Problem::of(error.cause(), error.to_string())
    }
}

impl From<RegisterError> for Problem {
    fn from(error: RegisterError) -> Problem {
        let problem = Problem::of(error.cause(), error.to_string());
        match error {
            RegisterError::Invalid { violations, .. } => problem.with(&violations),
            _ => problem,
        }
    }
}

impl Problem {
    /// The problem of a failed registration or store call, by its cause.
    fn of(cause: &'static str, detail: String) -> Problem {
        let unprocessable = StatusCode::UNPROCESSABLE_ENTITY;
        let (status, title) = match cause {
            "conflict" => (
                StatusCode::CONFLICT,
                "Version registered with other content",
            ),
            "not-found" => (StatusCode::NOT_FOUND, "No such workflow version"),
            "archived" => (StatusCode::CONFLICT, "The version is archived"),
            "busy" => (
                StatusCode::SERVICE_UNAVAILABLE,
                "Too many images are being read",
            ),
            "validation" => (unprocessable, "The schema breaks rules"),
            "unreadable-schema" => (unprocessable, "No workflow schema"),
            "bad-reference" => (unprocessable, "Not an image reference"),
            "image-not-found" => (unprocessable, "No such image in the registry"),
            "registry-unreachable" => (
                StatusCode::BAD_GATEWAY,
                "The registry refused or could not be reached",
            ),
            "cap-exceeded" => (unprocessable, "A cap of extraction was reached"),
            "unreadable-image" => (unprocessable, "The image's layers cannot be read"),
            "schema-not-found" => (unprocessable, "No schema in the image"),
            "image-unverified" => (
                unprocessable,
                "The image carries no signature a trusted key made",
            ),
            _ => (
                StatusCode::INTERNAL_SERVER_ERROR,
                "The catalog store failed",
            ),
        };
        Problem::new(status, cause, title, detail)
    }
}

impl Problem {
    /// The daemon cannot be reached, or answered what is no problem.
    pub fn unreachable(detail: String) -> Problem {
        let title = "The catalog cannot be reached";
        Problem::new(StatusCode::BAD_GATEWAY, "unreachable", title, detail)
    }

    /// A request that reads but cannot be acted on.
    pub fn unprocessable(cause: &str, title: &str, detail: String) -> Problem {
        Problem::new(StatusCode::UNPROCESSABLE_ENTITY, cause, title, detail)
    }

    /// A request that cannot be read.
    pub fn bad_request(detail: String) -> Problem {
        let title = "The request cannot be read";
        Problem::new(StatusCode::BAD_REQUEST, "bad-request", title, detail)
    }
}

fn bad_request(detail: String) -> Problem {
    Problem::bad_request(detail)
}

/// A JSON object body, read as `T`: anything else (an array, a number,
/// a body that is no JSON) is a 400 problem that says why.
pub struct Body<T>(pub T);

impl<S: Send + Sync, T: serde::de::DeserializeOwned> axum::extract::FromRequest<S> for Body<T> {
    type Rejection = Problem;

    async fn from_request(request: axum::extract::Request, state: &S) -> Result<Self, Problem> {
        let Json(value) = Json::<Value>::from_request(request, state)
            .await
            .map_err(|e| bad_request(e.body_text()))?;
        if !value.is_object() {
            return Err(bad_request("the body must be a JSON object".into()));
        }
        serde_json::from_value(value)
            .map(Body)
            .map_err(|e| bad_request(e.to_string()))
    }
}

/// Whether the request may write under `access`; the actor it writes as.
pub fn writer(access: &Access, headers: &HeaderMap, peer: &Peer) -> Result<String, Problem> {
    match &access.token {
        Some(token) => {
            // The scheme is case-insensitive (RFC 9110).
            let given = headers
                .get(header::AUTHORIZATION)
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.split_once(' '))
                .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("bearer"))
                .map(|(_, token)| token.trim());
            // Compared whole, in constant time: the token is a secret.
            let matches = given.is_some_and(|given| {
                given.len() == token.len()
                    && given
                        .bytes()
                        .zip(token.bytes())
                        .fold(0u8, |acc, (a, b)| acc | (a ^ b))
                        == 0
            });
            if matches {
                Ok("api (bearer token)".into())
            } else {
                Err(Problem::new(
                    StatusCode::UNAUTHORIZED,
                    "unauthorized",
                    "A bearer token is needed",
                    "catalog writes need the bearer token of --catalog-token-file".into(),
                ))
            }
        }
        // A browser sends `Origin`: without a token, a web page could
        // otherwise write to a daemon on the same machine.
        None if headers.contains_key(header::ORIGIN) => Err(Problem::new(
            StatusCode::FORBIDDEN,
            "forbidden",
            "Writes from a web page are refused",
            "with no --catalog-token-file, catalog writes with an Origin header (a browser's) are refused"
                .into(),
        )),
        None => match peer.address {
            Some(address) if address.ip().is_loopback() => Ok(format!("api ({})", address.ip())),
            _ => Err(Problem::new(
                StatusCode::FORBIDDEN,
                "forbidden",
                "Writes are taken from loopback only",
                "with no --catalog-token-file, catalog writes are taken from loopback clients only"
                    .into(),
            )),
        },
    }
}

/// A registration: an image that carries its schema, or the schema itself.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(untagged)]
pub enum RegisterBody {
    /// An image that carries its schema.
    Image(ImageBody),
    /// The schema itself.
    Inline(InlineBody),
}

/// An image that carries its schema.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ImageBody {
    /// The image whose schema is registered (`registry/repo:tag`).
    #[schema(min_length = 1)]
    pub schema_image: String,
}

/// A schema given inline.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct InlineBody {
    /// The schema's text (YAML or JSON), or the schema as an object.
    pub schema: SchemaGiven,
}

/// A schema's text, or the schema as an object.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(untagged)]
pub enum SchemaGiven {
    /// YAML or JSON text.
    Text(String),
    /// The schema itself.
    Object(SchemaObject),
}

/// A schema as an object.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(transparent)]
#[schema(value_type = Object)]
pub struct SchemaObject(serde_json::Map<String, Value>);

/// What a registration did.
#[derive(Debug, Serialize, ToSchema)]
pub struct Registration {
    /// `created`, or `unchanged` (the same content was registered already).
    pub outcome: String,
    /// The version as the catalog holds it.
    pub record: Record,
}

/// Registers a workflow version.
#[utoipa::path(
    post, path = "/api/v1/workflows", request_body = RegisterBody,
    responses(
        (status = 201, description = "Registered", body = Registration),
        (status = 200, description = "The same content was registered already", body = Registration),
        (status = 400, body = Problem, content_type = "application/problem+json"),
        (status = 401, body = Problem, content_type = "application/problem+json"),
        (status = 403, body = Problem, content_type = "application/problem+json"),
        (status = 409, body = Problem, content_type = "application/problem+json"),
        (status = 422, body = Problem, content_type = "application/problem+json"),
        (status = 502, body = Problem, content_type = "application/problem+json"),
    )
)]
async fn register(
    State(api): State<Api>,
    Extension(peer): Extension<Peer>,
    headers: HeaderMap,
    Body(body): Body<Value>,
) -> Result<(StatusCode, Json<Registration>), Problem> {
    let actor = writer(&api.access, &headers, &peer)?;
    let body: RegisterBody = serde_json::from_value(body).map_err(|_| {
        bad_request(
            "give exactly one of `schemaImage` (an image reference) and `schema` (text or an object), and nothing else"
                .into(),
        )
    })?;
    let offer = match body {
        RegisterBody::Image(ImageBody { schema_image }) if !schema_image.trim().is_empty() => {
            Offer::Image(schema_image)
        }
        RegisterBody::Image(_) => return Err(bad_request("`schemaImage` is empty".into())),
        RegisterBody::Inline(InlineBody {
            schema: SchemaGiven::Text(text),
        }) => Offer::Inline(text),
        RegisterBody::Inline(InlineBody {
            schema: SchemaGiven::Object(SchemaObject(object)),
        }) => Offer::Inline(Value::Object(object).to_string()),
    };
    let catalog = api.catalog.clone();
    let registered = tokio::task::spawn_blocking(move || catalog.register(&offer, &actor))
        .await
        .map_err(|e| bad_request(format!("the registration failed: {e}")))??;
    Ok(match registered {
        Registered::Created(record) => (StatusCode::CREATED, outcome("created", record)),
        Registered::Unchanged(record) => (StatusCode::OK, outcome("unchanged", record)),
    })
}

fn outcome(what: &str, record: Record) -> Json<Registration> {
    Json(Registration {
        outcome: what.into(),
        record,
    })
}

/// Searches the versions by labels and words of their description.
#[utoipa::path(
    get, path = "/api/v1/workflows", params(Query),
    responses(
        (status = 200, body = Page),
        (status = 400, body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "No page has this cursor", body = Problem, content_type = "application/problem+json"),
    )
)]
async fn search(
    State(api): State<Api>,
    query: Result<axum::extract::Query<Query>, QueryRejection>,
) -> Result<Json<Page>, Problem> {
    let axum::extract::Query(query) = query.map_err(|e| bad_request(e.body_text()))?;
    let page = api.catalog.search(&query).map_err(|e| match e {
        BadCursor::Unknown(_) => Problem::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "bad-cursor",
            "No page has this cursor",
            e.to_string(),
        ),
        _ => bad_request(e.to_string()),
    })?;
    Ok(Json(page))
}

/// Every version of one workflow, oldest first.
#[utoipa::path(
    get, path = "/api/v1/workflows/{id}", params(("id" = String, Path, description = "The workflow id")),
    responses((status = 200, body = Vec<Record>), (status = 404, body = Problem, content_type = "application/problem+json"))
)]
async fn versions(
    State(api): State<Api>,
    Path(id): Path<String>,
) -> Result<Json<Vec<Record>>, Problem> {
    Ok(Json(api.catalog.versions(&id)?))
}

/// One version.
#[utoipa::path(
    get, path = "/api/v1/workflows/{id}/versions/{version}",
    params(("id" = String, Path, description = "The workflow id"), ("version" = String, Path, description = "The version")),
    responses((status = 200, body = Record), (status = 404, body = Problem, content_type = "application/problem+json"))
)]
async fn version(
    State(api): State<Api>,
    Path((id, version)): Path<(String, String)>,
) -> Result<Json<Record>, Problem> {
    Ok(Json(api.catalog.get(&id, &version)?))
}

/// A lifecycle change.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct LifecycleBody {
    /// The lifecycle now: `active` (enable), `disabled`, `deprecated` or
    /// `archived`.
    pub lifecycle: Lifecycle,
    /// Why (not blank).
    #[schema(pattern = "\\S")]
    pub reason: String,
}

/// Changes a version's lifecycle (disable, enable, deprecate, archive).
#[utoipa::path(
    post, path = "/api/v1/workflows/{id}/versions/{version}/lifecycle", request_body = LifecycleBody,
    params(("id" = String, Path, description = "The workflow id"), ("version" = String, Path, description = "The version")),
    responses(
        (status = 200, body = Record),
        (status = 400, body = Problem, content_type = "application/problem+json"),
        (status = 401, body = Problem, content_type = "application/problem+json"),
        (status = 403, body = Problem, content_type = "application/problem+json"),
        (status = 404, body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "The version is archived, which is final", body = Problem, content_type = "application/problem+json"),
    )
)]
async fn lifecycle(
    State(api): State<Api>,
    Extension(peer): Extension<Peer>,
    headers: HeaderMap,
    Path((id, version)): Path<(String, String)>,
    Body(body): Body<LifecycleBody>,
) -> Result<Json<Record>, Problem> {
    let actor = writer(&api.access, &headers, &peer)?;
    if body.reason.trim().is_empty() {
        return Err(bad_request("say why: `reason` is empty".into()));
    }
    if body.reason.len() > MAX_REASON_BYTES {
        return Err(bad_request(format!(
            "`reason` is longer than {MAX_REASON_BYTES} bytes"
        )));
    }
    let record = api
        .catalog
        .set_lifecycle(&id, &version, body.lifecycle, &body.reason, &actor)?;
    Ok(Json(record))
}

/// A parameter set to validate.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ValidateBody {
    /// The parameters, by name.
    #[schema(value_type = Object)]
    pub parameters: Map<String, Value>,
}

/// What validation found.
#[derive(Debug, Serialize, ToSchema)]
pub struct Validation {
    /// Whether the parameters fit.
    pub valid: bool,
    /// Every problem, at the JSON pointer of its parameter.
    pub violations: Vec<ViolationBody>,
}

/// Validates a parameter set against a version's schema.
#[utoipa::path(
    post, path = "/api/v1/workflows/{id}/versions/{version}/validate", request_body = ValidateBody,
    params(("id" = String, Path, description = "The workflow id"), ("version" = String, Path, description = "The version")),
    responses(
        (status = 200, body = Validation),
        (status = 400, body = Problem, content_type = "application/problem+json"),
        (status = 404, body = Problem, content_type = "application/problem+json"),
    )
)]
async fn validate(
    State(api): State<Api>,
    Path((id, version)): Path<(String, String)>,
    Body(body): Body<ValidateBody>,
) -> Result<Json<Validation>, Problem> {
    let violations = api.catalog.validate(&id, &version, &body.parameters)?;
    Ok(Json(Validation {
        valid: violations.is_empty(),
        violations: violations
            .into_iter()
            .map(|v| ViolationBody {
                path: v.path,
                message: v.message,
            })
            .collect(),
    }))
}
