//! Plumbline keeps Git and a workflow catalog true to what runs in
//! Kubernetes; every decision it makes is a policy (a WebAssembly component
//! or a CEL expression) that an operator can replace without rebuilding it.
//!
//! The crate reads the way data flows (`model`, `policy` and `oci` are
//! crates of their own under `crates/`, re-exported here):
//!
//! - [`model`]: the plain data types every stage shares (`Event`, `Target`);
//! - [`ingest`]: where objects come from (for now: manifest files);
//! - [`policy`]: the policy runtime that answers every decision;
//! - [`bundle`]: policy bundles from OCI registries, followed and swapped in;
//! - [`layout`]: where an object's file goes in a repository, and its
//!   canonical YAML (what routing decides and the sink checks);
//! - [`mirror`]: events → match → sanitize → the files each destination needs;
//! - [`queue`]: the durable queue between routing and the sinks;
//! - [`signing`]: the SSH key commits are signed with, which the
//!   configuration names and the sink uses;
//! - [`sink`]: Git: batched commits and pushes of what the queue holds;
//! - [`oci`]: registry access (resolve, pull, push, verified digests);
//! - [`catalog`]: the workflow catalog's store of registered versions;
//! - [`state`]: the state folder (queue, local repositories), owner-only;
//! - [`nats`]: connecting to NATS JetStream, for the stages that keep
//!   state there when several replicas share it;
//! - [`telemetry`]: metrics and readiness, which every stage records into;
//! - [`daemon`]: a source, routing, the queue and the sink workers, wired
//!   and kept running (the supervisor, the policy reload);
//! - [`api`]: the one HTTP server (`/healthz`, `/readyz`, `/metrics`);
//! - [`cli`]: the `plumbline` command.

pub mod api;
pub mod bundle;
pub mod catalog;
pub mod cli;
pub mod daemon;
pub mod ingest;
pub mod layout;
pub mod mirror;
pub mod nats;
pub mod queue;
pub mod signing;
pub mod sink;
pub mod state;
pub mod telemetry;

// The stages whose boundary the compiler holds: crates of their own that
// cannot see the daemon (`policy` knows nothing of Git, `oci` nothing of
// policies), re-exported where the daemon's stages sit.
pub use plumbline_model as model;
pub use plumbline_oci as oci;
pub use plumbline_policy as policy;
