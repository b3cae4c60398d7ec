//! The two formats beside the workflow schema, read into the same model:
//!
//! - the **playbook schema** (`/playbook-schema.json`): the same metadata,
//!   with `parameters` a JSON Schema of an object (`properties`,
//!   `required`, `dependentRequired`) instead of a list. Each property
//!   becomes a parameter; a keyword the model cannot carry (`$ref`,
//!   `oneOf`, `format`, …) is refused by name, as the catalog could not
//!   validate executions against it;
//! - the **action contract** (`/action-contract.yaml`, kind
//!   `ActionContract`): `inputs` (parameters), `outputs`, and the
//!   `resources` and `securityContext` a Job that runs it must stay within
//!   ([`Contract`]).

use crate::workflow::{Body, Description, Parameter, ReadError, Workflow, assemble, shaped};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use std::collections::BTreeMap;

/// What an action contract bounds beyond the parameters.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Contract {
    /// What the action produces.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub outputs: Vec<Output>,
    /// The most a Job that runs it may request and be limited to.
    #[serde(default)]
    pub resources: Resources,
    /// What a Job that runs it must (and must not) set.
    #[serde(default)]
    pub security_context: SecurityBounds,
}

/// One output.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Output {
    /// Its name.
    pub name: String,
    /// Its type.
    #[serde(rename = "type", default, skip_serializing_if = "Option::is_none")]
    pub kind: Option<String>,
    /// What it means.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub description: String,
}

/// Resource bounds, as Kubernetes quantities (`500m`, `256Mi`).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Resources {
    /// The most each resource may request.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub requests: BTreeMap<String, String>,
    /// The most each resource may be limited to; a limit is required for
    /// each resource named here.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub limits: BTreeMap<String, String>,
}

/// The security context a Job must keep: what is `true` here must be set
/// so, what is `false` must not be `true`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct SecurityBounds {
    /// The container must run as a user other than root.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub run_as_non_root: Option<bool>,
    /// Its root filesystem must be read-only.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub read_only_root_filesystem: Option<bool>,
    /// Whether it may gain privileges (`false`: must set it false).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub allow_privilege_escalation: Option<bool>,
    /// Whether it may be privileged (`false`: must not be).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub privileged: Option<bool>,
    /// The capabilities it may add; none beyond these.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub capabilities: Option<Capabilities>,
}

/// Capabilities a container may add.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Capabilities {
    /// Those allowed.
    #[serde(default)]
    pub add: Vec<String>,
}

/// The metadata both formats share with the flat one.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Metadata {
    workflow_id: String,
    version: String,
    #[serde(default)]
    description: Description,
}

/// Reads the playbook format: `value` has `parameters` as an object.
pub fn playbook(mut value: Value) -> Result<Workflow, ReadError> {
    let schema = value
        .as_object_mut()
        .and_then(|o| o.remove("parameters"))
        .unwrap_or(Value::Null);
    let parameters = from_json_schema(&schema)?;
    let meta: Metadata = field(&value, "metadata")?;
    value.as_object_mut().map(|o| o.remove("metadata"));
    value.as_object_mut().map(|o| o.remove("$schema"));
    value["parameters"] = Value::Array(Vec::new());
    let mut body: Body = shaped(value, "")?;
    body.parameters = parameters;
    Ok(assemble(
        meta.workflow_id,
        meta.version,
        meta.description,
        body,
    ))
}

/// Reads an action contract.
pub fn contract(mut value: Value) -> Result<Workflow, ReadError> {
    let object = value
        .as_object_mut()
        .ok_or_else(|| ReadError::Shape("an ActionContract must be a mapping".into()))?;
    object.remove("apiVersion");
    object.remove("kind");
    let meta: Metadata = field(&value, "metadata")?;
    let object = value.as_object_mut().expect("a mapping");
    object.remove("metadata");
    let inputs = object.remove("inputs").unwrap_or(Value::Array(Vec::new()));
    let mut contract = Map::new();
    for key in ["outputs", "resources", "securityContext"] {
        if let Some(v) = object.remove(key) {
            contract.insert(key.into(), v);
        }
    }
    let contract: Contract = shaped(Value::Object(contract), "")?;
    value["parameters"] = inputs;
    // The contract's `inputs` are read as parameters: said as written.
    let body: Body = shaped(value, "").map_err(|e| match e {
        ReadError::Shape(said) if said.starts_with("parameters") => {
            ReadError::Shape(said.replacen("parameters", "inputs", 1))
        }
        other => other,
    })?;
    let mut workflow = assemble(meta.workflow_id, meta.version, meta.description, body);
    workflow.contract = Some(contract);
    Ok(workflow)
}

fn field<T: serde::de::DeserializeOwned>(value: &Value, name: &str) -> Result<T, ReadError> {
    let found = value
        .get(name)
        .cloned()
        .ok_or_else(|| ReadError::Shape(format!("{name}: missing")))?;
    shaped(found, name)
}

/// The keywords of a property the model carries.
const CARRIED: [&str; 9] = [
    "type",
    "description",
    "enum",
    "pattern",
    "minimum",
    "maximum",
    "default",
    "items",
    "title",
];

/// The parameters a JSON Schema of an object declares.
fn from_json_schema(schema: &Value) -> Result<Vec<Parameter>, ReadError> {
    let at = |what: String| ReadError::Shape(format!("parameters: {what}"));
    let object = schema
        .as_object()
        .ok_or_else(|| at("must be a JSON Schema of an object".into()))?;
    if let Some(kind) = object.get("type").filter(|t| *t != "object") {
        return Err(at(format!("`type` is {kind}, not \"object\"")));
    }
    let known = [
        "$schema",
        "type",
        "properties",
        "required",
        "dependentRequired",
        "additionalProperties",
        "title",
        "description",
    ];
    if let Some(unknown) = object.keys().find(|k| !known.contains(&k.as_str())) {
        return Err(at(format!(
            "`{unknown}` is not carried by the catalog (known: {})",
            known.join(", ")
        )));
    }
    let names = |key: &str| -> Vec<String> {
        object
            .get(key)
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .filter_map(|v| v.as_str().map(str::to_owned))
            .collect()
    };
    let required = names("required");
    let dependent = object.get("dependentRequired").cloned().unwrap_or_default();
    let properties = object
        .get("properties")
        .and_then(Value::as_object)
        .cloned()
        .unwrap_or_default();
    properties
        .iter()
        .map(|(name, property)| {
            let mut property = property
                .as_object()
                .cloned()
                .ok_or_else(|| at(format!("properties.{name}: must be an object")))?;
            if let Some(unknown) = property.keys().find(|k| !CARRIED.contains(&k.as_str())) {
                return Err(at(format!(
                    "properties.{name}.{unknown}: not carried by the catalog (known: {})",
                    CARRIED.join(", ")
                )));
            }
            property.remove("title");
            property.remove("items");
            property.insert("name".into(), Value::String(name.clone()));
            property.insert("required".into(), Value::Bool(required.contains(name)));
            if let Some(depends) = dependent.get(name) {
                property.insert("dependsOn".into(), depends.clone());
            }
            serde_json::from_value(Value::Object(property))
                .map_err(|e| at(format!("properties.{name}: {e}")))
        })
        .collect()
}
