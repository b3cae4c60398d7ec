//! What the operator should read, as it happens: a file that does not
//! parse, an object the policies refuse. The command line prints them;
//! a library user (or a test) collects them.

use std::fmt::Display;
use std::sync::{Mutex, PoisonError};

/// Where notices go.
pub trait Notices: Send + Sync {
    /// Something was not done (a file not read, an object not routed).
    fn error(&self, message: &dyn Display);
    /// Something worth a look that stopped nothing.
    fn warning(&self, message: &dyn Display);
    /// For information.
    fn note(&self, message: &dyn Display);
}

/// Notices on standard error, as `error: …`, `warning: …`, `note: …`.
#[derive(Debug, Default, Clone, Copy)]
pub struct Stderr;

impl Notices for Stderr {
    fn error(&self, message: &dyn Display) {
        eprintln!("error: {message}");
    }
    fn warning(&self, message: &dyn Display) {
        eprintln!("warning: {message}");
    }
    fn note(&self, message: &dyn Display) {
        eprintln!("note: {message}");
    }
}

/// Notices kept, as `error: …` lines and so on, in order.
#[derive(Debug, Default)]
pub struct Collected(Mutex<Vec<String>>);

impl Collected {
    /// Every notice so far.
    pub fn lines(&self) -> Vec<String> {
        self.0
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    fn push(&self, level: &str, message: &dyn Display) {
        let line = format!("{level}: {message}");
        self.0
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .push(line);
    }
}

impl Notices for Collected {
    fn error(&self, message: &dyn Display) {
        self.push("error", message);
    }
    fn warning(&self, message: &dyn Display) {
        self.push("warning", message);
    }
    fn note(&self, message: &dyn Display) {
        self.push("note", message);
    }
}
