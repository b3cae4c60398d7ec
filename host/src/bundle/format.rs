//! What a bundle is on the wire, and how one is built from a folder.
//!
//! An author's folder holds `bundle.yaml`:
//!
//! ```yaml
//! steps:                         # in order, per decision
//!   - decision: sanitize
//!     plugin: keep_team.wasm     # a component, relative to this file
//!     name: keep-team            # default: the file's stem
//!     settings: { label: team }  # handed to the plugin as JSON
//!     capabilities: {}           # what it asks the operator to grant
//!   - decision: sanitize
//!     celFile: skip-ignored.yaml # a CEL policy file
//!   - decision: gate
//!     cel: { name: named, expression: "request.name != ''" }
//! ```
//!
//! The artifact's config lists the same steps with every file replaced by
//! the digest of the layer that holds it; inline CEL policies become files
//! too, so that every policy is a layer an OCI tool can pull.

use super::BundleError;
use crate::model::digest::content_digest;
use crate::oci::{Artifact, Blob};
use crate::policy::Decision;
use crate::policy::bundled::{Asks, BundleContent, BundleStep, BundleStepKind};
use crate::policy::cel::RawCel;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// The media type of a bundle's config.
pub const CONFIG_MEDIA_TYPE: &str = "application/vnd.plumbline.bundle.config.v1+json";
/// The media type of a component layer.
pub const WASM_MEDIA_TYPE: &str = "application/wasm";
/// The media type of a CEL policy file layer.
pub const CEL_MEDIA_TYPE: &str = "application/vnd.plumbline.policy.cel.v1+yaml";
/// The annotation OCI tools use as a layer's file name.
pub const TITLE: &str = "org.opencontainers.image.title";

/// A bundle's config blob.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct BundleConfig {
    /// The steps, in order.
    pub steps: Vec<ConfigStep>,
}

/// One step of a bundle's config: exactly one of `plugin`, `policy`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct ConfigStep {
    /// The decision it answers.
    pub decision: Decision,
    /// A plugin.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub plugin: Option<ConfigPlugin>,
    /// A CEL policy.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub policy: Option<ConfigPolicy>,
}

/// A plugin in a bundle's config.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct ConfigPlugin {
    /// The plugin's name.
    pub name: String,
    /// The digest of the layer holding its component.
    pub component: String,
    /// Its settings.
    #[serde(default)]
    pub settings: serde_json::Value,
    /// What it asks the operator to grant.
    #[serde(default)]
    pub capabilities: Asks,
}

/// A CEL policy in a bundle's config.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct ConfigPolicy {
    /// The policy's name.
    pub name: String,
    /// The digest of the layer holding its file.
    pub file: String,
}

/// `bundle.yaml` as written.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct BundleFile {
    steps: Vec<FileStep>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct FileStep {
    decision: Decision,
    plugin: Option<PathBuf>,
    name: Option<String>,
    settings: Option<serde_json::Value>,
    capabilities: Option<Asks>,
    cel: Option<RawCel>,
    cel_file: Option<PathBuf>,
}

/// The file that describes a bundle's folder.
pub const BUNDLE_FILE: &str = "bundle.yaml";

/// Builds the artifact for the folder `dir` (its `bundle.yaml` and the
/// files it names). Identical files become one layer.
pub fn build(dir: &Path) -> Result<Artifact, BundleError> {
    let path = dir.join(BUNDLE_FILE);
    let text = std::fs::read_to_string(&path).map_err(|error| BundleError::Io {
        path: path.clone(),
        error,
    })?;
    let invalid = |message: String| BundleError::Invalid {
        origin: path.display().to_string(),
        message,
    };
    let file: BundleFile = serde_saphyr::from_str(&text).map_err(|e| invalid(e.to_string()))?;
    let mut layers = Layers::default();
    let mut steps = Vec::new();
    for (i, step) in file.steps.into_iter().enumerate() {
        let at = |m: String| invalid(format!("steps[{i}]: {m}"));
        let (plugin, policy) = match (&step.plugin, &step.cel, &step.cel_file) {
            (Some(component), None, None) => {
                let bytes = read(dir, component)?;
                let title = file_name(component);
                let name = step.name.clone().unwrap_or_else(|| stem(&title));
                let digest = layers.add(WASM_MEDIA_TYPE, bytes, &title);
                let plugin = ConfigPlugin {
                    name,
                    component: digest,
                    settings: step
                        .settings
                        .clone()
                        .unwrap_or_else(|| serde_json::json!({})),
                    capabilities: step.capabilities.clone().unwrap_or_default(),
                };
                (Some(plugin), None)
            }
            (None, Some(cel), None) => {
                let yaml = serde_saphyr::to_string(cel).map_err(|e| at(e.to_string()))?;
                let title = format!("{}.cel.yaml", cel.name);
                let digest = layers.add(CEL_MEDIA_TYPE, yaml.into_bytes(), &title);
                (
                    None,
                    Some(ConfigPolicy {
                        name: cel.name.clone(),
                        file: digest,
                    }),
                )
            }
            (None, None, Some(cel_file)) => {
                let bytes = read(dir, cel_file)?;
                let cel = parse_cel(&bytes).map_err(at)?;
                let digest = layers.add(CEL_MEDIA_TYPE, bytes, &file_name(cel_file));
                (
                    None,
                    Some(ConfigPolicy {
                        name: cel.name,
                        file: digest,
                    }),
                )
            }
            _ => {
                return Err(at(
                    "a step needs exactly one of `plugin`, `cel`, `celFile`".into()
                ));
            }
        };
        if plugin.is_none()
            && (step.name.is_some() || step.settings.is_some() || step.capabilities.is_some())
        {
            return Err(at(
                "`name`, `settings` and `capabilities` belong to plugin steps".into(),
            ));
        }
        steps.push(ConfigStep {
            decision: step.decision,
            plugin,
            policy,
        });
    }
    let config = serde_json::to_vec_pretty(&BundleConfig { steps }).expect("a config serializes");
    Ok(Artifact {
        digest: None,
        config: Blob {
            media_type: CONFIG_MEDIA_TYPE.into(),
            data: config,
            annotations: BTreeMap::new(),
        },
        layers: layers.blobs,
    })
}

/// The layers of a bundle being built, each content once.
#[derive(Default)]
struct Layers {
    blobs: Vec<Blob>,
}

impl Layers {
    /// Adds a layer unless one with the same bytes is there; its digest.
    fn add(&mut self, media_type: &str, data: Vec<u8>, title: &str) -> String {
        let digest = content_digest(&data);
        if !self.blobs.iter().any(|b| content_digest(&b.data) == digest) {
            self.blobs.push(Blob {
                media_type: media_type.into(),
                data,
                annotations: BTreeMap::from([(TITLE.to_owned(), title.to_owned())]),
            });
        }
        digest
    }
}

/// Reads a pulled artifact as bundle content: its config parsed, every
/// step's layer found by digest and of the right media type.
pub fn read_artifact(reference: &str, artifact: &Artifact) -> Result<BundleContent, BundleError> {
    let digest = artifact.digest.clone().unwrap_or_default();
    let invalid = |message: String| BundleError::Invalid {
        origin: format!("bundle {reference}@{digest}"),
        message,
    };
    if artifact.config.media_type != CONFIG_MEDIA_TYPE {
        return Err(invalid(format!(
            "its config is {}, not {CONFIG_MEDIA_TYPE}: not a Plumbline bundle",
            artifact.config.media_type
        )));
    }
    let config: BundleConfig = serde_json::from_slice(&artifact.config.data)
        .map_err(|e| invalid(format!("its config: {e}")))?;
    let by_digest: BTreeMap<String, &Blob> = artifact
        .layers
        .iter()
        .map(|b| (content_digest(&b.data), b))
        .collect();
    let layer = |digest: &str, media_type: &str| -> Result<&Blob, BundleError> {
        let blob = by_digest
            .get(digest)
            .ok_or_else(|| invalid(format!("no layer {digest}")))?;
        if blob.media_type != media_type {
            return Err(invalid(format!(
                "layer {digest} is {}, not {media_type}",
                blob.media_type
            )));
        }
        Ok(blob)
    };
    let mut steps = Vec::new();
    for (i, step) in config.steps.into_iter().enumerate() {
        let kind = match (step.plugin, step.policy) {
            (Some(plugin), None) => BundleStepKind::Plugin {
                component: Arc::from(layer(&plugin.component, WASM_MEDIA_TYPE)?.data.as_slice()),
                name: plugin.name,
                settings: plugin.settings,
                asks: plugin.capabilities,
            },
            (None, Some(policy)) => {
                let blob = layer(&policy.file, CEL_MEDIA_TYPE)?;
                BundleStepKind::Cel(
                    parse_cel(&blob.data).map_err(|e| invalid(format!("steps[{i}]: {e}")))?,
                )
            }
            _ => {
                return Err(invalid(format!(
                    "steps[{i}] needs exactly one of `plugin`, `policy`"
                )));
            }
        };
        steps.push(BundleStep {
            decision: step.decision,
            kind,
        });
    }
    Ok(BundleContent {
        reference: reference.to_owned(),
        digest,
        steps,
    })
}

fn parse_cel(bytes: &[u8]) -> Result<RawCel, String> {
    let text =
        std::str::from_utf8(bytes).map_err(|_| "a CEL policy file is not UTF-8".to_owned())?;
    serde_saphyr::from_str(text).map_err(|e| format!("a CEL policy file: {e}"))
}

fn read(dir: &Path, file: &Path) -> Result<Vec<u8>, BundleError> {
    let path = dir.join(file);
    std::fs::read(&path).map_err(|error| BundleError::Io { path, error })
}

fn file_name(path: &Path) -> String {
    path.file_name().map_or_else(
        || path.display().to_string(),
        |n| n.to_string_lossy().into_owned(),
    )
}

fn stem(title: &str) -> String {
    Path::new(title)
        .file_stem()
        .map_or_else(|| title.to_owned(), |s| s.to_string_lossy().into_owned())
}
