//! Batching: the changes staged for the next commit, when they must be
//! committed, and what the commit says of them.
//!
//! A batch is committed when it is full (files or bytes), when its first
//! change has waited long enough, or before a change by another author
//! (one commit has one author). A seed's batches are larger than a watch's:
//! Git writes every folder a commit touches whole, and a seed's changes are
//! spread over all of them, so small commits would make a seed cost the
//! repository's size once per commit (see [`BatchLimits::seed`]). Its message counts and names only the
//! files the commit really changed: a file written back to what it held
//! is staged, but is none of the commit's business.

use super::store::{Change, Person};
use crate::model::Operation;
use crate::queue::FileChange;
use std::collections::{BTreeSet, HashMap};
use std::time::{Duration, Instant};

/// When a commit is full.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BatchLimits {
    /// Most files changed by one commit.
    pub files: usize,
    /// Most bytes written by one commit.
    pub bytes: usize,
    /// Longest a change waits for its batch to fill.
    pub wait: Duration,
}

impl Default for BatchLimits {
    fn default() -> Self {
        BatchLimits {
            files: 200,
            bytes: 1 << 20,
            wait: Duration::from_secs(20),
        }
    }
}

impl BatchLimits {
    /// The limits of a seed's commits. A commit rewrites each folder it
    /// touches, entry by entry; a seed touches every folder of its
    /// destination, so at 200 files a commit, 100,000 objects in 200
    /// folders rewrote 500 times 200 folders of up to 500 entries: 50
    /// million tree entries to record 100,000 files. At 10,000 files a
    /// commit the same seed writes 10 commits, and the folders' cost is
    /// small beside the files'. The staged paths this bounds are a few
    /// hundred bytes each in memory; file contents are not held.
    pub fn seed() -> BatchLimits {
        BatchLimits {
            files: 10_000,
            bytes: 64 << 20,
            ..BatchLimits::default()
        }
    }
}

/// Changes staged for the next commit.
#[derive(Debug, Default)]
pub struct Batch {
    /// Changes staged (a file changed twice counts twice), for the limits.
    files: usize,
    bytes: usize,
    /// The author of every change staged: `Some(None)` for an unknown one.
    author: Option<Option<String>>,
    started: Option<Instant>,
    /// The last change staged per path.
    changes: HashMap<String, Staged>,
    /// The traces of the changes staged, in order.
    traces: Vec<String>,
}

/// What the commit message needs of a staged change.
#[derive(Debug)]
struct Staged {
    operation: &'static str,
    resource: String,
    destination: String,
    bytes: usize,
}

impl Batch {
    /// Stages `change`, which changed its file, at `now`.
    pub fn stage(&mut self, change: &FileChange, now: Instant) {
        self.started.get_or_insert(now);
        self.author = Some(change.actor.clone());
        self.files += 1;
        self.traces.extend(change.trace.clone());
        let bytes = change.content.as_ref().map_or(0, String::len);
        self.bytes += bytes;
        let staged = Staged {
            operation: match change.operation {
                Operation::Create => "create",
                Operation::Update => "update",
                Operation::Delete => "delete",
            },
            resource: change.resource.clone(),
            destination: change.destination.clone(),
            bytes,
        };
        self.changes.insert(change.path.clone(), staged);
    }

    /// Whether nothing is staged.
    pub fn is_empty(&self) -> bool {
        self.files == 0
    }

    /// Whether a change by `actor` must wait for the next commit: the
    /// batch holds another author's changes.
    pub fn breaks_for(&self, actor: &Option<String>) -> bool {
        self.author.as_ref().is_some_and(|a| a != actor)
    }

    /// Whether the batch reached a size limit.
    pub fn is_full(&self, limits: &BatchLimits) -> bool {
        self.files >= limits.files || self.bytes >= limits.bytes
    }

    /// How long the batch may still wait at `now`; `None` when nothing is
    /// staged, zero when it is due.
    pub fn wait_left(&self, limits: &BatchLimits, now: Instant) -> Option<Duration> {
        let started = self.started?;
        Some(
            limits
                .wait
                .saturating_sub(now.saturating_duration_since(started)),
        )
    }

    /// Whether the batch has waited long enough at `now`.
    pub fn is_due(&self, limits: &BatchLimits, now: Instant) -> bool {
        self.wait_left(limits, now)
            .is_some_and(|left| left.is_zero())
    }

    /// The traces of the changes staged ([`crate::telemetry::CHANGES`]).
    pub fn traces(&self) -> &[String] {
        &self.traces
    }

    /// Who authors the commit: the staged changes' actor, or `unknown`.
    pub fn author(&self, unknown: &Person) -> Person {
        match self.author.clone().flatten() {
            Some(actor) => person_of(&actor),
            None => unknown.clone(),
        }
    }

    /// The destination a staged `path` belongs to, if it is staged.
    pub fn destination_of(&self, path: &str) -> Option<&str> {
        self.changes.get(path).map(|s| s.destination.as_str())
    }

    /// The bytes written to a staged `path`.
    pub fn bytes_of(&self, path: &str) -> usize {
        self.changes.get(path).map_or(0, |s| s.bytes)
    }

    /// The commit message of the files `changed`: the subject from
    /// `template` (`{operation}`, `{count}`, `{destination}` and
    /// `{resources}` replaced), then the trailers.
    pub fn message(&self, template: &str, source: &str, changed: &[Change]) -> String {
        let staged: Vec<&Staged> = changed
            .iter()
            .filter_map(|c| self.changes.get(&c.path))
            .collect();
        let operations: BTreeSet<&str> = staged.iter().map(|s| s.operation).collect();
        let operation = match operations.len() {
            1 => operations.first().copied().unwrap_or("sync"),
            _ => "sync",
        };
        let joined = |set: BTreeSet<&str>| set.into_iter().collect::<Vec<_>>().join(", ");
        let resources = joined(staged.iter().map(|s| s.resource.as_str()).collect());
        let destinations = joined(staged.iter().map(|s| s.destination.as_str()).collect());
        let subject = template
            .replace("{operation}", operation)
            .replace("{count}", &changed.len().to_string())
            .replace("{destination}", &destinations)
            .replace("{resources}", &resources);
        format!(
            "{subject}\n\nPlumbline-Operation: {}\nPlumbline-Resources: {resources}\nPlumbline-Destination: {destinations}\nPlumbline-Source: {source}\n",
            joined(operations),
        )
    }
}

/// The Git identity of a Kubernetes user name.
pub fn person_of(actor: &str) -> Person {
    Person {
        name: actor.to_owned(),
        email: format!(
            "{}@users.plumbline.invalid",
            actor.replace(
                |c: char| !c.is_ascii_alphanumeric() && c != '.' && c != '-',
                "_"
            )
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn change(path: &str, operation: Operation, actor: Option<&str>) -> FileChange {
        FileChange {
            destination: "team".into(),
            path: path.into(),
            content: (operation != Operation::Delete).then(|| "kind: ConfigMap\n".into()),
            operation,
            actor: actor.map(str::to_owned),
            resource: "configmaps".into(),
            replay: None,
            trace: None,
        }
    }

    fn changed(paths: &[&str]) -> Vec<Change> {
        paths
            .iter()
            .map(|p| Change {
                path: (*p).into(),
                written: true,
            })
            .collect()
    }

    const LIMITS: BatchLimits = BatchLimits {
        files: 2,
        bytes: 1000,
        wait: Duration::from_secs(20),
    };

    #[test]
    fn a_batch_is_full_at_either_limit() {
        let now = Instant::now();
        let mut batch = Batch::default();
        batch.stage(&change("a", Operation::Create, None), now);
        assert!(!batch.is_full(&LIMITS));
        batch.stage(&change("a", Operation::Update, None), now);
        assert!(batch.is_full(&LIMITS), "a file staged twice counts twice");

        let mut big = Batch::default();
        let mut huge = change("b", Operation::Create, None);
        huge.content = Some("x".repeat(1000));
        big.stage(&huge, now);
        assert!(big.is_full(&LIMITS), "the byte limit");
    }

    #[test]
    fn a_batch_is_due_when_its_first_change_waited_long_enough() {
        let start = Instant::now();
        let mut batch = Batch::default();
        assert_eq!(batch.wait_left(&LIMITS, start), None);
        assert!(!batch.is_due(&LIMITS, start + Duration::from_secs(60)));
        batch.stage(&change("a", Operation::Create, None), start);
        batch.stage(&change("b", Operation::Create, None), start + LIMITS.wait);
        let later = start + Duration::from_secs(5);
        assert_eq!(
            batch.wait_left(&LIMITS, later),
            Some(Duration::from_secs(15))
        );
        assert!(!batch.is_due(&LIMITS, later));
        assert!(
            batch.is_due(&LIMITS, start + LIMITS.wait),
            "counted from the first change, not the last"
        );
    }

    #[test]
    fn a_change_by_another_author_breaks_the_batch() {
        let now = Instant::now();
        let mut batch = Batch::default();
        assert!(!batch.breaks_for(&Some("alice".into())), "an empty batch");
        batch.stage(&change("a", Operation::Create, Some("alice")), now);
        assert!(!batch.breaks_for(&Some("alice".into())));
        assert!(batch.breaks_for(&Some("bob".into())));
        assert!(batch.breaks_for(&None), "unknown is another author");
        let unknown = Person {
            name: "Unknown".into(),
            email: "u@x".into(),
        };
        assert_eq!(batch.author(&unknown).name, "alice");

        let mut anonymous = Batch::default();
        anonymous.stage(&change("a", Operation::Create, None), now);
        assert_eq!(anonymous.author(&unknown), unknown);
        assert!(!anonymous.breaks_for(&None));
    }

    #[test]
    fn the_message_names_only_the_files_the_commit_changed() {
        let now = Instant::now();
        let mut batch = Batch::default();
        batch.stage(&change("a", Operation::Create, None), now);
        let mut secret = change("b", Operation::Delete, None);
        secret.resource = "secrets".into();
        batch.stage(&secret, now);
        let one = batch.message(
            "{operation}: {count} of {resources}",
            "dir",
            &changed(&["a"]),
        );
        assert!(one.starts_with("create: 1 of configmaps\n\n"), "{one}");
        assert!(one.contains("Plumbline-Source: dir\n"), "{one}");
        assert!(one.contains("Plumbline-Destination: team\n"), "{one}");
        let both = batch.message(
            "{operation} {count} {resources}",
            "dir",
            &changed(&["a", "b"]),
        );
        assert!(both.starts_with("sync 2 configmaps, secrets\n"), "{both}");
        assert!(
            both.contains("Plumbline-Operation: create, delete\n"),
            "{both}"
        );
    }

    #[test]
    fn a_user_name_becomes_an_address_git_accepts() {
        let person = person_of("system:serviceaccount:ci:deployer <x>");
        assert_eq!(person.name, "system:serviceaccount:ci:deployer <x>");
        assert_eq!(
            person.email,
            "system_serviceaccount_ci_deployer__x_@users.plumbline.invalid"
        );
    }
}
