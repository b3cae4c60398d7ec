//! The directory source: a folder of manifests (a dump of a cluster, or the
//! embedded default), read whole as a snapshot of what exists.
//!
//! A file that does not parse, or an object that cannot be identified, is
//! reported with its path and skipped; the rest of the folder is still read.
//! Since what that file holds is unknown, such a snapshot is incomplete, and
//! nothing may be pruned on its account.

use super::manifest::{IngestError, read_manifests};
use crate::model::{Event, Operation, Target};
use serde_json::Value;
use std::path::{Path, PathBuf};

/// Everything a folder holds, and what could not be read.
#[derive(Debug, Default)]
pub struct Snapshot {
    /// One create event per object found.
    pub events: Vec<Event>,
    /// Files and documents that could not be used.
    pub errors: Vec<IngestError>,
    /// How many files were read.
    pub files: usize,
}

impl Snapshot {
    /// Whether every file was read: only then may absent objects be pruned.
    pub fn is_complete(&self) -> bool {
        self.errors.is_empty()
    }
}

/// Reads every `.yaml`, `.yml` and `.json` file under `dir`, recursively,
/// in path order; each object becomes a create event by `actor`.
pub fn scan(dir: &Path, actor: Option<&str>) -> Snapshot {
    let mut snapshot = Snapshot::default();
    let mut files = Vec::new();
    if let Err(error) = collect_files(dir, &mut files) {
        snapshot.errors.push(IngestError::Parse {
            origin: dir.display().to_string(),
            message: error.to_string(),
        });
        return snapshot;
    }
    files.sort();
    for file in files {
        snapshot.files += 1;
        let origin = file.display().to_string();
        let text = match std::fs::read_to_string(&file) {
            Ok(text) => text,
            Err(e) => {
                snapshot.errors.push(IngestError::Parse {
                    origin,
                    message: e.to_string(),
                });
                continue;
            }
        };
        let (manifests, errors) = read_manifests(&text, &origin);
        snapshot.errors.extend(errors);
        for manifest in manifests {
            snapshot
                .events
                .push(event_of(&manifest.object, Operation::Create, actor));
        }
    }
    snapshot
}

fn collect_files(dir: &Path, out: &mut Vec<PathBuf>) -> std::io::Result<()> {
    for entry in std::fs::read_dir(dir)? {
        let path = entry?.path();
        if path.is_dir() {
            collect_files(&path, out)?;
        } else if path
            .extension()
            .is_some_and(|e| e == "yaml" || e == "yml" || e == "json")
        {
            out.push(path);
        }
    }
    Ok(())
}

/// The event for an identified object (apiVersion, kind and name present).
pub fn event_of(object: &Value, operation: Operation, actor: Option<&str>) -> Event {
    let text = |pointer: &str| {
        object
            .pointer(pointer)
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_owned()
    };
    let api_version = text("/apiVersion");
    let (group, version) = match api_version.split_once('/') {
        Some((group, version)) => (group.to_owned(), version.to_owned()),
        None => (String::new(), api_version),
    };
    let kind = text("/kind");
    let namespace = Some(text("/metadata/namespace")).filter(|n| !n.is_empty());
    Event {
        operation,
        target: Target {
            group,
            version,
            resource: resource_of(&kind),
            kind,
            subresource: None,
            namespace,
            name: text("/metadata/name"),
        },
        object: object.to_string(),
        username: actor.map(str::to_owned),
    }
}

/// The plural resource of a kind, as the API server names it. Without
/// discovery (a folder has none) this is the API machinery's own guess,
/// with the irregular built-in kinds spelled out.
pub fn resource_of(kind: &str) -> String {
    let lower = kind.to_ascii_lowercase();
    match lower.as_str() {
        "endpoints" => return lower,
        "podsecuritypolicy" => return "podsecuritypolicies".into(),
        _ => {}
    }
    if lower.ends_with('s')
        || lower.ends_with("sh")
        || lower.ends_with("ch")
        || lower.ends_with('x')
    {
        format!("{lower}es")
    } else if let Some(stem) = lower.strip_suffix('y')
        && !stem.ends_with(['a', 'e', 'i', 'o', 'u'])
    {
        format!("{stem}ies")
    } else {
        format!("{lower}s")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resources_are_the_plurals_the_api_server_uses() {
        for (kind, resource) in [
            ("Deployment", "deployments"),
            ("Ingress", "ingresses"),
            ("NetworkPolicy", "networkpolicies"),
            ("Gateway", "gateways"),
            ("Endpoints", "endpoints"),
            ("StorageClass", "storageclasses"),
        ] {
            assert_eq!(resource_of(kind), resource);
        }
    }

    #[test]
    fn events_carry_group_version_and_namespace() {
        let object = serde_json::json!({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "web", "namespace": "shop"}});
        let event = event_of(&object, Operation::Create, Some("alice"));
        assert_eq!(
            (event.target.group.as_str(), event.target.version.as_str()),
            ("apps", "v1")
        );
        assert_eq!(event.target.namespace.as_deref(), Some("shop"));
        assert_eq!(event.username.as_deref(), Some("alice"));
    }
}
