//! The mirror's configuration from the cluster's own custom resources:
//! `GitRepoConfig`, `GitDestination`, `WatchRule` and `ClusterWatchRule` in
//! `mirror.plumbline.dev/v1alpha1` (only Plumbline's group: gitops-reverser
//! may run beside it with its own).
//!
//! Each resource is judged on its own: one that is not sound (a branch
//! its repository does not allow, a base folder that escapes, CEL that
//! does not compile, a reference to nothing) is left out with what names
//! it, and the others take effect. Every resource's `status` says which,
//! with a `Ready` condition whose reason a program can read and whose
//! message a person can act on, and a change of it is an Event on the
//! resource (what `kubectl describe` shows).

use super::Selector;
use super::reports::{Unread, Unreadable};
use crate::mirror::MirrorConfig;
use crate::mirror::resources::{Problem, SecretData, Secrets, assemble};
use crate::model::GroupResource;
use crate::policy::cel::CelLimits;
use k8s_openapi::api::core::v1::Secret;
use kube::api::{Api, ApiResource, DynamicObject, Patch, PatchParams, PostParams};
use plumbline_crd::status::{READABLE, READY, reason};
use plumbline_kinds::scope::Skip;
use serde_json::{Value, json};
use std::collections::BTreeMap;

/// The group and version read.
pub const API_VERSION: &str = "mirror.plumbline.dev/v1alpha1";

/// The kinds read: (kind, plural, namespaced).
const KINDS: [(&str, &str, bool); 4] = [
    ("GitRepoConfig", "gitrepoconfigs", true),
    ("GitDestination", "gitdestinations", true),
    ("WatchRule", "watchrules", true),
    ("ClusterWatchRule", "clusterwatchrules", false),
];

/// What the name Events are reported under.
const COMPONENT: &str = "plumbline";

/// Why the resources could not be read.
#[derive(Debug, thiserror::Error)]
pub enum RulesError {
    /// The CRDs are not installed.
    #[error(
        "the cluster serves no {API_VERSION} {plural}: install Plumbline's CRDs \
         (`plumbline crds | kubectl apply -f -`), or give the rules in a file (--config)"
    )]
    NotInstalled {
        /// The resource not served.
        plural: &'static str,
    },
    /// The API server refused or failed.
    #[error("listing {API_VERSION} {plural}: {source}")]
    Api {
        /// The resource listed.
        plural: &'static str,
        /// What the client said.
        #[source]
        source: kube::Error,
    },
}

/// The resources as read, and what they configure.
pub struct Rules {
    /// The configuration of the sound resources.
    pub config: MirrorConfig,
    /// Every resource read.
    objects: Vec<(&'static str, DynamicObject)>,
    /// The problem of each resource that is not sound, by (kind, id).
    problems: BTreeMap<(String, String), Problem>,
    /// The public key each `GitRepoConfig` signs with, by id.
    signing_keys: BTreeMap<String, String>,
}

fn resource(kind: &'static str, plural: &'static str) -> ApiResource {
    ApiResource {
        group: "mirror.plumbline.dev".into(),
        version: "v1alpha1".into(),
        api_version: API_VERSION.into(),
        kind: kind.into(),
        plural: plural.into(),
    }
}

/// Lists the resources of every kind and judges them, under `limits` for
/// the rules' CEL.
pub async fn read(client: &kube::Client, limits: CelLimits) -> Result<Rules, RulesError> {
    let mut objects = Vec::new();
    for (kind, plural, _) in KINDS {
        let api: Api<DynamicObject> = Api::all_with(client.clone(), &resource(kind, plural));
        let list = api
            .list(&Default::default())
            .await
            .map_err(|source| match &source {
                kube::Error::Api(status) if status.code == 404 => {
                    RulesError::NotInstalled { plural }
                }
                _ => RulesError::Api { plural, source },
            })?;
        objects.extend(list.items.into_iter().map(|o| (kind, o)));
    }
    let documents = objects.iter().map(|(kind, object)| {
        let mut value = serde_json::to_value(object).unwrap_or(Value::Null);
        // A listed item may come without them.
        value["apiVersion"] = json!(API_VERSION);
        value["kind"] = json!(kind);
        (String::new(), value)
    });
    let secrets = secrets(client, &objects).await;
    let resolve = |namespace: Option<&str>, name: &str| {
        secrets
            .get(&(namespace.unwrap_or_default().to_owned(), name.to_owned()))
            .cloned()
            .unwrap_or_else(|| Err("not read".into()))
    };
    let signing_keys = signing_keys(&objects, &resolve);
    let (config, found) = assemble(documents, limits, Some(&resolve));
    let problems = found
        .into_iter()
        .filter_map(|p| Some((p.resource.clone()?, p)))
        .rev() // the first problem of a resource is its status's
        .collect();
    Ok(Rules {
        config,
        objects,
        problems,
        signing_keys,
    })
}

/// The public key of each `GitRepoConfig` whose signing key can be used,
/// by id: its status shows it, for the forge.
fn signing_keys(
    objects: &[(&'static str, DynamicObject)],
    secrets: &Secrets<'_>,
) -> BTreeMap<String, String> {
    let repos = objects.iter().filter(|(kind, _)| *kind == "GitRepoConfig");
    repos
        .filter_map(|(_, object)| {
            let spec = serde_json::from_value(object.data.get("spec")?.clone()).ok()?;
            let namespace = object.metadata.namespace.as_deref();
            let signer = crate::mirror::resources::signing(&spec, namespace, Some(secrets))
                .ok()
                .flatten()?;
            Some((id_of(object), signer.public_key()))
        })
        .collect()
}

/// A resource's id in messages and maps: `namespace/name`, or its name.
fn id_of(object: &DynamicObject) -> String {
    let name = object.metadata.name.as_deref().unwrap_or("");
    match &object.metadata.namespace {
        Some(ns) => format!("{ns}/{name}"),
        None => name.to_owned(),
    }
}

/// The data of each Secret a `GitRepoConfig` names (its credentials, its
/// signing key), by (namespace, name), or why it cannot be read.
async fn secrets(
    client: &kube::Client,
    objects: &[(&'static str, DynamicObject)],
) -> BTreeMap<(String, String), Result<SecretData, String>> {
    let mut found = BTreeMap::new();
    let named = objects
        .iter()
        .filter(|(kind, _)| *kind == "GitRepoConfig")
        .flat_map(|(_, object)| {
            ["/spec/secretRef/name", "/spec/commit/signingKeyRef/name"]
                .into_iter()
                .filter_map(|at| object.data.pointer(at).and_then(Value::as_str))
                .map(move |name| (object, name))
        });
    for (object, name) in named {
        let namespace = object.metadata.namespace.clone().unwrap_or_default();
        let key = (namespace.clone(), name.to_owned());
        if found.contains_key(&key) {
            continue;
        }
        let api: Api<Secret> = Api::namespaced(client.clone(), &namespace);
        let read = match api.get_opt(name).await {
            Ok(Some(secret)) => Ok(secret
                .data
                .unwrap_or_default()
                .into_iter()
                .map(|(k, v)| (k, v.0))
                .collect()),
            Ok(None) => Err("there is no such Secret in this namespace".into()),
            // The message names the Secret, never its content.
            Err(error) => Err(format!("cannot be read: {error}")),
        };
        found.insert(key, read);
    }
    found
}

impl Rules {
    /// How many resources were read, and how many are not ready.
    pub fn counts(&self) -> (usize, usize) {
        (self.objects.len(), self.problems.len())
    }

    /// Writes each resource's conditions where they changed, with an
    /// Event for each change; what cannot be written is said and tried
    /// again next time. A watch rule that takes effect also says whether
    /// the resources it selects (what `*` leaves out under `skip`) can be
    /// read, as `unreadable` lists those that cannot.
    pub async fn report(
        &self,
        client: &kube::Client,
        unreadable: &BTreeMap<GroupResource, Unread>,
        skip: &Skip,
    ) {
        for (kind, object) in &self.objects {
            let id = id_of(object);
            let problem = self.problems.get(&(kind.to_string(), id.clone()));
            let mut said = vec![match problem {
                Some(p) => Said::not(READY, p.reason, p.message.clone()),
                None => Said::yes(READY, reason::ACCEPTED, format!("{kind} {id} takes effect")),
            }];
            if problem.is_none() && kind.ends_with("WatchRule") {
                said.push(readable(object, unreadable, skip));
            }
            let key = self.signing_keys.get(&id).filter(|_| problem.is_none());
            let report = Report {
                said: &said,
                signing_key: key.map(String::as_str),
            };
            if let Err(error) = report_one(client, kind, object, &report).await {
                tracing::warn!(%error, "cannot write the status of {kind} {id}; trying again later");
            }
        }
    }
}

/// One condition as Plumbline says it.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Said {
    /// Its type.
    kind: &'static str,
    /// `True` or `False`.
    status: &'static str,
    reason: &'static str,
    message: String,
}

impl Said {
    fn yes(kind: &'static str, reason: &'static str, message: String) -> Said {
        Said {
            kind,
            status: "True",
            reason,
            message,
        }
    }

    fn not(kind: &'static str, reason: &'static str, message: String) -> Said {
        Said {
            status: "False",
            ..Said::yes(kind, reason, message)
        }
    }

    /// Whether `condition` says the same.
    fn is_in(&self, condition: &Value) -> bool {
        condition["type"] == self.kind
            && condition["status"] == self.status
            && condition["reason"] == self.reason
            && condition["message"] == self.message.as_str()
    }
}

/// The `Readable` condition of a watch rule: whether any resource its
/// rules select is among those that cannot be read.
fn readable(
    object: &DynamicObject,
    unreadable: &BTreeMap<GroupResource, Unread>,
    skip: &Skip,
) -> Said {
    let rules = object
        .data
        .pointer("/spec/rules")
        .and_then(Value::as_array)
        .map(Vec::as_slice)
        .unwrap_or_default();
    let selector = Selector::of(rules, skip.clone());
    let unread: Vec<&Unread> = unreadable
        .iter()
        .filter(|(id, _)| selector.selects(&id.group, &id.resource))
        .map(|(_, unread)| unread)
        .collect();
    if unread.is_empty() {
        let message = "no resource it selects fails to be listed or watched".to_owned();
        return Said::yes(READABLE, reason::LISTED, message);
    }
    let why = if unread.iter().any(|u| u.forbidden) {
        reason::FORBIDDEN
    } else {
        reason::UNREADABLE
    };
    let messages: Vec<&str> = unread.iter().map(|u| u.message.as_str()).collect();
    Said::not(READABLE, why, messages.join(" | "))
}

/// The conditions an object carries now.
fn conditions(object: &DynamicObject) -> &[Value] {
    object
        .data
        .pointer("/status/conditions")
        .and_then(Value::as_array)
        .map_or(&[], Vec::as_slice)
}

/// Writes `said` as the object's conditions, unless it says that already
/// of the generation it has; an Event for each condition that changed.
/// What a resource's status says.
struct Report<'a> {
    said: &'a [Said],
    /// A `GitRepoConfig`'s public signing key; none removes it.
    signing_key: Option<&'a str>,
}

async fn report_one(
    client: &kube::Client,
    kind: &'static str,
    object: &DynamicObject,
    report: &Report<'_>,
) -> Result<(), kube::Error> {
    let said = report.said;
    let generation = object.metadata.generation;
    let observed = object
        .data
        .pointer("/status/observedGeneration")
        .and_then(Value::as_i64);
    let before = conditions(object);
    let changed: Vec<&Said> = said
        .iter()
        .filter(|s| !before.iter().any(|c| s.is_in(c)))
        .collect();
    let key_before = object
        .data
        .pointer("/status/signingKey")
        .and_then(Value::as_str);
    if changed.is_empty()
        && before.len() == said.len()
        && observed == generation
        && key_before == report.signing_key
    {
        return Ok(());
    }
    let stamp = crate::telemetry::timestamp();
    let written: Vec<Value> = said
        .iter()
        .map(|s| condition(s, before, generation, &stamp))
        .collect();
    // A merge patch: null removes a key no longer in use.
    let status = json!({"status": {
        "conditions": written,
        "observedGeneration": generation,
        "signingKey": report.signing_key,
    }});
    let plural = KINDS
        .iter()
        .find(|(k, ..)| *k == kind)
        .expect("a kind read")
        .1;
    let api: Api<DynamicObject> = match &object.metadata.namespace {
        Some(ns) => Api::namespaced_with(client.clone(), ns, &resource(kind, plural)),
        None => Api::all_with(client.clone(), &resource(kind, plural)),
    };
    let name = object.metadata.name.clone().unwrap_or_default();
    api.patch_status(&name, &PatchParams::default(), &Patch::Merge(&status))
        .await?;
    for said in changed {
        event(client, kind, object, said, &stamp).await?;
    }
    Ok(())
}

/// The condition `said` writes: its transition time moves only when its
/// status does.
fn condition(said: &Said, before: &[Value], generation: Option<i64>, stamp: &str) -> Value {
    let transition = before
        .iter()
        .find(|c| c["type"] == said.kind && c["status"] == said.status)
        .and_then(|c| c["lastTransitionTime"].as_str())
        .unwrap_or(stamp);
    let mut condition = json!({
        "type": said.kind, "status": said.status, "reason": said.reason,
        "message": said.message, "lastTransitionTime": transition,
    });
    if let Some(generation) = generation {
        condition["observedGeneration"] = json!(generation);
    }
    condition
}

/// Records the change `said` as an Event on the resource.
async fn event(
    client: &kube::Client,
    kind: &str,
    object: &DynamicObject,
    said: &Said,
    stamp: &str,
) -> Result<(), kube::Error> {
    // A cluster-scoped resource's Events live in `default`, as kubectl
    // looks for them.
    let namespace = object
        .metadata
        .namespace
        .clone()
        .unwrap_or_else(|| "default".into());
    let name = object.metadata.name.clone().unwrap_or_default();
    let event = json!({
        "apiVersion": "v1", "kind": "Event",
        "metadata": {"generateName": format!("{name}."), "namespace": namespace},
        "involvedObject": {
            "apiVersion": API_VERSION, "kind": kind, "name": name,
            "namespace": object.metadata.namespace, "uid": object.metadata.uid,
        },
        "reason": said.reason, "message": said.message,
        "type": if said.status == "True" { "Normal" } else { "Warning" },
        "source": {"component": COMPONENT},
        "reportingComponent": COMPONENT,
        "firstTimestamp": stamp, "lastTimestamp": stamp, "count": 1,
    });
    let events: Api<DynamicObject> = Api::namespaced_with(
        client.clone(),
        &namespace,
        &ApiResource::erase::<k8s_openapi::api::core::v1::Event>(&()),
    );
    let event: DynamicObject = serde_json::from_value(event).expect("an Event reads");
    events.create(&PostParams::default(), &event).await?;
    Ok(())
}

/// The readiness part of the resources' reading.
const PART: &str = "rules";

/// How the resources are followed while the daemon runs.
pub struct Following {
    /// The cluster.
    pub client: kube::Client,
    /// The runtime the client runs on.
    pub runtime: tokio::runtime::Handle,
    /// Limits of the rules' CEL.
    pub limits: CelLimits,
    /// How often the resources are read again.
    pub interval: std::time::Duration,
    /// The fingerprint of the configuration applied now.
    pub applied: String,
    /// Applies a configuration that differs from the last; why not, if it
    /// cannot.
    pub apply: Box<dyn Fn(MirrorConfig) -> Result<(), String> + Send>,
    /// Where a reading that fails stands (`/readyz`).
    pub health: std::sync::Arc<crate::telemetry::health::Health>,
    /// The resources the cluster source cannot read now.
    pub unreadable: Unreadable,
    /// What `*` leaves out now (the match chain's `rule-match` settings).
    pub skip: Box<dyn Fn() -> Skip + Send>,
}

/// Reads the resources again every `interval` on its own thread, writes
/// their statuses, and hands each configuration that differs from the
/// last to `apply`; a reading that fails keeps the last configuration,
/// and says so in `/readyz` until one works.
pub fn follow(mut following: Following) -> std::io::Result<()> {
    use crate::telemetry::health::Status;
    following.health.set(PART, Status::Ready);
    std::thread::Builder::new()
        .name("rules".into())
        .spawn(move || {
            // Once at once: what the first reading refused stands in
            // `/readyz` from the start.
            loop {
                let status = following.once();
                following.health.set(PART, status);
                std::thread::sleep(following.interval);
            }
        })
        .map(drop)
}

impl Following {
    /// Reads, reports and applies once: what `/readyz` says of it.
    fn once(&mut self) -> crate::telemetry::health::Status {
        use crate::telemetry::health::Status;
        let rules = match self.runtime.block_on(read(&self.client, self.limits)) {
            Ok(rules) => rules,
            Err(error) => {
                return Status::NotReady(format!("{error}; the rules read before still route"));
            }
        };
        let (unreadable, skip) = (self.unreadable.now(), (self.skip)());
        let report = rules.report(&self.client, &unreadable, &skip);
        self.runtime.block_on(report);
        let fingerprint = rules.config.fingerprint();
        let standing = rules.standing();
        if fingerprint == self.applied {
            return standing;
        }
        let (read, refused) = rules.counts();
        if let Err(error) = (self.apply)(rules.config) {
            return Status::NotReady(error);
        }
        self.applied = fingerprint;
        eprintln!(
            "rules: the cluster's resources changed ({read} read, {refused} not ready); listing everything again"
        );
        standing
    }
}

impl Rules {
    /// What `/readyz` says of the rules: degraded while a repository waits
    /// for a signing key it can use (it writes nothing meanwhile; the
    /// others, and the webhooks, serve on).
    fn standing(&self) -> crate::telemetry::health::Status {
        use crate::telemetry::health::Status;
        let unsigned: Vec<&str> = self
            .problems
            .values()
            .filter(|p| p.reason == reason::SIGNING_KEY_UNUSABLE)
            .map(|p| p.message.as_str())
            .collect();
        if unsigned.is_empty() {
            return Status::Ready;
        }
        Status::Degraded(format!(
            "writing nothing until a signing key can be used: {}",
            unsigned.join("; ")
        ))
    }
}
