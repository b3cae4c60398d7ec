//! An execution's parameters against its workflow's: what the gate and the
//! API's `validate` answer, every problem at once, each at the JSON
//! pointer of the parameter (`/REPLICA_COUNT`).

use crate::check::{Violation, misfit};
use crate::workflow::Workflow;
use serde_json::{Map, Value};

/// The most violations said of one parameter set: past it, one more says
/// how many were left out (a set of a million unknown names must not make
/// a million messages).
pub const MAX_VIOLATIONS: usize = 64;

/// Every reason `given` is not a valid parameter set of `workflow`, up to
/// [`MAX_VIOLATIONS`]; none means it is.
pub fn validate(workflow: &Workflow, given: &Map<String, Value>) -> Vec<Violation> {
    let mut found = Vec::new();
    let mut say = |name: &str, message: String| {
        // A name the caller sent may be long: it is shown cut short.
        let shown: String = name.chars().take(crate::check::NAME_MAX_LEN).collect();
        found.push(Violation {
            path: format!("/{shown}"),
            message,
        })
    };
    let known: Vec<&str> = workflow
        .parameters
        .iter()
        .map(|p| p.name.as_str())
        .collect();
    for name in given.keys().filter(|n| !known.contains(&n.as_str())) {
        say(name, "no such parameter".into());
    }
    let present = |name: &str| {
        given.contains_key(name)
            || workflow
                .parameters
                .iter()
                .any(|p| p.name == name && p.default.is_some())
    };
    for parameter in &workflow.parameters {
        let Some(value) = given.get(&parameter.name) else {
            if parameter.required && parameter.default.is_none() {
                say(&parameter.name, "required, and not given".into());
            }
            continue;
        };
        if let Some(message) = misfit(parameter, value) {
            say(&parameter.name, message);
        }
        if let Some(allowed) = &parameter.allowed
            && !allowed.contains(value)
        {
            let allowed: Vec<String> = allowed.iter().map(Value::to_string).collect();
            say(
                &parameter.name,
                format!("{value} is not one of {}", allowed.join(", ")),
            );
        }
        for other in parameter.depends_on.iter().filter(|o| !present(o)) {
            say(&parameter.name, format!("needs `{other}` too"));
        }
    }
    if found.iter().any(|v| v.message == "no such parameter") {
        found.push(Violation {
            path: String::new(),
            message: format!("the parameters this workflow takes: {}", known.join(", ")),
        });
    }
    if found.len() > MAX_VIOLATIONS {
        let left = found.len() - MAX_VIOLATIONS;
        found.truncate(MAX_VIOLATIONS);
        found.push(Violation {
            path: String::new(),
            message: format!("… and {left} more"),
        });
    }
    found
}
