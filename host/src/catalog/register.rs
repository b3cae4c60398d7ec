//! Registration: a workflow's schema, from its image (an attached schema
//! artifact, else its layers) or given inline, read, checked and stored.
//!
//! Every check runs before anything is written, and all of them run: what
//! no operator can turn off ([`plumbline_catalog::check`]), the parameters'
//! JSON Schema against its meta-schema (`jsonschema`, which resolves no
//! reference over the network), then the policies' schema chain. A schema
//! with any violation is refused with all of them, each at its path.

use super::extract::{ExtractError, Extracted, schema_of};
use super::store::{CatalogStore, Record, Registered, StoreError};
use crate::oci::OciClient;
use crate::oci::cosign::{self, TrustedKeys};
use plumbline_catalog::layers::Caps;
use plumbline_catalog::workflow::ReadError;
use plumbline_catalog::{Violation, Workflow, check, parameters_schema};
use serde_json::json;
use std::sync::Arc;

/// What is offered for registration.
#[derive(Debug, Clone)]
pub enum Offer {
    /// An image that carries its schema.
    Image(String),
    /// A schema's text (YAML or JSON, either format).
    Inline(String),
}

/// Why a registration was refused, or failed.
#[derive(Debug, thiserror::Error)]
pub enum RegisterError {
    /// The image's schema could not be found or read from the registry.
    #[error(transparent)]
    Extract(#[from] ExtractError),
    /// The schema is not in any format read.
    #[error("the schema{from} is no workflow schema: {source}")]
    Unreadable {
        /// ` in <image> at <path>`, or nothing for an inline schema.
        from: String,
        /// Why.
        #[source]
        source: ReadError,
    },
    /// The schema breaks rules: all of them.
    #[error("{id} {version}: {} violation(s): {}", violations.len(), said(violations))]
    Invalid {
        /// The workflow.
        id: String,
        /// Its version.
        version: String,
        /// Every violation.
        violations: Vec<Violation>,
    },
    /// The store refused (another content under this version) or failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// As many images are being read as may be at once.
    #[error("{0} images are being read already: try again shortly")]
    Busy(usize),
    /// Images must be signed, and this one is not by a trusted key.
    #[error(transparent)]
    Unverified(cosign::CosignError),
}

impl RegisterError {
    /// What failed, in a word: the problem type the API answers and the
    /// `cause` label failures are counted by.
    pub fn cause(&self) -> &'static str {
        match self {
            RegisterError::Store(error) => error.cause(),
            RegisterError::Busy(_) => "busy",
            RegisterError::Unverified(cosign::CosignError::Registry(e)) if e.is_not_found() => {
                "image-not-found"
            }
            RegisterError::Unverified(cosign::CosignError::Registry(_)) => "registry-unreachable",
            RegisterError::Unverified(_) => "image-unverified",
            RegisterError::Invalid { .. } => "validation",
            RegisterError::Unreadable { .. } => "unreadable-schema",
            // No registry was asked: the reference itself is wrong.
            RegisterError::Extract(ExtractError::Registry {
                source: crate::oci::OciError::Reference { .. },
                ..
            }) => "bad-reference",
            // The registry answered: the image is not there.
            RegisterError::Extract(ExtractError::Registry { source, .. })
                if source.is_not_found() =>
            {
                "image-not-found"
            }
            RegisterError::Extract(ExtractError::Registry { .. }) => "registry-unreachable",
            RegisterError::Extract(ExtractError::Layers {
                source: plumbline_catalog::layers::LayerError::Cap(_),
                ..
            }) => "cap-exceeded",
            RegisterError::Extract(ExtractError::Layers { .. }) => "unreadable-image",
            RegisterError::Extract(
                ExtractError::NotFound { .. } | ExtractError::EmptyArtifact { .. },
            ) => "schema-not-found",
        }
    }
}

fn said(violations: &[Violation]) -> String {
    let lines: Vec<String> = violations
        .iter()
        .map(|v| format!("{}: {}", v.path, v.message))
        .collect();
    lines.join("; ")
}

/// The policies' schema rules: violations of a parameters' JSON Schema
/// (text) in a context (text).
pub type SchemaRules = Arc<dyn Fn(&str, &str) -> Vec<Violation> + Send + Sync>;

/// What registers workflows into a store.
pub struct Registrar {
    /// Where versions are kept.
    pub store: Arc<dyn CatalogStore>,
    /// The registry client images are read with.
    pub registry: Arc<OciClient>,
    /// Where a schema is looked for in an image's layers, in order.
    pub paths: Vec<String>,
    /// What extraction may cost.
    pub caps: Caps,
    /// The policies' schema chain, as it is now.
    pub rules: SchemaRules,
    /// Images being read now (each holds a layer in memory and a thread).
    pub reading: Arc<std::sync::atomic::AtomicUsize>,
    /// When set, an image is registered only if a cosign signature of the
    /// digest its reference names verifies with one of these keys.
    pub trusted: Option<Arc<TrustedKeys>>,
}

/// The most images read at once.
pub const MAX_READING: usize = 4;

/// One image being read, counted until dropped.
struct Reading<'a>(&'a std::sync::atomic::AtomicUsize);

impl<'a> Reading<'a> {
    fn start(count: &'a std::sync::atomic::AtomicUsize) -> Result<Reading<'a>, RegisterError> {
        use std::sync::atomic::Ordering;
        let before = count.fetch_add(1, Ordering::AcqRel);
        if before >= MAX_READING {
            count.fetch_sub(1, Ordering::AcqRel);
            return Err(RegisterError::Busy(before));
        }
        Ok(Reading(count))
    }
}

impl Drop for Reading<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, std::sync::atomic::Ordering::AcqRel);
    }
}

impl Registrar {
    /// Registers `offer` on behalf of `actor`, at `now` (RFC 3339).
    pub fn register(
        &self,
        offer: &Offer,
        actor: &str,
        now: &str,
    ) -> Result<Registered, RegisterError> {
        let mut signed_by = None;
        let (text, image) = match offer {
            Offer::Inline(text) => (text.clone(), None),
            Offer::Image(reference) => {
                let _reading = Reading::start(&self.reading)?;
                // Read at the digest that was verified, not the tag again:
                // it may move in between.
                let (read_at, key) = self.verified(reference)?;
                signed_by = key;
                let paths: Vec<&str> = self.paths.iter().map(String::as_str).collect();
                let extracted = schema_of(&self.registry, &read_at, &paths, self.caps)?;
                let text = String::from_utf8_lossy(&extracted.bytes).into_owned();
                (text, Some((reference.as_str(), extracted)))
            }
        };
        let workflow =
            plumbline_catalog::read(&text).map_err(|source| RegisterError::Unreadable {
                from: image
                    .as_ref()
                    .map(|(reference, e)| format!(" in {reference} at {}", e.path))
                    .unwrap_or_default(),
                source,
            })?;
        let mut violations = problems(&workflow, &*self.rules);
        violations.extend(self.spelled_otherwise(&workflow));
        if !violations.is_empty() {
            return Err(RegisterError::Invalid {
                id: workflow.workflow_id,
                version: workflow.version,
                violations,
            });
        }
        let schema_reference = image.as_ref().map(|(reference, _)| reference.to_string());
        let schema_image = image.map(|(reference, e): (&str, Extracted)| pinned(reference, &e));
        let record = Record {
            schema_reference,
            schema_image,
            signed_by,
            ..Record::new(workflow, actor, now)
        };
        Ok(self.store.register(record)?)
    }

    /// Where `reference`'s schema is to be read: as given, or, when images
    /// must be signed, pinned at the digest whose signature verified, with
    /// the name of the key that made it.
    fn verified(&self, reference: &str) -> Result<(String, Option<String>), RegisterError> {
        let Some(keys) = &self.trusted else {
            return Ok((reference.to_owned(), None));
        };
        let failed = |e: crate::oci::OciError| RegisterError::Unverified(e.into());
        let digest = self.registry.resolve(reference).map_err(failed)?;
        let key = cosign::verify(&self.registry, reference, &digest, keys)
            .map_err(RegisterError::Unverified)?;
        let name = std::path::Path::new(&key)
            .file_name()
            .map_or(key.clone(), |n| n.to_string_lossy().into_owned());
        let pinned = crate::oci::at_digest(reference, &digest).map_err(failed)?;
        Ok((pinned, Some(name)))
    }
}

impl Registrar {
    /// The version registered under the other spelling (`v1.0.0` for
    /// `1.0.0`, or the reverse): one version has one spelling, or an
    /// execution naming either could get either content.
    fn spelled_otherwise(&self, workflow: &Workflow) -> Option<Violation> {
        let version = &workflow.version;
        let other = match version.strip_prefix('v') {
            Some(bare) => bare.to_owned(),
            None => format!("v{version}"),
        };
        self.store.get(&workflow.workflow_id, &other).ok()?;
        Some(Violation {
            path: "metadata.version".into(),
            message: format!(
                "`{version}` is registered already as `{other}`: a version has one spelling"
            ),
        })
    }
}

/// `reference` pinned at the digest its schema was read from.
fn pinned(reference: &str, extracted: &Extracted) -> String {
    crate::oci::at_digest(reference, &extracted.digest).unwrap_or_else(|_| reference.to_owned())
}

/// Every violation in `workflow`: the built-in checks, its parameters'
/// JSON Schema against the meta-schema, then `rules` (the policies' schema
/// chain) over that schema and the workflow's context.
pub fn problems(
    workflow: &Workflow,
    rules: &dyn Fn(&str, &str) -> Vec<Violation>,
) -> Vec<Violation> {
    let mut found = check(workflow);
    let schema = parameters_schema(workflow);
    // No reference is resolved: a schema that names another is refused
    // rather than fetched.
    if let Err(error) = jsonschema::meta::validate(&schema) {
        found.push(Violation {
            path: format!("parameters schema {}", error.instance_path()),
            message: error.to_string(),
        });
    }
    let context = json!({
        "workflowId": workflow.workflow_id,
        "version": workflow.version,
        "engine": workflow.execution.engine,
        "actionType": workflow.action_type,
    });
    let chain = rules(&schema.to_string(), &context.to_string());
    found.extend(chain.into_iter().map(|v| Violation {
        path: format!("parameters schema {}", v.path),
        message: v.message,
    }));
    found
}
