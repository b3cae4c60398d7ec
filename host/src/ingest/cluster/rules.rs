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

use crate::mirror::MirrorConfig;
use crate::mirror::resources::{Problem, assemble};
use crate::model::auth::GitAuth;
use crate::policy::cel::CelLimits;
use k8s_openapi::api::core::v1::Secret;
use kube::api::{Api, ApiResource, DynamicObject, Patch, PatchParams, PostParams};
use plumbline_crd::status::{READY, reason};
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
    })
}

/// The credentials in each Secret a `GitRepoConfig` names, by (namespace,
/// name), or why there are none.
async fn secrets(
    client: &kube::Client,
    objects: &[(&'static str, DynamicObject)],
) -> BTreeMap<(String, String), Result<GitAuth, String>> {
    let mut found = BTreeMap::new();
    for (_, object) in objects.iter().filter(|(kind, _)| *kind == "GitRepoConfig") {
        let Some(name) = object
            .data
            .pointer("/spec/secretRef/name")
            .and_then(Value::as_str)
        else {
            continue;
        };
        let namespace = object.metadata.namespace.clone().unwrap_or_default();
        let key = (namespace.clone(), name.to_owned());
        if found.contains_key(&key) {
            continue;
        }
        let api: Api<Secret> = Api::namespaced(client.clone(), &namespace);
        let read = match api.get_opt(name).await {
            Ok(Some(secret)) => {
                let data: BTreeMap<String, Vec<u8>> = secret
                    .data
                    .unwrap_or_default()
                    .into_iter()
                    .map(|(k, v)| (k, v.0))
                    .collect();
                GitAuth::from_secret(&data)
            }
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

    /// Writes each resource's `Ready` condition where it changed, with an
    /// Event; what cannot be written is said and tried again next time.
    pub async fn report(&self, client: &kube::Client) {
        for (kind, object) in &self.objects {
            let id = match &object.metadata.namespace {
                Some(ns) => format!("{ns}/{}", object.metadata.name.as_deref().unwrap_or("")),
                None => object.metadata.name.clone().unwrap_or_default(),
            };
            let problem = self.problems.get(&(kind.to_string(), id.clone()));
            let (ready, why, message) = match problem {
                Some(p) => ("False", p.reason, p.message.clone()),
                None => (
                    "True",
                    reason::ACCEPTED,
                    format!("{kind} {id} takes effect"),
                ),
            };
            if let Err(error) = report_one(client, kind, object, ready, why, &message).await {
                tracing::warn!(%error, "cannot write the status of {kind} {id}; trying again later");
            }
        }
    }
}

/// The `Ready` condition an object carries now: (status, reason, message).
fn current(object: &DynamicObject) -> Option<(String, String, String)> {
    let conditions = object.data.pointer("/status/conditions")?.as_array()?;
    let ready = conditions.iter().find(|c| c["type"] == READY)?;
    let text = |field: &str| ready[field].as_str().unwrap_or_default().to_owned();
    Some((text("status"), text("reason"), text("message")))
}

async fn report_one(
    client: &kube::Client,
    kind: &'static str,
    object: &DynamicObject,
    ready: &str,
    why: &'static str,
    message: &str,
) -> Result<(), kube::Error> {
    let generation = object.metadata.generation;
    let observed = object
        .data
        .pointer("/status/observedGeneration")
        .and_then(Value::as_i64);
    let now = (ready.to_owned(), why.to_owned(), message.to_owned());
    let before = current(object);
    if before.as_ref() == Some(&now) && observed == generation {
        return Ok(());
    }
    let plural = KINDS
        .iter()
        .find(|(k, ..)| *k == kind)
        .expect("a kind read")
        .1;
    let api: Api<DynamicObject> = match &object.metadata.namespace {
        Some(ns) => Api::namespaced_with(client.clone(), ns, &resource(kind, plural)),
        None => Api::all_with(client.clone(), &resource(kind, plural)),
    };
    let stamp = chrono_now();
    // The transition time moves only when the status does.
    let transition = match &before {
        Some((status, ..)) if status == ready => object
            .data
            .pointer("/status/conditions")
            .and_then(Value::as_array)
            .and_then(|c| c.iter().find(|c| c["type"] == READY))
            .and_then(|c| c["lastTransitionTime"].as_str())
            .map_or_else(|| stamp.clone(), str::to_owned),
        _ => stamp.clone(),
    };
    let mut condition = json!({
        "type": READY, "status": ready, "reason": why, "message": message,
        "lastTransitionTime": transition,
    });
    if let Some(generation) = generation {
        condition["observedGeneration"] = json!(generation);
    }
    let status = json!({"status": {"conditions": [condition], "observedGeneration": generation}});
    let name = object.metadata.name.clone().unwrap_or_default();
    api.patch_status(&name, &PatchParams::default(), &Patch::Merge(&status))
        .await?;
    if before.as_ref() != Some(&now) {
        event(client, kind, object, ready == "True", why, message, &stamp).await?;
    }
    Ok(())
}

/// Records the change as an Event on the resource.
async fn event(
    client: &kube::Client,
    kind: &str,
    object: &DynamicObject,
    ready: bool,
    why: &str,
    message: &str,
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
        "reason": why, "message": message,
        "type": if ready { "Normal" } else { "Warning" },
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

/// Now, as Kubernetes writes times (RFC 3339, seconds, UTC).
fn chrono_now() -> String {
    k8s_openapi::jiff::Timestamp::now()
        .strftime("%Y-%m-%dT%H:%M:%SZ")
        .to_string()
}

/// The readiness part of the resources' reading.
const PART: &str = "rules";

/// Reads the resources again every `interval` on `runtime`, writes their
/// statuses, and hands each configuration that differs from the last to
/// `apply`; a reading that fails keeps the last configuration, and says
/// so in `/readyz` until one works.
pub fn follow(
    client: kube::Client,
    runtime: tokio::runtime::Handle,
    limits: CelLimits,
    interval: std::time::Duration,
    mut applied: String,
    apply: Box<dyn Fn(MirrorConfig) -> Result<(), String> + Send>,
    health: std::sync::Arc<crate::telemetry::health::Health>,
) -> std::io::Result<()> {
    use crate::telemetry::health::Status;
    health.set(PART, Status::Ready);
    std::thread::Builder::new()
        .name("rules".into())
        .spawn(move || {
            loop {
                std::thread::sleep(interval);
                let rules = match runtime.block_on(read(&client, limits)) {
                    Ok(rules) => rules,
                    Err(error) => {
                        let message = format!("{error}; the rules read before still route");
                        health.set(PART, Status::NotReady(message));
                        continue;
                    }
                };
                runtime.block_on(rules.report(&client));
                let fingerprint = rules.config.fingerprint();
                if fingerprint == applied {
                    health.set(PART, Status::Ready);
                    continue;
                }
                let (read, refused) = rules.counts();
                match apply(rules.config) {
                    Ok(()) => {
                        applied = fingerprint;
                        health.set(PART, Status::Ready);
                        eprintln!(
                            "rules: the cluster's resources changed ({read} read, {refused} not ready); listing everything again"
                        );
                    }
                    Err(error) => health.set(PART, Status::NotReady(error)),
                }
            }
        })
        .map(drop)
}
