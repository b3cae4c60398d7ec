//! An execution's parameters against its workflow's: what the gate and the
//! API's `validate` answer, every problem at once, each at the JSON
//! pointer of the parameter (`/REPLICA_COUNT`).

use crate::check::{Violation, misfit};
use crate::workflow::Workflow;
use serde_json::{Map, Value};

/// Every reason `given` is not a valid parameter set of `workflow`; none
/// means it is.
pub fn validate(workflow: &Workflow, given: &Map<String, Value>) -> Vec<Violation> {
    let mut found = Vec::new();
    let mut say = |name: &str, message: String| {
        found.push(Violation {
            path: format!("/{name}"),
            message,
        })
    };
    let known: Vec<&str> = workflow
        .parameters
        .iter()
        .map(|p| p.name.as_str())
        .collect();
    for name in given.keys().filter(|n| !known.contains(&n.as_str())) {
        say(
            name,
            format!("no such parameter (known: {})", known.join(", ")),
        );
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
    found
}
