//! Destinations and watch rules, with the fields of the custom resources
//! (`GitDestination`, `WatchRule`/`ClusterWatchRule`) so that the Kubernetes
//! source only has to add a way to read them.

use crate::layout::BaseFolder;
use crate::model::RepoUrl;
use crate::policy::cel::CelPolicy;
use serde_json::{Value, json};
use std::collections::{BTreeMap, BTreeSet};

pub use crate::model::Prune;
pub use plumbline_crd::mirror::CommitSpec;

/// A folder of a branch of a repository (a `GitDestination`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Destination {
    /// The destination's name, for messages and trailers.
    pub name: String,
    /// The repository (any URL git takes, or a local path).
    pub repo_url: RepoUrl,
    /// The branch.
    pub branch: String,
    /// The folder inside the repository that this destination owns.
    pub base_folder: BaseFolder,
    /// Orphan handling.
    pub prune: Prune,
    /// Who commits and how messages read, where the repository's
    /// `GitRepoConfig` says; the daemon's settings elsewhere.
    pub commit: CommitSpec,
    /// The credentials the repository's `secretRef` names, read from the
    /// cluster; none: the daemon's own (its git configuration, helpers,
    /// SSH agent). Printed as a digest only.
    pub credentials: Option<std::sync::Arc<crate::model::auth::GitAuth>>,
    /// The key the repository's `commit.signingKeyRef` names, read from
    /// the cluster: every commit is signed with it. None: the daemon's
    /// `--signing-key`, if any.
    pub signing: Option<std::sync::Arc<crate::signing::Signer>>,
}

impl Destination {
    /// The queue partition (repository and branch) this destination is in.
    pub fn partition(&self) -> crate::queue::Partition {
        crate::queue::Partition {
            repo: self.repo_url.clone(),
            branch: self.branch.clone(),
        }
    }
}

/// One rule of a watch rule, routed to a destination.
#[derive(Debug, Clone)]
pub struct WatchRule {
    /// Where the rule came from, for messages.
    pub name: String,
    /// The rule in the `rule-match` plugin's format.
    pub rule: Value,
    /// Index into [`MirrorConfig::destinations`].
    pub destination: usize,
    /// A CEL condition (`event`, `object`) that must also hold.
    pub condition: Option<CelPolicy>,
}

/// Everything the mirror routes by.
#[derive(Debug, Clone)]
pub struct MirrorConfig {
    /// The destinations.
    pub destinations: Vec<Destination>,
    /// The rules, each naming a destination.
    pub rules: Vec<WatchRule>,
}

impl MirrorConfig {
    /// A text that tells configurations apart: what the destinations and
    /// rules say (not how they were loaded).
    pub fn fingerprint(&self) -> String {
        let mut text = String::new();
        for d in &self.destinations {
            text.push_str(&format!("{d:?}\n"));
        }
        for r in &self.rules {
            let condition = r.condition.as_ref().map(|c| c.expression());
            text.push_str(&format!(
                "{} {} {} {condition:?}\n",
                r.name, r.rule, r.destination
            ));
        }
        text
    }

    /// Pairs of destinations that write one branch of one repository in
    /// folders one of which holds the other: each would take the other's
    /// files for orphans and prune them. Said as errors naming both, in
    /// the order they were given. A folder is looked up with each of its
    /// ancestors, so many destinations cost their count times their depth.
    pub fn overlaps(&self) -> Vec<String> {
        self.overlapping().into_iter().map(|(_, _, m)| m).collect()
    }

    /// [`MirrorConfig::overlaps`], with the indices of both destinations
    /// of each pair.
    pub fn overlapping(&self) -> Vec<(usize, usize, String)> {
        // One repository however its URL is spelled (with or without
        // credentials, a trailing `.git`): two spellings would also be two
        // workers pushing one branch.
        let mut places: BTreeMap<(String, &str), BTreeMap<&str, usize>> = BTreeMap::new();
        let mut pairs = BTreeSet::new();
        for (i, d) in self.destinations.iter().enumerate() {
            let repository = crate::model::url::repository_key(d.repo_url.as_str());
            let folders = places.entry((repository, &d.branch)).or_default();
            if let Some(first) = folders.insert(d.base_folder.as_str(), i) {
                folders.insert(d.base_folder.as_str(), first);
                pairs.insert((first, i));
            }
        }
        for folders in places.values() {
            for (folder, &i) in folders {
                for ancestor in ancestors(folder) {
                    if let Some(&j) = folders.get(ancestor) {
                        pairs.insert((i.min(j), i.max(j)));
                    }
                }
            }
        }
        pairs
            .into_iter()
            .map(|(i, j)| {
                let (a, b) = (&self.destinations[i], &self.destinations[j]);
                let message = format!(
                    "GitDestination {} (base folder `{}`) and {} (`{}`) both write {} ({}) in one folder: \
                     each would prune the other's files; give them folders apart",
                    a.name,
                    a.base_folder.as_str(),
                    b.name,
                    b.base_folder.as_str(),
                    a.repo_url,
                    a.branch
                );
                (i, j, message)
            })
            .collect()
    }

    /// One destination and one rule selecting every kind, custom resources
    /// included: the embedded default. The noisy kinds and the objects a
    /// controller owns are left out by the match chain's `rule-match`
    /// settings (its one list), not here, so an operator changes them in the
    /// policy configuration.
    pub fn everything_to(destination: Destination) -> MirrorConfig {
        MirrorConfig {
            destinations: vec![destination],
            rules: vec![WatchRule {
                name: "default".into(),
                rule: json!({ "resources": ["*"] }),
                destination: 0,
                condition: None,
            }],
        }
    }
}

/// The folders holding `folder`, the repository's root (`""`) first;
/// none for the root itself.
fn ancestors(folder: &str) -> impl Iterator<Item = &str> {
    let inner = folder.match_indices('/').map(move |(at, _)| &folder[..at]);
    (!folder.is_empty()).then_some("").into_iter().chain(inner)
}
