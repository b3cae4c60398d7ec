//! What each file of the folder held at its last good reading, kept in the
//! state folder between runs.
//!
//! A seed prunes what the folder no longer holds. When a file cannot be
//! read (it does not parse, a folder cannot be listed), a new process does
//! not know what that file held, and without this index it would have to
//! keep every orphan of the destination. With it, only what the unread
//! file held is held back, and the rest of the seed prunes as usual.
//!
//! The index is a cache of the source's own knowledge: one that is missing,
//! torn or written for another folder is ignored, which is the safe
//! reading (nothing is known, so nothing is pruned on an error's account).

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::io::{self, Write as _};
use std::path::{Path, PathBuf};

/// Bumped when the format changes; an index of another version is ignored.
const VERSION: u32 = 1;

/// The identities each file held, by path relative to the folder.
pub type Held = BTreeMap<PathBuf, Vec<String>>;

#[derive(Serialize, Deserialize)]
struct Stored<F = BTreeMap<String, Vec<String>>> {
    version: u32,
    /// The folder it describes, and how objects without a namespace were
    /// placed: either differing makes the identities another folder's.
    dir: String,
    default_namespace: String,
    /// Relative paths (UTF-8 only; a folder holding other names writes no
    /// index) and the identities each file held.
    files: F,
}

/// Where the index of `dir` is kept in the state folder `state`: one per
/// folder followed, named by its path's digest.
pub fn path_for(state: &Path, dir: &Path) -> PathBuf {
    use sha2::Digest as _;
    let dir = dir.canonicalize().unwrap_or_else(|_| dir.to_owned());
    let digest = sha2::Sha256::digest(dir.as_os_str().as_encoded_bytes());
    let name: String = digest[..8].iter().map(|b| format!("{b:02x}")).collect();
    state.join("sources").join(format!("{name}.json"))
}

/// Reads the index at `path` describing `dir`; `None` when there is none
/// usable.
pub fn load(path: &Path, dir: &Path, default_namespace: &str) -> Option<Held> {
    let text = std::fs::read(path).ok()?;
    let stored: Stored = match serde_json::from_slice(&text) {
        Ok(stored) => stored,
        Err(error) => {
            tracing::warn!(index = %path.display(), %error, "the source index cannot be read; ignored");
            return None;
        }
    };
    if stored.version != VERSION
        || stored.dir != name_of(dir)
        || stored.default_namespace != default_namespace
    {
        return None;
    }
    Some(
        stored
            .files
            .into_iter()
            .map(|(file, ids)| (dir.join(file), ids))
            .collect(),
    )
}

/// Writes `held` (absolute paths under `dir`, each with the identities
/// its file holds) as the index at `path`, owner-only, replacing the old
/// one at once (a crash leaves one or the other). A path that is not UTF-8
/// cannot be written: then the old index is removed, so that none describes
/// the folder wrongly.
///
/// `held` is walked twice (checked, then written) and streamed into the
/// file: a copy of a large folder's index in memory would be the largest
/// thing the daemon holds at the end of a seed.
pub fn save<'a, F, I>(path: &Path, dir: &Path, default_namespace: &str, held: F) -> io::Result<()>
where
    F: Iterator<Item = (&'a Path, I)> + Clone,
    I: Iterator<Item = &'a str>,
{
    if held.clone().any(|(file, _)| relative(dir, file).is_none()) {
        return match std::fs::remove_file(path) {
            Err(e) if e.kind() != io::ErrorKind::NotFound => Err(e),
            _ => Ok(()),
        };
    }
    let stored = Stored {
        version: VERSION,
        dir: name_of(dir),
        default_namespace: default_namespace.to_owned(),
        files: Files { dir, held },
    };
    if let Some(parent) = path.parent() {
        crate::state::create_dir(parent)?;
    }
    let partial = path.with_extension("partial");
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, crate::state::FILE_MODE);
    let mut out = io::BufWriter::new(options.open(&partial)?);
    serde_json::to_writer(&mut out, &stored)?;
    out.flush()?;
    drop(out);
    crate::state::own_file(&partial)?;
    std::fs::rename(&partial, path)
}

/// `file`'s path relative to `dir`, if it is under it and UTF-8.
fn relative<'a>(dir: &Path, file: &'a Path) -> Option<&'a str> {
    file.strip_prefix(dir).ok().and_then(Path::to_str)
}

/// The files and their identities, written as a map straight from the
/// follower's own state (every path checked by [`save`] first).
struct Files<'d, F> {
    dir: &'d Path,
    held: F,
}

impl<'a, F, I> Serialize for Files<'_, F>
where
    F: Iterator<Item = (&'a Path, I)> + Clone,
    I: Iterator<Item = &'a str>,
{
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_map(self.held.clone().map(|(file, ids)| {
            let name = relative(self.dir, file).unwrap_or_default();
            (name, Ids(std::cell::Cell::new(Some(ids))))
        }))
    }
}

/// One file's identities, written as a list as they are read.
struct Ids<I>(std::cell::Cell<Option<I>>);

impl<'a, I: Iterator<Item = &'a str>> Serialize for Ids<I> {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_seq(self.0.take().into_iter().flatten())
    }
}

/// The folder as the index names it: the same folder reached by another
/// path is the same.
fn name_of(dir: &Path) -> String {
    let dir = dir.canonicalize().unwrap_or_else(|_| dir.to_owned());
    dir.to_string_lossy().into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_index_reads_back_only_for_its_own_folder_and_namespace() {
        let state = tempfile::tempdir().unwrap();
        let index = state.path().join("sources/a.json");
        let dir = Path::new("/src/manifests");
        let file = dir.join("apps/web.yaml");
        let ids = vec!["apps\0deployments\0shop\0web".to_owned()];
        save(
            &index,
            dir,
            "default",
            std::iter::once((file.as_path(), ids.iter().map(String::as_str))),
        )
        .unwrap();
        let held = load(&index, dir, "default").unwrap();
        assert_eq!(held.get(&file), Some(&ids));
        assert!(load(&index, Path::new("/src/other"), "default").is_none());
        assert!(load(&index, dir, "prod").is_none());
        std::fs::write(&index, "{torn").unwrap();
        assert!(load(&index, dir, "default").is_none());
    }

    #[cfg(unix)]
    #[test]
    fn a_name_that_is_not_utf8_removes_the_index_instead_of_writing_a_wrong_one() {
        use std::os::unix::ffi::OsStrExt as _;
        let state = tempfile::tempdir().unwrap();
        let index = state.path().join("a.json");
        let dir = Path::new("/src");
        let none = std::iter::empty::<(&Path, std::iter::Empty<&str>)>();
        save(&index, dir, "default", none).unwrap();
        assert!(index.exists());
        let odd = dir.join(std::ffi::OsStr::from_bytes(b"\xff.yaml"));
        save(
            &index,
            dir,
            "default",
            std::iter::once((odd.as_path(), std::iter::empty())),
        )
        .unwrap();
        assert!(!index.exists());
    }
}
