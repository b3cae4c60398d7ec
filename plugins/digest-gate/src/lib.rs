//! `digest-gate`: an execution may proceed only when it runs exactly what the
//! catalog recorded.
//!
//! The request (JSON):
//!
//! ```json
//! { "image": { "reference": "registry/wf:v1", "digest": "sha256:…" },
//!   "catalog": { "workflowId": "restart-pod", "version": "1.0.0", "digest": "sha256:…",
//!                "schemaDigest": "sha256:…", "lifecycle": "active" },
//!   "schemaDigest": "sha256:…",
//!   "parameters": { "valid": false, "errors": ["/REPLICAS: must be ≥ 1"] } }
//! ```
//!
//! It denies, with every reason at once, when: the image has no digest or one
//! that differs from the catalog's; the workflow is not `active` (settings
//! `{"allowDeprecated": true}` lets `deprecated` pass); the schema the
//! execution was validated against is not the catalog's; or the parameters
//! failed validation.

use serde_json::Value;

/// The gate's answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    Allow,
    Deny(Vec<String>),
}

/// Reads the settings text: `{"allowDeprecated": bool}`.
pub fn parse_settings(text: &str) -> Result<bool, String> {
    if text.trim().is_empty() {
        return Ok(false);
    }
    let value: Value =
        serde_json::from_str(text).map_err(|e| format!("settings are not JSON: {e}"))?;
    let map = value.as_object().ok_or("settings must be a JSON object")?;
    if let Some(unknown) = map.keys().find(|k| *k != "allowDeprecated") {
        return Err(format!(
            "unknown setting `{unknown}` (known: allowDeprecated)"
        ));
    }
    match map.get("allowDeprecated") {
        None => Ok(false),
        Some(v) => v
            .as_bool()
            .ok_or_else(|| "`allowDeprecated` must be true or false".to_owned()),
    }
}

fn text<'a>(value: &'a Value, pointer: &str) -> Option<&'a str> {
    value
        .pointer(pointer)
        .and_then(Value::as_str)
        .filter(|s| !s.is_empty())
}

/// Decides one request.
pub fn decide(request: &Value, allow_deprecated: bool) -> Result<Verdict, String> {
    if !request.is_object() {
        return Err("the request must be a JSON object".to_owned());
    }
    let mut reasons = Vec::new();
    let workflow = match (
        text(request, "/catalog/workflowId"),
        text(request, "/catalog/version"),
    ) {
        (Some(id), Some(version)) => format!("{id}@{version}"),
        _ => {
            reasons.push(
                "the request names no catalog entry (catalog.workflowId, catalog.version)"
                    .to_owned(),
            );
            "the workflow".to_owned()
        }
    };
    match (
        text(request, "/image/digest"),
        text(request, "/catalog/digest"),
    ) {
        (None, _) => reasons.push("the execution's image is not pinned by digest".to_owned()),
        (_, None) => reasons.push(format!("the catalog holds no image digest for {workflow}")),
        (Some(image), Some(catalog)) if image != catalog => reasons.push(format!(
            "image digest {image} differs from the catalog's {catalog} for {workflow}"
        )),
        _ => {}
    }
    match text(request, "/catalog/lifecycle") {
        Some("active") => {}
        Some("deprecated") if allow_deprecated => {}
        Some(other) => reasons.push(format!("{workflow} is {other}, not active")),
        None => reasons.push(format!("{workflow} has no lifecycle state")),
    }
    if let (Some(used), Some(recorded)) = (
        text(request, "/schemaDigest"),
        text(request, "/catalog/schemaDigest"),
    ) && used != recorded
    {
        reasons.push(format!(
            "parameters were checked against schema {used}, but the catalog records {recorded}"
        ));
    }
    if request.pointer("/parameters/valid") != Some(&Value::Bool(true)) {
        let errors = request
            .pointer("/parameters/errors")
            .and_then(Value::as_array);
        match errors.filter(|e| !e.is_empty()) {
            Some(errors) => reasons.extend(errors.iter().map(|e| {
                format!(
                    "invalid parameter: {}",
                    e.as_str().map_or_else(|| e.to_string(), str::to_owned)
                )
            })),
            None => reasons.push("the parameters were not validated".to_owned()),
        }
    }
    Ok(if reasons.is_empty() {
        Verdict::Allow
    } else {
        Verdict::Deny(reasons)
    })
}

/// Decides a request given as JSON text: what the component exports.
pub fn decide_json(request: &str, settings: &str) -> Result<Verdict, String> {
    let allow_deprecated = parse_settings(settings)?;
    let request: Value =
        serde_json::from_str(request).map_err(|e| format!("request is not JSON: {e}"))?;
    decide(&request, allow_deprecated)
}

#[cfg(target_arch = "wasm32")]
mod component {
    //! The component's exports: the drift-gate world plus a settings check.
    wit_bindgen::generate!({
        inline: "
            package plumbline:digest-gate;
            world digest-gate {
                include plumbline:policy/drift-gate@0.1.0;
                export plumbline:policy/settings@0.1.0;
            }
        ",
        path: "../../wit",
        generate_all,
    });

    struct DigestGate;

    impl Guest for DigestGate {
        fn decide(request: String, settings: String) -> Result<Verdict, String> {
            Ok(match super::decide_json(&request, &settings)? {
                super::Verdict::Allow => Verdict::Allow,
                super::Verdict::Deny(reasons) => Verdict::Deny(reasons),
            })
        }
    }

    impl exports::plumbline::policy::settings::Guest for DigestGate {
        fn validate_settings(settings: String) -> Result<(), String> {
            super::parse_settings(&settings).map(drop)
        }
    }

    export!(DigestGate);
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn good() -> Value {
        json!({"image": {"digest": "sha256:aa"},
               "catalog": {"workflowId": "restart", "version": "1.0.0", "digest": "sha256:aa",
                           "schemaDigest": "sha256:s1", "lifecycle": "active"},
               "schemaDigest": "sha256:s1", "parameters": {"valid": true}})
    }

    #[test]
    fn allows_what_matches_the_catalog() {
        assert_eq!(decide(&good(), false).unwrap(), Verdict::Allow);
    }

    #[test]
    fn denies_with_every_reason() {
        let mut r = good();
        r["image"]["digest"] = json!("sha256:bb");
        r["catalog"]["lifecycle"] = json!("disabled");
        r["schemaDigest"] = json!("sha256:s0");
        r["parameters"] = json!({"valid": false, "errors": ["/REPLICAS: must be at least 1"]});
        let Verdict::Deny(reasons) = decide(&r, false).unwrap() else {
            panic!("allowed")
        };
        assert_eq!(reasons.len(), 4, "{reasons:?}");
        assert!(
            reasons[0].contains("sha256:bb differs from the catalog's sha256:aa for restart@1.0.0")
        );
        assert!(reasons[1].contains("disabled, not active"));
        assert!(reasons[3].contains("REPLICAS"));
    }

    #[test]
    fn deprecated_passes_only_when_allowed() {
        let mut r = good();
        r["catalog"]["lifecycle"] = json!("deprecated");
        assert!(matches!(decide(&r, false).unwrap(), Verdict::Deny(_)));
        assert_eq!(decide(&r, true).unwrap(), Verdict::Allow);
    }
}
