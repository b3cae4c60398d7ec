//! The local repository, in process through `gix`: what the branch's tip
//! holds, and new blobs, trees and commits on top of it.
//!
//! There is no work tree: a file's bytes go straight into the object
//! database, and a commit's tree is the tip's tree with the batch's paths
//! edited, so a commit costs the changed paths, never a walk of everything
//! Plumbline has written. The paths the tip holds are kept in memory with
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
        let repo = gix::open(path).map_err(|e| local(path, e))?;
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

fn local(path: &Path, error: impl Into<gix::Error>) -> GitError {
    GitError::Local {
        path: path.to_owned(),
        source: Box::new(error.into()),
    }
}
