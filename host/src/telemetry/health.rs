//! Readiness, part by part: each part (the policies, each sink) declares
//! whether it is doing its job and, when not, why; `/readyz` is ready when
//! every part is, and lists the reasons otherwise.
//!
//! The part `decisions` says whether the policies let anything through: a
//! daemon whose policies fail on every object (a sanitizer that traps, a
//! CEL policy reading a field no object has, in a fail-closed chain) writes
//! nothing, and must not look healthy. It is not ready when every object
//! of the last pass over the source (the seed, then each look that found
//! changes) was refused by a failing policy, with the count and the first
//! refusal, which names the policy and its decision; the next pass in which
//! any object is decided makes it ready again. A pass that found nothing
//! leaves it as it was.

use std::collections::BTreeMap;
use std::sync::Mutex;

/// One part's state.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Status {
    /// Working.
    Ready,
    /// Not (yet) working, and why.
    NotReady(String),
    /// Working, but something needs the operator's eye (a newer policy
    /// bundle that failed to load while an older one serves).
    Degraded(String),
}

/// The readiness of every part.
#[derive(Debug, Default)]
pub struct Health {
    parts: Mutex<BTreeMap<String, Status>>,
}

/// What the policies made of one pass over the source.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PassOutcome {
    /// Objects routed in the pass.
    pub objects: usize,
    /// Of those, how many a failing policy refused.
    pub refused: usize,
    /// The first refusal, for the operator.
    pub first_refusal: Option<String>,
}

/// The readiness part that [`Health::record_pass`] sets.
pub const DECISIONS: &str = "decisions";

impl Health {
    /// Sets [`DECISIONS`] from a pass over the source: not ready when the
    /// pass had objects and a failing policy refused every one of them.
    pub fn record_pass(&self, pass: &PassOutcome) {
        if pass.objects == 0 {
            return;
        }
        let status = if pass.refused == pass.objects {
            Status::NotReady(format!(
                "a failing policy refused every one of the {} object(s) of the last pass; first: {}",
                pass.objects,
                pass.first_refusal.as_deref().unwrap_or("(not recorded)")
            ))
        } else {
            Status::Ready
        };
        self.set(DECISIONS, status);
    }

    /// Records `part`'s status.
    pub fn set(&self, part: &str, status: Status) {
        self.lock().insert(part.to_owned(), status);
    }

    /// Forgets `part`: it is gone (a worker whose destinations went).
    pub fn forget(&self, part: &str) {
        self.lock().remove(part);
    }

    /// Whether every part is ready, and one line per part.
    pub fn report(&self) -> (bool, String) {
        let parts = self.lock();
        let mut ready = true;
        let mut text = String::new();
        // A reason of several lines (git's, a configuration's list of
        // errors) is indented under its part, so that every line that does
        // not begin with a space begins a part.
        let lines = |why: &str| {
            why.trim_end()
                .lines()
                .filter(|line| !line.trim().is_empty())
                .collect::<Vec<_>>()
                .join("\n    ")
        };
        for (part, status) in parts.iter() {
            match status {
                Status::Ready => text.push_str(&format!("[+] {part}: ok\n")),
                Status::Degraded(why) => text.push_str(&format!("[!] {part}: {}\n", lines(why))),
                Status::NotReady(why) => {
                    ready = false;
                    text.push_str(&format!("[-] {part}: {}\n", lines(why)));
                }
            }
        }
        (ready, text)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, BTreeMap<String, Status>> {
        self.parts
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_reason_of_several_lines_stays_under_its_part() {
        let health = Health::default();
        health.set(
            "sink a",
            Status::NotReady(
                "fatal: Could not read from remote repository.\n\nPlease make sure…\n".into(),
            ),
        );
        health.set("z", Status::Ready);
        let (_, text) = health.report();
        assert_eq!(
            text,
            "[-] sink a: fatal: Could not read from remote repository.\n    Please make sure…\n[+] z: ok\n"
        );
    }

    #[test]
    fn ready_only_when_every_part_is() {
        let health = Health::default();
        health.set("policies", Status::Ready);
        health.set("sink a", Status::NotReady("push failing: refused".into()));
        let (ready, text) = health.report();
        assert!(!ready);
        assert!(text.contains("[-] sink a: push failing: refused"), "{text}");
        health.set("sink a", Status::Ready);
        assert!(health.report().0);
        health.set("policies", Status::Degraded("v3 failed".into()));
        let (ready, text) = health.report();
        assert!(ready, "a degraded part still serves");
        assert!(text.contains("[!] policies: v3 failed"), "{text}");
    }

    #[test]
    fn not_ready_when_policies_refuse_every_object_of_the_last_pass() {
        let health = Health::default();
        let refused = PassOutcome {
            objects: 3,
            refused: 3,
            first_refusal: Some("a/b: plugin `x` (sanitize): trapped".into()),
        };
        health.record_pass(&refused);
        let (ready, text) = health.report();
        assert!(!ready);
        assert!(
            text.contains("[-] decisions: a failing policy refused every one of the 3 object(s) of the last pass; first: a/b: plugin `x` (sanitize): trapped"),
            "{text}"
        );
        // A pass that found nothing changes nothing.
        health.record_pass(&PassOutcome::default());
        assert!(!health.report().0);
        // One object decided is a policy set at work.
        health.record_pass(&PassOutcome {
            objects: 3,
            refused: 2,
            first_refusal: None,
        });
        assert!(health.report().0);
    }
}
