//! The local repository, in process through `gix`: what the branch's tip
//! holds, and new blobs, trees and commits on top of it.
//!
//! There is no work tree: a file's bytes go straight into the object
//! database, and a commit's tree is the tip's tree with the batch's paths
//! edited, so a commit costs the changed paths, never a walk of everything
//! Plumbline has written. New objects are kept in memory until
//! [`Store::persist`] writes them as one pack: a loose object per file
//! would cost a file creation each, which on this kind of disk is most of
//! the time of a large seed. The paths the tip holds are kept in memory with
//! their blob ids, which is how an unchanged object is recognised (same
//! bytes, same id) without reading anything back.

use super::remote::GitError;
use crate::signing::Signer;
use gix::ObjectId;
use gix::objs::tree::EntryKind;
use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// A person, as Git records them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Person {
    /// Display name.
    pub name: String,
    /// Email address.
    pub email: String,
}

/// The local repository and the branch being built in it.
pub struct Store {
    repo: gix::Repository,
    /// Signs every commit, when set.
    signer: Option<Arc<Signer>>,
    path: PathBuf,
    /// The commit new commits build on: the remote's tip, then ours.
    tip: Option<ObjectId>,
    /// The tip's tree.
    tree: ObjectId,
    /// Every file of the tip, with its blob.
    files: HashMap<String, ObjectId>,
    /// Every path edited since the last commit, with its blob then (`None`
    /// if it held no file): what a commit changes is what differs now.
    before: BTreeMap<String, Option<ObjectId>>,
    /// Bytes of the blobs held in memory, not yet persisted.
    memory_bytes: usize,
}

/// A file a commit changed, against the commit before it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Change {
    /// The file's path.
    pub path: String,
    /// Written (created or changed), or removed.
    pub written: bool,
}

/// What [`Store::commit`] did.
#[derive(Debug, Default)]
pub struct Committed {
    /// The new commit; `None` when nothing changed.
    pub id: Option<ObjectId>,
    /// The files it changed: each path once, and only if its file differs
    /// from the commit before (a file written and written back is none).
    pub changed: Vec<Change>,
    /// Edits the tree refused (a path Git cannot hold), with why: their
    /// files are left as they were, and the rest is committed.
    pub refused: Vec<(String, GitError)>,
}

impl Store {
    /// Opens the bare repository at `path`.
    pub fn open(path: &Path) -> Result<Store, GitError> {
        // Each persisted batch is a pack until the worker repacks: leave
        // room for many, and read no user or system configuration.
        let slots = gix::odb::store::init::Slots::AsNeededByDiskState {
            multiplier: 2.0,
            minimum: 256,
        };
        let options = gix::open::Options::isolated().object_store_slots(slots);
        let mut repo = gix::open_opts(path, options)
            .map_err(|e| local(path, e))?
            .with_object_memory();
        // Trees are read back on every commit: keep the recent ones decoded.
        repo.object_cache_size_if_unset(4 << 20);
        let tree = ObjectId::empty_tree(repo.object_hash());
        Ok(Store {
            repo,
            path: path.to_owned(),
            signer: None,
            tip: None,
            tree,
            files: HashMap::new(),
            before: BTreeMap::new(),
            memory_bytes: 0,
        })
    }

    /// Starts over from `tip` (the remote's, or nothing for a new branch),
    /// dropping staged edits and local commits.
    pub fn reset(&mut self, tip: Option<ObjectId>) -> Result<(), GitError> {
        self.repo.objects.set_object_memory(Default::default());
        self.memory_bytes = 0;
        self.before.clear();
        self.files.clear();
        self.tip = tip;
        self.tree = ObjectId::empty_tree(self.repo.object_hash());
        let Some(tip) = tip else {
            return Ok(());
        };
        let commit = self
            .repo
            .find_commit(tip)
            .map_err(|e| local(&self.path, e))?;
        let tree = commit.tree().map_err(|e| local(&self.path, e))?;
        self.tree = tree.id;
        let entries = tree
            .traverse()
            .breadthfirst
            .files()
            .map_err(|e| local(&self.path, e))?;
        // Each path's bytes become its key as they are (a path is UTF-8
        // unless someone else wrote it): a copy of every path of a large
        // tree, beside the listing, would double what this costs.
        self.files.reserve(entries.len());
        for entry in entries {
            if entry.mode.is_blob() {
                let path = String::from_utf8(entry.filepath.into())
                    .unwrap_or_else(|e| String::from_utf8_lossy(e.as_bytes()).into_owned());
                self.files.insert(path, entry.oid);
            }
        }
        Ok(())
    }

    /// The commit new commits build on.
    pub fn tip(&self) -> Option<ObjectId> {
        self.tip
    }

    /// Every file path the branch holds now (staged edits included).
    pub fn paths(&self) -> impl Iterator<Item = &str> {
        self.files.keys().map(String::as_str)
    }

    /// The bytes the branch holds at `path` now, if it holds a file there
    /// that can be read.
    pub fn read(&self, path: &str) -> Option<Vec<u8>> {
        let id = self.files.get(path)?;
        let object = self.repo.find_object(*id).ok()?;
        Some(object.detach().data)
    }

    /// Whether the branch holds `path` now.
    pub fn contains(&self, path: &str) -> bool {
        self.files.contains_key(path)
    }

    /// Stages `content` at `path`; `false` (and nothing written) when the
    /// file already holds exactly these bytes.
    pub fn write(&mut self, path: &str, content: &[u8]) -> Result<bool, GitError> {
        let id = gix::objs::compute_hash(self.repo.object_hash(), gix::objs::Kind::Blob, content)
            .map_err(|e| local(&self.path, e))?;
        if self.files.get(path) == Some(&id) {
            return Ok(false);
        }
        self.repo
            .write_blob(content)
            .map_err(|e| local(&self.path, e))?;
        self.memory_bytes += content.len();
        let was = self.files.insert(path.to_owned(), id);
        self.before.entry(path.to_owned()).or_insert(was);
        Ok(true)
    }

    /// Stages the removal of `path`; `false` if the branch does not hold it.
    pub fn remove(&mut self, path: &str) -> bool {
        let Some(was) = self.files.remove(path) else {
            return false;
        };
        self.before.entry(path.to_owned()).or_insert(Some(was));
        true
    }

    /// Whether edits are staged.
    pub fn has_staged(&self) -> bool {
        !self.before.is_empty()
    }

    /// Commits the staged edits on the tip, with the message `message`
    /// makes of the files that changed. An edit the tree refuses is left
    /// out (and reported) rather than failing the others.
    pub fn commit(
        &mut self,
        message: impl FnOnce(&[Change]) -> String,
        author: &Person,
        committer: &Person,
    ) -> Result<Committed, GitError> {
        let before = std::mem::take(&mut self.before);
        // Each path once, as it is now against the last commit.
        let mut edits: Vec<(String, Option<ObjectId>, Option<ObjectId>)> = before
            .into_iter()
            .filter_map(|(path, was)| {
                let now = self.files.get(&path).copied();
                (now != was).then_some((path, was, now))
            })
            .collect();
        let mut committed = Committed::default();
        if edits.is_empty() {
            return Ok(committed);
        }
        let tree = match self.edit(self.tree, &edits) {
            Ok(tree) => tree,
            Err(_) => {
                // Some edit is one the tree cannot take: find which, one
                // by one (rare, so the cost of a tree per edit is fine).
                let mut tree = self.tree;
                let mut kept = Vec::with_capacity(edits.len());
                for edit in edits {
                    match self.edit(tree, std::slice::from_ref(&edit)) {
                        Ok(next) => {
                            tree = next;
                            kept.push(edit);
                        }
                        Err(error) => {
                            let (path, was, _) = edit;
                            match was {
                                Some(id) => self.files.insert(path.clone(), id),
                                None => self.files.remove(&path),
                            };
                            committed.refused.push((path, error));
                        }
                    }
                }
                edits = kept;
                tree
            }
        };
        if tree == self.tree {
            return Ok(committed);
        }
        committed.changed = edits
            .into_iter()
            .map(|(path, _, now)| Change {
                path,
                written: now.is_some(),
            })
            .collect();
        let now = gix::date::Time::now_utc();
        let signature = |p: &Person| gix::actor::Signature {
            name: p.name.as_str().into(),
            email: p.email.as_str().into(),
            time: now,
        };
        let mut commit = gix::objs::Commit {
            tree,
            parents: self.tip.into_iter().collect(),
            author: signature(author),
            committer: signature(committer),
            encoding: None,
            message: message(&committed.changed).into(),
            extra_headers: Vec::new(),
        };
        if let Some(signer) = &self.signer {
            let signed = sign(&commit, signer).map_err(|e| GitError::Sign(Box::new(e)))?;
            commit.extra_headers.push(("gpgsig".into(), signed.into()));
        }
        let id = self
            .repo
            .write_object(&commit)
            .map_err(|e| local(&self.path, e))?
            .detach();
        self.tip = Some(id);
        self.tree = tree;
        committed.id = Some(id);
        Ok(committed)
    }

    /// Signs every commit from now on with `signer`.
    pub fn sign_with(&mut self, signer: Arc<Signer>) {
        self.signer = Some(signer);
    }

    /// `tree` with `edits` applied, written.
    fn edit(
        &self,
        tree: ObjectId,
        edits: &[(String, Option<ObjectId>, Option<ObjectId>)],
    ) -> Result<ObjectId, GitError> {
        let mut editor = self
            .repo
            .edit_tree(tree)
            .map_err(|e| local(&self.path, e))?;
        for (path, _, now) in edits {
            match now {
                Some(id) => editor.upsert(path.as_str(), EntryKind::Blob, *id),
                None => editor.remove(path.as_str()),
            }
            .map_err(|e| local(&self.path, e))?;
        }
        Ok(editor.write().map_err(|e| local(&self.path, e))?.detach())
    }
}

/// Objects held in memory before they are written out as a pack: bounds
/// memory (a tree of a large folder is tens of KiB) and the number of packs.
const MEMORY_OBJECTS: usize = 1024;

/// Bytes of blobs held in memory before they are written out, whatever
/// their number: a few large files must not grow the process either.
const MEMORY_BYTES: usize = 16 << 20;

impl Store {
    /// How many packs the repository holds.
    pub fn packs(&self) -> usize {
        std::fs::read_dir(self.path.join("objects/pack")).map_or(0, |entries| {
            entries
                .filter_map(Result::ok)
                .filter(|e| e.path().extension().is_some_and(|x| x == "pack"))
                .count()
        })
    }

    /// Whether enough objects wait in memory to write them out now.
    pub fn should_persist(&self) -> bool {
        self.repo.objects.num_objects_in_memory() >= MEMORY_OBJECTS
            || self.memory_bytes >= MEMORY_BYTES
    }

    /// Writes the objects made since the last call (blobs, trees, commits)
    /// into the repository as one pack, so that the `git` program can push
    /// them.
    pub fn persist(&mut self) -> Result<(), GitError> {
        use gix_pack::data::output;
        let memory = self.repo.objects.set_object_memory(Default::default());
        self.memory_bytes = 0;
        let Some(memory) = memory.filter(|m| !m.is_empty()) else {
            return Ok(());
        };
        let hash = self.repo.object_hash();
        let mut entries = Vec::with_capacity(memory.len());
        for (id, (kind, data)) in memory.iter() {
            let count = output::Count::from_data(*id, None);
            let object = gix::objs::Data::new(data, *kind, hash);
            let entry =
                output::Entry::from_data(&count, &object, gix::zlib::Compression::BEST_SPEED)
                    .map_err(|e| local(&self.path, e))?;
            entries.push(entry);
        }
        let count = entries.len() as u32;
        let mut pack = Vec::new();
        let writer = output::bytes::FromEntriesIter::new(
            std::iter::once(Ok(entries)),
            &mut pack,
            count,
            gix_pack::data::Version::V2,
            hash,
        );
        for written in writer {
            written.map_err(|e| local(&self.path, e))?;
        }
        let outcome = gix_pack::Bundle::write_to_directory(
            &mut pack.as_slice(),
            Some(&self.path.join("objects/pack")),
            &mut gix::progress::Discard,
            &std::sync::atomic::AtomicBool::new(false),
            None::<gix::objs::find::Never>,
            hash,
            gix_pack::bundle::write::Options::default(),
        )
        .map_err(|e| local(&self.path, e))?;
        // The `.keep` file guards a pack while it is moved into place; it is
        // in place, and a kept pack would never be repacked.
        if let Some(keep) = outcome.keep_path {
            let _ = std::fs::remove_file(keep);
        }
        Ok(())
    }
}

fn local(path: &Path, error: impl Into<gix::Error>) -> GitError {
    GitError::Local {
        path: path.to_owned(),
        source: Box::new(error.into()),
    }
}

/// The signature of `commit` as it is (git signs the object without its
/// `gpgsig` header, and verifies it so).
fn sign(
    commit: &gix::objs::Commit,
    signer: &Signer,
) -> Result<String, crate::signing::SigningError> {
    use gix::objs::WriteTo;
    let mut payload = Vec::with_capacity(commit.size() as usize);
    commit
        .write_to(&mut payload)
        .expect("writing to memory does not fail");
    signer.sign(&payload)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sink::remote::Remote;

    fn person() -> Person {
        Person {
            name: "Test".into(),
            email: "test@example.invalid".into(),
        }
    }

    fn git(dir: &Path, args: &[&str]) -> String {
        let out = std::process::Command::new("git")
            .arg("--git-dir")
            .arg(dir)
            .args(args)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    #[test]
    fn batches_become_packed_commits_that_git_reads_back() {
        let dir = tempfile::tempdir().unwrap();
        let remote = Remote::new(&"unused".into(), "main", dir.path()).unwrap();
        let mut store = Store::open(dir.path()).unwrap();
        store.reset(None).unwrap();
        let mut tips = Vec::new();
        for round in 0..3 {
            assert!(
                store
                    .write(
                        "ns/core/configmaps/a.yaml",
                        format!("n: {round}\n").as_bytes()
                    )
                    .unwrap()
            );
            assert!(
                store
                    .write(&format!("ns/core/configmaps/r{round}.yaml"), b"x: 1\n")
                    .unwrap()
            );
            assert!(
                !store
                    .write(&format!("ns/core/configmaps/r{round}.yaml"), b"x: 1\n")
                    .unwrap(),
                "same bytes: no write"
            );
            tips.push(
                store
                    .commit(|_| "batch".into(), &person(), &person())
                    .unwrap()
                    .id
                    .unwrap(),
            );
            store.persist().unwrap();
        }
        assert_eq!(store.packs(), 3);
        // Removing the only file of a folder removes the folder.
        assert!(store.remove("ns/core/configmaps/r0.yaml"));
        assert!(!store.remove("ns/core/configmaps/r0.yaml"));
        store.write("other/core/secrets/s.yaml", b"s: 1\n").unwrap();
        let tip = store
            .commit(|_| "more".into(), &person(), &person())
            .unwrap()
            .id
            .unwrap();
        let nothing = store.commit(|_| "nothing".into(), &person(), &person());
        assert_eq!(nothing.unwrap().id, None);
        store.persist().unwrap();

        remote.repack().unwrap();
        assert!(store.packs() < 4, "{} packs after repacking", store.packs());
        git(dir.path(), &["fsck", "--no-dangling", &tip.to_string()]);
        let files = git(
            dir.path(),
            &["ls-tree", "-r", "--name-only", &tip.to_string()],
        );
        assert_eq!(
            files.lines().collect::<Vec<_>>(),
            [
                "ns/core/configmaps/a.yaml",
                "ns/core/configmaps/r1.yaml",
                "ns/core/configmaps/r2.yaml",
                "other/core/secrets/s.yaml"
            ]
        );
        assert_eq!(
            git(dir.path(), &["rev-list", "--count", &tip.to_string()]).trim(),
            "4"
        );

        // A store opened afresh reads the same branch back.
        let mut again = Store::open(dir.path()).unwrap();
        again.reset(Some(tip)).unwrap();
        let mut paths: Vec<_> = again.paths().map(str::to_owned).collect();
        paths.sort();
        assert_eq!(paths, files.lines().collect::<Vec<_>>());
        assert!(!again.write("ns/core/configmaps/a.yaml", b"n: 2\n").unwrap());
    }

    /// The subject's count included files written and written back, and
    /// one path Git refused failed the whole commit.
    #[test]
    fn a_commit_names_only_files_that_changed_and_leaves_out_what_git_refuses() {
        let dir = tempfile::tempdir().unwrap();
        Remote::new(&"unused".into(), "main", dir.path()).unwrap();
        let mut store = Store::open(dir.path()).unwrap();
        store.reset(None).unwrap();
        store
            .write("ns/core/configmaps/kept.yaml", b"v: 1\n")
            .unwrap();
        store
            .commit(|_| "first".into(), &person(), &person())
            .unwrap();

        // Written and written back, created and removed: no change.
        store
            .write("ns/core/configmaps/kept.yaml", b"v: 2\n")
            .unwrap();
        store
            .write("ns/core/configmaps/kept.yaml", b"v: 1\n")
            .unwrap();
        store
            .write("ns/core/configmaps/gone.yaml", b"v: 1\n")
            .unwrap();
        assert!(store.remove("ns/core/configmaps/gone.yaml"));
        // Changed twice: one file.
        store
            .write("ns/core/configmaps/new.yaml", b"v: 1\n")
            .unwrap();
        store
            .write("ns/core/configmaps/new.yaml", b"v: 2\n")
            .unwrap();
        // A path Git will not check out, between good ones.
        store
            .write("git~1/core/configmaps/bad.yaml", b"v: 1\n")
            .unwrap();
        store.write("ns/core/configmaps/z.yaml", b"v: 1\n").unwrap();
        let mut seen = Vec::new();
        let committed = store
            .commit(
                |changed| {
                    seen = changed.to_vec();
                    format!("{} file(s)", changed.len())
                },
                &person(),
                &person(),
            )
            .unwrap();
        let written = |path: &str| Change {
            path: path.into(),
            written: true,
        };
        assert_eq!(
            seen,
            [
                written("ns/core/configmaps/new.yaml"),
                written("ns/core/configmaps/z.yaml")
            ]
        );
        assert_eq!(committed.changed, seen);
        assert_eq!(committed.refused.len(), 1);
        let (path, error) = &committed.refused[0];
        assert_eq!(path, "git~1/core/configmaps/bad.yaml");
        assert!(error.to_string().contains("git~1"), "{error}");
        assert!(!store.contains("git~1/core/configmaps/bad.yaml"));
        store.persist().unwrap();
        let tip = committed.id.unwrap().to_string();
        let files = git(dir.path(), &["ls-tree", "-r", "--name-only", &tip]);
        assert_eq!(
            files.lines().collect::<Vec<_>>(),
            [
                "ns/core/configmaps/kept.yaml",
                "ns/core/configmaps/new.yaml",
                "ns/core/configmaps/z.yaml"
            ]
        );
        assert_eq!(
            git(dir.path(), &["log", "-1", "--format=%s", &tip]).trim(),
            "2 file(s)"
        );
    }
}
