//! Opening the stream and buckets, patiently, and naming this replica.

use super::{CLAIMS, PATIENCE, POLL, STATE, STREAM, SUBJECTS};
use async_nats::jetstream::{self, kv, stream};
use std::time::{Duration, Instant};

/// How long the stream remembers a message id (a replay within it is a
/// duplicate): longer than a crashed replica takes to come back.
const DUPLICATES: Duration = Duration::from_secs(600);

/// Connects, and [`open`]s, tried again for a while when it fails for a
/// passing reason: a cluster that lost a node answers nothing about a
/// stream until its new leader is elected. A refusal fails at once.
pub(super) async fn open_patiently(
    url: &str,
    replicas: usize,
    lease: Duration,
) -> Result<
    (jetstream::Context, stream::Stream, kv::Store, kv::Store),
    Box<dyn std::error::Error + Send + Sync>,
> {
    let context = crate::nats::connect(url).await?;
    let started = Instant::now();
    loop {
        match open(&context, replicas, lease).await {
            Err(error) if started.elapsed() < PATIENCE && crate::nats::passing(&*error) => {
                tracing::warn!(%error, "opening the queue on NATS; trying again");
                tokio::time::sleep(POLL * 20).await;
            }
            opened => return opened.map(|(s, q, c)| (context, s, q, c)),
        }
    }
}

/// The stream and buckets of `context`, created if missing.
async fn open(
    context: &jetstream::Context,
    replicas: usize,
    lease: Duration,
) -> Result<(stream::Stream, kv::Store, kv::Store), crate::nats::Error> {
    let replicas = replicas.max(1);
    let mut stream = context
        .get_or_create_stream(stream::Config {
            name: STREAM.into(),
            description: Some("Plumbline's queue: a subject per (repository, branch)".into()),
            subjects: vec![format!("{SUBJECTS}.*")],
            num_replicas: replicas,
            allow_direct: true,
            duplicate_window: DUPLICATES,
            ..Default::default()
        })
        .await?;
    widen_duplicates(context, &mut stream).await?;
    let state = bucket(context, STATE, replicas, Duration::ZERO).await?;
    let claims = bucket(context, CLAIMS, replicas, lease).await?;
    Ok((stream, state, claims))
}

/// Widens the duplicate window of a stream made before (by an older
/// version, or by hand) to [`DUPLICATES`] if it is narrower: a replay
/// after it would be appended twice. A wider one is the operator's.
async fn widen_duplicates(
    context: &jetstream::Context,
    stream: &mut stream::Stream,
) -> Result<(), crate::nats::Error> {
    let mut config = stream.cached_info().config.clone();
    if config.duplicate_window >= DUPLICATES {
        return Ok(());
    }
    tracing::info!(
        was = config.duplicate_window.as_secs_f64(),
        now = DUPLICATES.as_secs_f64(),
        "widening the duplicate window of the stream {STREAM}"
    );
    config.duplicate_window = DUPLICATES;
    context.update_stream(&config).await?;
    *stream = context.get_stream(STREAM).await?;
    Ok(())
}

/// The bucket `name`, created (with entries living `max_age`, or for ever
/// with zero) if missing.
async fn bucket(
    context: &jetstream::Context,
    name: &str,
    replicas: usize,
    max_age: Duration,
) -> Result<kv::Store, crate::nats::Error> {
    let config = kv::Config {
        bucket: name.into(),
        history: 1,
        max_age,
        num_replicas: replicas,
        ..Default::default()
    };
    crate::nats::bucket(context, config).await
}

/// How long claims last: the claims' bucket's age limit, set by the
/// replica that made it. Every replica must renew by the same measure, or
/// one would think itself holding what the bucket already let go of.
pub(super) async fn bucket_lease(
    claims: &kv::Store,
    asked: Duration,
) -> Result<Duration, crate::nats::Error> {
    let kept = claims.status().await?.max_age();
    if kept.is_zero() {
        return Err(format!(
            "the bucket {CLAIMS} keeps claims for ever: it was not made by Plumbline"
        )
        .into());
    }
    if kept != asked {
        tracing::warn!(
            "the bucket {CLAIMS} keeps claims for {} s, not the {} s asked (it was made so): leases last {} s",
            kept.as_secs_f64(),
            asked.as_secs_f64(),
            kept.as_secs_f64()
        );
    }
    Ok(kept)
}

/// This replica's name in leases: its host (the pod's name), process and
/// start, in the characters a key may hold.
pub(super) fn holder_name() -> String {
    let started = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default()
        .as_nanos();
    let host = std::env::var("HOSTNAME").unwrap_or_else(|_| "plumbline".into());
    let host: String = host
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' {
                c
            } else {
                '_'
            }
        })
        .collect();
    format!("{host}-{}-{started}", std::process::id())
}
