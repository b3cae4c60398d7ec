//! Seed and prune: when a seed ends, which of the branch's files go.
//!
//! A file is an orphan of a seed when it lies under the seed's
//! destination, belongs to a resource the seed listed, and no live object
//! produced it. Orphans are deleted only if the listing was complete and
//! the destination prunes always; otherwise they are kept, and counted,
//! so that an operator sees what a complete listing would remove.

use super::Folder;
use super::seeds::Ended;
use crate::layout;
use crate::model::Prune;

/// What a seed's end does to its orphans.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Pruning {
    /// Delete these files (sorted, so commits are the same every time).
    Delete(Vec<String>),
    /// Keep this many orphans.
    Keep(usize),
}

/// What the end of `seed` of `folder` does, of the branch's `paths`.
pub fn plan<'a>(
    seed: &Ended,
    folder: &Folder,
    paths: impl Iterator<Item = &'a str>,
    complete: bool,
) -> Pruning {
    let base = &folder.base_folder;
    let mut orphans: Vec<String> = paths
        .filter(|p| layout::key_of(base, p).is_some_and(|key| seed.is_orphan(p, &key)))
        .map(str::to_owned)
        .collect();
    if !complete || folder.prune != Prune::Always {
        return Pruning::Keep(orphans.len());
    }
    orphans.sort_unstable();
    Pruning::Delete(orphans)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::layout::BaseFolder;
    use crate::model::GroupResource;
    use crate::sink::seeds::Seeds;

    const PATHS: [&str; 5] = [
        "team/ns/core/configmaps/b.yaml",
        "team/ns/core/configmaps/a.yaml",
        "team/ns/apps/deployments/web.yaml",
        "other/ns/core/configmaps/a.yaml",
        "team/README.md",
    ];

    fn folder(prune: Prune) -> Folder {
        Folder {
            name: "team".into(),
            base_folder: BaseFolder::new("team").unwrap(),
            prune,
        }
    }

    fn ended(resources: Option<Vec<GroupResource>>, live: &[&str]) -> Ended {
        let mut seeds = Seeds::default();
        seeds.start("team", 1, resources);
        for path in live {
            seeds.live("team", path);
        }
        seeds.end("team", 1).unwrap()
    }

    #[test]
    fn a_complete_seed_deletes_its_orphans_under_its_folder_only_in_order() {
        let seed = ended(None, &["team/ns/core/configmaps/b.yaml"]);
        let pruning = plan(&seed, &folder(Prune::Always), PATHS.into_iter(), true);
        assert_eq!(
            pruning,
            Pruning::Delete(vec![
                "team/ns/apps/deployments/web.yaml".into(),
                "team/ns/core/configmaps/a.yaml".into(),
            ]),
            "not another folder's files, nor a file the layout did not make"
        );
    }

    #[test]
    fn a_scoped_seed_deletes_only_its_resources_orphans() {
        let seed = ended(Some(vec![GroupResource::new("apps", "deployments")]), &[]);
        let pruning = plan(&seed, &folder(Prune::Always), PATHS.into_iter(), true);
        assert_eq!(
            pruning,
            Pruning::Delete(vec!["team/ns/apps/deployments/web.yaml".into()])
        );
    }

    #[test]
    fn orphans_are_kept_and_counted_when_the_seed_was_incomplete_or_pruning_is_off() {
        let seed = ended(None, &[]);
        let always = folder(Prune::Always);
        assert_eq!(
            plan(&seed, &always, PATHS.into_iter(), false),
            Pruning::Keep(3)
        );
        for prune in [Prune::OnDelete, Prune::Never] {
            let pruning = plan(&seed, &folder(prune), PATHS.into_iter(), true);
            assert_eq!(pruning, Pruning::Keep(3), "{prune:?}");
        }
    }
}
