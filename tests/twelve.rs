//! Twelve partitions, as the replica tests and the replica benchmark use
//! them: four repositories, three branches each, namespace `n<i>`'s config
//! maps written to partition `i`.

/// The branches of each repository.
pub const BRANCHES: [&str; 3] = ["main", "two", "three"];
/// The repositories.
pub const REPOS: usize = 4;
/// Partitions in all.
pub const PARTITIONS: usize = REPOS * BRANCHES.len();

/// The configuration for repositories at `urls`: destination `d<i>`
/// writes namespace `n<i>`'s config maps to repository `i % 4`, branch
/// `i / 4`.
pub fn configuration(urls: &[String]) -> String {
    let mut docs = Vec::new();
    for (r, url) in urls.iter().enumerate() {
        docs.push(format!(
            "apiVersion: configbutler.ai/v1alpha1\nkind: GitRepoConfig\nmetadata: {{name: r{r}, namespace: plumbline}}\n\
             spec: {{repoUrl: '{url}', allowedBranches: [main, two, three]}}\n"
        ));
    }
    for i in 0..PARTITIONS {
        let (repo, branch) = (i % REPOS, BRANCHES[i / REPOS]);
        docs.push(format!(
            "apiVersion: configbutler.ai/v1alpha1\nkind: GitDestination\nmetadata: {{name: d{i}, namespace: plumbline}}\n\
             spec: {{repoRef: {{name: r{repo}}}, branch: {branch}, baseFolder: ''}}\n---\n\
             apiVersion: configbutler.ai/v1alpha1\nkind: WatchRule\nmetadata: {{name: d{i}, namespace: n{i}}}\n\
             spec:\n  destinationRef: {{name: d{i}, namespace: plumbline}}\n  rules:\n  - {{resources: [configmaps]}}\n"
        ));
    }
    docs.join("---\n")
}
