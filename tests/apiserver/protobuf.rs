//! The protobuf bodies `kubectl`'s typed commands send (`kubectl create
//! configmap|secret|namespace|serviceaccount`: client-go's clientset writes
//! `application/vnd.kubernetes.protobuf` and has no JSON fallback), decoded
//! into the JSON objects they stand for. Only the fields a client sets are
//! read; the server sets the rest.
//!
//! The envelope is `k8s\0` and a `runtime.Unknown` (typeMeta, raw); `raw` is
//! the object's message in the field numbers of `k8s.io/api`'s
//! `generated.proto`.

use serde_json::{Map, Value, json};

/// One field of a message.
enum Wire<'a> {
    Varint(u64),
    Bytes(&'a [u8]),
}

fn varint(bytes: &mut &[u8]) -> Option<u64> {
    let mut value = 0u64;
    for shift in (0..64).step_by(7) {
        let (&byte, rest) = bytes.split_first()?;
        *bytes = rest;
        value |= u64::from(byte & 0x7f) << shift;
        if byte & 0x80 == 0 {
            return Some(value);
        }
    }
    None
}

/// The fields of a message, in order; `None` if it is not protobuf.
fn fields(mut bytes: &[u8]) -> Option<Vec<(u64, Wire<'_>)>> {
    let mut out = Vec::new();
    while !bytes.is_empty() {
        let key = varint(&mut bytes)?;
        let wire = match key & 7 {
            0 => Wire::Varint(varint(&mut bytes)?),
            2 => {
                let length = usize::try_from(varint(&mut bytes)?).ok()?;
                if length > bytes.len() {
                    return None;
                }
                let (value, rest) = bytes.split_at(length);
                bytes = rest;
                Wire::Bytes(value)
            }
            1 => {
                bytes = bytes.get(8..)?;
                continue;
            }
            5 => {
                bytes = bytes.get(4..)?;
                continue;
            }
            _ => return None,
        };
        out.push((key >> 3, wire));
    }
    Some(out)
}

fn text(bytes: &[u8]) -> Option<Value> {
    Some(json!(std::str::from_utf8(bytes).ok()?))
}

/// A `map<string, string>` (or bytes, base64 as JSON has them) entry.
fn entry(bytes: &[u8], binary: bool) -> Option<(String, Value)> {
    let (mut key, mut value) = (String::new(), json!(""));
    for (number, wire) in fields(bytes)? {
        match (number, wire) {
            (1, Wire::Bytes(b)) => key = std::str::from_utf8(b).ok()?.to_owned(),
            (2, Wire::Bytes(b)) if binary => {
                use base64::Engine as _;
                value = json!(base64::engine::general_purpose::STANDARD.encode(b));
            }
            (2, Wire::Bytes(b)) => value = text(b)?,
            _ => {}
        }
    }
    Some((key, value))
}

fn put_entry(object: &mut Map<String, Value>, field: &str, (key, value): (String, Value)) {
    let map = object.entry(field).or_insert_with(|| json!({}));
    map[key] = value;
}

fn push(object: &mut Map<String, Value>, field: &str, value: Value) {
    let list = object.entry(field).or_insert_with(|| json!([]));
    if let Some(list) = list.as_array_mut() {
        list.push(value);
    }
}

fn metadata(bytes: &[u8]) -> Option<Value> {
    let mut meta = Map::new();
    for (number, wire) in fields(bytes)? {
        match (number, wire) {
            (1, Wire::Bytes(b)) => {
                meta.insert("name".into(), text(b)?);
            }
            (2, Wire::Bytes(b)) => {
                meta.insert("generateName".into(), text(b)?);
            }
            (3, Wire::Bytes(b)) => {
                meta.insert("namespace".into(), text(b)?);
            }
            (11, Wire::Bytes(b)) => put_entry(&mut meta, "labels", entry(b, false)?),
            (12, Wire::Bytes(b)) => put_entry(&mut meta, "annotations", entry(b, false)?),
            (14, Wire::Bytes(b)) => push(&mut meta, "finalizers", text(b)?),
            _ => {}
        }
    }
    Some(Value::Object(meta))
}

/// The object a protobuf body holds, or why not.
pub fn decode(body: &[u8]) -> Result<Value, String> {
    let unknown = body
        .strip_prefix(b"k8s\0")
        .ok_or("a protobuf body starts with `k8s\\0`")?;
    let bad = || "the protobuf body is malformed".to_owned();
    let (mut api_version, mut kind, mut raw) = (String::new(), String::new(), &[][..]);
    for (number, wire) in fields(unknown).ok_or_else(bad)? {
        match (number, wire) {
            (1, Wire::Bytes(type_meta)) => {
                for (n, w) in fields(type_meta).ok_or_else(bad)? {
                    match (n, w) {
                        (1, Wire::Bytes(b)) => api_version = String::from_utf8_lossy(b).into(),
                        (2, Wire::Bytes(b)) => kind = String::from_utf8_lossy(b).into(),
                        _ => {}
                    }
                }
            }
            (2, Wire::Bytes(b)) => raw = b,
            _ => {}
        }
    }
    let mut object = Map::new();
    object.insert("apiVersion".into(), json!(api_version));
    object.insert("kind".into(), json!(kind));
    for (number, wire) in fields(raw).ok_or_else(bad)? {
        let Wire::Bytes(b) = wire else {
            let Wire::Varint(v) = wire else { continue };
            match (kind.as_str(), number) {
                ("ConfigMap", 4) | ("Secret", 5) => {
                    object.insert("immutable".into(), json!(v != 0));
                }
                ("ServiceAccount", 4) => {
                    object.insert("automountServiceAccountToken".into(), json!(v != 0));
                }
                _ => {}
            }
            continue;
        };
        match (kind.as_str(), number) {
            (_, 1) => {
                object.insert("metadata".into(), metadata(b).ok_or_else(bad)?);
            }
            ("ConfigMap", 2) | ("Secret", 4) => {
                let field = if kind == "Secret" {
                    "stringData"
                } else {
                    "data"
                };
                put_entry(&mut object, field, entry(b, false).ok_or_else(bad)?);
            }
            ("ConfigMap", 3) | ("Secret", 2) => {
                let field = if kind == "Secret" {
                    "data"
                } else {
                    "binaryData"
                };
                put_entry(&mut object, field, entry(b, true).ok_or_else(bad)?);
            }
            ("Secret", 3) => {
                object.insert("type".into(), text(b).ok_or_else(bad)?);
            }
            ("Namespace" | "ServiceAccount", _) => {}
            (other, n) => {
                return Err(format!(
                    "field {n} of a protobuf {other} is not supported here"
                ));
            }
        }
    }
    if !matches!(
        kind.as_str(),
        "ConfigMap" | "Secret" | "Namespace" | "ServiceAccount"
    ) {
        return Err(format!(
            "a protobuf {kind} is not supported here; send JSON"
        ));
    }
    Ok(Value::Object(object))
}
