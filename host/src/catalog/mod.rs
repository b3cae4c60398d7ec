//! The workflow catalog: every registered version of every workflow, kept
//! immutably, served, and enforced. The model and its checks are
//! `plumbline-catalog`'s (no I/O); here is everything that touches the
//! world. In the order a version travels:
//!
//! - [`extract`]: a workflow image's schema, from the registry (an attached
//!   artifact, else the layers, downloading only those needed);
//! - [`register`]: every check, then the store; [`store`]: the contract
//!   every store keeps (a version is written once; the same content again
//!   changes nothing, other content is a conflict), and the embedded one,
//!   a redb file in the state folder; [`search`]: the in-memory index;
//!   [`service`]: all of it as the front ends use it ([`Catalog`]);
//! - front ends: [`api`] (REST and its OpenAPI document), [`mcp`] (the
//!   tools for agents), [`notify`] (registry push notifications),
//!   [`controller`] (kubernaut's RemediationWorkflow resources);
//! - [`reconcile`]: tags resolved again (drift) and watched repositories
//!   listed again;
//! - the gate: [`gate`] decides (with [`contract`] for a Job's bounds),
//!   [`recorder`] records what it allows, [`gate_api`] serves it.

pub mod api;
pub mod contract;
pub mod controller;
pub mod extract;
pub mod gate;
pub mod gate_api;
pub mod mcp;
pub mod notify;
pub mod reconcile;
pub mod recorder;
pub mod register;
pub mod search;
pub mod service;
pub mod store;

pub use service::Catalog;

pub use plumbline_catalog::{Workflow, check, parameters_schema, read};
