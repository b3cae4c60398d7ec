//! Reading Kubernetes manifests: YAML or JSON text holding one or more
//! documents, each an object or a `List` of objects.

use serde_json::Value;

/// One object read from a manifest, with where it came from.
#[derive(Debug, Clone, PartialEq)]
pub struct Manifest {
    /// `file`, `file#2` (the second document) or `file#2.items[3]`.
    pub origin: String,
    /// The object.
    pub object: Value,
}

/// A manifest that could not be read; the rest of the input still is.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum IngestError {
    /// The text is not YAML or JSON.
    #[error("{origin}: not valid YAML or JSON: {message}")]
    Parse {
        /// The file (and document) at fault.
        origin: String,
        /// The parser's message, with line and column.
        message: String,
    },
    /// A document is not an object, or lacks what identifies one.
    #[error("{origin}: {message}")]
    Invalid {
        /// The file, document and item at fault.
        origin: String,
        /// What is missing or wrong.
        message: String,
    },
}

/// Reads every object in `text`, expanding `List` kinds. Each document that
/// cannot be used is an error of its own; the others are still returned.
pub fn read_manifests(text: &str, origin: &str) -> (Vec<Manifest>, Vec<IngestError>) {
    let documents: Vec<Value> = match parse_documents(text) {
        Ok(documents) => documents,
        Err(message) => {
            let error = IngestError::Parse {
                origin: origin.to_owned(),
                message,
            };
            return (Vec::new(), vec![error]);
        }
    };
    let several = documents.len() > 1;
    let mut objects = Vec::new();
    let mut errors = Vec::new();
    for (i, document) in documents.into_iter().enumerate() {
        if document.is_null() {
            continue;
        }
        let origin = if several {
            format!("{origin}#{}", i + 1)
        } else {
            origin.to_owned()
        };
        collect(document, origin, &mut objects, &mut errors);
    }
    (objects, errors)
}

/// JSON (one value or several in a row, as `kubectl get -o json` and
/// dumps write them) is read by the JSON parser, several times faster than
/// reading it as YAML; anything else as YAML, multi-document.
fn parse_documents(text: &str) -> Result<Vec<Value>, String> {
    if text.trim_start().starts_with(['{', '[']) {
        let json: Result<Vec<Value>, _> = serde_json::Deserializer::from_str(text)
            .into_iter()
            .collect();
        if let Ok(documents) = json {
            return Ok(documents);
        }
    }
    serde_saphyr::from_multiple(text).map_err(|e| e.to_string())
}

fn collect(
    document: Value,
    origin: String,
    objects: &mut Vec<Manifest>,
    errors: &mut Vec<IngestError>,
) {
    let is_list = document
        .get("kind")
        .and_then(Value::as_str)
        .is_some_and(|k| k == "List" || k.ends_with("List"))
        && document.get("items").is_some_and(Value::is_array);
    if is_list {
        let Value::Array(items) = document["items"].clone() else {
            unreachable!("checked above")
        };
        for (i, item) in items.into_iter().enumerate() {
            collect(item, format!("{origin}.items[{i}]"), objects, errors);
        }
        return;
    }
    match identify(&document) {
        Ok(()) => objects.push(Manifest {
            origin,
            object: document,
        }),
        Err(message) => errors.push(IngestError::Invalid { origin, message }),
    }
}

/// Checks that a document is an object with apiVersion, kind and a name.
fn identify(document: &Value) -> Result<(), String> {
    if !document.is_object() {
        return Err("a manifest document must be an object".into());
    }
    let field = |pointer: &str| {
        document
            .pointer(pointer)
            .and_then(Value::as_str)
            .filter(|s| !s.is_empty())
    };
    let missing: Vec<&str> = [
        ("apiVersion", "/apiVersion"),
        ("kind", "/kind"),
        ("metadata.name", "/metadata/name"),
    ]
    .into_iter()
    .filter(|(_, pointer)| field(pointer).is_none())
    .map(|(name, _)| name)
    .collect();
    if missing.is_empty() {
        Ok(())
    } else {
        Err(format!("object without {}", missing.join(", ")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn multi_document_and_lists() {
        let text = "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: a}\n---\n---\n\
                    apiVersion: v1\nkind: List\nitems:\n- {apiVersion: v1, kind: Secret, metadata: {name: b}}\n\
                    - {apiVersion: v1, kind: Secret}\n";
        let (objects, errors) = read_manifests(text, "f.yaml");
        let origins: Vec<_> = objects.iter().map(|m| m.origin.as_str()).collect();
        assert_eq!(origins, ["f.yaml#1", "f.yaml#2.items[0]"]);
        assert_eq!(errors.len(), 1);
        assert_eq!(
            errors[0].to_string(),
            "f.yaml#2.items[1]: object without metadata.name"
        );
    }

    #[test]
    fn json_reads_too() {
        let (objects, errors) = read_manifests(
            r#"{"apiVersion":"v1","kind":"Namespace","metadata":{"name":"x"}}"#,
            "n.json",
        );
        assert_eq!((objects.len(), errors.len()), (1, 0));
    }

    #[test]
    fn broken_yaml_names_the_file() {
        let (_, errors) = read_manifests("a: [1,\n", "bad.yaml");
        assert!(
            errors[0]
                .to_string()
                .starts_with("bad.yaml: not valid YAML"),
            "{}",
            errors[0]
        );
    }
}
