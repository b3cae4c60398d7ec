//! The stages of `host/src` point one way: each module's `crate::` uses
//! (tests aside) form no circle, and the mirror and queue never reach the
//! sink, nor the sink the mirror. The stages that are crates of their own
//! (`crates/`) depend on no stage of the daemon and on nothing their
//! boundary excludes.

use crate::support::root;
use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

/// Top-level module → the top-level modules its code uses.
fn uses() -> BTreeMap<String, BTreeSet<String>> {
    let src = root().join("host/src");
    let mut graph: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    let mut stack = vec![src.clone()];
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                stack.push(path);
            } else if path.extension().is_some_and(|e| e == "rs") {
                let stage = stage_of(&src, &path);
                let text = std::fs::read_to_string(&path).unwrap();
                // Unit tests may reach anywhere; the code may not.
                let code = text.split("#[cfg(test)]").next().unwrap_or_default();
                let targets = graph.entry(stage.clone()).or_default();
                for (at, _) in code.match_indices("crate::") {
                    let used: String = code[at + 7..]
                        .chars()
                        .take_while(|c| c.is_ascii_lowercase() || *c == '_')
                        .collect();
                    if !used.is_empty() && used != stage {
                        targets.insert(used);
                    }
                }
            }
        }
    }
    graph
}

fn stage_of(src: &Path, file: &Path) -> String {
    let relative = file.strip_prefix(src).unwrap();
    let first = relative.components().next().unwrap();
    let name = first.as_os_str().to_string_lossy();
    name.trim_end_matches(".rs").to_owned()
}

#[test]
fn the_mirror_and_queue_never_use_the_sink_nor_the_sink_the_mirror() {
    let graph = uses();
    for (from, to) in [
        ("mirror", "sink"),
        ("queue", "sink"),
        ("queue", "mirror"),
        ("sink", "mirror"),
    ] {
        assert!(
            !graph.get(from).is_some_and(|t| t.contains(to)),
            "{from} uses {to}: {:?}",
            graph[from]
        );
    }
}

#[test]
fn no_stage_reaches_back_to_one_that_uses_it() {
    let graph = uses();
    // Depth-first from each stage: reaching the start again is a circle.
    for start in graph.keys() {
        let mut seen = BTreeSet::new();
        let mut stack: Vec<Vec<&str>> = vec![vec![start]];
        while let Some(path) = stack.pop() {
            let last = *path.last().unwrap();
            for next in graph.get(last).into_iter().flatten() {
                assert!(
                    next != start,
                    "import circle: {} -> {next}",
                    path.join(" -> ")
                );
                if seen.insert(next.as_str()) {
                    let mut longer = path.clone();
                    longer.push(next);
                    stack.push(longer);
                }
            }
        }
    }
}

/// The names under `[dependencies]` of a crate's manifest.
fn dependencies(krate: &str) -> BTreeSet<String> {
    let manifest =
        std::fs::read_to_string(root().join("crates").join(krate).join("Cargo.toml")).unwrap();
    let mut section = "";
    let mut names = BTreeSet::new();
    for line in manifest.lines().map(str::trim) {
        if line.starts_with('[') {
            section = line;
        } else if section == "[dependencies]" && !line.is_empty() && !line.starts_with('#') {
            let name = line.split(['.', '=', ' ']).next().unwrap();
            names.insert(name.to_owned());
        }
    }
    names
}

#[test]
fn the_crates_of_the_stages_know_only_what_their_boundary_allows() {
    let ours = |deps: &BTreeSet<String>| -> Vec<String> {
        deps.iter()
            .filter(|d| d.starts_with("plumbline"))
            .cloned()
            .collect()
    };
    // Everyone uses the model; the model uses no stage.
    assert_eq!(ours(&dependencies("model")), Vec::<String>::new());
    // The policy runtime knows nothing of Kubernetes, Git or registries.
    let policy = dependencies("policy");
    assert_eq!(ours(&policy), ["plumbline-model"]);
    for excluded in ["gix", "gix-pack", "oci-client", "redb", "axum", "tokio"] {
        assert!(!policy.contains(excluded), "policy depends on {excluded}");
    }
    // Registry access knows nothing of policies or catalogs.
    let oci = dependencies("oci");
    assert_eq!(ours(&oci), Vec::<String>::new());
    for excluded in ["wasmtime", "cel", "gix"] {
        assert!(!oci.contains(excluded), "oci depends on {excluded}");
    }
    // And the daemon's stages outside the policy crate never run Wasm themselves.
    let host = std::fs::read_to_string(root().join("host/Cargo.toml")).unwrap();
    assert!(
        !host.contains("\nwasmtime"),
        "host depends on wasmtime directly"
    );
}
