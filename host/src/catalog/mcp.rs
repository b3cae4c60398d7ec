//! The catalog for agents: the Model Context Protocol tools
//! `search_workflows` and `get_workflow` over streamable HTTP at `/mcp`,
//! on the official Rust SDK (`rmcp`), so an LLM agent that picks a
//! workflow reads exactly the schema the catalog validates executions
//! against.
//!
//! The transport runs stateless with JSON answers: no session outlives a
//! request, so any replica answers any call, and the HTTP server's
//! connection lifetime never cuts a stream. Only the `Host` names
//! `--mcp-allowed-host` gives (loopback by default) are answered, which
//! keeps a browser page from reaching a local daemon through DNS
//! rebinding.

use super::Catalog;
use super::search::Query;
use super::store::Lifecycle;
use axum::Router;
use axum::response::{IntoResponse as _, Response};
use rmcp::handler::server::router::tool::ToolRouter;
use rmcp::handler::server::wrapper::Parameters;
use rmcp::model::{CallToolResult, Implementation, ServerCapabilities, ServerConfig};
use rmcp::transport::streamable_http_server::session::local::LocalSessionManager;
use rmcp::transport::streamable_http_server::{StreamableHttpServerConfig, StreamableHttpService};
use rmcp::{ErrorData, ServerHandler, schemars, tool, tool_handler, tool_router};
use serde::Deserialize;
use serde_json::{Value, json};
use std::sync::Arc;

/// What `search_workflows` takes. Not the REST [`Query`] itself: this is
/// the schema an agent reads, so its words are spelled out for a model
/// (`query`, examples of each label), and it has no `lifecycle`, since an
/// agent may only pick versions that run.
#[derive(Debug, Default, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct SearchArgs {
    /// Words that must all appear in the workflow's id, action type or
    /// description (what it does, when to use it and not).
    #[serde(default)]
    pub query: Option<String>,
    /// A severity it must be labelled with (`critical`, `high`, …).
    #[serde(default)]
    pub severity: Option<String>,
    /// An environment it must be labelled with (`production`, …).
    #[serde(default)]
    pub environment: Option<String>,
    /// A component it must be labelled with (`pod`, `deployment`, …).
    #[serde(default)]
    pub component: Option<String>,
    /// Its priority (`P0`…).
    #[serde(default)]
    pub priority: Option<String>,
    /// Its action type (`RestartPod`, `ScaleReplicas`, …).
    #[serde(default)]
    pub action_type: Option<String>,
    /// Results per page (50 when not given, at most 500).
    #[serde(default)]
    pub limit: Option<usize>,
    /// The `next` cursor of the previous page.
    #[serde(default)]
    pub cursor: Option<String>,
}

/// What `get_workflow` takes.
#[derive(Debug, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct GetArgs {
    /// The workflow's id.
    pub workflow_id: String,
    /// Its version; without one, the newest version that may run.
    #[serde(default)]
    pub version: Option<String>,
}

/// The tools, over one catalog.
#[derive(Clone)]
pub struct Tools {
    catalog: Arc<Catalog>,
    tool_router: ToolRouter<Self>,
}

#[tool_router]
impl Tools {
    /// The tools of `catalog`.
    pub fn new(catalog: Arc<Catalog>) -> Tools {
        Tools {
            catalog,
            tool_router: Self::tool_router(),
        }
    }

    /// Finds workflows that may run by words of their description and by
    /// labels.
    #[tool(
        description = "Find remediation workflows that may run (active or deprecated), by words of their description and by labels. Returns summaries and a cursor for the next page."
    )]
    async fn search_workflows(
        &self,
        Parameters(args): Parameters<SearchArgs>,
    ) -> Result<CallToolResult, ErrorData> {
        let query = Query {
            q: args.query,
            severity: args.severity,
            environment: args.environment,
            component: args.component,
            priority: args.priority,
            action_type: args.action_type,
            lifecycle: None,
            limit: args.limit,
            cursor: args.cursor,
        };
        let page = self
            .catalog
            .search(&query)
            .map_err(|e| ErrorData::invalid_params(e.to_string(), None))?;
        structured(&page)
    }

    /// One workflow version with the JSON Schema its parameters must fit.
    #[tool(
        description = "Get one workflow version: what it does, when to use it, how it runs, its lifecycle, and `parametersSchema`, the JSON Schema an execution's parameters must fit. Without a version, the newest that may run."
    )]
    async fn get_workflow(
        &self,
        Parameters(args): Parameters<GetArgs>,
    ) -> Result<CallToolResult, ErrorData> {
        let not_found =
            |e: super::store::StoreError| ErrorData::invalid_params(e.to_string(), None);
        let record = match &args.version {
            Some(version) => self
                .catalog
                .get(&args.workflow_id, version)
                .map_err(not_found)?,
            None => self
                .catalog
                .versions(&args.workflow_id)
                .map_err(not_found)?
                .into_iter()
                .rev()
                .find(|r| matches!(r.lifecycle, Lifecycle::Active | Lifecycle::Deprecated))
                .ok_or_else(|| {
                    let message = format!("no version of {} may run", args.workflow_id);
                    ErrorData::invalid_params(message, None)
                })?,
        };
        let schema = plumbline_catalog::parameters_schema(&record.workflow);
        let mut view = serde_json::to_value(&record).map_err(internal)?;
        view["parametersSchema"] = schema;
        Ok(CallToolResult::structured(view))
    }
}

#[tool_handler(router = self.tool_router)]
impl ServerHandler for Tools {
    fn get_info(&self) -> ServerConfig {
        let plumbline = Implementation::new("plumbline", env!("CARGO_PKG_VERSION"))
            .with_title("Plumbline workflow catalog");
        ServerConfig::new(ServerCapabilities::builder().enable_tools().build())
            .with_server_info(plumbline)
            .with_instructions(
                "Plumbline's workflow catalog: search_workflows finds remediation workflows; \
             get_workflow gives one with the JSON Schema its parameters must fit. \
             Executions whose parameters do not fit it are denied.",
            )
    }
}

fn structured(value: &impl serde::Serialize) -> Result<CallToolResult, ErrorData> {
    let value = serde_json::to_value(value).map_err(internal)?;
    Ok(CallToolResult::structured(value))
}

fn internal(error: serde_json::Error) -> ErrorData {
    ErrorData::internal_error(error.to_string(), Some(json!({})))
}

/// The MCP endpoint at `/mcp` over `catalog`, answering requests whose
/// `Host` is one of `hosts`.
pub fn routes(catalog: Arc<Catalog>, hosts: Vec<String>) -> Router {
    let config = StreamableHttpServerConfig::default()
        .with_legacy_session_mode(false)
        .with_json_response(true)
        .with_sse_keep_alive(None)
        .with_allowed_hosts(hosts);
    let service = StreamableHttpService::new(
        move || Ok(Tools::new(catalog.clone())),
        Arc::new(LocalSessionManager::default()),
        config,
    );
    Router::new()
        .nest_service("/mcp", service)
        .layer(axum::middleware::from_fn(json_rpc_errors))
}

/// The most a JSON-RPC message to `/mcp` may be.
const MAX_MESSAGE_BYTES: usize = 1 << 20;

/// A body that is no JSON, or no JSON-RPC message, gets a 400 with a
/// JSON-RPC error (parse error, invalid request), as the protocol says; the
/// SDK answers 415, which tells a client to change its content type.
async fn json_rpc_errors(
    request: axum::extract::Request,
    next: axum::middleware::Next,
) -> Response {
    use axum::http::{StatusCode, header};
    let json = request
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|t| t.starts_with("application/json"));
    if !json || request.method() != axum::http::Method::POST {
        return next.run(request).await;
    }
    let (parts, body) = request.into_parts();
    let Ok(bytes) = axum::body::to_bytes(body, MAX_MESSAGE_BYTES).await else {
        let said =
            format!("the message is not there whole, or larger than {MAX_MESSAGE_BYTES} bytes");
        return json_rpc_error(StatusCode::PAYLOAD_TOO_LARGE, -32700, said);
    };
    if let Err(error) = serde_json::from_slice::<Value>(&bytes) {
        return json_rpc_error(
            StatusCode::BAD_REQUEST,
            -32700,
            format!("not JSON: {error}"),
        );
    }
    let request = axum::extract::Request::from_parts(parts, bytes.into());
    let response = next.run(request).await;
    if response.status() != StatusCode::UNSUPPORTED_MEDIA_TYPE {
        return response;
    }
    let said = axum::body::to_bytes(response.into_body(), 4096)
        .await
        .unwrap_or_default();
    let said = String::from_utf8_lossy(&said).trim().to_owned();
    json_rpc_error(StatusCode::BAD_REQUEST, -32600, said)
}

fn json_rpc_error(status: axum::http::StatusCode, code: i32, message: String) -> Response {
    let error = json!({"jsonrpc": "2.0", "id": null, "error": {"code": code, "message": message}});
    (status, axum::Json(error)).into_response()
}
