//! Chains: the ordered plugins and CEL policies that answer one decision,
//! and what happens when one of them fails.

use super::bindings::{Verdict, Violation};
use super::cel::CelPolicy;
use super::error::PolicyError;
use super::{Decision, Plugin};
use plumbline_model::Event;
use serde::Deserialize;
use std::sync::atomic::{AtomicU64, Ordering};

/// What a chain does when one of its steps fails (traps, times out, errors,
/// returns garbage).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum FailureMode {
    /// The failing step is skipped, as if it were not in the chain.
    Open,
    /// The decision fails: a sanitize or match decision returns the error
    /// (the object is not written), a schema decision rejects the schema, a
    /// gate denies.
    #[default]
    Closed,
}

/// One step of a chain.
#[derive(Debug, Clone)]
pub enum Step {
    /// A WebAssembly component.
    Plugin(Plugin),
    /// A CEL expression.
    Cel(CelPolicy),
    /// SOPS encryption (sanitize only; host code, see [`crate::sops`]).
    Sops(crate::sops::Sops),
}

impl Step {
    /// The step's name, for messages.
    pub fn name(&self) -> &str {
        match self {
            Step::Plugin(p) => p.name(),
            Step::Cel(c) => c.name(),
            Step::Sops(s) => s.name(),
        }
    }
}

/// The kinds of object a step of a match or sanitize chain is for (its
/// `kinds:`); objects of other kinds skip it. A step that can only act on
/// a Secret (redaction) then costs nothing for the other objects: a
/// plugin's call is a fresh sandbox, the largest part of a seed's time.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KindSet(Box<[String]>);

impl KindSet {
    /// The set of `kinds`, compared as the plugins compare a kind: trimmed
    /// and without regard to case, in any API group (a step meant for
    /// core Secrets also sees a `Secret` of another group, and can pass
    /// it through; the other way round would let one skip redaction).
    pub fn new(kinds: impl IntoIterator<Item = String>) -> KindSet {
        KindSet(kinds.into_iter().map(|k| k.trim().to_owned()).collect())
    }

    /// Whether an object of `kind` goes through the step.
    pub fn admits(&self, kind: &str) -> bool {
        self.0.iter().any(|k| k.eq_ignore_ascii_case(kind.trim()))
    }

    /// The kinds, as written.
    pub fn kinds(&self) -> &[String] {
        &self.0
    }
}

/// The `kind` field of an object (JSON text), read as a plugin would read
/// it; `None` when the text says none, or is not an object at all (then
/// every step runs, and the plugins say what is wrong).
fn kind_of(object: &str) -> Option<String> {
    #[derive(Deserialize)]
    struct Kind {
        kind: Option<String>,
    }
    serde_json::from_str::<Kind>(object).ok()?.kind
}

/// What a step is for: `None` when it is for every object.
type Only = Option<KindSet>;

/// The policies that answer one decision, in order.
#[derive(Debug)]
pub struct Chain {
    decision: Decision,
    failure: FailureMode,
    steps: Vec<Step>,
    /// Each step's kinds, by index.
    only: Vec<Only>,
    skipped: AtomicU64,
}

impl Chain {
    /// A chain of `steps` for `decision`, each for every object.
    pub fn new(decision: Decision, failure: FailureMode, steps: Vec<Step>) -> Chain {
        let steps = steps.into_iter().map(|s| (s, None)).collect();
        Chain::with_kinds(decision, failure, steps)
    }

    /// A chain of `steps` for `decision`, each with the kinds it is for.
    pub fn with_kinds(decision: Decision, failure: FailureMode, steps: Vec<(Step, Only)>) -> Chain {
        let (steps, only) = steps.into_iter().unzip();
        Chain {
            decision,
            failure,
            steps,
            only,
            skipped: AtomicU64::new(0),
        }
    }

    /// The kinds step `index` is for; `None` when it is for every object.
    pub fn kinds_of(&self, index: usize) -> Option<&KindSet> {
        self.only.get(index)?.as_ref()
    }

    /// Whether step `index` is for an object whose JSON text is `object`;
    /// `kind` caches the object's kind between calls.
    fn is_for(&self, index: usize, object: &str, kind: &mut Option<Option<String>>) -> bool {
        let Some(only) = &self.only[index] else {
            return true;
        };
        match kind.get_or_insert_with(|| kind_of(object)) {
            Some(kind) => only.admits(kind),
            None => true,
        }
    }

    /// The decision it answers.
    pub fn decision(&self) -> Decision {
        self.decision
    }

    /// Open or closed.
    pub fn failure_mode(&self) -> FailureMode {
        self.failure
    }

    /// Its steps.
    pub fn steps(&self) -> &[Step] {
        &self.steps
    }

    /// How many failing steps a fail-open chain has skipped so far.
    pub fn skipped(&self) -> u64 {
        self.skipped.load(Ordering::Relaxed)
    }

    /// Applies the failure mode: `Ok` to carry on without the step.
    fn on_failure(&self, error: PolicyError) -> Result<(), PolicyError> {
        match self.failure {
            FailureMode::Open => {
                self.skipped.fetch_add(1, Ordering::Relaxed);
                tracing::warn!(decision = %self.decision, %error, "policy failed; skipped (fail-open)");
                Ok(())
            }
            FailureMode::Closed => Err(error),
        }
    }

    /// Sanitizes one object (JSON text) through every step; `None` means a
    /// step decided the object must not be written.
    pub fn sanitize(&self, object: &str) -> Result<Option<String>, PolicyError> {
        let mut current = object.to_owned();
        let mut kind = None;
        for (index, step) in self.steps.iter().enumerate() {
            if !self.is_for(index, &current, &mut kind) {
                continue;
            }
            let keep = match step {
                Step::Plugin(plugin) => plugin.sanitize(&current).map(|out| match out {
                    Some(next) => {
                        // The step may have changed the kind too.
                        kind = None;
                        current = next;
                        true
                    }
                    None => false,
                }),
                Step::Cel(cel) => cel.test(&[("object", &current)]),
                // Closed whatever the chain's `failure`: open, it would
                // write the Secret in clear.
                Step::Sops(sops) => {
                    current = sops
                        .seal(&current)
                        .map_err(|source| PolicyError::Sops { source })?;
                    kind = None;
                    Ok(true)
                }
            };
            match keep {
                Ok(true) => {}
                Ok(false) => return Ok(None),
                Err(error) => self.on_failure(error)?,
            }
        }
        Ok(Some(current))
    }

    /// Which of `rules` (each JSON text) select `event`: every step narrows
    /// the set, so a rule must satisfy all of them.
    pub fn matches(&self, event: &Event, rules: &[String]) -> Result<Vec<u32>, PolicyError> {
        let mut selected: Vec<u32> = (0..rules.len() as u32).collect();
        let mut event_json = None;
        let mut kind = None;
        for (index, step) in self.steps.iter().enumerate() {
            if selected.is_empty() {
                break;
            }
            if !self.is_for(index, &event.object, &mut kind) {
                continue;
            }
            let outcome = match step {
                Step::Plugin(plugin) => plugin.matches(event, rules),
                // Loaded for sanitize chains only.
                Step::Sops(_) => Ok(selected.clone()),
                Step::Cel(cel) => {
                    let view = event_json.get_or_insert_with(|| event_view(event));
                    cel.test(&[("event", view), ("object", &event.object)])
                        .map(|pass| if pass { selected.clone() } else { Vec::new() })
                }
            };
            match outcome {
                Ok(matched) => selected.retain(|i| matched.contains(i)),
                Err(error) => self.on_failure(error)?,
            }
        }
        Ok(selected)
    }

    /// Every violation the schema rules find in `schema`. A failing step in
    /// a fail-closed chain is itself a violation: the schema is rejected.
    pub fn check(&self, schema: &str, context: &str) -> Vec<Violation> {
        let mut found = Vec::new();
        for step in &self.steps {
            let outcome = match step {
                Step::Plugin(plugin) => plugin.check(schema, context),
                Step::Sops(_) => Ok(Vec::new()),
                Step::Cel(cel) => cel
                    .test(&[("schema", schema), ("context", context)])
                    .map(|ok| {
                        if ok {
                            Vec::new()
                        } else {
                            vec![Violation {
                                path: cel.path().to_owned(),
                                message: cel.message(),
                            }]
                        }
                    }),
            };
            match outcome.or_else(|e| self.on_failure(e).map(|()| Vec::new())) {
                Ok(violations) => found.extend(violations),
                Err(error) => found.push(Violation {
                    path: String::new(),
                    message: error.to_string(),
                }),
            }
        }
        found
    }

    /// Whether an execution request may proceed: every step must allow it;
    /// every reason from every step that denies is kept. A failing step in a
    /// fail-closed chain denies.
    pub fn decide(&self, request: &str) -> Verdict {
        let mut reasons = Vec::new();
        for step in &self.steps {
            let outcome = match step {
                Step::Plugin(plugin) => plugin.decide(request),
                Step::Sops(_) => Ok(Verdict::Allow),
                Step::Cel(cel) => cel.test(&[("request", request)]).map(|ok| {
                    if ok {
                        Verdict::Allow
                    } else {
                        Verdict::Deny(vec![cel.message()])
                    }
                }),
            };
            match outcome.or_else(|e| self.on_failure(e).map(|()| Verdict::Allow)) {
                Ok(Verdict::Allow) => {}
                Ok(Verdict::Deny(more)) => reasons.extend(more),
                Err(error) => reasons.push(error.to_string()),
            }
        }
        if reasons.is_empty() {
            Verdict::Allow
        } else {
            Verdict::Deny(reasons)
        }
    }
}

/// The `event` variable of a match expression: the target's fields, the
/// operation and the user, flat.
pub fn event_view(event: &Event) -> String {
    let mut view = serde_json::to_value(&event.target).expect("a target serializes");
    view["operation"] = event.operation.to_string().into();
    if let Some(user) = &event.username {
        view["username"] = user.clone().into();
    }
    view.to_string()
}

/// One chain per decision: what a configuration loads into.
#[derive(Debug)]
pub struct PolicySet {
    chains: Vec<Chain>,
}

impl PolicySet {
    /// A set from one chain per decision; a decision without one gets an
    /// empty chain (which allows, keeps and matches everything).
    pub fn new(mut chains: Vec<Chain>) -> PolicySet {
        for decision in Decision::ALL {
            if !chains.iter().any(|c| c.decision == decision) {
                chains.push(Chain::new(decision, FailureMode::Closed, Vec::new()));
            }
        }
        PolicySet { chains }
    }

    /// The chain of `decision`.
    pub fn chain(&self, decision: Decision) -> &Chain {
        self.chains
            .iter()
            .find(|c| c.decision == decision)
            .expect("every decision has a chain")
    }

    /// Every chain.
    pub fn chains(&self) -> &[Chain] {
        &self.chains
    }
}
