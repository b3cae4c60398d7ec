//! The directory source: a folder of manifests (a dump of a cluster, or the
//! embedded default), followed.
//!
//! The first [`Follower::poll`] lists everything (the seed); each later one
//! re-reads only the files whose size or modification time changed and
//! turns the difference into create, update and delete events.
//!
//! One bad input never costs the rest: a document that does not parse, or
//! an object that cannot be identified, is reported with its path and
//! skipped, and the good documents beside it are still used; since what
//! the broken part held is unknown, the objects its file held before stay
//! (no delete event is made on its account) and a seed that met it is
//! incomplete. Documents that are not cluster objects (a values file, a
//! kustomization, a `generateName` template) are skipped with a note and
//! do not make a seed incomplete. [`walk`] keeps special files, links out
//! of the folder and loops from the walk.
//!
//! The same object may be in two files. Then the copy in the file first in
//! path order is the one mirrored, on every run and in every batch, with a
//! warning naming both files; when that file drops it, the next copy takes
//! over (an update, not a delete).

mod held;
mod index;
mod scope;
mod source;
pub mod walk;

pub use index::path_for as index_path;
pub use source::DirectorySource;

use super::manifest::{Found, IngestError, Note, read_each};
use crate::model::{Event, Operation, Target};
use held::{CopyDigest, Kinds, Stub, digest_of};
use scope::Scopes;
use serde_json::Value;
use smallvec::SmallVec;
use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::SystemTime;

/// Events handed on at a time: a seed of a large folder streams through
/// in chunks of this size instead of being held whole.
pub const CHUNK: usize = 1024;

/// How a folder is read.
#[derive(Debug, Clone)]
pub struct SourceOptions {
    /// Who made the changes; none for the visible "unknown" sentinel.
    pub actor: Option<String>,
    /// Where a namespaced object without a namespace goes, as with
    /// `kubectl apply`.
    pub default_namespace: String,
    /// Files larger than this are refused unread.
    pub max_file_bytes: u64,
    /// Where what each file held is kept between runs (in the state
    /// folder), so that a file the seed cannot read holds back the pruning
    /// of only its own objects; none to keep nothing.
    pub index: Option<PathBuf>,
}

impl Default for SourceOptions {
    fn default() -> SourceOptions {
        SourceOptions {
            actor: None,
            default_namespace: "default".into(),
            max_file_bytes: walk::DEFAULT_MAX_FILE_BYTES,
            index: None,
        }
    }
}

/// What one look at the folder found (its events went to the caller).
#[derive(Debug, Default)]
pub struct Changes {
    /// How many events (objects created, changed or deleted).
    pub events: usize,
    /// Files, entries and documents that could not be used.
    pub errors: Vec<IngestError>,
    /// Documents that are not cluster objects, skipped.
    pub skipped: Vec<Note>,
    /// Things worth a look that did not stop anything.
    pub warnings: Vec<Note>,
    /// How many manifest files the folder holds.
    pub files: usize,
    /// On a first look (a seed): objects that files which could not be
    /// read held at their last good reading, absent from the events but
    /// not gone. (A later look makes no delete event on their account.)
    pub held_back: Vec<Target>,
    /// Errors of which it is not known what the unread part held: a first
    /// look with no index from an earlier run.
    pub unknown: usize,
}

impl Changes {
    /// Whether what is absent may be pruned: every file was read, or what
    /// the unread ones held is known and in [`Changes::held_back`].
    pub fn is_complete(&self) -> bool {
        self.unknown == 0
    }
}

/// An object's identity (group, resource, namespace, name), joined into
/// one allocation shared by the file that holds it and the index.
type Identity = Arc<str>;

/// A file's path, shared by its state and the index.
type FilePath = Arc<Path>;

/// What a file holds: its objects, and the digest of its copy of each.
/// Nearly every file holds one object, which is kept in place; a list
/// held on the heap for it would be a fifth of what is kept per object.
type Objects = SmallVec<[(Identity, CopyDigest); 1]>;

/// Who holds an object, and what of it was last handed on.
#[derive(Debug)]
struct Held {
    /// The files holding it, in path order: the first one's copy is used.
    /// Nearly always one, kept in place.
    files: SmallVec<[FilePath; 1]>,
    /// The digest of the copy last handed on.
    digest: CopyDigest,
    /// What its delete event needs beyond its identity.
    stub: Stub,
}

#[derive(Debug, Default)]
struct FileState {
    stamp: Option<(SystemTime, u64)>,
    /// Its objects and the digest of its copy of each.
    objects: Objects,
}

/// A file read in this poll, finished when the poll has read everything
/// (its objects of unknown scope wait for the CRDs of the whole folder).
struct Pending {
    path: FilePath,
    before: Objects,
    now: Vec<(Identity, CopyDigest)>,
    /// The identities in `now`, once it holds many: a file of a
    /// 20,000-item List must not cost a quadratic search, and a file of
    /// one object (nearly all of them) must not cost a hash set.
    seen: Option<HashSet<Identity>>,
    broken: bool,
    found_anything: bool,
}

/// Objects a file holds before [`Pending::seen`] is worth its memory.
const FEW: usize = 8;

impl Pending {
    /// Whether the file's object `id` was read in this poll already.
    fn holds(&self, id: &Identity) -> bool {
        match &self.seen {
            Some(seen) => seen.contains(id),
            None => self.now.iter().any(|(held, _)| held == id),
        }
    }

    /// Records the file's object `id`; `false` if it was read already.
    fn read(&mut self, id: Identity, digest: CopyDigest) -> bool {
        if self.holds(&id) {
            return false;
        }
        if let Some(seen) = &mut self.seen {
            seen.insert(id.clone());
        } else if self.now.len() >= FEW {
            let mut seen: HashSet<Identity> = self.now.iter().map(|(id, _)| id.clone()).collect();
            seen.insert(id.clone());
            self.seen = Some(seen);
        }
        self.now.push((id, digest));
        true
    }
}

/// Follows a folder of manifests.
#[derive(Debug)]
pub struct Follower {
    dir: PathBuf,
    options: SourceOptions,
    files: BTreeMap<FilePath, FileState>,
    held: HashMap<Identity, Held>,
    kinds: Kinds,
    scopes: Scopes,
    /// Whether a poll has run: from then on, what every file held is known.
    polled: bool,
}

/// Where events go, in chunks of at most [`CHUNK`].
struct Out<'a> {
    events: Vec<Event>,
    flush: &'a mut dyn FnMut(Vec<Event>),
    count: usize,
}

impl Out<'_> {
    fn push(&mut self, event: Event) {
        self.events.push(event);
        if self.events.len() >= CHUNK {
            self.hand_on();
        }
    }

    fn hand_on(&mut self) {
        if !self.events.is_empty() {
            collapse(&mut self.events);
            self.count += self.events.len();
            (self.flush)(std::mem::take(&mut self.events));
        }
    }
}

impl Follower {
    /// A follower of `dir` whose changes are attributed to `actor`.
    pub fn new(dir: &Path, actor: Option<&str>) -> Follower {
        Follower::with_options(
            dir,
            SourceOptions {
                actor: actor.map(str::to_owned),
                ..SourceOptions::default()
            },
        )
    }

    /// A follower of `dir` reading it as `options` say.
    pub fn with_options(dir: &Path, options: SourceOptions) -> Follower {
        Follower {
            dir: dir.to_owned(),
            options,
            files: BTreeMap::new(),
            held: HashMap::new(),
            kinds: Kinds::default(),
            scopes: Scopes::default(),
            polled: false,
        }
    }

    /// Reads what changed since the last poll (everything, the first time),
    /// handing the events to `flush` in chunks of at most [`CHUNK`], each
    /// holding at most one event per object.
    pub fn poll(&mut self, flush: &mut dyn FnMut(Vec<Event>)) -> Changes {
        let mut changes = Changes::default();
        let paths: Vec<FilePath> = walk::manifest_files(&self.dir, &mut changes.errors)
            .into_iter()
            .map(FilePath::from)
            .collect();
        changes.files = paths.len();
        let mut unread: Vec<PathBuf> = changes
            .errors
            .iter()
            .map(|e| PathBuf::from(e.origin()))
            .collect();
        let mut out = Out {
            events: Vec::new(),
            flush,
            count: 0,
        };
        let mut poll = Poll::default();
        for path in &paths {
            self.read(path.clone(), &mut poll, &mut changes, &mut out);
        }
        unread.extend(poll.unread.iter().map(|p| p.to_path_buf()));
        // Files that went: what they held is released (an object that moved
        // to another file is held there by now, and is not deleted). A file
        // under an entry the walk could not read (a folder it may not list,
        // a link now refused) has not gone: it was not seen, and keeps what
        // it held.
        let unseen: Vec<PathBuf> = changes
            .errors
            .iter()
            .map(|e| PathBuf::from(e.origin()))
            .collect();
        let gone: Vec<FilePath> = self
            .files
            .keys()
            .filter(|p| paths.binary_search(p).is_err())
            .filter(|p| !unseen.iter().any(|u| p.starts_with(u)))
            .cloned()
            .collect();
        let went = !gone.is_empty();
        for path in gone {
            let state = self.files.remove(&path).unwrap_or_default();
            for (id, _) in state.objects {
                self.release(&path, &id, &mut poll, &mut out);
            }
        }
        self.finish(&mut poll, &mut changes, &mut out);
        out.hand_on();
        changes.events = out.count;
        // What an earlier run's index says is needed only for files this
        // first look could not read, and is read only then: the index of a
        // large folder is as large as the follower's own state.
        if !self.polled && !changes.errors.is_empty() {
            match self.remembered() {
                Some(held) => self.carry_over(held, &unread, &mut changes),
                None => changes.unknown = changes.errors.len(),
            }
        }
        if !self.polled || changes.events > 0 || went {
            self.remember(&mut changes);
        }
        self.polled = true;
        changes
    }

    /// What the index of an earlier run says each file held; `None` when
    /// there is no usable index.
    fn remembered(&self) -> Option<index::Held> {
        let path = self.options.index.as_ref()?;
        index::load(path, &self.dir, &self.options.default_namespace)
    }

    /// After a first look: what files it could not read held at their last
    /// good reading is held back, and still theirs.
    fn carry_over(&mut self, remembered: index::Held, unread: &[PathBuf], changes: &mut Changes) {
        for (path, ids) in remembered {
            if !unread.iter().any(|u| path.starts_with(u)) {
                continue;
            }
            let state = self.files.entry(FilePath::from(path)).or_default();
            let have: HashSet<Identity> = state.objects.iter().map(|(id, _)| id.clone()).collect();
            for id in ids {
                if !have.contains(id.as_str()) {
                    changes.held_back.push(target_of(&id, None));
                    // No digest: the copy is unknown, and any copy read
                    // later is news.
                    state
                        .objects
                        .push((Identity::from(id), CopyDigest::default()));
                }
            }
        }
    }

    /// Writes what each file holds to the index, if there is one.
    fn remember(&self, changes: &mut Changes) {
        let Some(path) = &self.options.index else {
            return;
        };
        let held = self.files.iter().map(|(file, state)| {
            let ids = state.objects.iter().map(|(id, _)| &**id);
            (&**file, ids)
        });
        if let Err(error) = index::save(path, &self.dir, &self.options.default_namespace, held) {
            changes.warnings.push(Note {
                origin: path.display().to_string(),
                message: format!(
                    "cannot write the source index ({error}): a file that cannot be read after a restart will hold back all pruning"
                ),
            });
        }
    }

    /// Ends the poll: objects of unknown scope are placed, files' dropped
    /// objects released, and files whose copy now wins read again.
    fn finish(&mut self, poll: &mut Poll, changes: &mut Changes, out: &mut Out<'_>) {
        for _ in 0..=self.files.len() {
            for (index, origin, object) in std::mem::take(&mut poll.deferred) {
                self.take(index, origin, object, poll, changes, out);
            }
            for pending in std::mem::take(&mut poll.pending) {
                self.settle(pending, poll, changes, out);
            }
            let again = std::mem::take(&mut poll.reread);
            if again.is_empty() {
                break;
            }
            for path in again {
                if let Some(state) = self.files.get_mut(&path) {
                    state.stamp = None;
                    self.read(path, poll, changes, out);
                }
            }
        }
        for ((group, kind), (count, origin)) in std::mem::take(&mut poll.guessed) {
            let group = if group.is_empty() { "core" } else { &group };
            changes.warnings.push(Note {
                origin,
                message: format!(
                    "{count} {kind} object(s) ({group}) have no namespace, and neither the built-in kinds nor a CRD in the folder say whether {kind} is namespaced: filed as cluster-scoped"
                ),
            });
        }
    }

    /// Re-reads `path` if it changed, recording its events.
    fn read(&mut self, path: FilePath, poll: &mut Poll, changes: &mut Changes, out: &mut Out<'_>) {
        let stamp = std::fs::metadata(&path)
            .ok()
            .map(|m| (m.modified().unwrap_or(SystemTime::UNIX_EPOCH), m.len()));
        let state = self.files.entry(path.clone()).or_default();
        if stamp.is_some() && state.stamp == stamp {
            return;
        }
        let text = match walk::read_file(&path, self.options.max_file_bytes) {
            Ok(text) => text,
            // Unreadable: what it held stays, and it is tried again next time.
            Err(error) => {
                poll.unread.push(path);
                return changes.errors.push(error);
            }
        };
        state.stamp = stamp;
        let before = std::mem::take(&mut state.objects);
        let index = poll.pending.len();
        poll.pending.push(Pending {
            path: path.clone(),
            before,
            now: Vec::new(),
            broken: false,
            found_anything: false,
            seen: None,
        });
        read_each(&text, &path.display().to_string(), &mut |found| {
            poll.pending[index].found_anything = true;
            match found {
                Found::Object(manifest) => {
                    self.scopes.learn(&manifest.object);
                    // An object of a kind not known yet waits for the whole
                    // folder's CRDs, namespace or not: a cluster-scoped
                    // kind's object must lose the namespace it was given.
                    if self.scopes.knows(&manifest.object) {
                        self.take(index, manifest.origin, manifest.object, poll, changes, out);
                    } else {
                        poll.deferred
                            .push((index, manifest.origin, manifest.object));
                    }
                }
                Found::Skipped(note) => changes.skipped.push(note),
                Found::Warning(note) => changes.warnings.push(note),
                Found::Error(error) => {
                    if !poll.pending[index].broken {
                        poll.unread.push(path.clone());
                    }
                    poll.pending[index].broken = true;
                    changes.errors.push(error);
                }
            }
        });
        // A file none of whose objects waits for the folder's CRDs and
        // which dropped nothing it held is settled now, not when the poll
        // ends: a seed of a large folder held every file's reading at once.
        let waits = poll.deferred.last().is_some_and(|(i, ..)| *i == index);
        let pending = &poll.pending[index];
        if !waits
            && pending.before.iter().all(|(id, _)| pending.holds(id))
            && let Some(pending) = poll.pending.pop()
        {
            self.settle(pending, poll, changes, out);
        }
    }

    /// One object read from the file of `poll.pending[index]`.
    fn take(
        &mut self,
        index: usize,
        origin: String,
        mut object: Value,
        poll: &mut Poll,
        changes: &mut Changes,
        out: &mut Out<'_>,
    ) {
        let placed = self
            .scopes
            .place(&mut object, &self.options.default_namespace);
        if placed.guessed {
            let key = (placed.target.group.clone(), placed.target.kind.clone());
            poll.guessed.entry(key).or_insert((0, origin.clone())).0 += 1;
        }
        let event = event_for(
            placed.target,
            &object,
            Operation::Create,
            self.options.actor.as_deref(),
        );
        let digest = digest_of(&event.object);
        let id = identity(&event.target);
        let pending = &mut poll.pending[index];
        if !pending.read(id.clone(), digest) {
            changes.warnings.push(Note {
                origin,
                message: format!(
                    "{} is in this file twice; the first copy is used",
                    event.target
                ),
            });
            return;
        }
        let path = pending.path.clone();
        let stub = self.kinds.stub_of(&object);
        let Some(held) = self.held.get_mut(&id) else {
            self.held.insert(
                id,
                Held {
                    files: smallvec::smallvec![path],
                    digest,
                    stub,
                },
            );
            return out.push(event);
        };
        if let Err(at) = held.files.binary_search(&path) {
            held.files.insert(at, path.clone());
        }
        if held.files[0] == path {
            if let Some(other) = held.files.get(1) {
                changes
                    .warnings
                    .push(duplicate(&event.target, &path, other, true));
            }
            if held.digest != digest {
                held.digest = digest;
                held.stub = stub;
                let operation = Operation::Update;
                out.push(Event { operation, ..event });
            }
        } else {
            changes
                .warnings
                .push(duplicate(&event.target, &path, &held.files[0], false));
        }
    }

    /// A file read in this poll: what it dropped is released; a broken
    /// file keeps what it held.
    fn settle(
        &mut self,
        pending: Pending,
        poll: &mut Poll,
        changes: &mut Changes,
        out: &mut Out<'_>,
    ) {
        let mut now = Vec::new();
        for (id, digest) in &pending.before {
            if !pending.holds(id) {
                now.push((id.clone(), *digest));
            }
        }
        let dropped = now;
        let Pending {
            path,
            before,
            mut now,
            broken,
            found_anything,
            ..
        } = pending;
        if !found_anything && !before.is_empty() {
            changes.warnings.push(Note {
                origin: path.display().to_string(),
                message: format!(
                    "holds no objects any more: its {} object(s) are deleted",
                    before.len()
                ),
            });
        }
        for (id, digest) in dropped {
            if broken {
                now.push((id, digest));
            } else {
                self.release(&path, &id, poll, out);
            }
        }
        // Kept until the file changes: no room to spare per file.
        if let Some(state) = self.files.get_mut(&path) {
            state.objects = Objects::from_vec(now);
            state.objects.shrink_to_fit();
        }
    }

    /// `path` holds `id` no more: deleted if no other file holds it; read
    /// from the next file if that one's copy takes over.
    fn release(&mut self, path: &FilePath, id: &Identity, poll: &mut Poll, out: &mut Out<'_>) {
        let Some(held) = self.held.get_mut(id) else {
            return;
        };
        let Ok(at) = held.files.binary_search(path) else {
            return;
        };
        held.files.remove(at);
        match held.files.first() {
            None => {
                let held = self.held.remove(id).expect("looked up above");
                let target = target_of(id, Some(held.stub.kind()));
                let stub = held.stub.object(&target.name, target.namespace.as_deref());
                out.push(event_for(
                    target,
                    &stub,
                    Operation::Delete,
                    self.options.actor.as_deref(),
                ));
            }
            Some(next) if at == 0 => {
                // The next copy is used now; its digest tells whether it differs.
                poll.reread.push(next.clone());
            }
            Some(_) => {}
        }
    }
}

/// What a poll gathers before it can finish.
#[derive(Default)]
struct Poll {
    pending: Vec<Pending>,
    /// Objects without a namespace whose kind is not known yet, by the
    /// index of their file in `pending`.
    deferred: Vec<(usize, String, Value)>,
    /// Files whose copy of an object now wins.
    reread: Vec<FilePath>,
    /// Files that could not be read, or not wholly.
    unread: Vec<FilePath>,
    /// Objects of unknown scope filed as cluster-scoped, by (group, kind):
    /// how many, and the first one's origin.
    guessed: BTreeMap<(String, String), (usize, String)>,
}

fn duplicate(target: &Target, this: &Path, other: &Path, used: bool) -> Note {
    let (kept, ignored) = if used { (this, other) } else { (other, this) };
    Note {
        origin: this.display().to_string(),
        message: format!(
            "{target} is also in {}; the copy in {} (first in path order) is used, the one in {} ignored",
            if used {
                other.display()
            } else {
                kept.display()
            },
            kept.display(),
            ignored.display()
        ),
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
    Identity::from(format!(
        "{}\0{}\0{}\0{}",
        target.group,
        target.resource,
        target.namespace.as_deref().unwrap_or_default(),
        target.name
    ))
}

/// The target of an object gone: its identity, with the kind and version
/// its stub carries (none when they are not known).
fn target_of(id: &str, kind: Option<&held::Kind>) -> Target {
    let mut parts = id.split('\0').map(str::to_owned);
    let mut next = || parts.next().unwrap_or_default();
    let (group, resource, namespace, name) = (next(), next(), next(), next());
    let (api_version, kind) = kind.map_or(("", ""), |k| (&*k.api_version, &*k.kind));
    Target {
        version: plumbline_kinds::split_api_version(api_version).1,
        kind: plumbline_kinds::built_in(&group, kind)
            .map_or_else(|| kind.trim().to_owned(), |b| b.kind.to_owned()),
        group,
        resource,
        subresource: None,
        namespace: Some(namespace).filter(|n| !n.is_empty()),
        name,
    }
}

fn event_for(target: Target, object: &Value, operation: Operation, actor: Option<&str>) -> Event {
    // A dump of a cluster carries them; a hand-written manifest does not.
    let metadata = |field: &str| {
        object
            .pointer(&format!("/metadata/{field}"))
            .and_then(Value::as_str)
            .map(str::to_owned)
    };
    Event {
        uid: metadata("uid"),
        resource_version: metadata("resourceVersion"),
        ..Event::new(operation, target, object.to_string()).by(actor)
    }
}

/// The event for an identified object (apiVersion, kind and name present),
/// placed with the built-in kinds' scopes and `default` as the namespace.
pub fn event_of(object: &Value, operation: Operation, actor: Option<&str>) -> Event {
    let mut object = object.clone();
    let placed = Scopes::default().place(&mut object, "default");
    event_for(placed.target, &object, operation, actor)
}

#[cfg(test)]
mod tests {
    use super::*;

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
        assert_eq!((event.uid, event.resource_version), (None, None));
    }

    #[test]
    fn events_carry_the_uid_and_resource_version_a_dump_has() {
        let object = serde_json::json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "a", "namespace": "ns", "uid": "6f1c", "resourceVersion": "4711"}});
        let event = event_of(&object, Operation::Update, None);
        assert_eq!(event.uid.as_deref(), Some("6f1c"));
        assert_eq!(event.resource_version.as_deref(), Some("4711"));
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
    fn a_restarted_follower_holds_back_what_a_broken_file_held_and_only_that() {
        let (dir, state) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
        let options = SourceOptions {
            index: Some(state.path().join("sources/index.json")),
            ..SourceOptions::default()
        };
        write(dir.path(), "a.yaml", A);
        write(
            dir.path(),
            "b.yaml",
            &format!("{B}---\n{}", B.replace(": b,", ": b2,")),
        );
        assert!(
            poll(&mut Follower::with_options(dir.path(), options.clone()))
                .0
                .is_complete()
        );

        write(dir.path(), "b.yaml", &format!("{B}---\nkind: [\n"));
        // Without the index nothing is known of what the broken part held.
        let (blind, _) = poll(&mut Follower::new(dir.path(), None));
        assert!(!blind.is_complete());
        let mut follower = Follower::with_options(dir.path(), options.clone());
        let (seed, events) = poll(&mut follower);
        assert!(seed.is_complete(), "{:?}", seed.errors);
        assert_eq!(summary(&events).len(), 2, "a and b are read");
        let held: Vec<&str> = seed.held_back.iter().map(|t| t.name.as_str()).collect();
        assert_eq!(held, ["b2"]);
        // Carried over: the next restart still knows it.
        let (again, _) = poll(&mut Follower::with_options(dir.path(), options));
        assert_eq!(again.held_back.len(), 1);
        // A later look of the same follower, with b2 back, creates it.
        write(
            dir.path(),
            "b.yaml",
            &format!("{B}---\n{}", B.replace(": b,", ": b2,")),
        );
        let (_, events) = poll(&mut follower);
        assert_eq!(summary(&events), [(Operation::Create, "b2".into())]);
    }

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
        assert!(!changes.errors.is_empty());
        assert!(events.is_empty(), "{:?}", summary(&events));
        assert!(changes.errors[0].to_string().contains("b.yaml"));

        // `a` moves into the repaired b.yaml: an update at most, no delete;
        // and back into a.yaml while b.yaml drops it: no delete, and no
        // update either, since the copy used is the same.
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
        assert!(events.is_empty(), "{events:?}");
    }

    #[test]
    fn a_folder_that_cannot_be_walked_any_more_deletes_nothing_it_held() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("sub")).unwrap();
        write(&dir.path().join("sub"), "a.yaml", A);
        write(dir.path(), "b.yaml", B);
        let mut follower = Follower::new(dir.path(), None);
        poll(&mut follower);
        // The folder is replaced by a link out of the source: refused, and
        // what it held before stays.
        let outside = tempfile::tempdir().unwrap();
        std::fs::rename(dir.path().join("sub"), outside.path().join("sub")).unwrap();
        std::os::unix::fs::symlink(outside.path().join("sub"), dir.path().join("sub")).unwrap();
        let (changes, events) = poll(&mut follower);
        assert!(!changes.errors.is_empty());
        assert!(events.is_empty(), "{:?}", summary(&events));
        // The whole source folder gone: an error, and nothing deleted.
        let root = dir.path().join("moved");
        std::fs::rename(dir.path().join("b.yaml"), outside.path().join("b.yaml")).unwrap();
        let mut follower = Follower::new(&root, None);
        std::fs::create_dir(&root).unwrap();
        write(&root, "b.yaml", B);
        poll(&mut follower);
        std::fs::rename(&root, dir.path().join("away")).unwrap();
        let (changes, events) = poll(&mut follower);
        assert!(!changes.errors.is_empty());
        assert!(events.is_empty(), "{:?}", summary(&events));
    }

    #[test]
    fn the_same_object_in_two_files_is_taken_from_the_first_every_time_with_a_warning() {
        let dir = tempfile::tempdir().unwrap();
        write(dir.path(), "b.yaml", &A.replace("k: v", "k: from-b"));
        write(dir.path(), "a.yaml", A);
        for _ in 0..3 {
            let mut follower = Follower::new(dir.path(), None);
            let (changes, events) = poll(&mut follower);
            assert_eq!(events.len(), 1);
            assert!(
                events[0].object.contains(r#""k":"v""#),
                "{}",
                events[0].object
            );
            let warning = changes.warnings[0].to_string();
            assert!(
                warning.contains("a.yaml") && warning.contains("b.yaml"),
                "{warning}"
            );
        }
        // When a.yaml drops it, b.yaml's copy takes over: an update.
        let mut follower = Follower::new(dir.path(), None);
        poll(&mut follower);
        write(dir.path(), "a.yaml", B);
        let (_, events) = poll(&mut follower);
        let summary = summary(&events);
        assert_eq!(
            summary,
            [
                (Operation::Update, "a".into()),
                (Operation::Create, "b".into())
            ]
        );
        let a = events.iter().find(|e| e.target.name == "a").unwrap();
        assert!(a.object.contains("from-b"), "{}", a.object);
    }

    #[test]
    fn namespaced_objects_without_a_namespace_go_to_the_default_namespace_crds_included() {
        let dir = tempfile::tempdir().unwrap();
        // The custom resource comes before its CRD in path order.
        write(
            dir.path(),
            "a-project.yaml",
            "apiVersion: argoproj.io/v1alpha1\nkind: AppProject\nmetadata: {name: p}\n",
        );
        write(
            dir.path(),
            "b-crd.yaml",
            "apiVersion: apiextensions.k8s.io/v1\nkind: CustomResourceDefinition\nmetadata: {name: appprojects.argoproj.io}\nspec: {group: argoproj.io, scope: Namespaced, names: {kind: AppProject, plural: appprojects}}\n",
        );
        write(
            dir.path(),
            "c-cm.yaml",
            "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: c}\n",
        );
        write(
            dir.path(),
            "d-widget.yaml",
            "apiVersion: example.com/v1\nkind: Widget\nmetadata: {name: w}\n",
        );
        // A cluster-scoped CRD after its object, which names a namespace.
        write(
            dir.path(),
            "e-gadget.yaml",
            "apiVersion: example.com/v1\nkind: Gadget\nmetadata: {name: g, namespace: team-a}\n",
        );
        write(
            dir.path(),
            "f-crd.yaml",
            "apiVersion: apiextensions.k8s.io/v1\nkind: CustomResourceDefinition\nmetadata: {name: gadgets.example.com}\nspec: {group: example.com, scope: Cluster, names: {kind: Gadget, plural: gadgets}}\n",
        );
        let options = SourceOptions {
            default_namespace: "argocd".into(),
            ..SourceOptions::default()
        };
        let mut follower = Follower::with_options(dir.path(), options);
        let (changes, events) = poll(&mut follower);
        let placed = |name: &str| {
            events
                .iter()
                .find(|e| e.target.name == name)
                .unwrap()
                .target
                .namespace
                .clone()
        };
        assert_eq!(placed("p").as_deref(), Some("argocd"));
        assert_eq!(placed("c").as_deref(), Some("argocd"));
        assert_eq!(placed("w"), None);
        assert_eq!(placed("g"), None);
        assert!(
            events
                .iter()
                .find(|e| e.target.name == "c")
                .unwrap()
                .object
                .contains(r#""namespace":"argocd""#)
        );
        assert_eq!(changes.warnings.len(), 1, "{:?}", changes.warnings);
        assert!(
            changes.warnings[0].message.contains("Widget"),
            "{}",
            changes.warnings[0]
        );
    }

    #[test]
    fn documents_that_are_not_objects_leave_the_seed_complete_and_an_emptied_file_is_warned_about()
    {
        let dir = tempfile::tempdir().unwrap();
        write(dir.path(), "a.yaml", A);
        write(
            dir.path(),
            "kustomization.yaml",
            "apiVersion: kustomize.config.k8s.io/v1beta1\nkind: Kustomization\nresources: [a.yaml]\n",
        );
        write(dir.path(), "values.yaml", "replicaCount: 1\n");
        let mut follower = Follower::new(dir.path(), None);
        let (changes, _) = poll(&mut follower);
        assert!(changes.is_complete(), "{:?}", changes.errors);
        assert_eq!(changes.skipped.len(), 2);
        write(dir.path(), "a.yaml", "# nothing here any more\n");
        let (changes, events) = poll(&mut follower);
        assert_eq!(summary(&events), [(Operation::Delete, "a".into())]);
        assert!(
            changes.warnings[0]
                .message
                .contains("holds no objects any more"),
            "{:?}",
            changes.warnings
        );
    }
}
