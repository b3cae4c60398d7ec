//! The mirror's configuration as Kubernetes custom resources, read from a
//! YAML file (multi-document): `GitRepoConfig`, `GitDestination`, `WatchRule`
//! and `ClusterWatchRule`, the types of `plumbline-crd`, in Plumbline's
//! group or in gitops-reverser's `configbutler.ai/v1alpha1` (whose fields
//! they include). The Kubernetes source reads the same resources from the
//! API server; here they come from a file, so the mirror runs with no
//! cluster.
//!
//! Every problem in the file is reported at once: unknown kinds or fields,
//! references to nothing, branches a repository does not allow, base folders
//! that could escape, CEL that does not compile.

use super::config::{CommitSpec, Destination, MirrorConfig, WatchRule};
use crate::layout::BaseFolder;
use crate::model::auth::GitAuth;
use crate::policy::Decision;
use crate::policy::cel::{CelLimits, CelPolicy, CelSource};
use crate::signing::Signer;
use plumbline_crd::mirror::{
    ClusterWatchRuleSpec, GitDestinationSpec as DestinationSpec, GitRepoConfigSpec as RepoSpec,
    WatchRuleSpec,
};
use plumbline_crd::status::reason::{
    BASE_FOLDER_ESCAPES, BRANCH_NOT_ALLOWED, CREDENTIALS_MISSING, INVALID_CONDITION, INVALID_SPEC,
    OVERLAPPING_DESTINATION, REFERENCE_NOT_READY, SIGNING_KEY_UNUSABLE, UNKNOWN_REFERENCE,
};
use serde::Deserialize;
use serde_json::{Value, json};
use std::collections::BTreeMap;
use std::sync::Arc;

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Resource {
    api_version: Option<String>,
    kind: String,
    metadata: Metadata,
    spec: Value,
}

#[derive(Debug, Deserialize)]
struct Metadata {
    name: String,
    namespace: Option<String>,
}

#[derive(Debug, Deserialize)]

/// A rule of either kind of watch rule: what it selects, in the
/// `rule-match` plugin's format, and its CEL condition.
struct RawRule {
    rule: Value,
    condition: Option<String>,
}

/// The rules of a `WatchRule` or `ClusterWatchRule`.
struct RuleSpec {
    destination_ref: plumbline_crd::mirror::NamespacedRef,
    rules: Vec<RawRule>,
}

impl RuleSpec {
    /// Reads the spec of a `ClusterWatchRule` (`cluster`) or `WatchRule`;
    /// the types check every field and name the one at fault.
    fn read(spec: Value, cluster: bool) -> Result<RuleSpec, serde_json::Error> {
        fn raw<T: serde::Serialize>(
            rule: T,
            condition: Option<String>,
        ) -> serde_json::Result<RawRule> {
            let rule = serde_json::to_value(rule)?;
            Ok(RawRule { rule, condition })
        }
        let (destination_ref, rules) = if cluster {
            let spec: ClusterWatchRuleSpec = serde_json::from_value(spec)?;
            let rules = spec.rules.into_iter().map(|mut r| {
                let condition = r.condition.take();
                raw(r, condition)
            });
            (spec.destination_ref, rules.collect::<Result<_, _>>()?)
        } else {
            let spec: WatchRuleSpec = serde_json::from_value(spec)?;
            let rules = spec.rules.into_iter().map(|mut r| {
                let condition = r.condition.take();
                raw(r, condition)
            });
            (spec.destination_ref, rules.collect::<Result<_, _>>()?)
        };
        Ok(RuleSpec {
            destination_ref,
            rules,
        })
    }
}

/// The API versions of the resources: gitops-reverser's group, so its
/// users' files read unchanged, and Plumbline's own.
pub const API_VERSIONS: [&str; 2] = ["configbutler.ai/v1alpha1", "mirror.plumbline.dev/v1alpha1"];

/// The most resources (YAML documents) a configuration file may hold.
pub const MAX_DOCUMENTS: usize = 100_000;

/// Reads a configuration file's text; `origin` names it in messages.
/// A rule's CEL `condition` runs under `limits`, the operator's, as every
/// other CEL expression does.
pub fn read(text: &str, origin: &str, limits: CelLimits) -> Result<MirrorConfig, Vec<String>> {
    // The parser's default of 1,024 documents is a guard against separator
    // storms; a configuration of one resource per namespace can pass it,
    // and the file is already bounded in bytes (--max-file-bytes).
    let options = serde_saphyr::options! {
        budget: serde_saphyr::budget! { max_documents: MAX_DOCUMENTS },
    };
    let documents: Vec<Value> = serde_saphyr::from_multiple_with_options(text, options)
        .map_err(|e| vec![format!("{origin}: {e}")])?
        .into_iter()
        .filter(|d: &Value| !d.is_null())
        .collect();
    if documents.is_empty() {
        // An editor that truncates the file before writing it would
        // otherwise stop every destination for a moment, and what changed
        // then would miss its commit.
        return Err(vec![format!(
            "{origin}: holds no resources; an empty file is refused (to route nowhere, \
             leave a GitRepoConfig and no GitDestination)"
        )]);
    }
    let documents = documents
        .into_iter()
        .enumerate()
        .map(|(i, d)| (format!("{origin}#{}", i + 1), d));
    // A file has no Secrets to read: a `secretRef` in it is left to the
    // daemon's own credentials, so gitops-reverser's files read unchanged.
    let (config, problems) = assemble(documents, limits, None);
    let errors: Vec<String> = problems
        .into_iter()
        .filter(|p| p.said)
        .map(|p| p.message)
        .collect();
    if errors.is_empty() {
        Ok(config)
    } else {
        Err(errors)
    }
}

/// What is wrong with one resource (or one document).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    /// The resource's kind and `namespace/name`; none for a document that
    /// is no resource at all.
    pub resource: Option<(String, String)>,
    /// The `reason` of its `Ready` condition (`plumbline_crd::status::reason`).
    pub reason: &'static str,
    /// What is wrong, naming where.
    pub message: String,
    /// Whether a file reader says it: a resource refused because what it
    /// names was refused is not said again (the cause is), but its status
    /// says so.
    pub said: bool,
}

/// A Secret's data, by key.
pub type SecretData = BTreeMap<String, Vec<u8>>;

/// The data of the Secret `name` of `namespace`, or why it cannot be read.
pub type Secrets<'a> = dyn Fn(Option<&str>, &str) -> Result<SecretData, String> + 'a;

/// The key of a Secret `commit.signingKeyRef` reads when it names none.
pub const SIGNING_KEY: &str = "signing-key";

/// Reads resources, each `(where, document)`, into the configuration of
/// those that are sound, and the problem of each that is not: a resource
/// refused takes out what names it (a repository its destinations, a
/// destination its rules), and nothing else. A `where` left empty names
/// the resource by its kind and name alone.
pub fn assemble(
    documents: impl IntoIterator<Item = (String, Value)>,
    limits: CelLimits,
    secrets: Option<&Secrets<'_>>,
) -> (MirrorConfig, Vec<Problem>) {
    let mut problems = Problems::default();
    let mut defined: BTreeMap<(String, String), String> = BTreeMap::new();
    let mut repos = BTreeMap::new();
    let mut destinations: Vec<(String, DestinationSpec)> = Vec::new();
    let mut rules: Vec<(String, Option<String>, bool, RuleSpec)> = Vec::new();
    for (at, document) in documents {
        let resource: Resource = match serde_json::from_value(document) {
            Ok(r) => r,
            Err(e) => {
                problems.document(format!("{at}: {e}"));
                continue;
            }
        };
        let id = qualified(&resource.metadata.namespace, &resource.metadata.name);
        let who = (resource.kind.clone(), id.clone());
        let at = if at.is_empty() {
            format!("{} {id}", resource.kind)
        } else {
            format!("{at} ({} {id})", resource.kind)
        };
        if let Some(first) = defined.insert(who.clone(), at.clone()) {
            problems.push(
                &who,
                INVALID_SPEC,
                format!("{at}: defined again (first as {first}); a name is one resource"),
            );
            continue;
        }
        if let Some(version) = resource.api_version.as_deref()
            && !API_VERSIONS.contains(&version)
        {
            problems.push(
                &who,
                INVALID_SPEC,
                format!(
                    "{at}: apiVersion `{version}` is not one this file reads ({})",
                    API_VERSIONS.join(", ")
                ),
            );
            continue;
        }
        let spec = resource.spec;
        match resource.kind.as_str() {
            "GitRepoConfig" => match serde_json::from_value::<RepoSpec>(spec) {
                Ok(repo) => match repo.commit.as_ref().map(check_commit).transpose() {
                    Ok(_) => match access(&repo, resource.metadata.namespace.as_deref(), secrets) {
                        Ok(access) => {
                            repos.insert(id, Some((repo, access)));
                        }
                        Err((reason, e)) => {
                            problems.push(&who, reason, format!("{at}: {e}"));
                            repos.insert(id, None);
                        }
                    },
                    Err(e) => {
                        problems.push(&who, INVALID_SPEC, format!("{at}: spec.commit: {e}"));
                        repos.insert(id, None);
                    }
                },
                Err(e) => {
                    problems.push(&who, INVALID_SPEC, format!("{at}: spec: {e}"));
                    // Known, but refused: what names it is not an error too.
                    repos.insert(id, None);
                }
            },
            "GitDestination" => match serde_json::from_value::<DestinationSpec>(spec) {
                Ok(d) => destinations.push((id, d)),
                Err(e) => problems.push(&who, INVALID_SPEC, format!("{at}: spec: {e}")),
            },
            kind @ ("WatchRule" | "ClusterWatchRule") => {
                let cluster = kind == "ClusterWatchRule";
                if !cluster && resource.metadata.namespace.is_none() {
                    problems.push(&who, INVALID_SPEC, format!(
                        "{at}: a WatchRule is namespaced; give metadata.namespace"
                    ));
                    continue;
                }
                match RuleSpec::read(spec, cluster) {
                    Ok(r) => rules.push((id, resource.metadata.namespace.clone(), cluster, r)),
                    Err(e) => problems.push(&who, INVALID_SPEC, format!("{at}: spec: {e}")),
                }
            }
            other => problems.push(&who, INVALID_SPEC, format!(
                "{at}: unknown kind `{other}` (known: GitRepoConfig, GitDestination, WatchRule, ClusterWatchRule)"
            )),
        }
    }
    let mut config = MirrorConfig {
        destinations: Vec::new(),
        rules: Vec::new(),
    };
    let mut destination_index = BTreeMap::new();
    let mut refused = std::collections::BTreeSet::new();
    for (id, spec) in destinations {
        let who = ("GitDestination".to_owned(), id.clone());
        match destination(&id, spec, &repos) {
            Ok(d) => {
                destination_index.insert(id, config.destinations.len());
                config.destinations.push(d);
            }
            Err((reason, message)) => {
                let message = format!("GitDestination {id}: {message}");
                if reason == REFERENCE_NOT_READY {
                    problems.unsaid(&who, reason, message);
                } else {
                    problems.push(&who, reason, message);
                }
                refused.insert(id);
            }
        }
    }
    // Destinations that would prune each other's files: both refused.
    let overlapping = config.overlapping();
    for (i, j, message) in &overlapping {
        let who = |k: usize| {
            (
                "GitDestination".to_owned(),
                config.destinations[k].name.clone(),
            )
        };
        // Said once, of the pair; each one's status says it.
        problems.push(&who(*i), OVERLAPPING_DESTINATION, message.clone());
        problems.unsaid(&who(*j), OVERLAPPING_DESTINATION, message.clone());
    }
    let dropped: std::collections::BTreeSet<usize> =
        overlapping.iter().flat_map(|(i, j, _)| [*i, *j]).collect();
    if !dropped.is_empty() {
        let (gone, kept): (Vec<_>, Vec<_>) = std::mem::take(&mut config.destinations)
            .into_iter()
            .enumerate()
            .partition(|(i, _)| dropped.contains(i));
        refused.extend(gone.into_iter().map(|(_, d)| d.name));
        config.destinations = kept.into_iter().map(|(_, d)| d).collect();
        destination_index = config
            .destinations
            .iter()
            .enumerate()
            .map(|(i, d)| (d.name.clone(), i))
            .collect();
    }
    for (id, namespace, cluster, spec) in rules {
        let kind = if cluster {
            "ClusterWatchRule"
        } else {
            "WatchRule"
        };
        let target = qualified(
            &spec.destination_ref.namespace.clone().or(namespace.clone()),
            &spec.destination_ref.name,
        );
        let who = (kind.to_owned(), id.clone());
        let Some(&index) = destination_index.get(&target) else {
            // A destination refused above is said once, there.
            if refused.contains(&target) {
                problems.unsaid(
                    &who,
                    REFERENCE_NOT_READY,
                    format!("{kind} {id}: GitDestination {target} is not ready"),
                );
            } else {
                problems.push(
                    &who,
                    UNKNOWN_REFERENCE,
                    format!("{kind} {id}: destinationRef `{target}` names no GitDestination"),
                );
            }
            continue;
        };
        // A rule is taken whole or not at all: half its rules would
        // mirror less than it says, and prune the rest.
        let mut taken = Vec::new();
        let mut broken = false;
        for (i, raw) in spec.rules.into_iter().enumerate() {
            match watch_rule(&id, i, raw, namespace.as_deref(), cluster, index, limits) {
                Ok(rule) => taken.push(rule),
                Err(e) => {
                    broken = true;
                    problems.push(
                        &who,
                        INVALID_CONDITION,
                        format!("{kind} {id}: rules[{i}]: {e}"),
                    );
                }
            }
        }
        if !broken {
            config.rules.extend(taken);
        }
    }
    (config, problems.0)
}

/// The problems found so far.
#[derive(Default)]
struct Problems(Vec<Problem>);

impl Problems {
    /// A problem of the resource `who`.
    fn push(&mut self, who: &(String, String), reason: &'static str, message: String) {
        self.0.push(Problem {
            resource: Some(who.clone()),
            reason,
            message,
            said: true,
        });
    }

    /// A resource refused because what it names was: its status says
    /// so; a file's errors name only the cause.
    fn unsaid(&mut self, who: &(String, String), reason: &'static str, message: String) {
        self.0.push(Problem {
            resource: Some(who.clone()),
            reason,
            message,
            said: false,
        });
    }

    /// A document that is no resource.
    fn document(&mut self, message: String) {
        self.0.push(Problem {
            resource: None,
            reason: INVALID_SPEC,
            message,
            said: true,
        });
    }
}

fn qualified(namespace: &Option<String>, name: &str) -> String {
    match namespace {
        Some(ns) => format!("{ns}/{name}"),
        None => name.to_owned(),
    }
}

/// The destination `id`, or why not (the reason of its `Ready`
/// condition, and the message).
/// What a repository is written with, from the Secrets it names.
#[derive(Default)]
struct Access {
    credentials: Option<Arc<GitAuth>>,
    signing: Option<Arc<Signer>>,
}

/// The credentials and signing key `repo` names, read by `secrets`; or
/// the reason and message of why not.
fn access(
    repo: &RepoSpec,
    namespace: Option<&str>,
    secrets: Option<&Secrets<'_>>,
) -> Result<Access, (&'static str, String)> {
    let credentials =
        credentials(repo, namespace, secrets).map_err(|e| (CREDENTIALS_MISSING, e))?;
    let signing = signing(repo, namespace, secrets).map_err(|e| (SIGNING_KEY_UNUSABLE, e))?;
    Ok(Access {
        credentials,
        signing,
    })
}

/// The credentials `repo`'s `secretRef` names, read by `secrets`; none
/// without either.
fn credentials(
    repo: &RepoSpec,
    namespace: Option<&str>,
    secrets: Option<&Secrets<'_>>,
) -> Result<Option<Arc<GitAuth>>, String> {
    let (Some(secret), Some(secrets)) = (&repo.secret_ref, secrets) else {
        return Ok(None);
    };
    secrets(namespace, &secret.name)
        .and_then(|data| GitAuth::from_secret(&data))
        .map(|auth| Some(Arc::new(auth)))
        .map_err(|e| format!("spec.secretRef: Secret `{}`: {e}", secret.name))
}

/// The key `repo`'s `commit.signingKeyRef` names, read by `secrets`. Named
/// where no Secret can be read (a file of resources), it is refused: the
/// commits would go unsigned.
pub fn signing(
    repo: &RepoSpec,
    namespace: Option<&str>,
    secrets: Option<&Secrets<'_>>,
) -> Result<Option<Arc<Signer>>, String> {
    let Some(named) = repo
        .commit
        .as_ref()
        .and_then(|c| c.signing_key_ref.as_ref())
    else {
        return Ok(None);
    };
    let key = named.key.as_deref().unwrap_or(SIGNING_KEY);
    let at = format!("spec.commit.signingKeyRef: Secret `{}`", named.name);
    let Some(secrets) = secrets else {
        return Err(format!(
            "{at}: Secrets are read from a cluster only; outside one, sign with --signing-key"
        ));
    };
    let data = secrets(namespace, &named.name).map_err(|e| format!("{at}: {e}"))?;
    let text = data
        .get(key)
        .ok_or_else(|| format!("{at} has no key `{key}`"))?;
    let from = format!("in Secret `{}` key `{key}`", named.name);
    Signer::from_openssh(text, &from)
        .map(|signer| Some(Arc::new(signer)))
        .map_err(|e| format!("{at}: {}", crate::telemetry::chain(&e)))
}

/// A repository read, with what it is written with; none if it was refused.
type Repos = BTreeMap<String, Option<(RepoSpec, Access)>>;

fn destination(
    id: &str,
    spec: DestinationSpec,
    repos: &Repos,
) -> Result<Destination, (&'static str, String)> {
    let namespace = id.split_once('/').map(|(ns, _)| ns.to_owned());
    let repo_id = qualified(
        &spec.repo_ref.namespace.clone().or(namespace),
        &spec.repo_ref.name,
    );
    let (repo, access) = repos
        .get(&repo_id)
        .ok_or_else(|| {
            let message = format!("repoRef `{repo_id}` names no GitRepoConfig");
            (UNKNOWN_REFERENCE, message)
        })?
        .as_ref()
        .ok_or_else(|| {
            let message = format!("GitRepoConfig {repo_id} is not ready");
            (REFERENCE_NOT_READY, message)
        })?;
    if !repo.allowed_branches.is_empty()
        && !repo.allowed_branches.iter().any(|b| glob(b, &spec.branch))
    {
        return Err((
            BRANCH_NOT_ALLOWED,
            format!(
                "branch `{}` is not among GitRepoConfig {repo_id}'s allowedBranches ({})",
                spec.branch,
                repo.allowed_branches.join(", ")
            ),
        ));
    }
    Ok(Destination {
        name: id.to_owned(),
        repo_url: repo.repo_url.as_str().into(),
        branch: spec.branch,
        base_folder: BaseFolder::new(&spec.base_folder)
            .map_err(|e| (BASE_FOLDER_ESCAPES, e.to_string()))?,
        prune: spec.prune,
        commit: repo.commit.clone().unwrap_or_default(),
        credentials: access.credentials.clone(),
        signing: access.signing.clone(),
    })
}

/// Whether Git can record the commit settings: names and emails without
/// the characters that delimit them, a message subject of one line.
fn check_commit(commit: &CommitSpec) -> Result<(), String> {
    let people = [
        ("committer", &commit.committer),
        ("unknownAuthor", &commit.unknown_author),
    ];
    for (field, identity) in people {
        let Some(identity) = identity else { continue };
        for (part, text) in [("name", &identity.name), ("email", &identity.email)] {
            if text.trim().is_empty() || text.contains(['<', '>', '\n', '\0']) {
                return Err(format!(
                    "{field}.{part} `{}` must be one line, not empty, without `<` or `>`",
                    text.escape_debug()
                ));
            }
        }
    }
    if let Some(message) = &commit.message
        && (message.trim().is_empty() || message.contains('\n'))
    {
        return Err("message must be one line that is not empty".into());
    }
    Ok(())
}

/// `*` matches any run of characters; nothing else is special.
fn glob(pattern: &str, value: &str) -> bool {
    match pattern.split_once('*') {
        None => pattern == value,
        Some((head, rest)) => {
            let Some(value) = value.strip_prefix(head) else {
                return false;
            };
            (0..=value.len())
                .filter(|&i| value.is_char_boundary(i))
                .any(|i| glob(rest, &value[i..]))
        }
    }
}

fn watch_rule(
    id: &str,
    index: usize,
    raw: RawRule,
    namespace: Option<&str>,
    cluster: bool,
    destination: usize,
    limits: CelLimits,
) -> Result<WatchRule, String> {
    let condition = match raw.condition {
        None => None,
        Some(expression) => {
            let source = CelSource {
                name: format!("{id} rules[{index}]"),
                expression,
                message: None,
                path: None,
                file: None,
            };
            Some(CelPolicy::compile(source, Decision::Match, limits).map_err(|e| e.to_string())?)
        }
    };
    let mut rule = raw.rule;
    if !cluster && let Some(map) = rule.as_object_mut() {
        // A WatchRule watches its own namespace, which its type (without
        // `scope`) already says; the plugin is told so.
        map.insert("scope".into(), json!("Namespaced"));
        map.insert("namespaces".into(), json!([namespace]));
    }
    Ok(WatchRule {
        name: format!("{id} rules[{index}]"),
        rule,
        destination,
        condition,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const CONFIG: &str = "\
apiVersion: configbutler.ai/v1alpha1
kind: GitRepoConfig
metadata: {name: gitops, namespace: plumbline}
spec: {repoUrl: 'git://127.0.0.1/repo.git', allowedBranches: [main, 'release-*']}
---
apiVersion: configbutler.ai/v1alpha1
kind: GitDestination
metadata: {name: prod, namespace: plumbline}
spec: {repoRef: {name: gitops}, branch: main, baseFolder: clusters/prod}
---
apiVersion: configbutler.ai/v1alpha1
kind: WatchRule
metadata: {name: shop, namespace: shop}
spec:
  destinationRef: {name: prod, namespace: plumbline}
  rules:
  - {resources: [configmaps], condition: \"object.metadata.name != 'skip'\"}
";

    #[test]
    fn reads_the_custom_resources() {
        let config = read(CONFIG, "c.yaml", CelLimits::default()).unwrap();
        assert_eq!(config.destinations[0].base_folder.as_str(), "clusters/prod");
        assert_eq!(
            config.rules[0].rule,
            json!({"resources": ["configmaps"], "scope": "Namespaced", "namespaces": ["shop"]})
        );
        assert!(config.rules[0].condition.is_some());
    }

    #[test]
    fn a_condition_runs_under_the_operators_cel_limits() {
        let limits = CelLimits {
            max_input: 64,
            ..CelLimits::default()
        };
        let config = read(CONFIG, "c.yaml", limits).unwrap();
        let condition = config.rules[0].condition.as_ref().unwrap();
        let object = json!({"metadata": {"name": "x".repeat(100)}}).to_string();
        let error = condition
            .test(&[("event", "{}"), ("object", &object)])
            .unwrap_err();
        assert!(error.to_string().contains("64"), "{error}");
        let default = read(CONFIG, "c.yaml", CelLimits::default()).unwrap();
        let condition = default.rules[0].condition.as_ref().unwrap();
        assert!(
            condition
                .test(&[("event", "{}"), ("object", &object)])
                .unwrap()
        );
    }

    /// A file of resources has no Secrets to read: a repository that
    /// asks for a signing key from one is refused, not left unsigned.
    #[test]
    fn a_signing_key_from_a_secret_outside_a_cluster_is_refused() {
        let signed = CONFIG.replace(
            "allowedBranches: [main, 'release-*']",
            "allowedBranches: [main], commit: {signingKeyRef: {name: signing}}",
        );
        let errors = read(&signed, "c.yaml", CelLimits::default()).unwrap_err();
        let said = errors.join("\n");
        assert!(
            said.contains("signingKeyRef") && said.contains("--signing-key"),
            "{said}"
        );
    }

    #[test]
    fn lists_every_error() {
        let broken = CONFIG
            .replace("branch: main", "branch: dev")
            .replace("!= 'skip'", "!=")
            + "---\nkind: Widget\nmetadata: {name: w}\nspec: {}\n";
        let errors = read(&broken, "c.yaml", CelLimits::default()).unwrap_err();
        // The rule naming the refused destination is not an error of its own.
        assert_eq!(errors.len(), 2, "{errors:#?}");
        assert!(errors[0].contains("unknown kind `Widget`"));
        assert!(errors[1].contains("branch `dev` is not among"));
        // A repository refused: neither its destination nor their rules add errors.
        let bad_repository = CONFIG.replace("allowedBranches:", "allowedBranchez:");
        let errors = read(&bad_repository, "c.yaml", CelLimits::default()).unwrap_err();
        assert_eq!(errors.len(), 1, "{errors:#?}");
        assert!(
            errors[0].contains("unknown field `allowedBranchez`"),
            "{errors:#?}"
        );
        let dangling = CONFIG.replace("destinationRef: {name: prod", "destinationRef: {name: nope");
        let errors = read(&dangling, "c.yaml", CelLimits::default()).unwrap_err();
        assert!(
            errors[0].contains("destinationRef `plumbline/nope` names no GitDestination"),
            "{errors:#?}"
        );
    }

    /// A second destination of `CONFIG`'s repository and branch.
    fn another(name: &str, base: &str) -> String {
        format!(
            "---\nkind: GitDestination\nmetadata: {{name: {name}, namespace: plumbline}}\n\
             spec: {{repoRef: {{name: gitops}}, branch: main, baseFolder: '{base}'}}\n"
        )
    }

    #[test]
    fn a_name_defined_twice_is_refused_not_taken_for_the_last_one() {
        let twice = format!("{CONFIG}{}", another("prod", "other"));
        let errors = read(&twice, "c.yaml", CelLimits::default()).unwrap_err();
        assert_eq!(errors.len(), 1, "{errors:#?}");
        assert!(
            errors[0].contains(
                "c.yaml#4 (GitDestination plumbline/prod): defined again (first as c.yaml#2"
            ),
            "{errors:#?}"
        );
        // The same name in another namespace, or of another kind, is another resource.
        let elsewhere = twice.replace(
            "{name: prod, namespace: plumbline}\nspec: {repoRef: {name: gitops}, branch: main, baseFolder: 'other'}",
            "{name: prod, namespace: staging}\nspec: {repoRef: {name: gitops, namespace: plumbline}, branch: main, baseFolder: 'other'}",
        );
        assert!(read(&elsewhere, "c.yaml", CelLimits::default()).is_ok());
    }

    #[test]
    fn destinations_in_one_folder_of_one_branch_are_refused() {
        for (base, overlaps) in [
            ("clusters/prod", true),
            ("clusters/prod/eu", true),
            ("clusters", true),
            ("", true),
            ("clusters/prodx", false),
            ("clusters/staging", false),
        ] {
            let config = format!("{CONFIG}{}", another("second", base));
            let result = read(&config, "c.yaml", CelLimits::default());
            match result {
                Err(errors) if overlaps => {
                    assert_eq!(errors.len(), 1, "{errors:#?}");
                    assert!(
                        errors[0].contains("GitDestination plumbline/prod (base folder `clusters/prod`) and plumbline/second")
                            && errors[0].contains("each would prune the other's files"),
                        "{errors:#?}"
                    );
                }
                Ok(_) if !overlaps => {}
                other => panic!("base folder `{base}`: {other:?}"),
            }
        }
        // The same repository spelled another way is the same place.
        let respelled = format!(
            "{CONFIG}---\nkind: GitRepoConfig\nmetadata: {{name: again, namespace: plumbline}}\n\
             spec: {{repoUrl: 'git://127.0.0.1/repo/'}}\n{}",
            another("second", "clusters/prod").replace("{name: gitops}", "{name: again}")
        );
        let errors = read(&respelled, "c.yaml", CelLimits::default()).unwrap_err();
        assert!(
            errors[0].contains("each would prune the other's files"),
            "{errors:#?}"
        );
        // Another branch of the same repository is another place.
        let config = format!("{CONFIG}{}", another("second", "clusters/prod")).replace(
            "branch: main, baseFolder: 'clusters/prod'",
            "branch: release-1, baseFolder: 'clusters/prod'",
        );
        assert!(read(&config, "c.yaml", CelLimits::default()).is_ok());
    }

    #[test]
    fn a_file_without_resources_is_refused() {
        for empty in ["", "# only a comment\n", "---\n", "null\n", "---\n---\n"] {
            let errors = read(empty, "c.yaml", CelLimits::default()).unwrap_err();
            assert!(
                errors[0].contains("c.yaml: holds no resources"),
                "{empty:?}: {errors:?}"
            );
        }
        let repository_only = CONFIG.split("---").next().unwrap();
        let config = read(repository_only, "c.yaml", CelLimits::default()).unwrap();
        assert!(config.destinations.is_empty());
    }

    #[test]
    fn a_configuration_of_thousands_of_resources_reads() {
        let repository = CONFIG.split("---").next().unwrap();
        let mut text = repository.to_owned();
        for i in 0..1500 {
            text.push_str(&another(&format!("d{i}"), &format!("clusters/d{i}")));
        }
        let config = read(&text, "c.yaml", CelLimits::default()).unwrap();
        assert_eq!(config.destinations.len(), 1500);
    }

    #[test]
    fn a_resource_of_another_api_is_refused() {
        let other = CONFIG.replacen("configbutler.ai/v1alpha1", "evil.example/v1", 1);
        let errors = read(&other, "c.yaml", CelLimits::default()).unwrap_err();
        assert!(
            errors[0].contains("c.yaml#1 (GitRepoConfig plumbline/gitops): apiVersion `evil.example/v1` is not one this file reads"),
            "{errors:#?}"
        );
        let ours = CONFIG.replace("configbutler.ai/v1alpha1", "mirror.plumbline.dev/v1alpha1");
        assert!(read(&ours, "c.yaml", CelLimits::default()).is_ok());
    }

    #[test]
    fn branch_globs() {
        assert!(glob("release-*", "release-1.2"));
        assert!(glob("*", "anything"));
        assert!(!glob("release-*", "main"));
        assert!(glob("main", "main"));
    }
}
