//! Canonical YAML: the same object always gives the same bytes.
//!
//! Keys are sorted (serde_json's map is ordered), indentation and quoting
//! are serde-saphyr's, and a string YAML 1.1 readers would take for a bool,
//! a number or null (`y`, `no`, `0755`, `~`) is quoted so it reads back as
//! the string it is, by any YAML reader, `kubectl` included.

use serde_json::Value;

/// Renders one object as a YAML document.
pub fn canonical(value: &Value) -> Result<String, String> {
    serde_saphyr::to_string(value).map_err(|e| e.to_string())
}

/// Renders an object given as JSON text.
pub fn canonical_from_json(json: &str) -> Result<String, String> {
    let value: Value = serde_json::from_str(json).map_err(|e| e.to_string())?;
    canonical(&value)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn ambiguous_strings_read_back_as_strings() {
        let object = json!({"data": {"a": "y", "b": "no", "c": "0755", "d": "~", "e": "1e3", "f": "true", "g": "null", "h": "On"}});
        let text = canonical(&object).unwrap();
        let back: Value = serde_saphyr::from_str(&text).unwrap();
        assert_eq!(back, object, "{text}");
        for scalar in ["y", "no", "0755", "On"] {
            assert!(
                !text.contains(&format!(": {scalar}\n")),
                "`{scalar}` left unquoted:\n{text}"
            );
        }
    }

    #[test]
    fn same_object_same_bytes() {
        let a = json!({"b": 1, "a": {"z": [1, 2], "y": "x"}});
        let b: Value = serde_json::from_str(r#"{"a": {"y": "x", "z": [1, 2]}, "b": 1}"#).unwrap();
        assert_eq!(canonical(&a).unwrap(), canonical(&b).unwrap());
    }
}
