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
use gix::ObjectId;
use gix::objs::tree::EntryKind;
use std::collections::HashMap;
use std::path::{Path, PathBuf};

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
    path: PathBuf,
    /// The commit new commits build on: the remote's tip, then ours.
    tip: Option<ObjectId>,
    /// The tip's tree.
    tree: ObjectId,
    /// Every file of the tip, with its blob.
    files: HashMap<String, ObjectId>,
    /// Edits since the last commit: a path and its new blob, or `None` to
    /// remove it.
    staged: Vec<(String, Option<ObjectId>)>,
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
            tip: None,
            tree,
            files: HashMap::new(),
            staged: Vec::new(),
        })
    }

    /// Starts over from `tip` (the remote's, or nothing for a new branch),
    /// dropping staged edits and local commits.
    pub fn reset(&mut self, tip: Option<ObjectId>) -> Result<(), GitError> {
        self.repo.objects.set_object_memory(Default::default());
        self.staged.clear();
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
        for entry in entries {
            if entry.mode.is_blob() {
                self.files.insert(entry.filepath.to_string(), entry.oid);
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
        self.files.insert(path.to_owned(), id);
        self.staged.push((path.to_owned(), Some(id)));
        Ok(true)
    }

    /// Stages the removal of `path`; `false` if the branch does not hold it.
    pub fn remove(&mut self, path: &str) -> bool {
        if self.files.remove(path).is_none() {
            return false;
        }
        self.staged.push((path.to_owned(), None));
        true
    }

    /// Whether edits are staged.
    pub fn has_staged(&self) -> bool {
        !self.staged.is_empty()
    }

    /// Commits the staged edits on the tip; `None` when they leave the tree
    /// as it was (a file written and removed again in one batch).
    pub fn commit(
        &mut self,
        message: &str,
        author: &Person,
        committer: &Person,
    ) -> Result<Option<ObjectId>, GitError> {
        let staged = std::mem::take(&mut self.staged);
        if staged.is_empty() {
            return Ok(None);
        }
        let mut editor = self
            .repo
            .edit_tree(self.tree)
            .map_err(|e| local(&self.path, e))?;
        for (path, blob) in &staged {
            match blob {
                Some(id) => editor.upsert(path.as_str(), EntryKind::Blob, *id),
                None => editor.remove(path.as_str()),
            }
            .map_err(|e| local(&self.path, e))?;
        }
        let tree = editor.write().map_err(|e| local(&self.path, e))?.detach();
        if tree == self.tree {
            return Ok(None);
        }
        let now = gix::date::Time::now_utc();
        let signature = |p: &Person| gix::actor::Signature {
            name: p.name.as_str().into(),
            email: p.email.as_str().into(),
            time: now,
        };
        let commit = gix::objs::Commit {
            tree,
            parents: self.tip.into_iter().collect(),
            author: signature(author),
            committer: signature(committer),
            encoding: None,
            message: message.into(),
            extra_headers: Vec::new(),
        };
        let id = self
            .repo
            .write_object(&commit)
            .map_err(|e| local(&self.path, e))?
            .detach();
        self.tip = Some(id);
        self.tree = tree;
        Ok(Some(id))
    }
}

/// Objects held in memory before they are written out as a pack: bounds
/// memory (a tree of a large folder is tens of KiB) and the number of packs.
const MEMORY_OBJECTS: usize = 1024;

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
    }

    /// Writes the objects made since the last call (blobs, trees, commits)
    /// into the repository as one pack, so that the `git` program can push
    /// them.
    pub fn persist(&mut self) -> Result<(), GitError> {
        use gix_pack::data::output;
        let memory = self.repo.objects.set_object_memory(Default::default());
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
        let remote = Remote::new("unused", "main", dir.path()).unwrap();
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
                    .commit("batch", &person(), &person())
                    .unwrap()
                    .unwrap(),
            );
            store.persist().unwrap();
        }
        assert_eq!(store.packs(), 3);
        // Removing the only file of a folder removes the folder.
        assert!(store.remove("ns/core/configmaps/r0.yaml"));
        assert!(!store.remove("ns/core/configmaps/r0.yaml"));
        store.write("other/core/secrets/s.yaml", b"s: 1\n").unwrap();
        let tip = store.commit("more", &person(), &person()).unwrap().unwrap();
        assert_eq!(store.commit("nothing", &person(), &person()).unwrap(), None);
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
}
