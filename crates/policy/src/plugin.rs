//! A loaded plugin: a component ready to answer its decision, one fresh
//! instance per call.

use super::Decision;
use super::bindings::{self, SettingsIndices, Verdict, Violation};
use super::error::{PolicyError, describe};
use super::store::{HostState, Identity, Limits, new_store};
use plumbline_model::{self as model, Operation};
use std::fmt;
use std::sync::Arc;
use wasmtime::Store;
use wasmtime::component::InstancePre;

/// The pre-resolved instance template of a plugin, typed by its world.
pub(crate) enum WorldPre {
    Sanitizer(bindings::sanitizer::SanitizerPre<HostState>),
    Matcher(bindings::matcher::MatcherPre<HostState>),
    SchemaRule(bindings::schema_rule::SchemaRulePre<HostState>),
    DriftGate(bindings::drift_gate::DriftGatePre<HostState>),
}

impl WorldPre {
    pub(crate) fn new(decision: Decision, pre: InstancePre<HostState>) -> wasmtime::Result<Self> {
        Ok(match decision {
            Decision::Sanitize => WorldPre::Sanitizer(bindings::sanitizer::SanitizerPre::new(pre)?),
            Decision::Match => WorldPre::Matcher(bindings::matcher::MatcherPre::new(pre)?),
            Decision::Schema => {
                WorldPre::SchemaRule(bindings::schema_rule::SchemaRulePre::new(pre)?)
            }
            Decision::Gate => WorldPre::DriftGate(bindings::drift_gate::DriftGatePre::new(pre)?),
        })
    }

    fn instance_pre(&self) -> &InstancePre<HostState> {
        match self {
            WorldPre::Sanitizer(p) => p.instance_pre(),
            WorldPre::Matcher(p) => p.instance_pre(),
            WorldPre::SchemaRule(p) => p.instance_pre(),
            WorldPre::DriftGate(p) => p.instance_pre(),
        }
    }
}

/// A plugin, loaded and checked. Cheap to clone.
#[derive(Clone)]
pub struct Plugin {
    inner: Arc<PluginInner>,
}

struct PluginInner {
    /// The engine it was compiled for (holding it keeps the epoch clock,
    /// and so the deadline, running) and the limits every call gets: a
    /// plugin needs these, not the whole runtime.
    engine: wasmtime::Engine,
    limits: Limits,
    identity: Identity,
    digest: String,
    settings: String,
    pre: WorldPre,
    imports: Vec<String>,
}

impl fmt::Debug for Plugin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Plugin")
            .field("name", &self.name())
            .field("decision", &self.decision())
            .field("digest", &self.inner.digest)
            .finish()
    }
}

impl Plugin {
    pub(crate) fn new(
        engine: wasmtime::Engine,
        limits: Limits,
        identity: Identity,
        digest: String,
        settings: String,
        pre: WorldPre,
        imports: Vec<String>,
    ) -> Plugin {
        Plugin {
            inner: Arc::new(PluginInner {
                engine,
                limits,
                identity,
                digest,
                settings,
                pre,
                imports,
            }),
        }
    }

    /// The plugin's name.
    pub fn name(&self) -> &str {
        &self.inner.identity.plugin
    }

    /// The settings it is given (JSON text).
    pub fn settings(&self) -> &str {
        &self.inner.settings
    }

    /// The decision it answers.
    pub fn decision(&self) -> Decision {
        self.inner.identity.decision
    }

    /// The component's content digest (`sha256:…`).
    pub fn digest(&self) -> &str {
        &self.inner.digest
    }

    /// The interfaces the component imports.
    pub fn imports(&self) -> &[String] {
        &self.inner.imports
    }

    /// Runs the plugin's settings check, if it exports one.
    pub(crate) fn validate_settings(&self, indices: &SettingsIndices) -> Result<(), PolicyError> {
        let settings = &self.inner.settings;
        self.call(|store, pre| {
            let instance = pre.instance_pre().instantiate(&mut *store)?;
            let guest = indices.load(&mut *store, &instance)?;
            guest.call_validate_settings(&mut *store, settings)
        })
        .map_err(|error| match error {
            PolicyError::Failed {
                plugin,
                decision,
                message,
            } => PolicyError::Settings {
                plugin,
                decision,
                message,
            },
            other => other,
        })
    }

    /// Sanitizes one object (JSON text): `None` means "do not write it".
    pub fn sanitize(&self, object: &str) -> Result<Option<String>, PolicyError> {
        let settings = &self.inner.settings;
        let out: Option<String> = self.call(|store, pre| match pre {
            WorldPre::Sanitizer(pre) => {
                pre.instantiate(&mut *store)?
                    .call_sanitize(&mut *store, object, settings)
            }
            _ => Err(wasmtime::Error::new(AskedFor(Decision::Sanitize))),
        })?;
        if let Some(text) = &out {
            check_json_object(text).map_err(|message| self.bad_output(message))?;
        }
        Ok(out)
    }

    /// Decides which of `rules` select `event`: their indexes, ascending.
    pub fn matches(&self, event: &model::Event, rules: &[String]) -> Result<Vec<u32>, PolicyError> {
        let settings = &self.inner.settings;
        let event = to_wit(event);
        let event = &event;
        let indexes = self.call(|store, pre| match pre {
            WorldPre::Matcher(pre) => {
                pre.instantiate(&mut *store)?
                    .call_matches(&mut *store, event, rules, settings)
            }
            _ => Err(wasmtime::Error::new(AskedFor(Decision::Match))),
        })?;
        let ascending = indexes.windows(2).all(|w| w[0] < w[1]);
        match indexes.last() {
            Some(&last) if last as usize >= rules.len() => Err(self.bad_output(format!(
                "rule index {last} is out of range for {} rules",
                rules.len()
            ))),
            _ if !ascending => Err(self.bad_output("rule indexes are not ascending".into())),
            _ => Ok(indexes),
        }
    }

    /// Checks a workflow parameter schema (JSON text) in its context.
    pub fn check(&self, schema: &str, context: &str) -> Result<Vec<Violation>, PolicyError> {
        let settings = &self.inner.settings;
        self.call(|store, pre| match pre {
            WorldPre::SchemaRule(pre) => {
                pre.instantiate(&mut *store)?
                    .call_check(&mut *store, schema, context, settings)
            }
            _ => Err(wasmtime::Error::new(AskedFor(Decision::Schema))),
        })
    }

    /// Decides whether an execution request (JSON text) may proceed.
    pub fn decide(&self, request: &str) -> Result<Verdict, PolicyError> {
        let settings = &self.inner.settings;
        self.call(|store, pre| match pre {
            WorldPre::DriftGate(pre) => {
                pre.instantiate(&mut *store)?
                    .call_decide(&mut *store, request, settings)
            }
            _ => Err(wasmtime::Error::new(AskedFor(Decision::Gate))),
        })
    }

    /// Instantiates the bare component and drops it: what a call costs
    /// before the guest does any work (for the benchmarks).
    pub fn instantiate_only(&self) -> Result<(), PolicyError> {
        self.call(|store, pre| {
            pre.instance_pre().instantiate(&mut *store)?;
            Ok(Ok(()))
        })
    }

    /// Runs one call in a fresh store and turns every way it can fail into
    /// an error naming this plugin.
    fn call<R>(
        &self,
        f: impl FnOnce(&mut Store<HostState>, &WorldPre) -> wasmtime::Result<Result<R, String>>,
    ) -> Result<R, PolicyError> {
        let mut store = new_store(
            &self.inner.engine,
            self.inner.identity.clone(),
            &self.inner.limits,
        );
        match f(&mut store, &self.inner.pre) {
            Ok(Ok(value)) => Ok(value),
            Ok(Err(message)) => Err(PolicyError::Failed {
                plugin: self.name().into(),
                decision: self.decision(),
                message,
            }),
            Err(error) => Err(self.classify(&error, store.data())),
        }
    }

    fn classify(&self, error: &wasmtime::Error, state: &HostState) -> PolicyError {
        let plugin = self.name().to_owned();
        let decision = self.decision();
        if state.memory_refused() {
            return PolicyError::MemoryCap {
                plugin,
                decision,
                cap: self.inner.limits.memory,
            };
        }
        if let Some(AskedFor(asked)) = error.downcast_ref::<AskedFor>() {
            return PolicyError::NotThisDecision {
                plugin,
                decision,
                asked: *asked,
            };
        }
        match error.downcast_ref::<wasmtime::Trap>() {
            Some(wasmtime::Trap::Interrupt) => PolicyError::Deadline {
                plugin,
                decision,
                deadline: self.inner.limits.deadline,
            },
            Some(_) => {
                let mut message = describe(error);
                if let Some(output) = state.output() {
                    message.push_str(&format!("; the plugin wrote: {output}"));
                }
                PolicyError::Trap {
                    plugin,
                    decision,
                    message,
                }
            }
            None if error.is::<wasmtime::PoolConcurrencyLimitError>() => PolicyError::Instantiate {
                plugin,
                decision,
                message: describe(error),
            },
            None => PolicyError::Trap {
                plugin,
                decision,
                message: describe(error),
            },
        }
    }

    fn bad_output(&self, message: String) -> PolicyError {
        PolicyError::BadOutput {
            plugin: self.name().into(),
            decision: self.decision(),
            message,
        }
    }
}

/// A plugin asked a decision of another world than its own: reachable
/// through the public API, so an error, not a panic.
#[derive(Debug, thiserror::Error)]
#[error("asked for a {0} decision")]
struct AskedFor(Decision);

/// Checks that a sanitizer's output is one JSON object, without building it.
fn check_json_object(text: &str) -> Result<(), String> {
    if !text.trim_start().starts_with('{') {
        return Err(format!("expected a JSON object, got `{}`", preview(text)));
    }
    serde_json::from_str::<serde::de::IgnoredAny>(text)
        .map(drop)
        .map_err(|e| format!("not JSON ({e}): `{}`", preview(text)))
}

fn preview(text: &str) -> String {
    text.chars().take(60).collect()
}

fn to_wit(event: &model::Event) -> bindings::Event {
    let t = &event.target;
    bindings::Event {
        operation: match event.operation {
            Operation::Create => bindings::Operation::Create,
            Operation::Update => bindings::Operation::Update,
            Operation::Delete => bindings::Operation::Delete,
        },
        target: bindings::Target {
            group: t.group.clone(),
            version: t.version.clone(),
            kind: t.kind.clone(),
            resource: t.resource.clone(),
            subresource: t.subresource.clone(),
            namespace: t.namespace.clone(),
            name: t.name.clone(),
        },
        object: event.object.clone(),
        username: event.username.clone(),
    }
}
