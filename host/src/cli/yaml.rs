//! Canonical YAML for output: keys sorted (serde_json's map is ordered), one
//! document per object.

use serde_json::Value;

/// Renders one object as a YAML document.
pub fn to_yaml(value: &Value) -> anyhow::Result<String> {
    Ok(serde_saphyr::to_string(value)?)
}
