//! Plumbline's tests against real parts: real components built from
//! `plugins/` and `tests/guests/` run in the real runtime, and the real
//! `plumbline` binary runs on real manifests. One test binary, so the host
//! and the plugins are built once for all of them.

mod apiserver;
mod author_path;
mod bundles;
mod catalog;
mod catalog_api;
mod catalog_nats;
mod cel_policies;
mod chart;
mod cli;
mod cluster;
mod cosign;
mod daemon;
mod default_plugins;
mod follow;
mod gate;
mod hardening_api;
mod layering;
mod mirror;
mod nats;
mod neat_conformance;
mod oci;
mod oras;
mod registry;
mod replicas;
mod runtime_limits;
mod signing;
mod sink;
mod sops;
mod source_hardening;
mod support;
mod twelve;
