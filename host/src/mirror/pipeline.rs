//! One event through the policies: the match chain decides which rules
//! select it (all rules in one call), the sanitize chain what of it belongs
//! in Git, and each destination of a matching rule gets the file.

use super::config::MirrorConfig;
use crate::layout::yaml;
use crate::layout::{self, LayoutError, ObjectKey};
use crate::model::{Event, Operation};
use crate::policy::chain::Step;
use crate::policy::{Decision, PolicyError, PolicySet};

/// What an event means for one destination.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Routed {
    /// Index into the configuration's destinations.
    pub destination: usize,
    /// The object's identity.
    pub key: ObjectKey,
    /// The file's path in the repository.
    pub path: String,
    /// The file's canonical YAML, or `None` when the file must go (a delete,
    /// or a sanitizer that decided the object must not be written).
    pub content: Option<String>,
}

/// Why an event could not be routed. The event is reported and skipped.
#[derive(Debug, thiserror::Error)]
pub enum MirrorError {
    /// A policy failed (and its chain is fail-closed).
    #[error("{object}: {source}")]
    Policy {
        /// The object.
        object: String,
        /// The policy's error (boxed: it is large, and rare).
        #[source]
        source: Box<PolicyError>,
    },
    /// The object's file could not be placed safely.
    #[error(transparent)]
    Layout(#[from] LayoutError),
    /// A policy step panicked in the host (a bug, not the plugin's: a
    /// plugin's own failures are traps): this event fails, the others go on.
    #[error("{object}: deciding it panicked: {message}")]
    Panicked {
        /// The object.
        object: String,
        /// The panic's message.
        message: String,
    },
    /// The sanitized object could not be written as YAML.
    #[error("{object}: cannot write as YAML: {message}")]
    Yaml {
        /// The object.
        object: String,
        /// Why.
        message: String,
    },
}

/// The mirror's decisions for events.
pub struct Pipeline {
    policies: std::sync::Arc<PolicySet>,
    config: MirrorConfig,
    rules: Vec<String>,
}

impl Pipeline {
    /// A pipeline deciding with `policies` and routing by `config`.
    pub fn new(policies: std::sync::Arc<PolicySet>, config: MirrorConfig) -> Pipeline {
        let rules = config.rules.iter().map(|r| r.rule.to_string()).collect();
        Pipeline {
            policies,
            config,
            rules,
        }
    }

    /// The routing configuration.
    pub fn config(&self) -> &MirrorConfig {
        &self.config
    }

    /// The policies.
    pub fn policies(&self) -> &std::sync::Arc<PolicySet> {
        &self.policies
    }

    /// Checks that the match chain can read every rule, by deciding a probe
    /// event against all of them: a rule the matcher cannot read fails here,
    /// at load, not on the first object.
    pub fn check_rules(&self) -> Result<(), MirrorError> {
        check_rules(&self.policies, &self.rules)
    }

    /// [`Pipeline::check_rules`] for policies not yet in a pipeline.
    pub fn check_policies(policies: &PolicySet, config: &MirrorConfig) -> Result<(), MirrorError> {
        let rules: Vec<String> = config.rules.iter().map(|r| r.rule.to_string()).collect();
        check_rules(policies, &rules)
    }

    /// The files `target` may have in every destination (whether or not a
    /// rule selects it), by destination index: its file, and its SOPS
    /// file when the sanitize chain encrypts; a path layout refuses has
    /// none.
    pub fn paths(&self, target: &crate::model::Target) -> Vec<(usize, String)> {
        let key = target.key();
        let seals = self.seals();
        let mut paths = Vec::new();
        for (i, destination) in self.config.destinations.iter().enumerate() {
            let base = &destination.base_folder;
            paths.extend(layout::path_of(base, &key).ok().map(|p| (i, p)));
            if seals {
                paths.extend(layout::sealed_path_of(base, &key).ok().map(|p| (i, p)));
            }
        }
        paths
    }

    /// Whether the sanitize chain encrypts some objects (a `sops` step):
    /// their files are `{name}.sops.yaml`.
    fn seals(&self) -> bool {
        let chain = self.policies.chain(Decision::Sanitize);
        chain.steps().iter().any(|s| matches!(s, Step::Sops(_)))
    }

    /// [`Pipeline::route`], with a panic on the way turned into this
    /// event's error.
    pub fn route_caught(&self, event: &Event) -> Result<Vec<Routed>, MirrorError> {
        std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| self.route(event))).unwrap_or_else(
            |panic| {
                Err(MirrorError::Panicked {
                    object: event.target.key().to_string(),
                    message: panic_message(&*panic),
                })
            },
        )
    }

    /// The files `event` produces or removes, one per destination it
    /// reaches; none if no rule selects it.
    pub fn route(&self, event: &Event) -> Result<Vec<Routed>, MirrorError> {
        let key = event.target.key();
        let policy_error = |source| MirrorError::Policy {
            object: key.to_string(),
            source: Box::new(source),
        };
        let matched = self
            .policies
            .chain(Decision::Match)
            .matches(event, &self.rules)
            .map_err(policy_error)?;
        let mut destinations = Vec::new();
        for &i in &matched {
            let rule = &self.config.rules[i as usize];
            let holds = match &rule.condition {
                None => true,
                Some(condition) => {
                    let view = crate::policy::chain::event_view(event);
                    condition
                        .test(&[("event", &view), ("object", &event.object)])
                        .map_err(policy_error)?
                }
            };
            if holds {
                destinations.push(rule.destination);
            }
        }
        destinations.sort_unstable();
        destinations.dedup();
        if destinations.is_empty() {
            return Ok(Vec::new());
        }
        let content = match event.operation {
            Operation::Delete => None,
            Operation::Create | Operation::Update => self
                .policies
                .chain(Decision::Sanitize)
                .sanitize(&event.object)
                .map_err(policy_error)?
                .map(|json| render(&key, &json))
                .transpose()?,
        };
        let seals = self.seals();
        let mut routed = Vec::new();
        for destination in destinations {
            let base = &self.config.destinations[destination].base_folder;
            // Where objects are encrypted, `x.sops.yaml` is `x` encrypted:
            // an object named `x.sops` (any kind: a delete removes both
            // forms) is refused rather than have its file taken for it.
            if seals {
                layout::sealed_path_of(base, &key)?;
            }
            let file = |path: String, content: Option<String>| Routed {
                destination,
                key: key.clone(),
                path,
                content,
            };
            let plain = layout::path_of(base, &key)?;
            match &content {
                // Its file of before goes (encryption turned on).
                Some(Rendered { text, sealed: true }) => {
                    let sealed = layout::sealed_path_of(base, &key)?;
                    routed.push(file(sealed, Some(text.clone())));
                    routed.push(file(plain, None));
                }
                Some(Rendered { text, .. }) => routed.push(file(plain, Some(text.clone()))),
                None => {
                    routed.push(file(plain, None));
                    if seals {
                        routed.push(file(layout::sealed_path_of(base, &key)?, None));
                    }
                }
            }
        }
        Ok(routed)
    }
}

/// A sanitized object as its file holds it.
struct Rendered {
    text: String,
    /// Encrypted by the `sops` step: its file is `{name}.sops.yaml`.
    sealed: bool,
}

/// The canonical YAML of the sanitized object `json`.
fn render(key: &ObjectKey, json: &str) -> Result<Rendered, MirrorError> {
    let failed = |message| MirrorError::Yaml {
        object: key.to_string(),
        message,
    };
    let value: serde_json::Value = serde_json::from_str(json).map_err(|e| failed(e.to_string()))?;
    let sealed = value
        .get("sops")
        .and_then(|sops| sops.get(crate::policy::sops::DIGEST_FIELD))
        .is_some();
    let text = yaml::canonical(&value).map_err(failed)?;
    Ok(Rendered { text, sealed })
}

/// What a panic said, when it said it as text.
pub fn panic_message(panic: &(dyn std::any::Any + Send)) -> String {
    panic
        .downcast_ref::<&str>()
        .map(|s| (*s).to_owned())
        .or_else(|| panic.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "a panic without a message".into())
}

fn check_rules(policies: &PolicySet, rules: &[String]) -> Result<(), MirrorError> {
    let probe = Event {
        operation: Operation::Update,
        target: crate::model::Target {
            group: String::new(),
            version: "v1".into(),
            kind: "ConfigMap".into(),
            resource: "configmaps".into(),
            subresource: None,
            namespace: Some("default".into()),
            name: "probe".into(),
        },
        object: r#"{"apiVersion":"v1","kind":"ConfigMap","metadata":{"name":"probe","namespace":"default"}}"#.into(),
        username: None,
        uid: None,
        resource_version: None,
        watched: false,
    };
    policies
        .chain(Decision::Match)
        .matches(&probe, rules)
        .map(drop)
        .map_err(|source| MirrorError::Policy {
            object: "the watch rules".into(),
            source: Box::new(source),
        })
}
