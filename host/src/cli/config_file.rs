//! The `--config` file: read (as a manifest is: a regular file, under the
//! size cap, UTF-8), checked as a whole, and followed while the daemon runs.
//!
//! A file that does not read or does not check leaves the configuration
//! read before routing, and says so on `/readyz` until a good one comes.
//! What a parser quotes of the file has its credentials hidden.

use super::run::{local_form, prepare_repo};
use crate::daemon::{Daemon, Handle};
use crate::ingest::directory::walk;
use crate::mirror::{MirrorConfig, resources};
use crate::model::url::redact_quoting;
use crate::policy::cel::CelLimits;
use crate::telemetry::health::{Health, Status};
use anyhow::Context as _;
use std::os::unix::fs::MetadataExt as _;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// The readiness part of the `--config` file.
const CONFIG_PART: &str = "config";

/// How a `--config` file is read.
#[derive(Debug, Clone, Copy)]
pub struct Reading {
    /// The operator's CEL limits, for rules' conditions.
    pub cel: CelLimits,
    /// The largest file read (`--max-file-bytes`, as for manifests).
    pub max_bytes: u64,
}

/// The destinations and rules of the resources in the file at `path`.
pub fn read(path: &Path, reading: Reading) -> anyhow::Result<MirrorConfig> {
    let text = walk::read_file(path, reading.max_bytes)?;
    let origin = path.display().to_string();
    let mut config = resources::read(&text, &origin, reading.cel).map_err(|errors| {
        let errors: Vec<String> = errors.iter().map(|e| redact_quoting(e, &text)).collect();
        anyhow::anyhow!(
            "{} error(s) in the mirror configuration:\n  - {}",
            errors.len(),
            errors.join("\n  - ")
        )
    })?;
    // Two spellings of one local repository are one repository once
    // resolved; checked before anything is created for a file refused.
    let mut resolved = config.clone();
    for destination in &mut resolved.destinations {
        destination.repo_url = local_form(destination.repo_url.as_str());
    }
    let overlaps = resolved.overlaps();
    anyhow::ensure!(overlaps.is_empty(), "{origin}: {}", overlaps.join("; "));
    for destination in &mut config.destinations {
        destination.repo_url = prepare_repo(destination.repo_url.as_str(), &destination.branch)?;
    }
    Ok(config)
}

/// What says a file changed: which file the path leads to (a ConfigMap
/// mount swaps a `..data` link), its size, and when its content and its
/// inode last changed. The inode's change time cannot be set back, so a
/// rewrite that keeps size and modification time is seen too.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Stamp {
    device: u64,
    inode: u64,
    size: u64,
    modified: (i64, i64),
    changed: (i64, i64),
}

impl Stamp {
    /// The file's stamp now; `None` when there is none to read.
    pub fn of(path: &Path) -> Option<Stamp> {
        let meta = std::fs::metadata(path).ok()?;
        Some(Stamp {
            device: meta.dev(),
            inode: meta.ino(),
            size: meta.size(),
            modified: (meta.mtime(), meta.mtime_nsec()),
            changed: (meta.ctime(), meta.ctime_nsec()),
        })
    }
}

/// Follows the file at `path`: looked at every `interval`, and when it
/// changed since `read` (its stamp taken before the daemon's first
/// reading, so that an edit made while the daemon started is seen), read
/// again and routed by.
pub fn follow(
    path: PathBuf,
    reading: Reading,
    daemon: &Daemon,
    interval: Duration,
    read: Option<Stamp>,
) -> anyhow::Result<()> {
    let (handle, health) = (daemon.handle(), daemon.health());
    let mut seen = read;
    health.set(CONFIG_PART, Status::Ready);
    std::thread::Builder::new()
        .name("config".into())
        .spawn(move || {
            loop {
                std::thread::sleep(interval);
                let now = Stamp::of(&path);
                if now != seen {
                    seen = now;
                    take(&path, reading, &handle, &health);
                }
            }
        })
        .context("starting the thread that follows --config")?;
    Ok(())
}

/// Reads the changed file and routes by it, or says why not.
fn take(path: &Path, reading: Reading, handle: &Handle, health: &Health) {
    let applied = read(path, reading).and_then(|config| {
        let count = config.destinations.len();
        handle.set_config(config)?;
        Ok(count)
    });
    match applied {
        Ok(count) => {
            eprintln!(
                "config: {} changed; now routing to {count} destination(s), listing everything again",
                path.display()
            );
            health.set(CONFIG_PART, Status::Ready);
        }
        Err(error) => {
            let why = format!(
                "{} changed and was not taken, the configuration read before still routes: {error:#}",
                path.display()
            );
            eprintln!("error: {why}");
            health.set(CONFIG_PART, Status::Degraded(why));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_rewrite_that_keeps_size_and_modification_time_is_a_change() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("config.yaml");
        std::fs::write(&path, "kind: a").unwrap();
        let before = Stamp::of(&path).unwrap();
        let modified = std::fs::metadata(&path).unwrap().modified().unwrap();
        // ctime has the resolution of the kernel's clock tick.
        std::thread::sleep(Duration::from_millis(20));
        std::fs::write(&path, "kind: b").unwrap();
        let file = std::fs::File::options().write(true).open(&path).unwrap();
        file.set_modified(modified).unwrap();
        let after = Stamp::of(&path).unwrap();
        assert_eq!((after.size, after.modified), (before.size, before.modified));
        assert_ne!(after, before);
    }

    #[test]
    fn a_swapped_link_is_a_change() {
        let dir = tempfile::tempdir().unwrap();
        for version in ["v1", "v2"] {
            std::fs::create_dir(dir.path().join(version)).unwrap();
            std::fs::write(dir.path().join(version).join("config.yaml"), "same").unwrap();
        }
        let data = dir.path().join("data");
        std::os::unix::fs::symlink("v1", &data).unwrap();
        let path = data.join("config.yaml");
        let before = Stamp::of(&path).unwrap();
        let next = dir.path().join("data.tmp");
        std::os::unix::fs::symlink("v2", &next).unwrap();
        std::fs::rename(&next, &data).unwrap();
        assert_ne!(Stamp::of(&path).unwrap(), before);
    }
}
