//! Seeds as the sink sees them: for each listing under way, the files its
//! live objects produced, so that when it ends the files it did not
//! produce are known to be orphans.
//!
//! A seed has a scope: one destination, and the resources it listed (all
//! of them, or a few: a watch that expired lists only its own resource
//! again). Only a file of a resource the seed listed can be its orphan.
//! Several seeds of one destination may be open at once (two resources
//! listed again at the same time); each keeps its own live set.

use crate::layout::FileKey;
use crate::model::GroupResource;
use crate::model::digest::{ShortDigest, short_digest};
use std::collections::{HashMap, HashSet};

/// The seeds under way in one partition.
#[derive(Debug, Default)]
pub struct Seeds {
    open: HashMap<(String, u64), Open>,
}

/// One seed under way.
#[derive(Debug)]
struct Open {
    resources: Option<HashSet<GroupResource>>,
    live: Live,
}

/// The files a seed's live objects produced, by their paths' digests: a
/// seed of 100,000 objects keeps 100,000 of them until it ends. Two paths
/// that share a digest (no known pair does) would keep an orphan, never
/// lose a live file.
type Live = HashSet<ShortDigest>;

/// A seed that ended: which files are its orphans.
#[derive(Debug)]
pub struct Ended {
    resources: Option<HashSet<GroupResource>>,
    live: Live,
}

impl Seeds {
    /// Seed `id` of `destination` begins, listing `resources` (`None`:
    /// all of them).
    pub fn start(&mut self, destination: &str, id: u64, resources: Option<Vec<GroupResource>>) {
        let open = Open {
            resources: resources.map(|r| r.into_iter().collect()),
            live: Live::new(),
        };
        self.open.insert((destination.to_owned(), id), open);
    }

    /// A live object of `destination` produced `path` (or its file is kept
    /// as it is): no seed under way may prune it.
    pub fn live(&mut self, destination: &str, path: &str) {
        let digest = short_digest(path.as_bytes());
        for ((name, _), open) in &mut self.open {
            if name == destination {
                open.live.insert(digest);
            }
        }
    }

    /// Whether a seed of `destination` is under way.
    pub fn under_way(&self, destination: &str) -> bool {
        self.open.keys().any(|(name, _)| name == destination)
    }

    /// Seed `id` of `destination` ends; `None` if it began before a
    /// restart (its live set is unknown, so it can prune nothing).
    pub fn end(&mut self, destination: &str, id: u64) -> Option<Ended> {
        let open = self.open.remove(&(destination.to_owned(), id))?;
        Some(Ended {
            resources: open.resources,
            live: open.live,
        })
    }
}

impl Ended {
    /// Whether the file at `path`, which holds the object `key` says, is
    /// an orphan of this seed: of a resource it listed, and not produced.
    pub fn is_orphan(&self, path: &str, key: &FileKey) -> bool {
        !self.live.contains(&short_digest(path.as_bytes()))
            && self.resources.as_ref().is_none_or(|listed| {
                listed.contains(&GroupResource::new(&key.group, &key.resource))
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::layout::{BaseFolder, key_of};

    const DEPLOY: &str = "ns/apps/deployments/web.yaml";
    const CONFIG: &str = "ns/core/configmaps/settings.yaml";

    fn key(path: &str) -> FileKey {
        key_of(&BaseFolder::new("").unwrap(), path).unwrap()
    }

    fn orphan(ended: &Ended, path: &str) -> bool {
        ended.is_orphan(path, &key(path))
    }

    #[test]
    fn a_seed_of_everything_prunes_every_file_it_did_not_produce() {
        let mut seeds = Seeds::default();
        seeds.start("d", 1, None);
        seeds.live("d", CONFIG);
        let ended = seeds.end("d", 1).unwrap();
        assert!(orphan(&ended, DEPLOY));
        assert!(!orphan(&ended, CONFIG));
    }

    #[test]
    fn a_scoped_seed_prunes_only_files_of_the_resources_it_listed() {
        let mut seeds = Seeds::default();
        let deployments = GroupResource::new("apps", "deployments");
        seeds.start("d", 1, Some(vec![deployments]));
        let ended = seeds.end("d", 1).unwrap();
        assert!(orphan(&ended, DEPLOY));
        assert!(
            !orphan(&ended, CONFIG),
            "a config map is not a deployments listing's orphan"
        );
        // The core group is the empty group, as the layout reads `core`.
        seeds.start("d", 2, Some(vec![GroupResource::new("", "configmaps")]));
        assert!(orphan(&seeds.end("d", 2).unwrap(), CONFIG));
    }

    #[test]
    fn seeds_under_way_at_once_each_keep_their_own_live_set() {
        let mut seeds = Seeds::default();
        seeds.start("d", 1, None);
        seeds.live("d", DEPLOY);
        seeds.start("d", 2, None);
        seeds.live("d", CONFIG);
        seeds.live("other", DEPLOY);
        let second = seeds.end("d", 2).unwrap();
        assert!(orphan(&second, DEPLOY), "produced before seed 2 began");
        assert!(!orphan(&second, CONFIG));
        let first = seeds.end("d", 1).unwrap();
        assert!(!orphan(&first, DEPLOY) && !orphan(&first, CONFIG));
    }

    #[test]
    fn a_seed_that_began_before_a_restart_prunes_nothing() {
        let mut seeds = Seeds::default();
        assert!(seeds.end("d", 7).is_none());
        seeds.start("d", 8, None);
        assert!(seeds.end("d", 7).is_none(), "another seed's end");
        assert!(seeds.end("other", 8).is_none(), "another destination's end");
    }
}
