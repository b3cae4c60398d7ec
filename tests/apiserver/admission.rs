//! The validating admission webhooks: before a write persists (and for a
//! dry run, which persists nothing), the server posts an
//! `admission.k8s.io/v1` AdmissionReview to the configured webhooks and
//! waits for their answers, as a kube-apiserver with
//! ValidatingWebhookConfigurations does:
//!
//! - one that only watches (failurePolicy Ignore), every write: a webhook
//!   that is down or denies holds nothing up;
//! - one that enforces (failurePolicy Fail), the operations on the
//!   resources its rules name: a denial refuses the write with the
//!   webhook's message, and so does a webhook that cannot be reached.

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
    /// `host:port` and path of the webhook that watches.
    target: Mutex<Option<(String, String)>>,
    /// The webhook that enforces, and the plurals it reviews.
    enforcing: Mutex<Option<Enforcing>>,
    serial: AtomicU64,
}

/// A webhook whose denial refuses the write.
#[derive(Clone)]
struct Enforcing {
    host: String,
    path: String,
    /// Its name, as the refusal says it.
    name: String,
    /// The resources whose writes it reviews.
    plurals: Vec<String>,
    /// The operations it reviews (`CREATE`, `UPDATE`).
    operations: Vec<String>,
}

impl Admission {
    /// Sends reviews to `url` (`http://host:port/path`) from now on.
    pub fn send_to(&self, url: &str) {
        let rest = url.strip_prefix("http://").expect("an http:// URL");
        let (host, path) = rest.split_once('/').unwrap_or((rest, ""));
        *self.target.lock().unwrap() = Some((host.to_owned(), format!("/{path}")));
    }

    /// Has the webhook `name` at `url` enforce, from now on, on the
    /// `operations` of `plurals`.
    pub fn enforce_with(&self, url: &str, name: &str, plurals: &[&str], operations: &[&str]) {
        let rest = url.strip_prefix("http://").expect("an http:// URL");
        let (host, path) = rest.split_once('/').unwrap_or((rest, ""));
        *self.enforcing.lock().unwrap() = Some(Enforcing {
            host: host.to_owned(),
            path: format!("/{path}"),
            name: name.to_owned(),
            plurals: plurals.iter().map(|p| p.to_string()).collect(),
            operations: operations.iter().map(|o| o.to_string()).collect(),
        });
    }

    /// Posts the review of a write to each webhook and waits for the
    /// answers: the refusal of the enforcing one, if it refuses.
    pub fn review(&self, review: Review<'_>) -> Result<(), String> {
        let watching = self.target.lock().unwrap().clone();
        let enforcing = self.enforcing.lock().unwrap().clone().filter(|e| {
            e.operations.iter().any(|o| o == review.operation)
                && e.plurals.contains(&review.resource.plural)
        });
        if watching.is_none() && enforcing.is_none() {
            return Ok(());
        }
        let body = self.body(&review);
        if let Some((host, path)) = watching {
            post(&host, &path, &body);
        }
        match enforcing {
            Some(webhook) => verdict(&webhook, post(&webhook.host, &webhook.path, &body)),
            None => Ok(()),
        }
    }

    /// The AdmissionReview of `review`.
    fn body(&self, review: &Review<'_>) -> Vec<u8> {
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
        serde_json::to_vec(&body).unwrap()
    }
}

/// What an enforcing webhook's answer means for the write, as a
/// kube-apiserver words it.
fn verdict(webhook: &Enforcing, answer: Option<Vec<u8>>) -> Result<(), String> {
    let name = &webhook.name;
    let Some(answer) = answer else {
        return Err(format!(
            "failed calling webhook \"{name}\": the webhook cannot be reached"
        ));
    };
    let text = String::from_utf8_lossy(&answer);
    let body = text
        .split_once("\r\n\r\n")
        .map(|(_, b)| b)
        .unwrap_or_default();
    let review: Value = serde_json::from_str(body)
        .map_err(|e| format!("failed calling webhook \"{name}\": {e}: {body}"))?;
    match review.pointer("/response/allowed") {
        Some(Value::Bool(true)) => Ok(()),
        Some(Value::Bool(false)) => {
            let message = review
                .pointer("/response/status/message")
                .and_then(Value::as_str)
                .unwrap_or_default();
            Err(format!(
                "admission webhook \"{name}\" denied the request: {message}"
            ))
        }
        _ => Err(format!(
            "failed calling webhook \"{name}\": no response.allowed in {body}"
        )),
    }
}

/// One POST over plain HTTP/1.1, waiting for the answer (the API server's
/// default webhook timeout is 10 s); none if it cannot be sent.
fn post(host: &str, path: &str, body: &[u8]) -> Option<Vec<u8>> {
    let Ok(mut stream) = std::net::TcpStream::connect(host) else {
        return None;
    };
    let _ = stream.set_read_timeout(Some(Duration::from_secs(10)));
    let head = format!(
        "POST {path} HTTP/1.1\r\nHost: {host}\r\nContent-Type: application/json\r\n\
         Content-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    );
    if stream.write_all(head.as_bytes()).is_err() || stream.write_all(body).is_err() {
        return None;
    }
    let mut answer = Vec::new();
    stream.read_to_end(&mut answer).ok()?;
    Some(answer)
}
