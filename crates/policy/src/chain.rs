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
}

impl Step {
    /// The step's name, for messages.
    pub fn name(&self) -> &str {
        match self {
            Step::Plugin(p) => p.name(),
            Step::Cel(c) => c.name(),
        }
    }
}

/// The policies that answer one decision, in order.
#[derive(Debug)]
pub struct Chain {
    decision: Decision,
    failure: FailureMode,
    steps: Vec<Step>,
    skipped: AtomicU64,
}

impl Chain {
    /// A chain of `steps` for `decision`.
    pub fn new(decision: Decision, failure: FailureMode, steps: Vec<Step>) -> Chain {
        Chain {
            decision,
            failure,
            steps,
            skipped: AtomicU64::new(0),
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
        for step in &self.steps {
            let keep = match step {
                Step::Plugin(plugin) => plugin.sanitize(&current).map(|out| match out {
                    Some(next) => {
                        current = next;
                        true
                    }
                    None => false,
                }),
                Step::Cel(cel) => cel.test(&[("object", &current)]),
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
        for step in &self.steps {
            if selected.is_empty() {
                break;
            }
            let outcome = match step {
                Step::Plugin(plugin) => plugin.matches(event, rules),
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
