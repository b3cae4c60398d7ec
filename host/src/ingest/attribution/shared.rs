//! Attribution facts shared by replicas (the scale-out issue, part 3):
//! every replica serves the webhooks, but one reads the cluster and joins
//! its watch events to facts, so what a webhook records on one replica
//! must reach the others.
//!
//! Each fact a webhook records is published to the stream
//! `PLUMBLINE_FACTS` (subjects `plumbline.facts.audit` and
//! `plumbline.facts.admission`), which keeps them as long as a store
//! does ([`super::FactsConfig::ttl`]); each replica follows the stream
//! from that long ago, so one that starts to lead has the facts of the
//! changes it is about to read, and keeps what others publish with its
//! age (the grace window holds across the hop). A replica skips what it
//! published itself.

use super::admission::Admitted;
use super::audit::Fact;
use super::{Admissions, Facts};
use async_nats::HeaderMap;
use async_nats::jetstream::{self, consumer, stream};
use futures_util::StreamExt as _;
use std::sync::Arc;
use std::time::{Duration, SystemTime};
use tokio::runtime::Handle;

/// The stream facts go through.
pub const STREAM: &str = "PLUMBLINE_FACTS";
const AUDIT: &str = "plumbline.facts.audit";
const ADMISSION: &str = "plumbline.facts.admission";
/// The header naming the replica that published.
const FROM: &str = "Plumbline-Replica";

/// The stores whose facts are shared.
#[derive(Clone)]
pub struct Stores {
    /// The audit webhook's, if served.
    pub audit: Option<Arc<Facts>>,
    /// The admission webhook's, if served.
    pub admission: Option<Arc<Admissions>>,
}

/// Shares `stores`' facts with the replicas on NATS at `settings`: what
/// their webhooks record is published, and what the others publish is
/// kept. Fails only if the stream cannot be opened.
pub fn share(
    handle: &Handle,
    settings: &crate::nats::Settings,
    stores: Stores,
    keep: Duration,
) -> Result<(), crate::nats::Error> {
    let context = crate::nats::block_on(handle, crate::nats::connect(&settings.url))?;
    let config = stream::Config {
        name: STREAM.into(),
        description: Some("Plumbline's attribution facts, shared by its replicas".into()),
        subjects: vec!["plumbline.facts.*".into()],
        num_replicas: settings.replicas.max(1),
        max_age: keep,
        ..Default::default()
    };
    let stream = crate::nats::block_on(handle, context.get_or_create_stream(config))?;
    let me = format!("{}-{}", std::process::id(), nanos(SystemTime::now()));
    if let Some(facts) = &stores.audit {
        let publish = publisher(handle, &context, AUDIT, &me);
        facts.tell_others(move |facts: &[Fact]| publish(serde_json::to_vec(facts)));
    }
    if let Some(admissions) = &stores.admission {
        let publish = publisher(handle, &context, ADMISSION, &me);
        admissions.tell_others(move |fact: &Admitted| publish(serde_json::to_vec(fact)));
    }
    handle.spawn(follow(stream, context, stores, keep, me));
    Ok(())
}

/// Publishes a payload to `subject`, from `me`, without waiting: a fact
/// that does not get through leaves its change to the other webhook or
/// the sentinel, as one that came too late would.
fn publisher(
    handle: &Handle,
    context: &jetstream::Context,
    subject: &'static str,
    me: &str,
) -> impl Fn(serde_json::Result<Vec<u8>>) + Send + Sync + 'static {
    let (handle, context, me) = (handle.clone(), context.clone(), me.to_owned());
    move |payload| {
        let Ok(payload) = payload else { return };
        let (context, me) = (context.clone(), me.clone());
        handle.spawn(async move {
            let mut headers = HeaderMap::new();
            headers.insert(FROM, me.as_str());
            let sent = context
                .publish_with_headers(subject, headers, payload.into())
                .await;
            let acked = match sent {
                Ok(ack) => ack.await.map(drop).map_err(|e| e.to_string()),
                Err(error) => Err(error.to_string()),
            };
            if let Err(error) = acked {
                tracing::warn!(error, subject, "a fact could not be shared");
            }
        });
    }
}

/// Keeps what the other replicas publish, from `keep` ago on, for as
/// long as the process lives; a consumer that fails is made again from
/// where it was.
async fn follow(
    stream: stream::Stream,
    context: jetstream::Context,
    stores: Stores,
    keep: Duration,
    me: String,
) {
    let since = SystemTime::now() - keep;
    let mut from = consumer::DeliverPolicy::ByStartTime {
        start_time: time::OffsetDateTime::from(since),
    };
    loop {
        let config = consumer::push::OrderedConfig {
            deliver_subject: context.client().new_inbox(),
            filter_subject: "plumbline.facts.*".into(),
            deliver_policy: from,
            ..Default::default()
        };
        let messages = match stream.create_consumer(config).await {
            Ok(consumer) => consumer.messages().await.map_err(|e| e.to_string()),
            Err(error) => Err(error.to_string()),
        };
        match messages {
            Ok(mut messages) => {
                while let Some(message) = messages.next().await {
                    let Ok(message) = message else { break };
                    let Ok(info) = message.info() else { continue };
                    let sequence = info.stream_sequence;
                    let age = age(info.published);
                    from = consumer::DeliverPolicy::ByStartSequence {
                        start_sequence: sequence + 1,
                    };
                    let mine = message
                        .headers
                        .as_ref()
                        .and_then(|h| h.get(FROM))
                        .is_some_and(|from| from.as_str() == me);
                    if !mine {
                        keep_told(&stores, message.subject.as_str(), &message.payload, age);
                    }
                }
            }
            Err(error) => tracing::warn!(error, "following the shared facts; trying again"),
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
}

/// Keeps a fact another replica published `age` ago on `subject`.
fn keep_told(stores: &Stores, subject: &str, payload: &[u8], age: Duration) {
    match subject {
        AUDIT => {
            if let (Some(facts), Ok(told)) = (&stores.audit, serde_json::from_slice(payload)) {
                facts.record_told(told, age);
            }
        }
        ADMISSION => {
            if let (Some(admissions), Ok(told)) =
                (&stores.admission, serde_json::from_slice(payload))
            {
                admissions.record_told(told, age);
            }
        }
        _ => {}
    }
}

/// How long ago `published` was, by this machine's clock (zero if later).
fn age(published: time::OffsetDateTime) -> Duration {
    let now = nanos(SystemTime::now());
    let then = published.unix_timestamp_nanos();
    Duration::from_nanos(u64::try_from(now.saturating_sub(then)).unwrap_or(0))
}

fn nanos(at: SystemTime) -> i128 {
    at.duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| i128::try_from(d.as_nanos()).unwrap_or(i128::MAX))
}
