//! The workflow catalog: every registered version of every workflow, kept
//! immutably. The model and its checks are `plumbline-catalog`'s (no I/O);
//! here is where versions are stored.
//!
//! - [`extract`]: a workflow image's schema, from the registry, reading
//!   (and downloading) only the layers needed;
//! - [`store`]: the contract every store keeps (a version is written once;
//!   the same content again changes nothing, other content is a conflict),
//!   and the embedded one, a redb file in the state folder.

pub mod api;
pub mod contract;
pub mod controller;
pub mod extract;
pub mod gate;
pub mod gate_api;
pub mod mcp;
pub mod notify;
pub mod reconcile;
pub mod register;
pub mod search;
pub mod service;
pub mod store;

pub use service::Catalog;

pub use plumbline_catalog::{Workflow, check, parameters_schema, read};
