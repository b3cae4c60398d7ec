//! A push under way on a thread of its own, so that the worker goes on
//! committing what the queue holds while the `git` program packs and sends
//! the commits before. One push at a time: the commits made meanwhile go
//! with the next, so a busy partition pushes as often as its remote takes
//! pushes, and no more often.

use super::remote::{GitError, Push, Remote};
use crate::queue::Position;
use gix::ObjectId;
use std::sync::Arc;
use std::thread::JoinHandle;

/// Files changed by local commits not pushed yet.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Totals {
    /// Files written (created or changed).
    pub written: usize,
    /// Files deleted.
    pub deleted: usize,
    /// Bytes written.
    pub bytes: usize,
    /// Commits.
    pub commits: usize,
}

impl Totals {
    /// Adds `other` in.
    pub fn add(&mut self, other: Totals) {
        self.written += other.written;
        self.deleted += other.deleted;
        self.bytes += other.bytes;
        self.commits += other.commits;
    }
}

/// A push under way, and what it acknowledges once accepted.
pub struct InFlight {
    push: JoinHandle<Result<Push, GitError>>,
    /// Every entry through this one is in the commits pushed.
    pub through: Position,
    /// What the commits pushed changed.
    pub totals: Totals,
    /// When the push began.
    pub started: std::time::Instant,
    /// The commit pushed.
    pub tip: ObjectId,
}

impl InFlight {
    /// Starts pushing `tip` to `remote`; the commits hold every entry
    /// through `through`, and changed `totals`.
    pub fn start(
        remote: &Arc<Remote>,
        tip: ObjectId,
        through: Position,
        totals: Totals,
    ) -> Result<InFlight, GitError> {
        let remote = Arc::clone(remote);
        let push = std::thread::Builder::new()
            .name("sink push".into())
            .spawn(move || remote.push(tip))
            .map_err(GitError::Spawn)?;
        Ok(InFlight {
            push,
            through,
            totals,
            started: std::time::Instant::now(),
            tip,
        })
    }

    /// Whether the push is over (its outcome waits in [`InFlight::finish`]).
    pub fn is_over(&self) -> bool {
        self.push.is_finished()
    }

    /// Waits for the push to end: its outcome.
    pub fn finish(self) -> Result<Push, GitError> {
        // The push thread only runs `git push`; a panic there is a bug of
        // ours, raised here.
        self.push
            .join()
            .unwrap_or_else(|panic| std::panic::resume_unwind(panic))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn totals_add_up() {
        let mut all = Totals {
            written: 1,
            deleted: 2,
            bytes: 3,
            commits: 1,
        };
        all.add(Totals {
            written: 10,
            deleted: 20,
            bytes: 30,
            commits: 2,
        });
        assert_eq!(
            all,
            Totals {
                written: 11,
                deleted: 22,
                bytes: 33,
                commits: 3
            }
        );
    }

    #[test]
    fn a_push_to_a_missing_remote_ends_in_its_error() {
        let dir = tempfile::tempdir().unwrap();
        let url = dir.path().join("missing.git");
        let remote = Remote::new(
            &url.to_string_lossy().into_owned().into(),
            "main",
            &dir.path().join("local"),
        )
        .unwrap();
        let tip = ObjectId::empty_tree(gix::hash::Kind::Sha1);
        let push =
            InFlight::start(&Arc::new(remote), tip, Position::START, Totals::default()).unwrap();
        let error = push.finish().unwrap_err();
        assert!(error.to_string().contains("push"), "{error}");
    }
}
