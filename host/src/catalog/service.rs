//! The catalog as its front ends use it (the REST API, the MCP tools, the
//! CLI): registration, reading, search, lifecycle and validation over one
//! store, with the search index kept current by every write made here and,
//! for a store several replicas share, by every write the others make.

use super::register::{Offer, RegisterError, Registrar};
use super::search::{BadCursor, Index, Page, Query};
use super::store::{Change, Drift, ExecutionRecord, Lifecycle, Record, Registered, StoreError};
use plumbline_catalog::Violation;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use serde_json::{Map, Value};
use std::sync::{Arc, PoisonError, RwLock};

/// The catalog.
pub struct Catalog {
    registrar: Registrar,
    index: Arc<RwLock<Index>>,
    /// Registrations that failed, by cause (whoever asked).
    failures: Family<CauseLabel, Counter>,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, prometheus_client::encoding::EncodeLabelSet)]
struct CauseLabel {
    cause: &'static str,
}

impl Catalog {
    /// The catalog `registrar` writes, its index built from what its store
    /// holds.
    pub fn open(registrar: Registrar) -> Result<Catalog, StoreError> {
        let index = Arc::new(RwLock::new(Index::of(&registrar.store.all()?)));
        let followed = Arc::downgrade(&index);
        registrar.store.follow(Box::new(move |record| {
            if let Some(index) = followed.upgrade() {
                index
                    .write()
                    .unwrap_or_else(PoisonError::into_inner)
                    .put(&record);
            }
        }));
        Ok(Catalog {
            registrar,
            index,
            failures: Family::default(),
        })
    }

    /// Registers `plumbline_catalog_registration_failures_total{cause}`: a
    /// registry that is down or slow shows here (`registry-unreachable`,
    /// and `busy` for registrations refused while it holds every read),
    /// not on `/readyz`, since the gate and the reads serve on without it.
    pub fn register_metrics(&self, registry: &mut prometheus_client::registry::Registry) {
        for cause in ["registry-unreachable", "busy"] {
            let _ = self.failures.get_or_create(&CauseLabel { cause });
        }
        registry.sub_registry_with_prefix("catalog").register(
            "registration_failures",
            "Registrations that failed or were refused, by cause (the API's problem type)",
            self.failures.clone(),
        );
    }

    /// Registers `offer` for `actor`.
    pub fn register(&self, offer: &Offer, actor: &str) -> Result<Registered, RegisterError> {
        let registered = self
            .registrar
            .register(offer, actor, &crate::telemetry::timestamp())
            .inspect_err(|error| {
                let cause = error.cause();
                self.failures.get_or_create(&CauseLabel { cause }).inc();
            })?;
        if let Registered::Created(record) = &registered {
            self.index_put(record);
            self.adopted(record)?;
        }
        Ok(registered)
    }

    /// Every violation registration would find in `workflow` now.
    pub fn problems(&self, workflow: &plumbline_catalog::Workflow) -> Vec<Violation> {
        super::register::problems(workflow, &*self.registrar.rules)
    }

    /// A new version registered from a tag ends the drift of the versions
    /// that tag moved away from: what it names now is in the catalog, and
    /// each older version runs at its own digest again.
    fn adopted(&self, record: &Record) -> Result<(), StoreError> {
        let (Some(reference), Some(image)) = (&record.schema_reference, &record.schema_image)
        else {
            return Ok(());
        };
        let Some(digest) = plumbline_catalog::executions::digest(image) else {
            return Ok(());
        };
        let drifting = self
            .index
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .drifting_from(reference);
        for (id, version) in drifting {
            let older = self.get(&id, &version)?;
            // The tag may have moved again since the drift was found: what
            // it names now was just registered, whichever digest that is.
            let ended = older
                .drift
                .as_ref()
                .is_some_and(|d| &d.reference == reference && d.registered != digest);
            if ended {
                self.set_drift(&id, &version, None)?;
            }
        }
        Ok(())
    }

    /// One version.
    pub fn get(&self, id: &str, version: &str) -> Result<Record, StoreError> {
        self.registrar.store.get(id, version)
    }

    /// Every version of `id`, oldest first; none is an error naming it.
    pub fn versions(&self, id: &str) -> Result<Vec<Record>, StoreError> {
        let versions = self.registrar.store.versions(id)?;
        if versions.is_empty() {
            return Err(StoreError::NotFound {
                id: id.to_owned(),
                version: "(any)".into(),
            });
        }
        Ok(versions)
    }

    /// A page of the versions `query` selects.
    pub fn search(&self, query: &Query) -> Result<Page, BadCursor> {
        self.index
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .search(query)
    }

    /// Every version registered.
    pub fn all(&self) -> Result<Vec<Record>, StoreError> {
        self.registrar.store.all()
    }

    /// Records (or clears) a version's drift.
    pub fn set_drift(
        &self,
        id: &str,
        version: &str,
        drift: Option<Drift>,
    ) -> Result<Record, StoreError> {
        let record = self.registrar.store.set_drift(id, version, drift)?;
        self.index_put(&record);
        Ok(record)
    }

    /// The versions whose execution image is in `repository`.
    pub fn running(&self, repository: &str) -> Vec<(String, String)> {
        self.index
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .running(repository)
    }

    /// Records executions the gate allowed, in one write.
    pub fn record_executions(&self, executions: &[ExecutionRecord]) -> Result<(), StoreError> {
        self.registrar.store.record_executions(executions)
    }

    /// The last `limit` executions allowed, newest first.
    pub fn executions(&self, limit: usize) -> Result<Vec<ExecutionRecord>, StoreError> {
        self.registrar.store.executions(limit)
    }

    /// How many versions are registered.
    pub fn len(&self) -> usize {
        self.index
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .len()
    }

    /// Whether none is.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Sets a version's lifecycle, saying why and who.
    pub fn set_lifecycle(
        &self,
        id: &str,
        version: &str,
        lifecycle: Lifecycle,
        reason: &str,
        actor: &str,
    ) -> Result<Record, StoreError> {
        let change = Change {
            lifecycle,
            reason: reason.to_owned(),
            actor: actor.to_owned(),
            at: crate::telemetry::timestamp(),
        };
        let record = self.registrar.store.set_lifecycle(id, version, change)?;
        self.index_put(&record);
        Ok(record)
    }

    /// Every reason `parameters` is not a valid parameter set of the
    /// version; none means it is. Text values are read as their declared
    /// types first, as the gate reads a run's (a Tekton param and a Job's
    /// environment are text), so the two never disagree.
    pub fn validate(
        &self,
        id: &str,
        version: &str,
        parameters: &Map<String, Value>,
    ) -> Result<Vec<Violation>, StoreError> {
        let record = self.get(id, version)?;
        let parameters = plumbline_catalog::executions::typed(&record.workflow, parameters);
        Ok(plumbline_catalog::execution::validate(
            &record.workflow,
            &parameters,
        ))
    }

    fn index_put(&self, record: &Record) {
        self.index
            .write()
            .unwrap_or_else(PoisonError::into_inner)
            .put(record);
    }
}
