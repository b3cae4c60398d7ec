//! The test API server's HTTP side: the paths, verbs, query parameters and
//! bodies of the real Kubernetes API that `kubectl` and kube-rs use
//! (discovery, get, list with `limit`/`continue`, watch as a chunked stream
//! of JSON events with bookmarks, create, update, merge and apply patches,
//! delete, deletecollection, dry runs), each answered as a v1.35 server
//! answers, errors as `Status` objects.

use super::resources::Resource;
use super::store::{ApiError, Change, Key, Store, Write};
use axum::body::{Body, Bytes};
use axum::extract::{Request, State};
use axum::http::{HeaderMap, Method, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};
use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::broadcast;

/// What every request shares.
pub struct Server {
    /// The objects.
    pub store: Store,
    /// How often a watch that asked for bookmarks gets one.
    pub bookmark_every: Duration,
    /// Ends the open watches of a resource (its plural) with 410 Gone, as
    /// an API server whose watch cache was reset does.
    pub expiry: broadcast::Sender<String>,
    /// Where audit events of writes go.
    pub audit: super::audit::Audit,
    /// Resources (plurals) no one may read, as RBAC would refuse them.
    pub forbidden: std::sync::Mutex<std::collections::HashSet<String>>,
}

/// Answers one request; a write's audit event is posted after.
pub async fn handle(State(server): State<Arc<Server>>, request: Request) -> Response {
    let method = request.method().clone();
    if matches!(method, Method::GET | Method::HEAD | Method::OPTIONS) {
        return answer_request(server, request).await;
    }
    let uri = request.uri().to_string();
    let user = user_of(request.headers());
    let response = answer_request(server.clone(), request).await;
    let (parts, body) = response.into_parts();
    let bytes = axum::body::to_bytes(body, 64 << 20)
        .await
        .unwrap_or_default();
    let object: Value = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
    server
        .audit
        .write(&method, &uri, &user, parts.status.as_u16(), &object);
    Response::from_parts(parts, Body::from(bytes))
}

/// Who makes a request: kubectl sends no bearer token over plain HTTP;
/// `--as` (an impersonation header) it does send, and a real server then
/// records the impersonated user.
fn user_of(headers: &HeaderMap) -> String {
    let header = |name: &str| headers.get(name).and_then(|v| v.to_str().ok());
    header("impersonate-user")
        .or_else(|| header("authorization").and_then(|v| v.strip_prefix("Bearer ")))
        .unwrap_or("system:anonymous")
        .to_owned()
}

async fn answer_request(server: Arc<Server>, request: Request) -> Response {
    let refused = super::audit::object_ref(&request.uri().to_string())
        .and_then(|object| object["resource"].as_str().map(str::to_owned))
        .filter(|plural| server.forbidden.lock().unwrap().contains(plural));
    if let Some(plural) = refused {
        let user = user_of(request.headers());
        return failure(ApiError::new(
            403,
            "Forbidden",
            format!("{plural} is forbidden: User \"{user}\" cannot list resource \"{plural}\""),
        ));
    }
    let (parts, body) = request.into_parts();
    let body = match axum::body::to_bytes(body, 64 << 20).await {
        Ok(b) => b,
        Err(e) => {
            return failure(ApiError::new(
                400,
                "BadRequest",
                format!("reading the body: {e}"),
            ));
        }
    };
    let query: HashMap<String, String> = parts
        .uri
        .query()
        .map(|q| {
            url::form_urlencoded::parse(q.as_bytes())
                .into_owned()
                .collect()
        })
        .unwrap_or_default();
    let call = Call {
        method: parts.method.clone(),
        query,
        headers: parts.headers.clone(),
        body,
    };
    let segments: Vec<&str> = parts.uri.path().trim_matches('/').split('/').collect();
    match route(&server, &segments, call).await {
        Ok(response) => response,
        Err(error) => failure(error),
    }
}

struct Call {
    method: Method,
    query: HashMap<String, String>,
    headers: HeaderMap,
    body: Bytes,
}

impl Call {
    fn write(&self) -> Write {
        let user = user_of(&self.headers);
        let agent = self
            .headers
            .get(header::USER_AGENT)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.split('/').next())
            .unwrap_or("unknown");
        Write {
            user,
            dry_run: self.query.get("dryRun").is_some_and(|d| d == "All"),
            manager: self
                .query
                .get("fieldManager")
                .cloned()
                .unwrap_or_else(|| agent.to_owned()),
            named: true,
        }
    }

    fn json(&self) -> Result<Value, ApiError> {
        if self
            .content_type()
            .starts_with("application/vnd.kubernetes.protobuf")
        {
            return super::protobuf::decode(&self.body)
                .map_err(|e| ApiError::new(415, "UnsupportedMediaType", e));
        }
        serde_json::from_slice(&self.body).map_err(|e| {
            ApiError::new(
                400,
                "BadRequest",
                format!("the body ({}) is not JSON: {e}", self.content_type()),
            )
        })
    }

    fn content_type(&self) -> &str {
        self.headers
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("application/json")
    }
}

async fn route(server: &Arc<Server>, segments: &[&str], call: Call) -> Result<Response, ApiError> {
    let store = &server.store;
    let discovery = |value: Value| Ok(answer(200, &value));
    match segments {
        ["version"] => discovery(json!({
            "major": "1", "minor": "35", "gitVersion": "v1.35.0", "gitCommit": "test",
            "gitTreeState": "clean", "buildDate": "2026-01-01T00:00:00Z", "goVersion": "go1.25",
            "compiler": "gc", "platform": "linux/amd64",
        })),
        ["api"] => discovery(json!({"kind": "APIVersions", "versions": ["v1"],
            "serverAddressByClientCIDRs": [{"clientCIDR": "0.0.0.0/0", "serverAddress": "127.0.0.1"}]})),
        ["apis"] => discovery(group_list(&store.resources())),
        ["api", "v1"] => discovery(resource_list(&store.resources(), "", "v1")),
        ["apis", group] => {
            let list = group_list(&store.resources());
            let found = list["groups"]
                .as_array()
                .unwrap()
                .iter()
                .find(|g| g["name"] == *group)
                .cloned();
            match found {
                Some(mut g) => {
                    g["kind"] = json!("APIGroup");
                    g["apiVersion"] = json!("v1");
                    discovery(g)
                }
                None => Err(ApiError::new(
                    404,
                    "NotFound",
                    "the server could not find the requested resource",
                )),
            }
        }
        ["apis", group, version] => {
            let list = resource_list(&store.resources(), group, version);
            if list["resources"].as_array().unwrap().is_empty() {
                return Err(ApiError::new(
                    404,
                    "NotFound",
                    "the server could not find the requested resource",
                ));
            }
            discovery(list)
        }
        ["openapi", "v3"] => discovery(super::openapi::root(&store.resources())),
        ["openapi", "v3", rest @ ..] => {
            match super::openapi::document(&store.resources(), &rest.join("/")) {
                Some(document) => discovery(document),
                None => Err(ApiError::new(
                    404,
                    "NotFound",
                    "the server could not find the requested resource",
                )),
            }
        }
        ["api", "v1", rest @ ..] => resource(server, "", "v1", rest, call).await,
        ["apis", group, version, rest @ ..] => resource(server, group, version, rest, call).await,
        _ => Err(ApiError::new(
            404,
            "NotFound",
            "the server could not find the requested resource",
        )),
    }
}

/// Where in a resource a path points.
struct Target<'a> {
    resource: Resource,
    namespace: Option<&'a str>,
    name: Option<&'a str>,
    subresource: Option<&'a str>,
}

fn target<'a>(
    store: &Store,
    group: &str,
    version: &str,
    rest: &[&'a str],
) -> Result<Target<'a>, ApiError> {
    let not_found = || {
        ApiError::new(
            404,
            "NotFound",
            "the server could not find the requested resource",
        )
    };
    let namespaced = match rest {
        ["namespaces", ns, plural, more @ ..] => store
            .resource(group, version, plural)
            .filter(|r| r.namespaced)
            .map(|r| (r, Some(*ns), more)),
        _ => None,
    };
    let (resource, namespace, more) = match namespaced {
        Some(found) => found,
        None => {
            let [plural, more @ ..] = rest else {
                return Err(not_found());
            };
            let resource = store
                .resource(group, version, plural)
                .ok_or_else(not_found)?;
            (resource, None, more)
        }
    };
    let (name, subresource) = match more {
        [] => (None, None),
        [name] => (Some(*name), None),
        [name, sub] if resource.subresources.iter().any(|s| s == sub) => (Some(*name), Some(*sub)),
        _ => return Err(not_found()),
    };
    Ok(Target {
        resource,
        namespace,
        name,
        subresource,
    })
}

async fn resource(
    server: &Arc<Server>,
    group: &str,
    version: &str,
    rest: &[&str],
    call: Call,
) -> Result<Response, ApiError> {
    let store = &server.store;
    let t = target(store, group, version, rest)?;
    let (resource, namespace) = (&t.resource, t.namespace);
    let write = call.write();
    let object = |value: Value| Ok(answer(200, &value));
    if t.subresource == Some("scale")
        && let Some(name) = t.name
    {
        return scale(store, &t, name, &call, write);
    }
    match (&call.method, t.name) {
        (&Method::GET, None)
            if call
                .query
                .get("watch")
                .is_some_and(|w| w == "true" || w == "1") =>
        {
            watch(
                server,
                resource.clone(),
                namespace.map(str::to_owned),
                &call.query,
            )
        }
        (&Method::GET, None) => list(store, resource, namespace, &call.query),
        (&Method::GET, Some(name)) => object(store.get(resource, namespace, name)?),
        (&Method::POST, None) => {
            let created = store.create(resource, namespace, call.json()?, &write)?;
            Ok(answer(201, &created))
        }
        (&Method::PUT, Some(name)) => {
            let status = t.subresource == Some("status");
            object(store.update(resource, namespace, name, call.json()?, status, &write)?)
        }
        (&Method::PATCH, Some(name)) => patch(store, &t, name, &call, write),
        (&Method::DELETE, Some(name)) => object(store.delete(resource, namespace, name, &write)?),
        (&Method::DELETE, None) => {
            let keep = selector(&call.query)?;
            let (items, _, _) = store.list(resource, namespace, None, None, &keep);
            // Each item is reviewed without a name, as a real server does.
            let write = Write {
                named: false,
                ..write
            };
            for item in &items {
                let name = item["metadata"]["name"].as_str().unwrap_or_default();
                let ns = item["metadata"]["namespace"].as_str();
                store.delete(resource, ns, name, &write)?;
            }
            object(
                json!({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Success"}),
            )
        }
        _ => Err(ApiError::new(
            405,
            "MethodNotAllowed",
            format!("{} is not supported here", call.method),
        )),
    }
}

fn patch(
    store: &Store,
    t: &Target<'_>,
    name: &str,
    call: &Call,
    mut write: Write,
) -> Result<Response, ApiError> {
    let (resource, namespace) = (&t.resource, t.namespace);
    let kind = call
        .content_type()
        .split(';')
        .next()
        .unwrap_or_default()
        .trim()
        .to_owned();
    let patch: Value = match kind.as_str() {
        "application/apply-patch+yaml" => {
            let text = std::str::from_utf8(&call.body)
                .map_err(|_| ApiError::new(400, "BadRequest", "the body is not UTF-8"))?;
            serde_saphyr::from_str(text).map_err(|e| {
                ApiError::new(400, "BadRequest", format!("the body is not YAML: {e}"))
            })?
        }
        "application/merge-patch+json" | "application/strategic-merge-patch+json" => call.json()?,
        other => {
            return Err(ApiError::new(
                415,
                "UnsupportedMediaType",
                format!("the body's media type `{other}` is not supported"),
            ));
        }
    };
    let apply = kind == "application/apply-patch+yaml";
    let current = match store.get(resource, namespace, name) {
        Ok(current) => current,
        Err(e) if apply && e.code == 404 => {
            write.manager = call.query.get("fieldManager").cloned().unwrap_or_default();
            return Ok(answer(
                201,
                &store.create(resource, namespace, patch, &write)?,
            ));
        }
        Err(e) => return Err(e),
    };
    let mut next = current.clone();
    merge(&mut next, &patch);
    // A patch applies to the version it read, unless it names one itself.
    if patch["metadata"]["resourceVersion"].is_null() {
        next["metadata"]["resourceVersion"] = current["metadata"]["resourceVersion"].clone();
    }
    if apply {
        write.manager = format!("{}(apply)", write.manager);
    }
    let status = t.subresource == Some("status");
    Ok(answer(
        200,
        &store.update(resource, namespace, name, next, status, &write)?,
    ))
}

/// The scale subresource: an `autoscaling/v1` Scale of the object's
/// `spec.replicas`, read, replaced or patched.
fn scale(
    store: &Store,
    t: &Target<'_>,
    name: &str,
    call: &Call,
    write: Write,
) -> Result<Response, ApiError> {
    let (resource, namespace) = (&t.resource, t.namespace);
    let as_scale = |object: &Value| {
        json!({"apiVersion": "autoscaling/v1", "kind": "Scale",
            "metadata": {"name": object["metadata"]["name"], "namespace": object["metadata"]["namespace"],
                "uid": object["metadata"]["uid"], "resourceVersion": object["metadata"]["resourceVersion"]},
            "spec": {"replicas": object["spec"]["replicas"]},
            "status": {"replicas": object["status"]["replicas"].as_i64().unwrap_or(0)}})
    };
    let mut current = store.get(resource, namespace, name)?;
    let replicas = match call.method {
        Method::GET => return Ok(answer(200, &as_scale(&current))),
        Method::PUT | Method::PATCH => call.json()?["spec"]["replicas"].clone(),
        _ => return Err(ApiError::new(405, "MethodNotAllowed", "not on scale")),
    };
    if !replicas.is_i64() {
        return Err(ApiError::new(
            422,
            "Invalid",
            "spec.replicas: Required value",
        ));
    }
    current["spec"]["replicas"] = replicas;
    let updated = store.update(resource, namespace, name, current, false, &write)?;
    Ok(answer(200, &as_scale(&updated)))
}

/// RFC 7386 merge, with strategic-merge directives (`$patch`,
/// `$setElementOrder/…`, `$retainKeys`) dropped: lists are replaced whole.
fn merge(target: &mut Value, patch: &Value) {
    let Some(patch) = patch.as_object() else {
        *target = patch.clone();
        return;
    };
    if !target.is_object() {
        *target = json!({});
    }
    let map = target.as_object_mut().unwrap();
    for (key, value) in patch {
        if key.starts_with('$') {
            continue;
        }
        if value.is_null() {
            map.remove(key);
        } else {
            merge(map.entry(key.clone()).or_insert(Value::Null), value);
        }
    }
}

fn list(
    store: &Store,
    resource: &Resource,
    namespace: Option<&str>,
    query: &HashMap<String, String>,
) -> Result<Response, ApiError> {
    let keep = selector(query)?;
    let limit = query
        .get("limit")
        .and_then(|l| l.parse().ok())
        .filter(|&l: &usize| l > 0);
    let after = match query.get("continue").filter(|c| !c.is_empty()) {
        Some(token) => {
            let (_, _, ns, name) = decode_continue(token)?;
            Some((resource.group.clone(), resource.plural.clone(), ns, name))
        }
        None => None,
    };
    let (items, rv, next) = store.list(resource, namespace, after.as_ref(), limit, &keep);
    let items: Vec<Value> = items
        .into_iter()
        .map(|mut item| {
            if resource.builtin {
                let map = item.as_object_mut().unwrap();
                map.remove("apiVersion");
                map.remove("kind");
            }
            item
        })
        .collect();
    let mut metadata = json!({"resourceVersion": rv.to_string()});
    if let Some(next) = next {
        metadata["continue"] = json!(encode_continue(&next));
    }
    Ok(answer(
        200,
        &json!({
            "kind": format!("{}List", resource.kind),
            "apiVersion": resource.api_version(),
            "metadata": metadata,
            "items": items,
        }),
    ))
}

fn encode_continue(key: &Key) -> String {
    use base64::Engine as _;
    let text = serde_json::to_string(&[&key.2, &key.3]).unwrap();
    base64::engine::general_purpose::STANDARD.encode(text)
}

fn decode_continue(token: &str) -> Result<Key, ApiError> {
    use base64::Engine as _;
    let bad = || ApiError::new(400, "BadRequest", "continue key is not valid");
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(token)
        .map_err(|_| bad())?;
    let [ns, name]: [String; 2] = serde_json::from_slice(&bytes).map_err(|_| bad())?;
    Ok((String::new(), String::new(), ns, name))
}

/// `labelSelector` (`a=b`, `a!=b`, `a`, `!a`) and `fieldSelector`
/// (`metadata.name`, `metadata.namespace`) as one predicate.
fn selector(query: &HashMap<String, String>) -> Result<impl Fn(&Value) -> bool + use<>, ApiError> {
    let mut tests: Vec<(String, String, Option<String>, bool)> = Vec::new();
    for (param, path) in [("labelSelector", "label"), ("fieldSelector", "field")] {
        for term in query.get(param).map(|s| s.split(',')).into_iter().flatten() {
            let term = term.trim();
            if term.is_empty() {
                continue;
            }
            let (key, value, equal) = if let Some((k, v)) = term.split_once("!=") {
                (k, Some(v), false)
            } else if let Some((k, v)) = term.split_once('=') {
                (k, Some(v.trim_start_matches('=')), true)
            } else if let Some(k) = term.strip_prefix('!') {
                (k, None, false)
            } else {
                (term, None, true)
            };
            if path == "field" && !matches!(key, "metadata.name" | "metadata.namespace") {
                return Err(ApiError::new(
                    400,
                    "BadRequest",
                    format!("field label not supported: {key}"),
                ));
            }
            tests.push((
                format!("{path}:{key}"),
                key.to_owned(),
                value.map(str::to_owned),
                equal,
            ));
        }
    }
    Ok(move |object: &Value| {
        tests.iter().all(|(kind, key, value, equal)| {
            let found = if kind.starts_with("field:") {
                let field = key.trim_start_matches("metadata.");
                object["metadata"][field].as_str().map(str::to_owned)
            } else {
                object["metadata"]["labels"][key.as_str()]
                    .as_str()
                    .map(str::to_owned)
            };
            match value {
                Some(v) => (found.as_deref() == Some(v.as_str())) == *equal,
                None => found.is_some() == *equal,
            }
        })
    })
}

/// A watch: the changes after `resourceVersion` (or the current objects),
/// then every change as it happens, one JSON event per line, with a
/// bookmark now and then if asked; ends after `timeoutSeconds`.
fn watch(
    server: &Arc<Server>,
    resource: Resource,
    namespace: Option<String>,
    query: &HashMap<String, String>,
) -> Result<Response, ApiError> {
    let keep = selector(query)?;
    let from = match query.get("resourceVersion").filter(|r| !r.is_empty()) {
        Some(rv) => Some(rv.parse::<u64>().map_err(|_| {
            ApiError::new(
                400,
                "BadRequest",
                format!("invalid resource version `{rv}`"),
            )
        })?),
        None => None,
    };
    let bookmarks = query
        .get("allowWatchBookmarks")
        .is_some_and(|b| b == "true");
    let timeout = query
        .get("timeoutSeconds")
        .and_then(|t| t.parse().ok())
        .map(Duration::from_secs)
        .unwrap_or(Duration::from_secs(1800));
    let (sender, receiver) = tokio::sync::mpsc::channel::<Bytes>(64);
    let (initial, mut changes, mut last) = match server.store.watch(&resource, from) {
        Ok(found) => found,
        Err(error) => {
            // The real server answers 200 and says 410 in the stream.
            let event = json!({"type": "ERROR", "object": error.status()});
            return Ok(stream(vec![line(&event)], None));
        }
    };
    let (kind, api_version) = (resource.kind.clone(), resource.api_version());
    let plural = resource.plural.clone();
    let mine = move |change: &Change| {
        change.key.0 == resource.group
            && change.key.1 == resource.plural
            && namespace.as_deref().is_none_or(|ns| ns == change.key.2)
            && keep(&change.object)
    };
    let first: Vec<Bytes> = initial.iter().filter(|c| mine(c)).map(event).collect();
    let every = server.bookmark_every;
    let mut expiry = server.expiry.subscribe();
    tokio::spawn(async move {
        let deadline = tokio::time::Instant::now() + timeout;
        let mut ticker = tokio::time::interval(every);
        ticker.tick().await;
        loop {
            tokio::select! {
                received = changes.recv() => match received {
                    Ok(change) => {
                        if change.rv <= last { continue; }
                        last = change.rv;
                        if mine(&change) && sender.send(event(&change)).await.is_err() { return; }
                    }
                    Err(broadcast::error::RecvError::Lagged(_)) => {
                        let gone = ApiError::new(410, "Expired", "the watch fell behind");
                        let _ = sender.send(line(&json!({"type": "ERROR", "object": gone.status()}))).await;
                        return;
                    }
                    Err(broadcast::error::RecvError::Closed) => return,
                },
                _ = ticker.tick(), if bookmarks => {
                    let bookmark = json!({"type": "BOOKMARK", "object": {
                        "kind": kind, "apiVersion": api_version,
                        "metadata": {"resourceVersion": last.to_string()},
                    }});
                    if sender.send(line(&bookmark)).await.is_err() { return; }
                }
                expired = expiry.recv() => {
                    if expired.is_ok_and(|p| p != plural) { continue; }
                    let gone = ApiError::new(410, "Expired", "the watch cache was reset");
                    let _ = sender.send(line(&json!({"type": "ERROR", "object": gone.status()}))).await;
                    return;
                }
                _ = tokio::time::sleep_until(deadline) => return,
            }
        }
    });
    Ok(stream(first, Some(receiver)))
}

fn event(change: &Change) -> Bytes {
    line(&json!({"type": change.kind, "object": change.object}))
}

fn line(value: &Value) -> Bytes {
    let mut text = serde_json::to_vec(value).unwrap();
    text.push(b'\n');
    Bytes::from(text)
}

/// A chunked body: `first`, then what `rest` sends until it closes.
fn stream(first: Vec<Bytes>, rest: Option<tokio::sync::mpsc::Receiver<Bytes>>) -> Response {
    let head = futures_util::stream::iter(first.into_iter().map(Ok::<_, std::convert::Infallible>));
    let tail = futures_util::stream::unfold(rest, |rest| async move {
        let mut receiver = rest?;
        let chunk = receiver.recv().await?;
        Some((Ok(chunk), Some(receiver)))
    });
    let body = Body::from_stream(futures_util::StreamExt::chain(head, tail));
    Response::builder()
        .status(200)
        .header(header::CONTENT_TYPE, "application/json")
        .body(body)
        .unwrap()
}

fn group_list(resources: &[Resource]) -> Value {
    let mut groups: Vec<(String, Vec<String>)> = Vec::new();
    for r in resources.iter().filter(|r| !r.group.is_empty()) {
        match groups.iter_mut().find(|(g, _)| *g == r.group) {
            Some((_, versions)) if !versions.contains(&r.version) => {
                versions.push(r.version.clone())
            }
            Some(_) => {}
            None => groups.push((r.group.clone(), vec![r.version.clone()])),
        }
    }
    let groups: Vec<Value> = groups
        .into_iter()
        .map(|(name, versions)| {
            let versions: Vec<Value> = versions
                .iter()
                .map(|v| json!({"groupVersion": format!("{name}/{v}"), "version": v}))
                .collect();
            json!({"name": name, "versions": versions, "preferredVersion": versions[0]})
        })
        .collect();
    json!({"kind": "APIGroupList", "apiVersion": "v1", "groups": groups})
}

fn resource_list(resources: &[Resource], group: &str, version: &str) -> Value {
    let entries: Vec<Value> = resources
        .iter()
        .filter(|r| r.group == group && r.version == version)
        .flat_map(Resource::discovery)
        .collect();
    let group_version = if group.is_empty() {
        version.to_owned()
    } else {
        format!("{group}/{version}")
    };
    json!({"kind": "APIResourceList", "apiVersion": "v1", "groupVersion": group_version, "resources": entries})
}

fn answer(code: u16, value: &Value) -> Response {
    let status = StatusCode::from_u16(code).unwrap_or(StatusCode::OK);
    (
        status,
        [(header::CONTENT_TYPE, "application/json")],
        serde_json::to_vec(value).unwrap(),
    )
        .into_response()
}

fn failure(error: ApiError) -> Response {
    answer(error.code, &error.status())
}
