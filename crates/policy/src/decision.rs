//! The four questions Plumbline asks its policies.

use serde::{Deserialize, Serialize};
use std::fmt;

/// A decision: which question a plugin or a CEL policy answers, and so which
/// WIT world a component must implement to answer it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Decision {
    /// What of an object belongs in Git (world `sanitizer`).
    Sanitize,
    /// Which rules select an event (world `matcher`).
    Match,
    /// Whether a workflow's parameter schema is acceptable (world `schema-rule`).
    Schema,
    /// Whether a workflow execution may proceed (world `drift-gate`).
    Gate,
}

impl Decision {
    /// Every decision, in the order of the data's path.
    pub const ALL: [Decision; 4] = [
        Decision::Match,
        Decision::Sanitize,
        Decision::Schema,
        Decision::Gate,
    ];

    /// The name used in configuration and messages.
    pub fn name(self) -> &'static str {
        match self {
            Decision::Sanitize => "sanitize",
            Decision::Match => "match",
            Decision::Schema => "schema",
            Decision::Gate => "gate",
        }
    }

    /// The WIT world a component must implement for this decision.
    pub fn world(self) -> &'static str {
        match self {
            Decision::Sanitize => "sanitizer",
            Decision::Match => "matcher",
            Decision::Schema => "schema-rule",
            Decision::Gate => "drift-gate",
        }
    }
}

impl fmt::Display for Decision {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}
