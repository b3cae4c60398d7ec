//! Where registered versions are kept, behind one small trait: the embedded
//! store here (a redb file in the state folder), and, for several
//! replicas, a key-value bucket on NATS JetStream (the scale-out issue).
//!
//! A version, (workflowId, version), is written once. Registering it again
//! with the same content changes nothing and says so; with other content it
//! is a conflict, never an overwrite: what an execution was checked
//! against must stay what the catalog says. Only its lifecycle (active,
//! disabled, deprecated, archived) changes afterwards. redb runs one write
//! transaction at a time, so a check and the write it decides are one
//! step: two registrations at once cannot lose either.

pub mod jetstream;

use plumbline_catalog::Workflow;
use redb::{Database, ReadableDatabase, ReadableTable, TableDefinition};
use serde::{Deserialize, Serialize};
use sha2::{Digest as _, Sha256};
use std::path::{Path, PathBuf};

/// (workflowId, version) → the record, as JSON.
const VERSIONS: TableDefinition<(&str, &str), &[u8]> = TableDefinition::new("catalog_versions");

/// Sequence number → an allowed execution, as JSON.
const EXECUTIONS: TableDefinition<u64, &[u8]> = TableDefinition::new("catalog_executions");

/// An execution the gate allowed: what ran, against what, for whom.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ExecutionRecord {
    /// The workflow.
    pub workflow_id: String,
    /// Its version.
    pub version: String,
    /// What runs it: `PipelineRun ns/name`, `Job ns/name`, or `api`.
    pub runner: String,
    /// The image or bundle it runs, as referenced.
    pub image: Option<String>,
    /// The digest it was checked at.
    pub image_digest: Option<String>,
    /// The content hash of the schema its parameters were checked against.
    pub schema_digest: String,
    /// `sha256:` of its parameters' canonical JSON (not the values: they
    /// may be sensitive).
    pub parameters_hash: String,
    /// Who asked for it.
    pub requester: String,
    /// When (RFC 3339).
    pub at: String,
}

/// Whether a version may be executed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum Lifecycle {
    /// Picked and executed.
    Active,
    /// Refused by the gate until enabled again.
    Disabled,
    /// Still executable; a newer version should be picked.
    Deprecated,
    /// Kept for the record only, for good.
    Archived,
}

impl Lifecycle {
    /// Whether no change may follow: archived is final (an archived
    /// version runs again as a new version, registered on purpose, not by
    /// a stray `enable`), and is not archived again either, which would
    /// rewrite who archived it, when and why. Every store checks it in the
    /// transaction that writes.
    pub fn is_final(self) -> bool {
        self == Lifecycle::Archived
    }
}

/// A tag that points elsewhere than when its version was registered.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Drift {
    /// The tag.
    pub reference: String,
    /// The digest registered.
    pub registered: String,
    /// The digest it names now.
    pub now: String,
    /// When this was found (RFC 3339).
    pub found_at: String,
}

/// A lifecycle change: what, why and who.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Change {
    /// The lifecycle now.
    pub lifecycle: Lifecycle,
    /// Why.
    pub reason: String,
    /// Who.
    pub actor: String,
    /// When (RFC 3339).
    pub at: String,
}

/// One registered version.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Record {
    /// The schema as registered.
    #[schema(value_type = Object)]
    pub workflow: Workflow,
    /// Where the schema came from: an image reference pinned by digest,
    /// or none for an inline schema.
    pub schema_image: Option<String>,
    /// The image reference as it was given (its tag), which is resolved
    /// again to find drift.
    #[serde(default)]
    pub schema_reference: Option<String>,
    /// The tag moved since registration: found, never adopted.
    #[serde(default)]
    pub drift: Option<Drift>,
    /// The trusted key (its file's name) whose cosign signature of the
    /// image verified at registration; none when images need no
    /// signature, or for an inline schema.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub signed_by: Option<String>,
    /// `sha256:` of the schema's canonical JSON: what "the same content"
    /// means.
    pub content_hash: String,
    /// Who registered it, and when (RFC 3339).
    pub registered_by: String,
    /// When.
    pub registered_at: String,
    /// The lifecycle, and its last change (none since registration).
    pub lifecycle: Lifecycle,
    /// The last lifecycle change.
    pub last_change: Option<Change>,
}

impl Record {
    /// A new, active version of `workflow`, registered by `actor` at `at`,
    /// not from an image.
    pub fn new(workflow: Workflow, actor: &str, at: &str) -> Record {
        Record {
            content_hash: content_hash(&workflow),
            workflow,
            schema_image: None,
            schema_reference: None,
            drift: None,
            signed_by: None,
            registered_by: actor.to_owned(),
            registered_at: at.to_owned(),
            lifecycle: Lifecycle::Active,
            last_change: None,
        }
    }

    /// Moves it to `change`'s lifecycle, unless its own is final: the one
    /// rule every store applies inside the write it decides.
    pub fn change_lifecycle(&mut self, change: &Change) -> Result<(), StoreError> {
        if self.lifecycle.is_final() {
            let w = &self.workflow;
            return Err(StoreError::Archived {
                id: w.workflow_id.clone(),
                version: w.version.clone(),
            });
        }
        self.lifecycle = change.lifecycle;
        self.last_change = Some(change.clone());
        Ok(())
    }

    /// The image an execution of this version runs: its execution bundle,
    /// else the image its schema came from.
    pub fn execution_image(&self) -> Option<&str> {
        let execution = &self.workflow.execution;
        execution.bundle.as_deref().or(self.schema_image.as_deref())
    }

    /// The digest an execution must run: the execution's own, else the
    /// one its bundle reference pins, else (when the bundle is the schema's
    /// image, or none is named) the digest the schema was read at.
    pub fn execution_digest(&self) -> Option<String> {
        use plumbline_catalog::executions::{digest, repository};
        let execution = &self.workflow.execution;
        if let Some(digest) = &execution.digest {
            return Some(digest.clone());
        }
        let bundle = execution.bundle.as_deref();
        if let Some(pinned) = bundle.and_then(digest) {
            return Some(pinned.to_owned());
        }
        let schema_image = self.schema_image.as_deref()?;
        let same = bundle.is_none_or(|b| repository(b) == repository(schema_image));
        same.then(|| digest(schema_image).map(str::to_owned))
            .flatten()
    }
}

/// The content hash of `workflow`: of its canonical JSON (fields in the
/// model's order, maps sorted).
pub fn content_hash(workflow: &Workflow) -> String {
    let json = serde_json::to_vec(workflow).expect("a workflow serializes");
    format!("sha256:{}", hex::encode(Sha256::digest(&json)))
}

/// What a registration did.
#[derive(Debug, Clone, PartialEq)]
pub enum Registered {
    /// A new version was written.
    Created(Record),
    /// The same content was registered already: nothing was written.
    Unchanged(Record),
}

/// Why a store refused or failed.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The version is registered with other content.
    #[error(
        "{id} {version} is registered already with other content ({registered}); this is {offered}: register it as a new version"
    )]
    Conflict {
        /// The workflow.
        id: String,
        /// The version.
        version: String,
        /// The registered content hash.
        registered: String,
        /// The one offered.
        offered: String,
    },
    /// The version is archived, which is final.
    #[error("{id} {version} is archived, which is final: register it again as a new version")]
    Archived {
        /// The workflow.
        id: String,
        /// The version.
        version: String,
    },
    /// No such version.
    #[error("no version {version} of workflow {id}")]
    NotFound {
        /// The workflow.
        id: String,
        /// The version.
        version: String,
    },
    /// The store failed.
    #[error("catalog store {place}: {source}")]
    Store {
        /// Where the store is: its file, or its server and bucket.
        place: String,
        /// The cause.
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
}

impl StoreError {
    /// What failed, in a word: the problem type the API answers and the
    /// `cause` label failures are counted by.
    pub fn cause(&self) -> &'static str {
        match self {
            StoreError::Conflict { .. } => "conflict",
            StoreError::Archived { .. } => "archived",
            StoreError::NotFound { .. } => "not-found",
            StoreError::Store { .. } => "store",
        }
    }
}

/// Sorts one workflow's `records` oldest version first (semver order).
fn by_version(records: &mut [Record]) {
    records.sort_by_key(|r| plumbline_catalog::check::version(&r.workflow.version).ok());
}

/// What every catalog store does.
pub trait CatalogStore: Send + Sync {
    /// Registers `record`'s version: written if new, unchanged if the same
    /// content is there, a conflict otherwise.
    fn register(&self, record: Record) -> Result<Registered, StoreError>;

    /// One version.
    fn get(&self, id: &str, version: &str) -> Result<Record, StoreError>;

    /// Every version of one workflow, oldest version first (semver order).
    fn versions(&self, id: &str) -> Result<Vec<Record>, StoreError>;

    /// Sets a version's lifecycle.
    fn set_lifecycle(&self, id: &str, version: &str, change: Change) -> Result<Record, StoreError>;

    /// Records (or, with none, clears) a version's drift.
    fn set_drift(
        &self,
        id: &str,
        version: &str,
        drift: Option<Drift>,
    ) -> Result<Record, StoreError>;

    /// Every version of every workflow (what a search index is built from).
    fn all(&self) -> Result<Vec<Record>, StoreError>;

    /// Records executions the gate allowed, all in one atomic write (the
    /// gate batches the decisions that arrive together).
    fn record_executions(&self, executions: &[ExecutionRecord]) -> Result<(), StoreError>;

    /// The last `limit` executions recorded, newest first.
    fn executions(&self, limit: usize) -> Result<Vec<ExecutionRecord>, StoreError>;

    /// Has `apply` called with every version this store holds and then
    /// with each one written, by whichever replica writes it, for a store
    /// that several replicas share; a store only this process writes calls
    /// nothing (the catalog sees its own writes).
    fn follow(&self, apply: Box<dyn Fn(Record) + Send + Sync>) {
        let _ = apply;
    }
}

/// The embedded store: one redb file.
pub struct DiskCatalog {
    db: Database,
    path: PathBuf,
}

impl DiskCatalog {
    /// Opens (or creates) the store at `path`, owner-only.
    pub fn open(path: &Path) -> Result<DiskCatalog, StoreError> {
        let error = |e: Box<dyn std::error::Error + Send + Sync>| StoreError::Store {
            place: path.display().to_string(),
            source: e,
        };
        if let Some(parent) = path.parent() {
            crate::state::create_dir(parent).map_err(|e| error(e.into()))?;
        }
        crate::state::own_file(path).map_err(|e| error(e.into()))?;
        let db = Database::create(path).map_err(|e| error(e.into()))?;
        let txn = db.begin_write().map_err(|e| error(e.into()))?;
        txn.open_table(VERSIONS).map_err(|e| error(e.into()))?;
        txn.open_table(EXECUTIONS).map_err(|e| error(e.into()))?;
        txn.commit().map_err(|e| error(e.into()))?;
        Ok(DiskCatalog {
            db,
            path: path.to_owned(),
        })
    }

    fn error(&self, e: impl Into<Box<dyn std::error::Error + Send + Sync>>) -> StoreError {
        StoreError::Store {
            place: self.path.display().to_string(),
            source: e.into(),
        }
    }

    fn decode(&self, bytes: &[u8]) -> Result<Record, StoreError> {
        serde_json::from_slice(bytes).map_err(|e| self.error(e))
    }

    /// Changes what `change` changes of a version, in one transaction.
    fn modify(
        &self,
        id: &str,
        version: &str,
        change: impl FnOnce(&mut Record) -> Result<(), StoreError>,
    ) -> Result<Record, StoreError> {
        let txn = self.db.begin_write().map_err(|e| self.error(e))?;
        let record = {
            let mut table = txn.open_table(VERSIONS).map_err(|e| self.error(e))?;
            let existing = table
                .get((id, version))
                .map_err(|e| self.error(e))?
                .map(|bytes| self.decode(bytes.value()))
                .transpose()?;
            let Some(mut record) = existing else {
                return Err(StoreError::NotFound {
                    id: id.to_owned(),
                    version: version.to_owned(),
                });
            };
            change(&mut record)?;
            let encoded = serde_json::to_vec(&record).map_err(|e| self.error(e))?;
            table
                .insert((id, version), encoded.as_slice())
                .map_err(|e| self.error(e))?;
            record
        };
        txn.commit().map_err(|e| self.error(e))?;
        Ok(record)
    }
}

impl CatalogStore for DiskCatalog {
    fn register(&self, record: Record) -> Result<Registered, StoreError> {
        let key = (
            record.workflow.workflow_id.as_str(),
            record.workflow.version.as_str(),
        );
        let txn = self.db.begin_write().map_err(|e| self.error(e))?;
        let outcome = {
            let mut table = txn.open_table(VERSIONS).map_err(|e| self.error(e))?;
            let existing = table
                .get(key)
                .map_err(|e| self.error(e))?
                .map(|v| self.decode(v.value()))
                .transpose()?;
            match existing {
                Some(registered) if registered.content_hash == record.content_hash => {
                    Registered::Unchanged(registered)
                }
                Some(registered) => {
                    return Err(StoreError::Conflict {
                        id: key.0.to_owned(),
                        version: key.1.to_owned(),
                        registered: registered.content_hash,
                        offered: record.content_hash,
                    });
                }
                None => {
                    let bytes = serde_json::to_vec(&record).map_err(|e| self.error(e))?;
                    table
                        .insert(key, bytes.as_slice())
                        .map_err(|e| self.error(e))?;
                    Registered::Created(record.clone())
                }
            }
        };
        txn.commit().map_err(|e| self.error(e))?;
        Ok(outcome)
    }

    fn get(&self, id: &str, version: &str) -> Result<Record, StoreError> {
        let txn = self.db.begin_read().map_err(|e| self.error(e))?;
        let table = txn.open_table(VERSIONS).map_err(|e| self.error(e))?;
        let found = table.get((id, version)).map_err(|e| self.error(e))?;
        match found {
            Some(bytes) => self.decode(bytes.value()),
            None => Err(StoreError::NotFound {
                id: id.to_owned(),
                version: version.to_owned(),
            }),
        }
    }

    fn versions(&self, id: &str) -> Result<Vec<Record>, StoreError> {
        let txn = self.db.begin_read().map_err(|e| self.error(e))?;
        let table = txn.open_table(VERSIONS).map_err(|e| self.error(e))?;
        let mut records = Vec::new();
        for row in table.range((id, "")..).map_err(|e| self.error(e))? {
            let (key, value) = row.map_err(|e| self.error(e))?;
            if key.value().0 != id {
                break;
            }
            records.push(self.decode(value.value())?);
        }
        by_version(&mut records);
        Ok(records)
    }

    fn all(&self) -> Result<Vec<Record>, StoreError> {
        let txn = self.db.begin_read().map_err(|e| self.error(e))?;
        let table = txn.open_table(VERSIONS).map_err(|e| self.error(e))?;
        let mut records = Vec::new();
        for row in table.iter().map_err(|e| self.error(e))? {
            let (_, value) = row.map_err(|e| self.error(e))?;
            records.push(self.decode(value.value())?);
        }
        Ok(records)
    }

    fn record_executions(&self, executions: &[ExecutionRecord]) -> Result<(), StoreError> {
        let txn = self.db.begin_write().map_err(|e| self.error(e))?;
        {
            let mut table = txn.open_table(EXECUTIONS).map_err(|e| self.error(e))?;
            let last = table.last().map_err(|e| self.error(e))?;
            let first = last.map_or(0, |(key, _)| key.value() + 1);
            for (key, execution) in (first..).zip(executions) {
                let bytes = serde_json::to_vec(execution).map_err(|e| self.error(e))?;
                table
                    .insert(key, bytes.as_slice())
                    .map_err(|e| self.error(e))?;
            }
        }
        txn.commit().map_err(|e| self.error(e))
    }

    fn executions(&self, limit: usize) -> Result<Vec<ExecutionRecord>, StoreError> {
        let txn = self.db.begin_read().map_err(|e| self.error(e))?;
        let table = txn.open_table(EXECUTIONS).map_err(|e| self.error(e))?;
        let mut found = Vec::new();
        for row in table.iter().map_err(|e| self.error(e))?.rev().take(limit) {
            let (_, value) = row.map_err(|e| self.error(e))?;
            found.push(serde_json::from_slice(value.value()).map_err(|e| self.error(e))?);
        }
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
            record.drift = drift;
            Ok(())
        })
    }
}

#[cfg(test)]
mod tests;
