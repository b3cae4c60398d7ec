//! The mirror: events → match → sanitize → route to destinations, and the
//! desired state of each destination that a snapshot implies.
//!
//! - [`config`]: destinations and watch rules;
//! - [`resources`]: the same, read from `GitRepoConfig`, `GitDestination`,
//!   `WatchRule` and `ClusterWatchRule` resources in a file;
//! - [`pipeline`]: one event through the match and sanitize chains to the
//!   files it should produce;
//! - [`seed`]: a whole snapshot to the desired files of every destination.

pub mod config;
pub mod pipeline;
pub mod resources;
pub mod seed;

pub use config::{Destination, MirrorConfig, Prune, WatchRule};
pub use pipeline::{MirrorError, Pipeline, Routed};
pub use seed::{Desired, DesiredFile, desired_state};
