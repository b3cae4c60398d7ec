//! The validating admission webhook: before a write persists (and for a
//! dry run, which persists nothing), the server posts an
//! `admission.k8s.io/v1` AdmissionReview to the configured webhook and
//! waits for its answer, as a kube-apiserver with a
//! ValidatingWebhookConfiguration does. The webhook only watches here
//! (failurePolicy Ignore): a webhook that is down or denies holds nothing
//! up.

use super::resources::Resource;
use serde_json::{Value, json};
use std::io::{Read as _, Write as _};
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// One write, as admission sees it.
pub struct Review<'a> {
    /// `CREATE`, `UPDATE` or `DELETE`.
    pub operation: &'static str,
    /// What is written to.
    pub resource: &'a Resource,
    /// `status` for a status write, else empty.
    pub subresource: &'static str,
    pub namespace: Option<&'a str>,
    /// Empty for a create with generateName and a deletecollection's
    /// items, as a real server sends it.
    pub name: &'a str,
    /// The object to be stored (none for a delete).
    pub object: Option<&'a Value>,
    /// The object before (an update's, a delete's).
    pub old_object: Option<&'a Value>,
    pub user: &'a str,
    pub dry_run: bool,
}

/// Where reviews go, if anywhere.
#[derive(Default)]
pub struct Admission {
    /// `host:port` and path of the webhook.
    target: Mutex<Option<(String, String)>>,
    serial: AtomicU64,
}

impl Admission {
    /// Sends reviews to `url` (`http://host:port/path`) from now on.
    pub fn send_to(&self, url: &str) {
        let rest = url.strip_prefix("http://").expect("an http:// URL");
        let (host, path) = rest.split_once('/').unwrap_or((rest, ""));
        *self.target.lock().unwrap() = Some((host.to_owned(), format!("/{path}")));
    }

    /// Posts the review of a write and waits for the answer, if reviews
    /// are sent.
    pub fn review(&self, review: Review<'_>) {
        let Some((host, path)) = self.target.lock().unwrap().clone() else {
            return;
        };
        let serial = self.serial.fetch_add(1, Ordering::Relaxed);
        let r = review.resource;
        let group_version_kind = json!({"group": r.group, "version": r.version, "kind": r.kind});
        let group_version_resource =
            json!({"group": r.group, "version": r.version, "resource": r.plural});
        let options_kind = match review.operation {
            "CREATE" => "CreateOptions",
            "UPDATE" => "UpdateOptions",
            _ => "DeleteOptions",
        };
        let mut request = json!({
            "uid": format!("00000000-0000-4000-a000-{serial:012}"),
            "kind": group_version_kind, "resource": group_version_resource,
            "requestKind": group_version_kind, "requestResource": group_version_resource,
            "name": review.name,
            "operation": review.operation,
            "userInfo": {"username": review.user, "groups": ["system:authenticated"]},
            "object": review.object, "oldObject": review.old_object,
            "dryRun": review.dry_run,
            "options": {"kind": options_kind, "apiVersion": "meta.k8s.io/v1"},
        });
        if let Some(namespace) = review.namespace {
            request["namespace"] = json!(namespace);
        }
        if !review.subresource.is_empty() {
            request["subResource"] = json!(review.subresource);
        }
        let body = json!({
            "kind": "AdmissionReview", "apiVersion": "admission.k8s.io/v1", "request": request,
        });
        post(&host, &path, &serde_json::to_vec(&body).unwrap());
    }
}

/// One POST over plain HTTP/1.1, waiting for the answer (the API server's
/// default webhook timeout is 10 s).
fn post(host: &str, path: &str, body: &[u8]) {
    let Ok(mut stream) = std::net::TcpStream::connect(host) else {
        return;
    };
    let _ = stream.set_read_timeout(Some(Duration::from_secs(10)));
    let head = format!(
        "POST {path} HTTP/1.1\r\nHost: {host}\r\nContent-Type: application/json\r\n\
         Content-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    );
    if stream.write_all(head.as_bytes()).is_err() || stream.write_all(body).is_err() {
        return;
    }
    let mut answer = Vec::new();
    let _ = stream.read_to_end(&mut answer);
}
