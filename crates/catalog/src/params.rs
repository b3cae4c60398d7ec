//! A workflow's parameters as a JSON Schema (draft 2020-12): what every
//! execution's parameters are validated against, and what an agent reads
//! to fill them in.

use crate::workflow::{Parameter, ParameterType, Workflow};
use serde_json::{Map, Value, json};

/// The JSON Schema of `workflow`'s parameters: an object with a property
/// per parameter, the required ones listed, no others allowed (a
/// misspelt parameter is an error, not a silently ignored setting), and
/// `dependentRequired` for `dependsOn`.
pub fn parameters_schema(workflow: &Workflow) -> Value {
    let properties: Map<String, Value> = workflow
        .parameters
        .iter()
        .map(|p| (p.name.clone(), property(p)))
        .collect();
    let required: Vec<&str> = workflow
        .parameters
        .iter()
        .filter(|p| p.required)
        .map(|p| p.name.as_str())
        .collect();
    let dependent: Map<String, Value> = workflow
        .parameters
        .iter()
        .filter(|p| !p.depends_on.is_empty())
        .map(|p| (p.name.clone(), json!(p.depends_on)))
        .collect();
    let mut schema = json!({
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "title": format!("{} {}", workflow.workflow_id, workflow.version),
        "type": "object",
        "properties": properties,
        "required": required,
        "additionalProperties": false,
    });
    if !dependent.is_empty() {
        schema["dependentRequired"] = Value::Object(dependent);
    }
    schema
}

fn property(parameter: &Parameter) -> Value {
    let mut property = json!({"type": parameter.kind.json_type()});
    let mut set = |key: &str, value: Value| {
        property[key] = value;
    };
    if !parameter.description.is_empty() {
        set("description", json!(parameter.description));
    }
    if let Some(allowed) = &parameter.allowed {
        set("enum", json!(allowed));
    }
    if let Some(pattern) = &parameter.pattern {
        set("pattern", json!(pattern));
    }
    if let Some(minimum) = parameter.minimum {
        set("minimum", number(minimum, parameter.kind));
    }
    if let Some(maximum) = parameter.maximum {
        set("maximum", number(maximum, parameter.kind));
    }
    if let Some(default) = &parameter.default {
        set("default", default.clone());
    }
    property
}

/// A bound as JSON: an integer parameter's bound is written as an integer.
fn number(value: f64, kind: ParameterType) -> Value {
    if kind == ParameterType::Integer && value.fract() == 0.0 && value.abs() < 9.0e15 {
        json!(value as i64)
    } else {
        json!(value)
    }
}
