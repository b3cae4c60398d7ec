//! Brings one destination (a folder of a branch) to a desired state.
//!
//! The desired state is recomputed onto the remote's tip on every attempt,
//! so a push rejected because another writer moved the branch is handled by
//! fetching, resetting to the new tip and applying the same desired state
//! again: both writers' commits survive, and nothing is committed twice.
//! With the remote down, the worker retries with backoff; nothing it has to
//! write is lost, since it is recomputed from the source on every attempt.

use super::git::{Clone, GitError, Person, Push};
use super::layout;
use crate::mirror::{DesiredFile, Destination, Prune};
use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::time::Duration;

/// When a commit is full.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BatchLimits {
    /// Most files changed by one commit.
    pub files: usize,
    /// Most bytes written by one commit.
    pub bytes: usize,
}

impl Default for BatchLimits {
    fn default() -> Self {
        BatchLimits {
            files: 200,
            bytes: 1 << 20,
        }
    }
}

/// How a sync behaves.
#[derive(Debug, Clone)]
pub struct SyncOptions {
    /// Batch sizes.
    pub batch: BatchLimits,
    /// Who commits (the daemon).
    pub committer: Person,
    /// Who authors changes whose actor is unknown.
    pub unknown_actor: Person,
    /// The commit message's first line; `{operation}`, `{count}`,
    /// `{destination}` and `{resources}` are replaced.
    pub message_template: String,
    /// Where the changes came from, for the `Plumbline-Source` trailer.
    pub source: String,
    /// How long to keep retrying a remote that does not answer.
    pub retry_for: Duration,
    /// Whether orphans may be deleted (the snapshot was complete).
    pub complete: bool,
    /// Who deleted the objects whose files go, when the source knows.
    pub deleted_by: Option<String>,
}

impl SyncOptions {
    /// Defaults for a source described by `source`.
    pub fn new(source: impl Into<String>) -> SyncOptions {
        SyncOptions {
            batch: BatchLimits::default(),
            committer: Person {
                name: "Plumbline".into(),
                email: "plumbline@plumbline.invalid".into(),
            },
            unknown_actor: Person {
                name: "Unknown actor".into(),
                email: "unknown-actor@plumbline.invalid".into(),
            },
            message_template: "{operation}: {count} file(s) of {resources} in {destination}".into(),
            source: source.into(),
            retry_for: Duration::from_secs(60),
            complete: true,
            deleted_by: None,
        }
    }
}

/// What a sync did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SyncReport {
    /// Files written (created or changed).
    pub written: usize,
    /// Files deleted.
    pub deleted: usize,
    /// Commits pushed.
    pub commits: usize,
    /// Bytes written.
    pub bytes: u64,
    /// Pushes retried (rejections and failures).
    pub push_retries: u32,
    /// Orphans kept because the snapshot was incomplete.
    pub orphans_kept: usize,
}

/// Why a sync failed.
#[derive(Debug, thiserror::Error)]
pub enum SinkError {
    /// Every push was rejected (the branch kept moving) until the retry
    /// budget ran out.
    #[error(
        "destination `{destination}`: the push was rejected {attempts} times; the branch keeps moving"
    )]
    Rejected {
        /// The destination.
        destination: String,
        /// How many pushes were rejected.
        attempts: u32,
    },
    /// Git failed, and kept failing until the retry budget ran out.
    #[error("destination `{destination}` could not be synced")]
    Git {
        /// The destination.
        destination: String,
        /// The last failure.
        #[source]
        source: GitError,
    },
}

/// One change to the work tree.
enum Change<'a> {
    Write(&'a str, &'a DesiredFile),
    Delete(String),
}

impl Change<'_> {
    fn path(&self) -> &str {
        match self {
            Change::Write(path, _) => path,
            Change::Delete(path) => path,
        }
    }
}

/// Brings `destination` to `desired`, in the clone kept in `workdir`.
pub fn sync(
    destination: &Destination,
    desired: &BTreeMap<String, DesiredFile>,
    workdir: &Path,
    options: &SyncOptions,
) -> Result<SyncReport, SinkError> {
    let fail = |source| SinkError::Git {
        destination: destination.name.clone(),
        source,
    };
    let started = std::time::Instant::now();
    let mut backoff = Duration::from_millis(250);
    let mut report = SyncReport::default();
    loop {
        match attempt(destination, desired, workdir, options) {
            Ok((attempt_report, Push::Accepted)) => {
                report = SyncReport {
                    push_retries: report.push_retries,
                    ..attempt_report
                };
                return Ok(report);
            }
            Ok((_, Push::Rejected)) => {
                if started.elapsed() >= options.retry_for {
                    return Err(SinkError::Rejected {
                        destination: destination.name.clone(),
                        attempts: report.push_retries + 1,
                    });
                }
                report.push_retries += 1;
                tracing::info!(destination = %destination.name, "push rejected: the branch moved; replaying on its new tip");
            }
            Err(error) => {
                if started.elapsed() >= options.retry_for {
                    return Err(fail(error));
                }
                report.push_retries += 1;
                tracing::warn!(destination = %destination.name, %error, retry_in = ?backoff, "git failed; retrying");
                std::thread::sleep(backoff);
                backoff = (backoff * 2).min(Duration::from_secs(10));
            }
        }
    }
}

/// One attempt: reset to the remote, write, commit in batches, push.
fn attempt(
    destination: &Destination,
    desired: &BTreeMap<String, DesiredFile>,
    workdir: &Path,
    options: &SyncOptions,
) -> Result<(SyncReport, Push), GitError> {
    let clone = Clone::open(&destination.repo_url, &destination.branch, workdir)?;
    let changes = plan(&clone, destination, desired, options)?;
    let (changes, orphans_kept) = changes;
    let mut report = SyncReport {
        orphans_kept,
        ..SyncReport::default()
    };
    if changes.is_empty() {
        return Ok((report, Push::Accepted));
    }
    for batch in batches(&changes, options.batch, options.deleted_by.as_deref()) {
        let mut resources = BTreeSet::new();
        for change in batch {
            apply(&clone, change, &mut report, &mut resources)?;
        }
        let author = batch_author(batch, options);
        let message = message(destination, batch.len(), &resources, options);
        let paths: Vec<&str> = batch.iter().map(Change::path).collect();
        if clone.commit(&paths, &message, &author, &options.committer)? {
            report.commits += 1;
        }
    }
    let push = clone.push()?;
    Ok((report, push))
}

/// The changes that bring the work tree to `desired`, and how many orphans
/// are kept because pruning is not allowed now.
fn plan<'a>(
    clone: &Clone,
    destination: &Destination,
    desired: &'a BTreeMap<String, DesiredFile>,
    options: &SyncOptions,
) -> Result<(Vec<Change<'a>>, usize), GitError> {
    let mut changes = Vec::new();
    for (path, file) in desired {
        let current = std::fs::read(clone.workdir().join(path)).ok();
        if current.as_deref() != Some(file.content.as_bytes()) {
            changes.push(Change::Write(path, file));
        }
    }
    let base = &destination.base_folder;
    let orphans: Vec<String> = clone
        .tracked_files(base.as_str())?
        .into_iter()
        .filter(|path| layout::key_of(base, path).is_some() && !desired.contains_key(path))
        .collect();
    let may_prune = options.complete && destination.prune == Prune::Always;
    let kept = if may_prune { 0 } else { orphans.len() };
    if may_prune {
        changes.extend(orphans.into_iter().map(Change::Delete));
    }
    Ok((changes, kept))
}

fn batches<'c, 'a>(
    changes: &'c [Change<'a>],
    limits: BatchLimits,
    deleted_by: Option<&str>,
) -> Vec<&'c [Change<'a>]> {
    let mut out = Vec::new();
    let (mut start, mut bytes) = (0, 0);
    for (i, change) in changes.iter().enumerate() {
        let size = match change {
            Change::Write(_, file) => file.content.len(),
            Change::Delete(_) => 0,
        };
        let full = i - start >= limits.files || (bytes + size > limits.bytes && i > start);
        let author_changes =
            i > start && author_of(&changes[i - 1], deleted_by) != author_of(change, deleted_by);
        if full || author_changes {
            out.push(&changes[start..i]);
            start = i;
            bytes = 0;
        }
        bytes += size;
    }
    if start < changes.len() {
        out.push(&changes[start..]);
    }
    out
}

fn author_of<'a>(change: &'a Change<'_>, deleted_by: Option<&'a str>) -> Option<&'a str> {
    match change {
        Change::Write(_, file) => file.actor.as_deref(),
        Change::Delete(_) => deleted_by,
    }
}

fn batch_author(batch: &[Change<'_>], options: &SyncOptions) -> Person {
    match batch
        .first()
        .and_then(|c| author_of(c, options.deleted_by.as_deref()))
    {
        Some(actor) => Person {
            name: actor.to_owned(),
            email: format!(
                "{}@users.plumbline.invalid",
                actor.replace(
                    |c: char| !c.is_ascii_alphanumeric() && c != '.' && c != '-',
                    "_"
                )
            ),
        },
        None => options.unknown_actor.clone(),
    }
}

fn apply(
    clone: &Clone,
    change: &Change<'_>,
    report: &mut SyncReport,
    resources: &mut BTreeSet<String>,
) -> Result<(), GitError> {
    let io = |path: &Path, source| GitError::Io {
        path: path.to_owned(),
        source,
    };
    match change {
        Change::Write(path, file) => {
            let full = clone.workdir().join(path);
            if let Some(parent) = full.parent() {
                std::fs::create_dir_all(parent).map_err(|e| io(parent, e))?;
            }
            std::fs::write(&full, &file.content).map_err(|e| io(&full, e))?;
            report.written += 1;
            report.bytes += file.content.len() as u64;
            resources.insert(file.resource.clone());
        }
        Change::Delete(path) => {
            let full = clone.workdir().join(path);
            std::fs::remove_file(&full).map_err(|e| io(&full, e))?;
            report.deleted += 1;
            // `{…}/{resource}/{name}.yaml`: planned deletions are our files.
            if let Some(resource) = path.rsplit('/').nth(1) {
                resources.insert(resource.to_owned());
            }
        }
    }
    Ok(())
}

fn message(
    destination: &Destination,
    count: usize,
    resources: &BTreeSet<String>,
    options: &SyncOptions,
) -> String {
    let resources = resources.iter().cloned().collect::<Vec<_>>().join(", ");
    let subject = options
        .message_template
        .replace("{operation}", "sync")
        .replace("{count}", &count.to_string())
        .replace("{destination}", &destination.name)
        .replace("{resources}", &resources);
    format!(
        "{subject}\n\nPlumbline-Operation: sync\nPlumbline-Resources: {resources}\nPlumbline-Source: {}\n",
        options.source
    )
}
