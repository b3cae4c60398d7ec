//! The state folder (`--state-dir`): the queue file and the local bare
//! repositories, which hold everything on its way to Git (Secrets before a
//! policy redacts them included) and the remotes' URLs. Everything
//! Plumbline creates there is owner-only (folders 0700, files 0600), set
//! explicitly after creation, so the result does not depend on the umask.
//!
//! Only what Plumbline creates is changed: a `--state-dir` that exists
//! already keeps its mode (it could be a shared folder such as `/tmp`),
//! and the owner-only folders inside it keep their contents private.

use std::io;
use std::path::Path;

/// Mode of the folders Plumbline creates in the state folder.
pub const DIR_MODE: u32 = 0o700;
/// Mode of the files Plumbline creates in the state folder.
pub const FILE_MODE: u32 = 0o600;

/// Creates `path` and any missing parents; the folders created are
/// owner-only.
pub fn create_dir(path: &Path) -> io::Result<()> {
    if path.is_dir() {
        return Ok(());
    }
    if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
        create_dir(parent)?;
    }
    match std::fs::create_dir(path) {
        Ok(()) => set_mode(path, DIR_MODE),
        // Made meanwhile by another thread: it is someone's own.
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists && path.is_dir() => Ok(()),
        Err(e) => Err(e),
    }
}

/// Creates the file `path` if missing, and makes it owner-only (a file of
/// Plumbline's own, so an older, wider mode is narrowed too).
pub fn own_file(path: &Path) -> io::Result<()> {
    let mut options = std::fs::OpenOptions::new();
    options.create(true).append(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, FILE_MODE);
    drop(options.open(path)?);
    set_mode(path, FILE_MODE)
}

/// Writes `bytes` to the file `path`, owner-only from its creation on (a
/// key must never be readable by others, not even for a moment).
pub fn write_private(path: &Path, bytes: &[u8]) -> io::Result<()> {
    own_file(path)?;
    std::fs::write(path, bytes)
}

/// Makes every folder (0700) and file (0600) under `path`, and `path`
/// itself, owner-only; symbolic links are left alone (their mode means
/// nothing).
pub fn restrict_tree(path: &Path) -> io::Result<()> {
    let kind = std::fs::symlink_metadata(path)?.file_type();
    if kind.is_dir() {
        set_mode(path, DIR_MODE)?;
        for entry in std::fs::read_dir(path)? {
            restrict_tree(&entry?.path())?;
        }
        Ok(())
    } else if kind.is_file() {
        set_mode(path, FILE_MODE)
    } else {
        Ok(())
    }
}

#[cfg(unix)]
fn set_mode(path: &Path, mode: u32) -> io::Result<()> {
    use std::os::unix::fs::PermissionsExt as _;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode))
}

#[cfg(not(unix))]
fn set_mode(_: &Path, _: u32) -> io::Result<()> {
    Ok(())
}

#[cfg(all(test, unix))]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt as _;

    fn mode(path: &Path) -> u32 {
        std::fs::metadata(path).unwrap().permissions().mode() & 0o777
    }

    #[test]
    fn what_is_created_is_owner_only_and_what_existed_keeps_its_mode() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
        let deep = dir.path().join("a/b");
        create_dir(&deep).unwrap();
        assert_eq!(mode(&dir.path().join("a")), DIR_MODE);
        assert_eq!(mode(&deep), DIR_MODE);
        assert_eq!(mode(dir.path()), 0o755, "an existing folder is left alone");

        let file = deep.join("queue.redb");
        std::fs::write(&file, b"old").unwrap();
        std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o644)).unwrap();
        own_file(&file).unwrap();
        assert_eq!(mode(&file), FILE_MODE);
        assert_eq!(std::fs::read(&file).unwrap(), b"old", "contents kept");

        std::fs::set_permissions(&deep, std::fs::Permissions::from_mode(0o777)).unwrap();
        restrict_tree(&dir.path().join("a")).unwrap();
        assert_eq!(mode(&deep), DIR_MODE);
        assert_eq!(mode(&file), FILE_MODE);
    }
}
