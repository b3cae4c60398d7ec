//! Readiness, part by part: each part (the policies, each sink) declares
//! whether it is doing its job and, when not, why; `/readyz` is ready when
//! every part is, and lists the reasons otherwise.

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

impl Health {
    /// Records `part`'s status.
    pub fn set(&self, part: &str, status: Status) {
        self.lock().insert(part.to_owned(), status);
    }

    /// Whether every part is ready, and one line per part.
    pub fn report(&self) -> (bool, String) {
        let parts = self.lock();
        let mut ready = true;
        let mut text = String::new();
        for (part, status) in parts.iter() {
            match status {
                Status::Ready => text.push_str(&format!("[+] {part}: ok\n")),
                Status::Degraded(why) => text.push_str(&format!("[!] {part}: {why}\n")),
                Status::NotReady(why) => {
                    ready = false;
                    text.push_str(&format!("[-] {part}: {why}\n"));
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
}
