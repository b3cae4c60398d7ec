//! Push and retry: how long to wait after Git failed, and when to give up.
//!
//! Two kinds of trouble are counted apart. A remote that fails (down,
//! refusing the credentials, a network that drops) is retried with a
//! doubling back-off; a push that is rejected because another writer moved
//! the branch is replayed at once on the new tip. Either gives up only once
//! it has lasted longer than the budget: the configured one, or none when
//! following (retry for ever), or [`FINISH_RETRY`] once the worker was told
//! to finish, so that a destination removed while its remote is down does
//! not hold its worker for ever. What was not pushed stays in the queue.
//!
//! Time is handed in, never read here, so every rule is tested without a
//! clock.

use std::time::{Duration, Instant};

/// How long a worker told to finish retries a remote that fails before it
/// gives up.
pub const FINISH_RETRY: Duration = Duration::from_secs(30);

/// The first wait after a failure.
const FIRST_BACKOFF: Duration = Duration::from_millis(250);

/// The longest wait between two attempts.
const MAX_BACKOFF: Duration = Duration::from_secs(10);

/// What to do after a failure.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Next {
    /// Wait this long, then try again.
    Wait(Duration),
    /// The budget ran out.
    GiveUp,
}

/// What to do after a rejected push.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Replay {
    /// Fetch the new tip and build on it again.
    OnNewTip,
    /// The branch kept moving for longer than the budget: give up after
    /// this many rejections.
    GiveUp(u32),
}

/// The failures of one worker's remote.
#[derive(Debug)]
pub struct Retry {
    configured: Option<Duration>,
    finishing: bool,
    failing_since: Option<Instant>,
    backoff: Duration,
    rejected_since: Option<Instant>,
    rejections: u32,
}

impl Retry {
    /// Retries for `budget` (`None`: for ever, until told to finish).
    pub fn new(budget: Option<Duration>) -> Retry {
        Retry {
            configured: budget,
            finishing: false,
            failing_since: None,
            backoff: FIRST_BACKOFF,
            rejected_since: None,
            rejections: 0,
        }
    }

    /// The worker was told to finish: with no budget configured, failures
    /// now cost at most [`FINISH_RETRY`].
    pub fn finishing(&mut self) {
        self.finishing = true;
    }

    /// The budget in force.
    pub fn budget(&self) -> Option<Duration> {
        self.configured.or(self.finishing.then_some(FINISH_RETRY))
    }

    /// The remote failed at `now`.
    pub fn failed(&mut self, now: Instant) -> Next {
        let since = *self.failing_since.get_or_insert(now);
        if self.exhausted(since, now) {
            return Next::GiveUp;
        }
        let wait = self.backoff;
        self.backoff = (self.backoff * 2).min(MAX_BACKOFF);
        Next::Wait(wait)
    }

    /// A push was rejected at `now`.
    pub fn rejected(&mut self, now: Instant) -> Replay {
        self.rejections += 1;
        let since = *self.rejected_since.get_or_insert(now);
        if self.exhausted(since, now) {
            Replay::GiveUp(self.rejections)
        } else {
            Replay::OnNewTip
        }
    }

    /// The remote answered (a fetch or a push went through): failures
    /// start counting afresh.
    pub fn reached(&mut self) {
        self.failing_since = None;
        self.backoff = FIRST_BACKOFF;
    }

    /// A push was accepted: rejections start counting afresh too.
    pub fn pushed(&mut self) {
        self.reached();
        self.rejected_since = None;
        self.rejections = 0;
    }

    fn exhausted(&self, since: Instant, now: Instant) -> bool {
        self.budget()
            .is_some_and(|budget| now.saturating_duration_since(since) >= budget)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SECOND: Duration = Duration::from_secs(1);

    #[test]
    fn the_wait_doubles_up_to_a_ceiling_and_starts_again_once_the_remote_answers() {
        let now = Instant::now();
        let mut retry = Retry::new(None);
        let waits: Vec<Next> = (0..8).map(|_| retry.failed(now)).collect();
        let ms = |n| Next::Wait(Duration::from_millis(n));
        assert_eq!(
            waits,
            [
                ms(250),
                ms(500),
                ms(1000),
                ms(2000),
                ms(4000),
                ms(8000),
                ms(10_000),
                ms(10_000)
            ]
        );
        retry.reached();
        assert_eq!(retry.failed(now), ms(250));
    }

    #[test]
    fn following_retries_for_ever_until_told_to_finish() {
        let start = Instant::now();
        let mut retry = Retry::new(None);
        let day = start + 86_400 * SECOND;
        assert!(matches!(retry.failed(start), Next::Wait(_)));
        assert!(matches!(retry.failed(day), Next::Wait(_)), "no budget");
        retry.finishing();
        assert_eq!(retry.budget(), Some(FINISH_RETRY));
        assert_eq!(retry.failed(day), Next::GiveUp, "failing since `start`");
    }

    #[test]
    fn a_budget_counts_from_the_first_failure_of_a_run_of_them() {
        let start = Instant::now();
        let mut retry = Retry::new(Some(10 * SECOND));
        assert!(matches!(retry.failed(start), Next::Wait(_)));
        assert!(matches!(retry.failed(start + 9 * SECOND), Next::Wait(_)));
        retry.reached();
        assert!(
            matches!(retry.failed(start + 15 * SECOND), Next::Wait(_)),
            "a new run of failures"
        );
        assert_eq!(retry.failed(start + 25 * SECOND), Next::GiveUp);
    }

    #[test]
    fn rejections_replay_until_the_budget_then_say_how_many_there_were() {
        let start = Instant::now();
        let mut retry = Retry::new(Some(10 * SECOND));
        assert_eq!(retry.rejected(start), Replay::OnNewTip);
        // A fetch between two rejections does not end the run of them.
        retry.reached();
        assert_eq!(retry.rejected(start + 5 * SECOND), Replay::OnNewTip);
        assert_eq!(retry.rejected(start + 10 * SECOND), Replay::GiveUp(3));
        retry.pushed();
        assert_eq!(retry.rejected(start + 60 * SECOND), Replay::OnNewTip);
    }

    #[test]
    fn failures_and_rejections_are_counted_apart() {
        let start = Instant::now();
        let mut retry = Retry::new(Some(10 * SECOND));
        assert_eq!(retry.rejected(start), Replay::OnNewTip);
        assert!(
            matches!(retry.failed(start + 20 * SECOND), Next::Wait(_)),
            "the first failure, however long the rejections lasted"
        );
    }
}
