//! What the stages that keep state on NATS JetStream share (the catalog's
//! store, the queue): connecting, opening what they keep, and calling the
//! async client from their blocking callers; and leases ([`lease`]).

pub mod lease;

use async_nats::jetstream::context::{CreateStreamError, CreateStreamErrorKind};
use async_nats::jetstream::{self, ErrorCode, kv};
use std::future::Future;
use std::time::Duration;
use tokio::runtime::Handle;

/// Where and how the replicas share their state on JetStream.
#[derive(Debug, Clone)]
pub struct Settings {
    /// The server(s): one URL, or several comma-separated.
    pub url: String,
    /// Copies JetStream keeps of each stream and bucket created.
    pub replicas: usize,
    /// How long a partition claim lasts unrenewed.
    pub lease: Duration,
}

/// Any error of the NATS client, boxed.
pub type Error = Box<dyn std::error::Error + Send + Sync>;

/// `url` (one or several, comma-separated) as messages show it: a user's
/// password or token hidden.
pub fn shown(url: &str) -> String {
    url.split(',')
        .map(|one| crate::model::url::redact(one.trim()))
        .collect::<Vec<_>>()
        .join(",")
}

/// A JetStream context on the server(s) at `url` (several URLs
/// comma-separated: any one that answers will do, and the cluster tells
/// the client of the others once connected).
pub async fn connect(url: &str) -> Result<jetstream::Context, Error> {
    let servers: Vec<&str> = url.split(',').map(str::trim).collect();
    let client = async_nats::ConnectOptions::new()
        .name("plumbline")
        .connection_timeout(Duration::from_secs(10))
        .connect(servers)
        .await?;
    let mut context = jetstream::new(client);
    // Placing a replicated stream takes an election: more than the
    // default 5 s on a loaded machine. Not much more: a request that
    // reached a stream whose leader just died is answered by no one, and
    // waits this long before it is tried again.
    context.set_timeout(Duration::from_secs(10));
    Ok(context)
}

/// The bucket `config` names, opened as it is when it exists (another
/// replica made it, perhaps just now), created with `config` when not.
pub async fn bucket(context: &jetstream::Context, config: kv::Config) -> Result<kv::Store, Error> {
    let name = config.bucket.clone();
    if let Ok(store) = context.get_key_value(&name).await {
        return Ok(store);
    }
    match context.create_key_value(config).await {
        Ok(store) => Ok(store),
        Err(created) => context
            .get_key_value(&name)
            .await
            .map_err(|_| created.into()),
    }
}

/// Whether waiting may cure `error`: a timeout, no responders, a cluster
/// still electing a leader or placing a stream. Not when JetStream refused
/// what was asked (three copies of a stream on a single server, an invalid
/// name): asking again for a minute would only delay the same answer.
pub fn passing(error: &(dyn std::error::Error + 'static)) -> bool {
    let mut next = Some(error);
    while let Some(error) = next {
        if let Some(created) = error.downcast_ref::<CreateStreamError>() {
            return match created.kind() {
                CreateStreamErrorKind::JetStream(refusal) => electing(refusal.error_code()),
                CreateStreamErrorKind::EmptyStreamName
                | CreateStreamErrorKind::InvalidStreamName
                | CreateStreamErrorKind::DomainAndExternalSet => false,
                _ => true,
            };
        }
        next = error.source();
    }
    true
}

/// The refusals a cluster gives while it is short of a node or a leader.
fn electing(code: ErrorCode) -> bool {
    [
        ErrorCode::CLUSTER_INCOMPLETE,
        ErrorCode::CLUSTER_NO_PEERS,
        ErrorCode::CLUSTER_NOT_ACTIVE,
        ErrorCode::CLUSTER_NOT_ASSIGNED,
        ErrorCode::CLUSTER_NOT_AVAILABLE,
        ErrorCode::CLUSTER_NOT_LEADER,
        ErrorCode::INSUFFICIENT_RESOURCES,
    ]
    .contains(&code)
}

/// Runs `future` on the runtime `handle` belongs to, to its end: from a
/// task of a multi-threaded runtime it steps off the worker first, so the
/// other tasks go on.
pub fn block_on<F: Future>(handle: &Handle, future: F) -> F::Output {
    match Handle::try_current() {
        Ok(_) => tokio::task::block_in_place(|| handle.block_on(future)),
        Err(_) => handle.block_on(future),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn refusal(code: u64) -> CreateStreamError {
        let answer = format!(r#"{{"code":500,"err_code":{code},"description":"refused"}}"#);
        let refusal: jetstream::Error = serde_json::from_str(&answer).unwrap();
        CreateStreamError::new(CreateStreamErrorKind::JetStream(refusal))
    }

    #[test]
    fn credentials_in_the_urls_are_never_shown() {
        let shown = shown("nats://alice:S3CRETPW@a:4222, nats://T0KEN99@b:4222,nats://c:4222");
        assert!(
            !shown.contains("S3CRETPW") && !shown.contains("T0KEN99"),
            "{shown}"
        );
        assert!(
            shown.contains("a:4222") && shown.contains("nats://c:4222"),
            "{shown}"
        );
    }

    #[test]
    fn waits_out_elections_and_timeouts_but_not_refusals() {
        let timeout = CreateStreamError::new(CreateStreamErrorKind::TimedOut);
        assert!(passing(&timeout));
        assert!(passing(&refusal(10008)), "cluster not available yet");
        assert!(!passing(&refusal(10074)), "replicas > 1 on one server");
        let wrapped: Error = Box::new(refusal(10074));
        let bucket = jetstream::context::CreateKeyValueError::with_source(
            jetstream::context::CreateKeyValueErrorKind::JetStream,
            wrapped,
        );
        assert!(!passing(&bucket), "found under the bucket's error");
        let no_responders: Error = "no responders".into();
        assert!(passing(&*no_responders));
    }
}
