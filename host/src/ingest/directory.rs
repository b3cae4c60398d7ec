//! The directory source: a folder of manifests (a dump of a cluster, or the
//! embedded default), followed.
//!
//! The first [`Follower::poll`] lists everything (the seed); each later one
//! re-reads only the files whose size or modification time changed and
//! turns the difference into create, update and delete events. A file that
//! does not parse, or an object that cannot be identified, is reported with
//! its path and skipped; the rest of the folder is still read. Since what
//! that file holds is unknown, the objects it held before stay (no delete
//! event is made on its account) and a seed that met it is incomplete.

use super::manifest::{IngestError, read_manifests};
use crate::model::{Event, Operation, Target};
use serde_json::Value;
use sha2::{Digest, Sha256};
use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::time::SystemTime;

/// Events handed on at a time: a seed of a large folder streams through
/// in chunks of this size instead of being held whole.
pub const CHUNK: usize = 1024;

/// What one look at the folder found (its events went to the caller).
#[derive(Debug, Default)]
pub struct Changes {
    /// How many events (objects created, changed or deleted).
    pub events: usize,
    /// Files and documents that could not be used.
    pub errors: Vec<IngestError>,
    /// How many files the folder holds.
    pub files: usize,
}

impl Changes {
    /// Whether every file was read: only then may absent objects be pruned.
    pub fn is_complete(&self) -> bool {
        self.errors.is_empty()
    }
}

/// An object's identity (group, resource, namespace, name), joined into
/// one allocation: the follower holds one per object.
type Identity = Box<str>;

/// What the follower remembers of an object: enough to tell a change and
/// to describe it in a delete event, never the object itself.
#[derive(Debug, Clone)]
struct Known {
    digest: [u8; 32],
    /// apiVersion, kind, name, namespace and labels (what rules select
    /// by), as JSON text.
    stub: String,
}

#[derive(Debug, Default)]
struct FileState {
    stamp: Option<(SystemTime, u64)>,
    /// Most files hold one object: a list costs less than a map.
    objects: Vec<(Identity, Known)>,
}

/// Follows a folder of manifests.
#[derive(Debug)]
pub struct Follower {
    dir: PathBuf,
    actor: Option<String>,
    files: BTreeMap<PathBuf, FileState>,
}

impl Follower {
    /// A follower of `dir` whose changes are attributed to `actor`.
    pub fn new(dir: &Path, actor: Option<&str>) -> Follower {
        Follower {
            dir: dir.to_owned(),
            actor: actor.map(str::to_owned),
            files: BTreeMap::new(),
        }
    }

    /// Reads what changed since the last poll (everything, the first time),
    /// handing the events to `flush` in chunks of at most [`CHUNK`], each
    /// holding at most one event per object.
    pub fn poll(&mut self, flush: &mut dyn FnMut(Vec<Event>)) -> Changes {
        let mut changes = Changes::default();
        let mut events = Vec::new();
        let mut paths = Vec::new();
        if let Err(error) = collect_files(&self.dir, &mut paths) {
            changes.errors.push(IngestError::Parse {
                origin: self.dir.display().to_string(),
                message: error.to_string(),
            });
            return changes;
        }
        paths.sort();
        changes.files = paths.len();
        let gone: Vec<PathBuf> = self
            .files
            .keys()
            .filter(|p| paths.binary_search(p).is_err())
            .cloned()
            .collect();
        let mut hand_on = |events: &mut Vec<Event>, changes: &mut Changes, at_least| {
            if events.len() >= at_least {
                collapse(events);
                changes.events += events.len();
                flush(std::mem::take(events));
            }
        };
        for path in paths {
            self.read(path, &mut events, &mut changes);
            hand_on(&mut events, &mut changes, CHUNK);
        }
        // Files that went, last: an object that moved to another file is
        // held there by now, and is not deleted.
        for path in gone {
            let state = self.files.remove(&path).unwrap_or_default();
            self.deleted(state.objects, &mut events);
        }
        hand_on(&mut events, &mut changes, 1);
        changes
    }

    /// Re-reads `path` if it changed, recording its events.
    fn read(&mut self, path: PathBuf, events: &mut Vec<Event>, changes: &mut Changes) {
        let stamp = std::fs::metadata(&path)
            .ok()
            .map(|m| (m.modified().unwrap_or(SystemTime::UNIX_EPOCH), m.len()));
        let previous = self.files.entry(path.clone()).or_default();
        if stamp.is_some() && previous.stamp == stamp {
            return;
        }
        previous.stamp = stamp;
        let origin = path.display().to_string();
        let (manifests, errors) = match std::fs::read_to_string(&path) {
            Ok(text) => read_manifests(&text, &origin),
            Err(e) => (
                Vec::new(),
                vec![IngestError::Parse {
                    origin,
                    message: e.to_string(),
                }],
            ),
        };
        let broken = !errors.is_empty();
        changes.errors.extend(errors);
        let mut before = std::mem::take(&mut previous.objects);
        let mut now = Vec::with_capacity(manifests.len());
        for manifest in manifests {
            let object = manifest.object;
            let event = event_of(&object, Operation::Create, self.actor.as_deref());
            let known = Known {
                digest: Sha256::digest(event.object.as_bytes()).into(),
                stub: stub_of(&object).to_string(),
            };
            let id = identity(&event.target);
            let old = before
                .iter()
                .position(|(known, _)| *known == id)
                .map(|i| before.swap_remove(i).1);
            let operation = match old {
                None => Some(Operation::Create),
                Some(old) if old.digest != known.digest => Some(Operation::Update),
                Some(_) => None,
            };
            if let Some(operation) = operation {
                events.push(Event { operation, ..event });
            }
            now.push((id, known));
        }
        if broken {
            // What the broken part held is unknown: keep what it held.
            now.extend(before);
        } else {
            self.deleted(before, events);
        }
        if let Some(state) = self.files.get_mut(&path) {
            state.objects = now;
        }
    }

    /// Delete events for `objects`, unless another file holds them now.
    fn deleted(&self, objects: Vec<(Identity, Known)>, events: &mut Vec<Event>) {
        for (id, known) in objects {
            if self
                .files
                .values()
                .any(|f| f.objects.iter().any(|(other, _)| *other == id))
            {
                continue;
            }
            let stub: Value = serde_json::from_str(&known.stub).unwrap_or_default();
            events.push(event_of(&stub, Operation::Delete, self.actor.as_deref()));
        }
    }
}

/// One event per object: an object dropped from one file and added to one
/// read after it is an update, not a delete and a create (which routing,
/// done in parallel, could reorder).
fn collapse(events: &mut Vec<Event>) {
    let mut seen: HashMap<Identity, usize> = HashMap::new();
    let mut keep = vec![true; events.len()];
    for i in 0..events.len() {
        let id = identity(&events[i].target);
        if let Some(&earlier) = seen.get(&id) {
            keep[earlier] = false;
            if events[earlier].operation == Operation::Delete {
                events[i].operation = Operation::Update;
            }
        }
        seen.insert(id, i);
    }
    let mut index = 0;
    events.retain(|_| {
        index += 1;
        keep[index - 1]
    });
}

fn identity(target: &Target) -> Identity {
    // NUL cannot occur in any of the parts.
    format!(
        "{}\0{}\0{}\0{}",
        target.group,
        target.resource,
        target.namespace.as_deref().unwrap_or_default(),
        target.name
    )
    .into_boxed_str()
}

/// The parts of an object a rule can select by, for its delete event.
fn stub_of(object: &Value) -> Value {
    let mut metadata = serde_json::Map::new();
    for field in ["name", "namespace", "labels"] {
        if let Some(value) = object.pointer(&format!("/metadata/{field}")) {
            metadata.insert(field.to_owned(), value.clone());
        }
    }
    serde_json::json!({
        "apiVersion": object.get("apiVersion"),
        "kind": object.get("kind"),
        "metadata": metadata,
    })
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

    fn write(dir: &Path, file: &str, text: &str) {
        std::fs::write(dir.join(file), text).unwrap();
    }

    /// Polls, collecting the events.
    fn poll(follower: &mut Follower) -> (Changes, Vec<Event>) {
        let mut events = Vec::new();
        let changes = follower.poll(&mut |chunk| events.extend(chunk));
        assert_eq!(changes.events, events.len());
        (changes, events)
    }

    fn summary(events: &[Event]) -> Vec<(Operation, String)> {
        let mut out: Vec<_> = events
            .iter()
            .map(|e| (e.operation, e.target.name.clone()))
            .collect();
        out.sort_by(|a, b| a.1.cmp(&b.1));
        out
    }

    const A: &str = "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: a, namespace: ns, labels: {team: x}}\ndata: {k: v}\n";
    const B: &str = "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: b, namespace: ns}\n";

    #[test]
    fn file_changes_become_create_update_and_delete_events() {
        let dir = tempfile::tempdir().unwrap();
        write(dir.path(), "a.yaml", A);
        write(dir.path(), "b.yaml", B);
        let mut follower = Follower::new(dir.path(), Some("alice"));
        let (seed, events) = poll(&mut follower);
        assert!(seed.is_complete());
        assert_eq!(
            summary(&events),
            [
                (Operation::Create, "a".into()),
                (Operation::Create, "b".into())
            ]
        );
        assert!(poll(&mut follower).1.is_empty(), "nothing changed");

        write(dir.path(), "a.yaml", &A.replace("k: v", "k: changed"));
        std::fs::remove_file(dir.path().join("b.yaml")).unwrap();
        let (_, events) = poll(&mut follower);
        assert_eq!(
            summary(&events),
            [
                (Operation::Update, "a".into()),
                (Operation::Delete, "b".into())
            ]
        );
        assert!(
            events
                .iter()
                .all(|e| e.username.as_deref() == Some("alice"))
        );

        // A delete event carries what rules select by, not the object.
        std::fs::remove_file(dir.path().join("a.yaml")).unwrap();
        let deleted = &poll(&mut follower).1[0];
        let object: Value = serde_json::from_str(&deleted.object).unwrap();
        assert_eq!(object["metadata"]["labels"]["team"], "x");
        assert!(object.get("data").is_none());
    }

    #[test]
    fn a_broken_file_keeps_what_it_held_and_an_object_that_moved_is_not_deleted() {
        let dir = tempfile::tempdir().unwrap();
        write(dir.path(), "a.yaml", A);
        write(dir.path(), "b.yaml", B);
        let mut follower = Follower::new(dir.path(), None);
        poll(&mut follower);
        write(dir.path(), "b.yaml", "kind: [unclosed\n");
        let (changes, events) = poll(&mut follower);
        assert!(!changes.is_complete());
        assert!(events.is_empty(), "{:?}", summary(&events));
        assert!(changes.errors[0].to_string().contains("b.yaml"));

        // `a` moves into the repaired b.yaml: an update at most, no delete;
        // and back into a.yaml while b.yaml drops it: one event, not two.
        write(dir.path(), "b.yaml", &format!("{B}---\n{A}"));
        std::fs::remove_file(dir.path().join("a.yaml")).unwrap();
        let (_, events) = poll(&mut follower);
        assert!(
            events.iter().all(|e| e.operation != Operation::Delete),
            "{:?}",
            summary(&events)
        );
        write(dir.path(), "a.yaml", A);
        write(dir.path(), "b.yaml", B);
        let events = summary(&poll(&mut follower).1);
        assert!(
            matches!(&events[..], [(op, name)] if name == "a" && *op != Operation::Delete),
            "{events:?}"
        );
    }
}
