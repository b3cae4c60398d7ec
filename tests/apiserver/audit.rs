//! The audit webhook backend: after each write, the server posts an
//! `audit.k8s.io/v1` EventList holding the write's `ResponseComplete`
//! event (level RequestResponse) to the configured webhook, as a
//! kube-apiserver started with `--audit-webhook-config-file` does. Like the
//! real batching backend it posts after answering, so the watch event of
//! a write often arrives before its audit event.

use axum::http::Method;
use serde_json::{Value, json};
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};

/// Where audit events go, if anywhere.
#[derive(Default)]
pub struct Audit {
    /// `host:port` and path of the webhook.
    target: Mutex<Option<(String, String)>>,
    serial: AtomicU64,
}

impl Audit {
    /// Sends audit events to `url` (`http://host:port/path`) from now on.
    pub fn send_to(&self, url: &str) {
        let rest = url.strip_prefix("http://").expect("an http:// URL");
        let (host, path) = rest.split_once('/').unwrap_or((rest, ""));
        *self.target.lock().unwrap() = Some((host.to_owned(), format!("/{path}")));
    }

    /// Posts the audit event of a write, if audit events are sent.
    pub fn write(&self, method: &Method, uri: &str, user: &str, code: u16, response: &Value) {
        let Some((host, path)) = self.target.lock().unwrap().clone() else {
            return;
        };
        let Some(mut object_ref) = object_ref(uri) else {
            return;
        };
        // The server names the object a create made, as a real one does.
        if method == Method::POST
            && let Some(name) = response.pointer("/metadata/name")
        {
            object_ref["name"] = name.clone();
        }
        let verb = match (method.as_str(), object_ref.get("name").is_some()) {
            ("POST", _) => "create",
            ("PUT", _) => "update",
            ("PATCH", _) => "patch",
            ("DELETE", true) => "delete",
            ("DELETE", false) => "deletecollection",
            _ => return,
        };
        let serial = self.serial.fetch_add(1, Ordering::Relaxed);
        let event = json!({
            "kind": "EventList", "apiVersion": "audit.k8s.io/v1", "metadata": {},
            "items": [{
                "level": "RequestResponse",
                "auditID": format!("00000000-0000-4000-9000-{serial:012}"),
                "stage": "ResponseComplete",
                "requestURI": uri,
                "verb": verb,
                "user": {"username": user, "groups": ["system:authenticated"]},
                "objectRef": object_ref,
                "responseStatus": {"metadata": {}, "code": code},
                "responseObject": response,
            }],
        });
        tokio::spawn(post(host, path, serde_json::to_vec(&event).unwrap()));
    }
}

/// The objectRef of a request's path: `/api/v1/namespaces/ns/configmaps/a`,
/// `/apis/apps/v1/deployments`, with a subresource or not.
pub fn object_ref(uri: &str) -> Option<Value> {
    let path = uri.split('?').next()?;
    let segments: Vec<&str> = path.trim_matches('/').split('/').collect();
    let (group, version, rest) = match segments.as_slice() {
        ["api", version, rest @ ..] => ("", *version, rest),
        ["apis", group, version, rest @ ..] => (*group, *version, rest),
        _ => return None,
    };
    let (namespace, rest) = match rest {
        ["namespaces", namespace, rest @ ..] if !rest.is_empty() => (Some(*namespace), rest),
        _ => (None, rest),
    };
    let (resource, name, subresource) = match rest {
        [resource] => (*resource, None, None),
        [resource, name] => (*resource, Some(*name), None),
        [resource, name, sub] => (*resource, Some(*name), Some(*sub)),
        _ => return None,
    };
    let mut object = json!({"resource": resource, "apiGroup": group, "apiVersion": version});
    if let Some(namespace) = namespace {
        object["namespace"] = json!(namespace);
    }
    if let Some(name) = name {
        object["name"] = json!(name);
    }
    if let Some(sub) = subresource {
        object["subresource"] = json!(sub);
    }
    Some(object)
}

/// One POST over plain HTTP/1.1; what the webhook answers is not read
/// beyond its status line (the real backend retries; these tests need not).
async fn post(host: String, path: String, body: Vec<u8>) {
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
    let Ok(mut stream) = tokio::net::TcpStream::connect(&host).await else {
        return;
    };
    let head = format!(
        "POST {path} HTTP/1.1\r\nHost: {host}\r\nContent-Type: application/json\r\n\
         Content-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    );
    if stream.write_all(head.as_bytes()).await.is_err() || stream.write_all(&body).await.is_err() {
        return;
    }
    let mut answer = Vec::new();
    let _ = stream.read_to_end(&mut answer).await;
}
