//! The catalog on NATS JetStream, for several replicas: versions in a
//! key-value bucket, allowed executions in a stream, the same rules as the
//! embedded store.
//!
//! - A version is the key `<id>.<version>`, each `.` inside written `_`
//!   (neither ids, DNS labels, nor versions hold one): two tokens, so one
//!   workflow's versions are the subject filter `<id>.*`, and `nats kv ls`
//!   reads as the catalog does.
//! - Registering is the bucket's `create`, which only writes a key that is
//!   not there: of two replicas registering one version at once, one
//!   writes and the other reads what it wrote (the same content: unchanged;
//!   other content: a conflict). Nothing is overwritten.
//! - A lifecycle or drift change reads the entry and writes it back only
//!   if its revision is still the one read (compare-and-swap), again after
//!   a lost race: no replica's change is lost.
//! - The search index of every replica follows the bucket through a watch
//!   ([`CatalogStore::follow`]), so a version one replica registers is
//!   found on every other.
//!
//! The store's calls block (the catalog's callers are synchronous); from a
//! task of a multi-threaded runtime they step off its worker first, as the
//! registry client does.

use super::{CatalogStore, Change, Drift, ExecutionRecord, Record, Registered, StoreError};
use async_nats::jetstream::{self, consumer, kv, stream};
use futures_util::StreamExt as _;
use std::future::Future;
use std::time::Duration;
use tokio::runtime::{Handle, RuntimeFlavor};

/// The bucket versions are kept in.
pub const BUCKET: &str = "plumbline-catalog";
/// The stream allowed executions are recorded in.
pub const EXECUTIONS: &str = "PLUMBLINE_EXECUTIONS";
const EXECUTIONS_SUBJECT: &str = "plumbline.catalog.executions";
/// How often a compare-and-swap is tried again after losing a race.
const MAX_TRIES: usize = 64;
/// The largest record kept (a schema is at most 1 MiB of text).
const MAX_VALUE_BYTES: i32 = 4 << 20;

/// The catalog in a JetStream key-value bucket.
pub struct JetStreamCatalog {
    handle: Handle,
    context: jetstream::Context,
    versions: kv::Store,
    place: String,
}

impl JetStreamCatalog {
    /// Connects to the NATS server at `url` and opens (or creates) the
    /// bucket and the stream, with `replicas` copies each, on the runtime
    /// `handle` belongs to (multi-threaded: its calls block).
    pub fn connect(handle: Handle, url: &str, replicas: usize) -> Result<Self, StoreError> {
        let place = format!("NATS {}, bucket {BUCKET}", crate::nats::shown(url));
        let error = |e: Box<dyn std::error::Error + Send + Sync>| StoreError::Store {
            place: place.clone(),
            source: e,
        };
        if handle.runtime_flavor() != RuntimeFlavor::MultiThread {
            return Err(error("the runtime must be multi-threaded".into()));
        }
        let opened = handle.block_on(open(url, replicas)).map_err(error)?;
        let (context, versions) = opened;
        Ok(JetStreamCatalog {
            handle,
            context,
            versions,
            place,
        })
    }

    fn error(&self, e: impl Into<Box<dyn std::error::Error + Send + Sync>>) -> StoreError {
        StoreError::Store {
            place: self.place.clone(),
            source: e.into(),
        }
    }

    /// Runs `future` to its end, off the worker if called from one.
    fn run<F: Future>(&self, future: F) -> F::Output {
        crate::nats::block_on(&self.handle, future)
    }

    fn decode(&self, bytes: &[u8]) -> Result<Record, StoreError> {
        serde_json::from_slice(bytes).map_err(|e| self.error(e))
    }

    /// The latest value of every key `filter` (a key pattern) matches.
    async fn latest(&self, filter: &str) -> Result<Vec<Record>, StoreError> {
        let config = consumer::push::OrderedConfig {
            deliver_subject: self.context.client().new_inbox(),
            filter_subject: format!("{}{filter}", self.versions.prefix),
            deliver_policy: consumer::DeliverPolicy::LastPerSubject,
            replay_policy: consumer::ReplayPolicy::Instant,
            ..Default::default()
        };
        let ordered = self
            .versions
            .stream
            .create_consumer(config)
            .await
            .map_err(|e| self.error(e))?;
        // What is there now; a key written meanwhile comes through `follow`.
        let pending = ordered.cached_info().num_pending;
        let mut messages = ordered.messages().await.map_err(|e| self.error(e))?;
        let mut found = Vec::with_capacity(usize::try_from(pending).unwrap_or_default());
        for _ in 0..pending {
            let Some(message) = messages.next().await else {
                break;
            };
            let message = message.map_err(|e| self.error(e))?;
            if !message.payload.is_empty() {
                found.push(self.decode(&message.payload)?);
            }
        }
        Ok(found)
    }

    /// Changes what `change` changes of a version, compare-and-swap.
    fn modify(
        &self,
        id: &str,
        version: &str,
        change: impl Fn(&mut Record) -> Result<(), StoreError>,
    ) -> Result<Record, StoreError> {
        let not_found = || StoreError::NotFound {
            id: id.to_owned(),
            version: version.to_owned(),
        };
        let key = key(id, version).ok_or_else(not_found)?;
        self.run(async {
            for _ in 0..MAX_TRIES {
                let entry = self.versions.entry(&key).await.map_err(|e| self.error(e))?;
                let entry = entry
                    .filter(|e| !e.value.is_empty())
                    .ok_or_else(not_found)?;
                let mut record = self.decode(&entry.value)?;
                change(&mut record)?;
                let bytes = serde_json::to_vec(&record).map_err(|e| self.error(e))?;
                match self
                    .versions
                    .update(&key, bytes.into(), entry.revision)
                    .await
                {
                    Ok(_) => return Ok(record),
                    Err(e) if e.kind() == kv::UpdateErrorKind::WrongLastRevision => continue,
                    Err(e) => return Err(self.error(e)),
                }
            }
            Err(self.error(format!(
                "{id} {version} changed {MAX_TRIES} times while this change was tried"
            )))
        })
    }
}

/// The bucket and the executions' stream at `url`, created if missing.
async fn open(
    url: &str,
    replicas: usize,
) -> Result<(jetstream::Context, kv::Store), Box<dyn std::error::Error + Send + Sync>> {
    let context = crate::nats::connect(url).await?;
    let config = kv::Config {
        bucket: BUCKET.into(),
        description: "Plumbline's workflow catalog: <id>.<version> → the record".into(),
        history: 1,
        max_value_size: MAX_VALUE_BYTES,
        num_replicas: replicas.max(1),
        ..Default::default()
    };
    let versions = crate::nats::bucket(&context, config).await?;
    context
        .get_or_create_stream(stream::Config {
            name: EXECUTIONS.into(),
            description: Some("The executions Plumbline's gate allowed".into()),
            subjects: vec![EXECUTIONS_SUBJECT.into()],
            num_replicas: replicas.max(1),
            ..Default::default()
        })
        .await?;
    Ok((context, versions))
}

/// The key of a version: its id and version, each `.` written `_`; none
/// for what no registered version can be called (a wildcard, a space).
fn key(id: &str, version: &str) -> Option<String> {
    Some(format!("{}.{}", token(id)?, token(version)?))
}

/// One token of a key: `text` with each `.` written `_`; none for text no
/// id or version can be.
fn token(text: &str) -> Option<String> {
    let fits = !text.is_empty()
        && text
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '.');
    fits.then(|| text.replace('.', "_"))
}

impl CatalogStore for JetStreamCatalog {
    fn register(&self, record: Record) -> Result<Registered, StoreError> {
        let id = record.workflow.workflow_id.clone();
        let version = record.workflow.version.clone();
        let key = key(&id, &version)
            .ok_or_else(|| self.error(format!("{id} {version} cannot be a key")))?;
        let bytes = serde_json::to_vec(&record).map_err(|e| self.error(e))?;
        self.run(async {
            match self.versions.create(&key, bytes.into()).await {
                Ok(_) => return Ok(Registered::Created(record)),
                Err(e) if e.kind() == kv::CreateErrorKind::AlreadyExists => {}
                Err(e) => return Err(self.error(e)),
            }
            let there = self.versions.get(&key).await.map_err(|e| self.error(e))?;
            let there = self.decode(&there.unwrap_or_default())?;
            if there.content_hash == record.content_hash {
                Ok(Registered::Unchanged(there))
            } else {
                Err(StoreError::Conflict {
                    id,
                    version,
                    registered: there.content_hash,
                    offered: record.content_hash,
                })
            }
        })
    }

    fn get(&self, id: &str, version: &str) -> Result<Record, StoreError> {
        let not_found = || StoreError::NotFound {
            id: id.to_owned(),
            version: version.to_owned(),
        };
        let key = key(id, version).ok_or_else(not_found)?;
        let value = self
            .run(self.versions.get(key))
            .map_err(|e| self.error(e))?;
        match value {
            Some(bytes) if !bytes.is_empty() => self.decode(&bytes),
            _ => Err(not_found()),
        }
    }

    fn versions(&self, id: &str) -> Result<Vec<Record>, StoreError> {
        let Some(id_token) = token(id) else {
            return Ok(Vec::new());
        };
        let mut found = self.run(self.latest(&format!("{id_token}.*")))?;
        super::by_version(&mut found);
        Ok(found)
    }

    fn set_lifecycle(&self, id: &str, version: &str, change: Change) -> Result<Record, StoreError> {
        self.modify(id, version, |record| record.change_lifecycle(&change))
    }

    fn set_drift(
        &self,
        id: &str,
        version: &str,
        drift: Option<Drift>,
    ) -> Result<Record, StoreError> {
        self.modify(id, version, |record| {
            record.drift = drift.clone();
            Ok(())
        })
    }

    fn all(&self) -> Result<Vec<Record>, StoreError> {
        self.run(self.latest(">"))
    }

    fn record_executions(&self, executions: &[ExecutionRecord]) -> Result<(), StoreError> {
        self.run(async {
            // Every publish first, then every acknowledgement: one round
            // trip's wait for the batch, each record durable once acked.
            let mut acks = Vec::with_capacity(executions.len());
            for execution in executions {
                let bytes = serde_json::to_vec(execution).map_err(|e| self.error(e))?;
                let ack = self
                    .context
                    .publish(EXECUTIONS_SUBJECT, bytes.into())
                    .await
                    .map_err(|e| self.error(e))?;
                acks.push(ack);
            }
            for ack in acks {
                ack.await.map_err(|e| self.error(e))?;
            }
            Ok(())
        })
    }

    fn executions(&self, limit: usize) -> Result<Vec<ExecutionRecord>, StoreError> {
        self.run(async {
            let mut stream = self
                .context
                .get_stream(EXECUTIONS)
                .await
                .map_err(|e| self.error(e))?;
            let state = stream
                .info()
                .await
                .map_err(|e| self.error(e))?
                .state
                .clone();
            let mut found = Vec::new();
            let mut sequence = state.last_sequence;
            while found.len() < limit && sequence >= state.first_sequence.max(1) {
                // A sequence purged meanwhile is skipped.
                if let Ok(message) = stream.get_raw_message(sequence).await {
                    found
                        .push(serde_json::from_slice(&message.payload).map_err(|e| self.error(e))?);
                }
                sequence -= 1;
            }
            Ok(found)
        })
    }

    fn follow(&self, apply: Box<dyn Fn(Record) + Send + Sync>) {
        let versions = self.versions.clone();
        let place = self.place.clone();
        self.handle.spawn(async move {
            loop {
                if let Err(error) = watch(&versions, &apply).await {
                    tracing::warn!(%error, "following the catalog's bucket ({place}) failed; again in 1 s");
                }
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
        });
    }
}

/// Applies every version the bucket holds, then every change, until the
/// watch ends.
async fn watch(
    versions: &kv::Store,
    apply: &(dyn Fn(Record) + Send + Sync),
) -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
    let mut watch = versions.watch_with_history(">").await?;
    while let Some(entry) = watch.next().await {
        let entry = entry?;
        if entry.operation == kv::Operation::Put {
            match serde_json::from_slice(&entry.value) {
                Ok(record) => apply(record),
                Err(error) => {
                    tracing::warn!(key = entry.key, %error, "a catalog entry does not read")
                }
            }
        }
    }
    Ok(())
}
