//! The mirror: events → match → sanitize → route into the durable queue.
//!
//! - [`config`]: destinations and watch rules;
//! - [`intake`]: the contract a source fulfils: events and seeds in,
//!   with a scope;
//! - [`resources`]: the same, read from `GitRepoConfig`, `GitDestination`,
//!   `WatchRule` and `ClusterWatchRule` resources in a file;
//! - [`pipeline`]: one event through the match and sanitize chains to the
//!   files it should produce;
//! - [`router`]: events (or a whole seed) on every core into the queue
//!   ([`crate::queue`]).

pub mod config;
pub mod intake;
pub mod pipeline;
pub mod resources;
pub mod router;

pub use config::{Destination, MirrorConfig, Prune, WatchRule};
pub use intake::{Control, Intake, Listing, Seed, SeedScope};
pub use pipeline::{MirrorError, Pipeline, Routed};
pub use router::{Router, Routing};
