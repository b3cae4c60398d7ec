//! `redact-secrets`: a Secret's values never leave the cluster in clear text.
//!
//! Settings:
//! - `{"mode": "drop"}` (the default): `data` and `stringData` keep their
//!   keys, and every value becomes `<redacted>`, so Git shows which keys a
//!   Secret holds but nothing of their values;
//! - `{"mode": "digest", "key": "…"}`: every value becomes
//!   `hmac-sha256:<hex>` of the decoded value under the operator's key, so a
//!   changed value shows as a changed line in Git while the value itself (even
//!   a short password) cannot be guessed without the key;
//! - `{"mode": "remove"}`: `data` and `stringData` are removed altogether.
//!
//! Objects of other kinds pass through untouched.

use hmac::{Hmac, KeyInit, Mac};
use serde_json::{Map, Value};
use sha2::Sha256;

/// What happens to a Secret's values.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Mode {
    /// Values become `<redacted>`.
    Drop,
    /// Values become a keyed digest.
    Digest(Vec<u8>),
    /// `data` and `stringData` are removed.
    Remove,
}

/// The fields of a Secret (core/v1).
const SECRET_FIELDS: &[&str] = &[
    "apiVersion",
    "kind",
    "metadata",
    "type",
    "immutable",
    "data",
    "stringData",
];

/// The placeholder written in place of a value in `drop` mode.
pub const REDACTED: &str = "<redacted>";

/// Reads the settings text; empty text or `{}` is the default mode.
pub fn parse_settings(settings: &str) -> Result<Mode, String> {
    if settings.trim().is_empty() {
        return Ok(Mode::Drop);
    }
    let value: Value =
        serde_json::from_str(settings).map_err(|e| format!("settings are not JSON: {e}"))?;
    let map = value.as_object().ok_or("settings must be a JSON object")?;
    if let Some(unknown) = map.keys().find(|k| !matches!(k.as_str(), "mode" | "key")) {
        return Err(format!(
            "unknown setting `{unknown}` (known: `mode`, `key`)"
        ));
    }
    let key = map
        .get("key")
        .map(|k| k.as_str().ok_or("`key` must be a string"));
    match map.get("mode").map(|m| m.as_str()) {
        None | Some(Some("drop")) => Ok(Mode::Drop),
        Some(Some("remove")) => Ok(Mode::Remove),
        Some(Some("digest")) => match key {
            Some(Ok(key)) if key.len() >= 16 => Ok(Mode::Digest(key.as_bytes().to_vec())),
            Some(Ok(_)) => Err("`key` must be at least 16 characters".to_owned()),
            Some(Err(e)) => Err(e.to_owned()),
            None => Err("mode `digest` needs a `key`: without one a short value could be guessed from its digest".to_owned()),
        },
        Some(other) => Err(format!(
            "unknown mode {} (known: drop, digest, remove)",
            other.map_or("(not a string)".to_owned(), |m| format!("`{m}`"))
        )),
    }
}

/// Redacts `object` in place when it is a Secret.
pub fn redact(object: &mut Value, mode: &Mode) -> Result<(), String> {
    // What a Secret is, however `kind` and `apiVersion` are spelled, is the
    // host's own answer too (it files the object by the same test).
    let field = |name| object.get(name).and_then(Value::as_str).unwrap_or_default();
    if !plumbline_kinds::is_secret(field("apiVersion"), field("kind")) {
        return Ok(());
    }
    let map = object
        .as_object_mut()
        .ok_or("object is not a JSON object")?;
    // A field a Secret does not have (`stringdata`, `Data`, `spec`) could
    // hold values in clear that no rule here blanks: refused, as kubectl's
    // strict field validation refuses it.
    if let Some(unknown) = map.keys().find(|k| !SECRET_FIELDS.contains(&k.as_str())) {
        return Err(format!(
            "the Secret has a field `{unknown}` that Secrets do not have (known: {}); refusing to write it",
            SECRET_FIELDS.join(", ")
        ));
    }
    for field in ["data", "stringData"] {
        if *mode == Mode::Remove {
            map.remove(field);
            continue;
        }
        match map.get_mut(field) {
            None | Some(Value::Null) => {}
            Some(Value::Object(values)) => redact_values(values, field == "data", mode)?,
            // Secret-shaped but unreadable: refused, never passed through.
            Some(other) => {
                return Err(format!(
                    "the Secret's `{field}` is {}, not a map of values; refusing to write it",
                    shape(other)
                ));
            }
        }
    }
    Ok(())
}

fn shape(value: &Value) -> &'static str {
    match value {
        Value::Array(_) => "a list",
        Value::String(_) => "a string",
        Value::Number(_) => "a number",
        Value::Bool(_) => "a boolean",
        _ => "something else",
    }
}

fn redact_values(values: &mut Map<String, Value>, base64: bool, mode: &Mode) -> Result<(), String> {
    for (key, value) in values.iter_mut() {
        let text = value.as_str().unwrap_or_default();
        *value = Value::String(match mode {
            Mode::Drop | Mode::Remove => REDACTED.to_owned(),
            Mode::Digest(secret) => {
                let raw = if base64 {
                    decode_base64(text).ok_or_else(|| format!("data[{key}] is not base64"))?
                } else {
                    text.as_bytes().to_vec()
                };
                digest(secret, &raw)
            }
        });
    }
    Ok(())
}

/// The keyed digest of a decoded value. `data` and `stringData` holding the
/// same value give the same digest, since both are digested decoded.
pub fn digest(key: &[u8], value: &[u8]) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(key).expect("HMAC takes a key of any length");
    mac.update(value);
    format!("hmac-sha256:{}", hex::encode(mac.finalize().into_bytes()))
}

fn decode_base64(text: &str) -> Option<Vec<u8>> {
    use base64::Engine as _;
    base64::engine::general_purpose::STANDARD.decode(text).ok()
}

/// Sanitizes one object given as JSON text: what the component exports.
pub fn sanitize_json(object: &str, settings: &str) -> Result<String, String> {
    let mode = parse_settings(settings)?;
    let mut object: Value =
        serde_json::from_str(object).map_err(|e| format!("object is not JSON: {e}"))?;
    redact(&mut object, &mode)?;
    serde_json::to_string(&object).map_err(|e| e.to_string())
}

#[cfg(target_arch = "wasm32")]
mod component {
    //! The component's exports: the sanitizer world plus a settings check.
    wit_bindgen::generate!({
        inline: "
            package plumbline:redact-secrets;
            world redact-secrets {
                include plumbline:policy/sanitizer@0.1.0;
                export plumbline:policy/settings@0.1.0;
            }
        ",
        path: "../../wit",
        generate_all,
    });

    struct Redact;

    impl Guest for Redact {
        fn sanitize(object: String, settings: String) -> Result<Option<String>, String> {
            super::sanitize_json(&object, &settings).map(Some)
        }
    }

    impl exports::plumbline::policy::settings::Guest for Redact {
        fn validate_settings(settings: String) -> Result<(), String> {
            super::parse_settings(&settings).map(drop)
        }
    }

    export!(Redact);
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn secret() -> Value {
        json!({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "s"},
               "data": {"password": "aHVudGVyMg=="}, "stringData": {"token": "hunter2"}})
    }

    #[test]
    fn a_secret_spelled_in_another_case_is_redacted_too() {
        for (api_version, kind) in [("V1", "Secret"), ("v1", "secret"), ("/v1", "SECRET")] {
            let mut s = secret();
            s["apiVersion"] = json!(api_version);
            s["kind"] = json!(kind);
            redact(&mut s, &Mode::Drop).unwrap();
            assert_eq!(s["data"]["password"], REDACTED, "{api_version} {kind}");
            assert_eq!(s["stringData"]["token"], REDACTED, "{api_version} {kind}");
        }
    }

    #[test]
    fn a_secret_whose_values_are_not_a_map_is_refused_not_passed_through() {
        for data in [json!("aHVudGVyMg=="), json!(["hunter2"]), json!(42)] {
            let mut s = secret();
            s["stringData"] = data.clone();
            let error = redact(&mut s, &Mode::Drop).unwrap_err();
            assert!(
                error.contains("`stringData`") && error.contains("refusing"),
                "{error}"
            );
        }
        let mut s = secret();
        s["data"] = Value::Null;
        redact(&mut s, &Mode::Drop).unwrap();
    }

    #[test]
    fn a_secret_with_a_field_secrets_do_not_have_is_refused() {
        for field in ["stringdata", "Data", "spec"] {
            let mut s = secret();
            s[field] = json!({"password": "TYPO-PLAINTEXT"});
            let error = redact(&mut s, &Mode::Drop).unwrap_err();
            assert!(error.contains(&format!("`{field}`")), "{error}");
        }
    }

    #[test]
    fn drop_keeps_keys_and_hides_values() {
        let mut s = secret();
        redact(&mut s, &Mode::Drop).unwrap();
        assert_eq!(s["data"], json!({"password": REDACTED}));
        assert_eq!(s["stringData"], json!({"token": REDACTED}));
    }

    #[test]
    fn digest_is_keyed_and_sees_through_base64() {
        let mode = parse_settings(r#"{"mode":"digest","key":"0123456789abcdef"}"#).unwrap();
        let mut s = secret();
        redact(&mut s, &mode).unwrap();
        assert_eq!(s["data"]["password"], s["stringData"]["token"]);
        assert!(!s.to_string().contains("hunter2"));
        let other = digest(b"another key of 16+", b"hunter2");
        assert_ne!(s["data"]["password"], json!(other));
    }

    #[test]
    fn digest_without_a_key_is_refused() {
        assert!(
            parse_settings(r#"{"mode":"digest"}"#)
                .unwrap_err()
                .contains("needs a `key`")
        );
        assert!(
            parse_settings(r#"{"mode":"clear"}"#)
                .unwrap_err()
                .contains("unknown mode")
        );
    }

    #[test]
    fn other_kinds_pass_untouched() {
        let mut cm = json!({"apiVersion": "v1", "kind": "ConfigMap", "data": {"a": "b"}});
        let before = cm.clone();
        redact(&mut cm, &Mode::Drop).unwrap();
        assert_eq!(cm, before);
    }

    #[test]
    fn base64_decodes() {
        assert_eq!(decode_base64("aHVudGVyMg==").unwrap(), b"hunter2");
        assert!(decode_base64("!!").is_none());
    }
}
