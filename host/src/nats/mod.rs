//! What the stages that keep state on NATS JetStream share (the catalog's
//! store, the queue): connecting, opening what they keep, and calling the
//! async client from their blocking callers; and leases ([`lease`]).

pub mod lease;

use async_nats::jetstream::{self, kv};
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

/// Runs `future` on the runtime `handle` belongs to, to its end: from a
/// task of a multi-threaded runtime it steps off the worker first, so the
/// other tasks go on.
pub fn block_on<F: Future>(handle: &Handle, future: F) -> F::Output {
    match Handle::try_current() {
        Ok(_) => tokio::task::block_in_place(|| handle.block_on(future)),
        Err(_) => handle.block_on(future),
    }
}
