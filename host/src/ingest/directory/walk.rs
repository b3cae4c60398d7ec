//! Finding and reading the manifest files of a folder, safely.
//!
//! A source folder is input like any other: it may hold a FIFO (which
//! would block a read for ever), a link to `/dev/zero` (which never ends),
//! links that loop or lead out of the folder, files too large to be
//! manifests, and folders the daemon may not read. Only regular files are
//! read, under a size cap, through links that stay inside the folder, each
//! folder once; every entry that is refused or unreadable is reported by
//! its own path with its real cause, and the rest of the folder is still
//! read.

use crate::ingest::IngestError;
use std::collections::HashSet;
use std::fs::{File, OpenOptions};
use std::io::Read as _;
use std::os::unix::fs::{MetadataExt as _, OpenOptionsExt as _};
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// The default cap on a manifest file's size.
pub const DEFAULT_MAX_FILE_BYTES: u64 = 64 << 20;

/// Whether a file's name says it holds manifests.
fn is_manifest(path: &Path) -> bool {
    path.extension()
        .is_some_and(|e| e == "yaml" || e == "yml" || e == "json")
}

fn unreadable(path: &Path, error: std::io::Error) -> IngestError {
    IngestError::Unreadable {
        origin: path.display().to_string(),
        source: Arc::new(error),
    }
}

fn refused(path: &Path, message: String) -> IngestError {
    IngestError::Refused {
        origin: path.display().to_string(),
        message,
    }
}

/// The manifest files under `root`, sorted; what could not be walked goes
/// to `errors`.
pub fn manifest_files(root: &Path, errors: &mut Vec<IngestError>) -> Vec<PathBuf> {
    let mut walk = Walk {
        root: match root.canonicalize() {
            Ok(real) => real,
            Err(error) => {
                errors.push(unreadable(root, error));
                return Vec::new();
            }
        },
        seen: HashSet::new(),
        files: Vec::new(),
        errors,
    };
    let real = walk.root.clone();
    walk.folder(root, &real);
    walk.files.sort();
    walk.files
}

struct Walk<'a> {
    /// The source folder, links resolved.
    root: PathBuf,
    /// Folders walked, by device and inode: a loop of links ends here.
    seen: HashSet<(u64, u64)>,
    files: Vec<PathBuf>,
    errors: &'a mut Vec<IngestError>,
}

impl Walk<'_> {
    fn folder(&mut self, shown: &Path, real: &Path) {
        match std::fs::metadata(real) {
            Ok(meta) if !self.seen.insert((meta.dev(), meta.ino())) => return,
            Ok(_) => {}
            Err(error) => return self.errors.push(unreadable(shown, error)),
        }
        let entries = match std::fs::read_dir(real) {
            Ok(entries) => entries,
            Err(error) => return self.errors.push(unreadable(shown, error)),
        };
        for entry in entries {
            match entry {
                Ok(entry) => self.entry(&shown.join(entry.file_name()), &entry),
                Err(error) => self.errors.push(unreadable(shown, error)),
            }
        }
    }

    fn entry(&mut self, shown: &Path, entry: &std::fs::DirEntry) {
        let kind = match entry.file_type() {
            Ok(kind) => kind,
            Err(error) => return self.errors.push(unreadable(shown, error)),
        };
        if kind.is_dir() {
            // Git's own folder holds no manifests, and may be huge.
            if entry.file_name() != ".git" {
                self.folder(shown, &entry.path());
            }
        } else if kind.is_symlink() {
            self.link(shown);
        } else if is_manifest(shown) {
            if kind.is_file() {
                self.files.push(shown.to_owned());
            } else {
                self.errors.push(refused(
                    shown,
                    "not a regular file (a FIFO, socket or device); not read".into(),
                ));
            }
        }
    }

    /// A link is followed only where it stays inside the source folder.
    fn link(&mut self, shown: &Path) {
        let target = match shown.canonicalize() {
            Ok(target) => target,
            Err(error) if is_manifest(shown) => return self.errors.push(unreadable(shown, error)),
            // A dangling link that names no manifest is nothing to us.
            Err(_) => return,
        };
        let meta = match std::fs::metadata(&target) {
            Ok(meta) => meta,
            Err(error) => return self.errors.push(unreadable(shown, error)),
        };
        if !(meta.is_dir() || is_manifest(shown)) {
            return;
        }
        if !target.starts_with(&self.root) {
            return self.errors.push(refused(
                shown,
                format!(
                    "a link out of the source folder (to {}); not followed",
                    target.display()
                ),
            ));
        }
        if meta.is_dir() {
            self.folder(shown, &target);
        } else if meta.is_file() {
            self.files.push(shown.to_owned());
        } else {
            self.errors.push(refused(
                shown,
                format!(
                    "a link to {}, which is not a regular file; not read",
                    target.display()
                ),
            ));
        }
    }
}

/// Reads a manifest file: a regular file (checked on the open file, so a
/// FIFO swapped in since the walk cannot block), at most `cap` bytes, UTF-8.
pub fn read_file(path: &Path, cap: u64) -> Result<String, IngestError> {
    let file = OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK)
        .open(path)
        .map_err(|e| unreadable(path, e))?;
    let meta = file.metadata().map_err(|e| unreadable(path, e))?;
    if meta.is_dir() {
        return Err(refused(path, "a folder, not a file; not read".into()));
    }
    if !meta.is_file() {
        return Err(refused(
            path,
            "not a regular file (a FIFO, socket or device); not read".into(),
        ));
    }
    let too_large = |size: u64| {
        refused(
            path,
            format!(
                "{size} bytes or more, past the cap of {cap} bytes (--max-file-bytes); not read"
            ),
        )
    };
    if meta.len() > cap {
        return Err(too_large(meta.len()));
    }
    let mut bytes = Vec::with_capacity(meta.len() as usize);
    // The cap holds even if the file grows while it is read.
    File::take(file, cap + 1)
        .read_to_end(&mut bytes)
        .map_err(|e| unreadable(path, e))?;
    if bytes.len() as u64 > cap {
        return Err(too_large(bytes.len() as u64));
    }
    String::from_utf8(bytes).map_err(|e| IngestError::Parse {
        origin: path.display().to_string(),
        message: format!("not UTF-8 text (byte {})", e.utf8_error().valid_up_to()),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::symlink;

    #[test]
    fn special_files_links_and_loops_are_refused_each_by_its_own_path() {
        let outside = tempfile::tempdir().unwrap();
        std::fs::write(outside.path().join("o.yaml"), "a: 1\n").unwrap();
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        std::fs::create_dir(root.join("sub")).unwrap();
        std::fs::write(root.join("sub/a.yaml"), "a: 1\n").unwrap();
        symlink(".", root.join("sub/loop1")).unwrap();
        symlink("..", root.join("sub/loop2")).unwrap();
        symlink("/dev/zero", root.join("zero.yaml")).unwrap();
        symlink(outside.path(), root.join("out")).unwrap();
        symlink("sub/a.yaml", root.join("inside.yaml")).unwrap();
        let status = std::process::Command::new("mkfifo")
            .arg(root.join("fifo.yaml"))
            .status()
            .unwrap();
        assert!(status.success());
        let mut errors = Vec::new();
        let files = manifest_files(root, &mut errors);
        let names: Vec<_> = files
            .iter()
            .map(|f| f.strip_prefix(root).unwrap().to_str().unwrap())
            .collect();
        assert_eq!(names, ["inside.yaml", "sub/a.yaml"]);
        let mut said: Vec<_> = errors.iter().map(|e| e.to_string()).collect();
        said.sort();
        assert_eq!(said.len(), 3, "{said:?}");
        assert!(
            said[0].contains("fifo.yaml: not a regular file"),
            "{said:?}"
        );
        assert!(
            said[1].contains("out: a link out of the source folder"),
            "{said:?}"
        );
        assert!(
            said[2].contains("zero.yaml: a link out of the source folder"),
            "{said:?}"
        );
    }

    #[test]
    fn an_unreadable_folder_is_reported_by_its_own_path_and_the_rest_is_read() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("a.yaml"), "a: 1\n").unwrap();
        let mut errors = Vec::new();
        let mut walk = Walk {
            root: dir.path().canonicalize().unwrap(),
            seen: HashSet::new(),
            files: Vec::new(),
            errors: &mut errors,
        };
        walk.folder(&dir.path().join("gone"), &dir.path().join("gone"));
        walk.folder(dir.path(), &dir.path().canonicalize().unwrap());
        assert_eq!(walk.files.len(), 1);
        let said = errors[0].to_string();
        assert!(said.contains("gone: No such file"), "{said}");
        assert!(
            !said.contains("YAML"),
            "a read error is not a parse error: {said}"
        );
    }

    #[test]
    fn files_past_the_cap_are_refused_unread() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("big.yaml");
        std::fs::write(&path, vec![b'#'; 1000]).unwrap();
        let error = read_file(&path, 999).unwrap_err().to_string();
        assert!(error.contains("past the cap of 999 bytes"), "{error}");
        assert_eq!(read_file(&path, 1000).unwrap().len(), 1000);
        std::fs::write(&path, [0xff, 0xfe]).unwrap();
        assert!(
            read_file(&path, 10)
                .unwrap_err()
                .to_string()
                .contains("not UTF-8")
        );
    }
}
