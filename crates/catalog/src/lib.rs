//! The workflow catalog's model, with no I/O: a workflow's schema read from
//! the formats images carry it in ([`workflow`]), the checks it must pass
//! before it is registered ([`check`]), and its parameters as the JSON
//! Schema every execution is validated against ([`params`]).

pub mod check;
pub mod execution;
pub mod executions;
pub mod formats;
pub mod layers;
pub mod params;
pub mod workflow;

pub use check::{Violation, check};
pub use params::parameters_schema;
pub use workflow::{Workflow, read};

#[cfg(test)]
mod tests;
