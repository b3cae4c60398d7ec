//! Reading Kubernetes manifests: YAML or JSON text holding one or more
//! documents, each an object or a `List` of objects, read as `kubectl`
//! reads them ([`super::yaml`]).
//!
//! Each document is told apart as one of four things, so that one bad
//! document never costs the good ones beside it: an object to mirror; a
//! document that is not a cluster object at all (a Helm values file, a
//! `Chart.yaml`, a kustomization, a `generateName` template), skipped with
//! a note; a warning about an object that is still used (a file that looks
//! cut short); or an error (a document that does not parse, an object that
//! cannot be identified), which the caller counts against the file.

use super::yaml::{self, Chunk, Parsed};
use serde::Deserialize;
use serde::de::{DeserializeSeed, MapAccess, SeqAccess, Visitor};
use serde_json::{Map, Value};
use std::fmt;
use std::sync::Arc;

/// One object read from a manifest, with where it came from.
#[derive(Debug, Clone, PartialEq)]
pub struct Manifest {
    /// `file`, `file#2` (the second document) or `file#2.items[3]`.
    pub origin: String,
    /// The object.
    pub object: Value,
}

/// Something said about a document that is not an error.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Note {
    /// The file, document and item.
    pub origin: String,
    /// What was found.
    pub message: String,
}

impl fmt::Display for Note {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.origin, self.message)
    }
}

/// A manifest that could not be read; the rest of the input still is.
#[derive(Debug, Clone, thiserror::Error)]
pub enum IngestError {
    /// The text is not YAML or JSON.
    #[error("{origin}: not valid YAML or JSON: {message}")]
    Parse {
        /// The file (and document) at fault.
        origin: String,
        /// The parser's message, with line and column.
        message: String,
    },
    /// A document is an object that lacks what identifies one.
    #[error("{origin}: {message}")]
    Invalid {
        /// The file, document and item at fault.
        origin: String,
        /// What is missing or wrong.
        message: String,
    },
    /// A file or folder could not be read at all: not a parse error.
    #[error("{origin}: {source}")]
    Unreadable {
        /// The path at fault.
        origin: String,
        /// The cause, as the system gave it.
        #[source]
        source: Arc<std::io::Error>,
    },
    /// An entry the source will not read (a FIFO, a device, a file past
    /// the size cap, a link out of the folder).
    #[error("{origin}: {message}")]
    Refused {
        /// The path at fault.
        origin: String,
        /// Why it is not read.
        message: String,
    },
}

impl IngestError {
    /// The path (and document) at fault.
    pub fn origin(&self) -> &str {
        match self {
            IngestError::Parse { origin, .. }
            | IngestError::Invalid { origin, .. }
            | IngestError::Unreadable { origin, .. }
            | IngestError::Refused { origin, .. } => origin,
        }
    }
}

/// What reading finds, item by item.
#[derive(Debug, Clone)]
pub enum Found {
    /// An object to mirror.
    Object(Manifest),
    /// A document that is not a cluster object, and why.
    Skipped(Note),
    /// Something about the file worth a look; its objects are still used.
    Warning(Note),
    /// A document that cannot be used.
    Error(IngestError),
}

/// Everything [`read_manifests`] found, gathered.
#[derive(Debug, Default)]
pub struct Read {
    /// Objects to mirror.
    pub objects: Vec<Manifest>,
    /// Documents that are not cluster objects.
    pub skipped: Vec<Note>,
    /// Warnings.
    pub warnings: Vec<Note>,
    /// Documents that could not be used.
    pub errors: Vec<IngestError>,
}

/// Reads every object in `text`, expanding `List` kinds, and gathers what
/// it found.
pub fn read_manifests(text: &str, origin: &str) -> Read {
    let mut read = Read::default();
    read_each(text, origin, &mut |found| match found {
        Found::Object(manifest) => read.objects.push(manifest),
        Found::Skipped(note) => read.skipped.push(note),
        Found::Warning(note) => read.warnings.push(note),
        Found::Error(error) => read.errors.push(error),
    });
    read
}

/// Reads every object in `text`, handing each finding to `found` as it
/// goes: a large `List` is never held whole.
pub fn read_each(text: &str, origin: &str, found: &mut dyn FnMut(Found)) {
    if text.trim_start().starts_with(['{', '[']) && read_json(text, origin, found) {
        return;
    }
    let chunks = yaml::split(text);
    let several = chunks.iter().filter(|c| c.is_ok()).count() > 1;
    let mut document = 0;
    for chunk in chunks {
        match chunk {
            Ok(chunk) => {
                document += 1;
                let origin = if several {
                    format!("{origin}#{document}")
                } else {
                    origin.to_owned()
                };
                read_chunk(chunk, origin, found);
            }
            // A separator line is the file's, not a document's.
            Err(error) => found(Found::Error(IngestError::Parse {
                origin: origin.to_owned(),
                message: error.message,
            })),
        }
    }
}

fn read_chunk(chunk: Chunk<'_>, origin: String, found: &mut dyn FnMut(Found)) {
    let mut index = 0;
    let parsed = yaml::parse(chunk, &mut |item| {
        classify(item, format!("{origin}.items[{index}]"), found);
        index += 1;
    });
    match parsed {
        Ok(Parsed::Empty) => {}
        Ok(Parsed::StreamedList(_)) => {}
        Ok(Parsed::Value(value)) => {
            if let Some(line) = cut_short(chunk.text) {
                found(Found::Warning(Note {
                    origin: origin.clone(),
                    message: format!(
                        "it ends with `{}` and no value: is the file cut short?",
                        line.trim()
                    ),
                }));
            }
            expand(value, origin, found);
        }
        Err(error) => found(Found::Error(IngestError::Parse {
            origin,
            message: error.message,
        })),
    }
}

/// The last line of a block-style document, when it is a key with no
/// value: what a file cut at a line end looks like.
fn cut_short(text: &str) -> Option<&str> {
    let last = text
        .lines()
        .rev()
        .map(str::trim_end)
        .find(|l| !l.trim().is_empty() && !l.trim_start().starts_with('#'))?;
    (last.ends_with(':') && !last.trim_start().starts_with('-')).then_some(last)
}

/// JSON (one value or several in a row, as `kubectl get -o json` and dumps
/// write them), read by the JSON parser, several times faster than as YAML.
/// False when the text is not JSON after all (it is then read as YAML).
fn read_json(text: &str, origin: &str, found: &mut dyn FnMut(Found)) -> bool {
    if text.len() >= yaml::STREAM_LISTS_FROM && is_json_list(text) {
        let mut index = 0;
        let mut item = |value: Value| {
            classify(value, format!("{origin}.items[{index}]"), found);
            index += 1;
        };
        let mut deserializer = serde_json::Deserializer::from_str(text);
        return ListRoot { item: &mut item }
            .deserialize(&mut deserializer)
            .and_then(|_| deserializer.end())
            .is_ok();
    }
    let documents: Result<Vec<Value>, _> = serde_json::Deserializer::from_str(text)
        .into_iter()
        .collect();
    let Ok(documents) = documents else {
        return false;
    };
    let several = documents.len() > 1;
    for (i, mut document) in documents.into_iter().enumerate() {
        yaml::normalize_json(&mut document);
        let origin = if several {
            format!("{origin}#{}", i + 1)
        } else {
            origin.to_owned()
        };
        expand(document, origin, found);
    }
    true
}

/// Whether `text` is one JSON object whose kind is a `…List`, read without
/// building anything.
fn is_json_list(text: &str) -> bool {
    #[derive(Deserialize)]
    struct Head {
        kind: Option<String>,
    }
    serde_json::from_str::<Head>(text)
        .ok()
        .and_then(|head| head.kind)
        .is_some_and(|kind| kind.ends_with("List"))
}

/// A JSON list's root: every key read but `items`, whose elements go to
/// `item` one by one.
struct ListRoot<'a> {
    item: &'a mut dyn FnMut(Value),
}

impl<'de> DeserializeSeed<'de> for ListRoot<'_> {
    type Value = ();
    fn deserialize<D: serde::Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_map(self)
    }
}

impl<'de> Visitor<'de> for ListRoot<'_> {
    type Value = ();
    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a List object")
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        while let Some(key) = map.next_key::<String>()? {
            if key == "items" {
                map.next_value_seed(Items {
                    item: &mut *self.item,
                })?;
            } else {
                map.next_value::<serde::de::IgnoredAny>()?;
            }
        }
        Ok(())
    }
}

struct Items<'a> {
    item: &'a mut dyn FnMut(Value),
}

impl<'de> DeserializeSeed<'de> for Items<'_> {
    type Value = ();
    fn deserialize<D: serde::Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_seq(self)
    }
}

impl<'de> Visitor<'de> for Items<'_> {
    type Value = ();
    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a list of objects")
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        while let Some(mut value) = seq.next_element::<Value>()? {
            yaml::normalize_json(&mut value);
            (self.item)(value);
        }
        Ok(())
    }
}

/// A document: a `List`'s items one by one, or the object itself.
fn expand(document: Value, origin: String, found: &mut dyn FnMut(Found)) {
    if document.is_null() {
        return;
    }
    let is_list = document
        .get("kind")
        .and_then(Value::as_str)
        .is_some_and(|k| k.ends_with("List"))
        && document.get("items").is_some_and(Value::is_array);
    if !is_list {
        return classify(document, origin, found);
    }
    let Value::Object(mut map) = document else {
        unreachable!("a document with a kind is an object")
    };
    let Some(Value::Array(items)) = map.remove("items") else {
        unreachable!("checked above")
    };
    for (i, item) in items.into_iter().enumerate() {
        expand(item, format!("{origin}.items[{i}]"), found);
    }
}

/// An object, a document to skip, or an error.
fn classify(document: Value, origin: String, found: &mut dyn FnMut(Found)) {
    let skip = |message: String| {
        Found::Skipped(Note {
            origin: origin.clone(),
            message,
        })
    };
    let Value::Object(map) = &document else {
        return found(skip(format!(
            "not a Kubernetes object (the document is {})",
            shape(&document)
        )));
    };
    let text = |map: &Map<String, Value>, key: &str| {
        map.get(key)
            .and_then(Value::as_str)
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(str::to_owned)
    };
    let (Some(api_version), Some(kind)) = (text(map, "apiVersion"), text(map, "kind")) else {
        return found(skip(
            "not a Kubernetes object (no apiVersion and kind; a values file or a tool's configuration?)"
                .into(),
        ));
    };
    if let Some(what) = plumbline_kinds::client_side(&api_version, &kind) {
        return found(skip(format!(
            "{what} ({api_version} {kind}), which no API server serves"
        )));
    }
    let metadata = map.get("metadata").and_then(Value::as_object);
    // As the API server would: an identity field that YAML read as
    // something else (an unquoted `n` or `no` is false, `0755` a number)
    // is an error naming it, never silently another object's identity.
    for field in ["name", "namespace", "generateName"] {
        match metadata.and_then(|m| m.get(field)) {
            None | Some(Value::String(_)) | Some(Value::Null) => {}
            Some(other) => {
                return found(Found::Error(IngestError::Invalid {
                    origin,
                    message: format!(
                        "{api_version} {kind}: metadata.{field} is {} ({other}), not a string; quote it (YAML 1.1 reads an unquoted `n`, `no` or `off` as false, `0755` as a number)",
                        shape(other)
                    ),
                }));
            }
        }
    }
    let name = metadata.and_then(|m| text(m, "name"));
    let generated = metadata.and_then(|m| text(m, "generateName"));
    match (name, generated) {
        (Some(_), _) => found(Found::Object(Manifest {
            origin,
            object: document,
        })),
        (None, Some(_)) => found(skip(
            "a generateName template, which has no identity to mirror until the API server names it"
                .into(),
        )),
        (None, None) => found(Found::Error(IngestError::Invalid {
            origin,
            message: format!("{api_version} {kind} without metadata.name"),
        })),
    }
}

fn shape(value: &Value) -> &'static str {
    match value {
        Value::Array(_) => "a list",
        Value::String(_) => "a string",
        Value::Number(_) => "a number",
        Value::Bool(_) => "a boolean",
        _ => "empty",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_identity_field_yaml_read_as_a_boolean_or_a_number_is_an_error_naming_it() {
        for (text, field) in [
            (
                "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: a, namespace: n}\n",
                "namespace",
            ),
            (
                "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: 0755}\n",
                "name",
            ),
        ] {
            let read = read_manifests(text, "f.yaml");
            assert!(read.objects.is_empty(), "{text}");
            let error = read.errors[0].to_string();
            assert!(error.contains(&format!("metadata.{field} is a")), "{error}");
            assert!(error.contains("quote it"), "{error}");
        }
        let quoted = read_manifests(
            "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: a, namespace: \"n\"}\n",
            "f.yaml",
        );
        assert_eq!(quoted.objects.len(), 1);
    }

    #[test]
    fn multi_document_and_lists() {
        let text = "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: a}\n---\n---\n\
                    apiVersion: v1\nkind: List\nitems:\n- {apiVersion: v1, kind: Secret, metadata: {name: b}}\n\
                    - {apiVersion: v1, kind: Secret}\n";
        let read = read_manifests(text, "f.yaml");
        let origins: Vec<_> = read.objects.iter().map(|m| m.origin.as_str()).collect();
        assert_eq!(origins, ["f.yaml#1", "f.yaml#3.items[0]"]);
        assert_eq!(read.errors.len(), 1);
        assert_eq!(
            read.errors[0].to_string(),
            "f.yaml#3.items[1]: v1 Secret without metadata.name"
        );
    }

    #[test]
    fn json_reads_too() {
        let read = read_manifests(
            r#"{"apiVersion":"v1","kind":"Namespace","metadata":{"name":"x"},"spec":{"n":2.0}}"#,
            "n.json",
        );
        assert_eq!((read.objects.len(), read.errors.len()), (1, 0));
        assert!(read.objects[0].object["spec"]["n"].is_i64());
    }

    #[test]
    fn broken_yaml_names_the_file() {
        let read = read_manifests("a: [1,\n", "bad.yaml");
        assert!(
            read.errors[0]
                .to_string()
                .starts_with("bad.yaml: not valid YAML"),
            "{}",
            read.errors[0]
        );
    }

    #[test]
    fn a_broken_document_keeps_the_good_ones_beside_it() {
        let text = "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: a}\n---\nkind: [unclosed\n---\n\
                    apiVersion: v1\nkind: ConfigMap\nmetadata: {name: c}\n";
        let read = read_manifests(text, "f.yaml");
        let names: Vec<_> = read
            .objects
            .iter()
            .map(|m| m.object["metadata"]["name"].as_str().unwrap())
            .collect();
        assert_eq!(names, ["a", "c"]);
        assert_eq!(read.errors.len(), 1);
        assert!(
            read.errors[0].to_string().starts_with("f.yaml#2: "),
            "{}",
            read.errors[0]
        );
    }

    #[test]
    fn documents_that_are_not_cluster_objects_are_skipped_with_a_note() {
        for (text, says) in [
            (
                "apiVersion: kustomize.config.k8s.io/v1beta1\nkind: Kustomization\nresources: [a.yaml]\n",
                "kustomize",
            ),
            (
                "apiVersion: kustomize.config.k8s.io/v1alpha1\nkind: Component\n",
                "kustomize",
            ),
            (
                "apiVersion: v2\nname: chart\nversion: 1.0.0\n",
                "no apiVersion and kind",
            ),
            (
                "replicaCount: 1\nimage: {repository: nginx}\n",
                "no apiVersion and kind",
            ),
            (
                "apiVersion: batch/v1\nkind: Job\nmetadata: {generateName: run-}\n",
                "generateName",
            ),
            ("apiVersion: v1\nkind: Config\nusers: []\n", "kubeconfig"),
            ("just text\n", "a string"),
        ] {
            let read = read_manifests(text, "x.yaml");
            assert!(read.objects.is_empty() && read.errors.is_empty(), "{text}");
            assert!(
                read.skipped[0].message.contains(says),
                "{}",
                read.skipped[0]
            );
        }
    }

    #[test]
    fn a_file_cut_at_a_line_end_is_warned_about() {
        let text = "apiVersion: apps/v1\nkind: Deployment\nmetadata: {name: web}\nspec:\n  template:\n    metadata:\n";
        let read = read_manifests(text, "cut.yaml");
        assert_eq!(read.objects.len(), 1);
        assert!(
            read.warnings[0].message.contains("cut short"),
            "{:?}",
            read.warnings
        );
        let whole = "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: a\n";
        assert!(read_manifests(whole, "a.yaml").warnings.is_empty());
    }

    #[test]
    fn a_large_json_list_streams() {
        let item = r#"{"apiVersion":"v1","kind":"ConfigMap","metadata":{"name":"a","namespace":"n"},"data":{"k":"vvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvv"}}"#;
        let count = yaml::STREAM_LISTS_FROM / item.len() + 10;
        let items = vec![item; count].join(",");
        let text =
            format!(r#"{{"apiVersion":"v1","items":[{items}],"kind":"List","metadata":{{}}}}"#);
        let mut objects = 0;
        read_each(&text, "big.json", &mut |found| match found {
            Found::Object(m) => {
                assert!(m.origin.starts_with("big.json.items["));
                objects += 1;
            }
            other => panic!("{other:?}"),
        });
        assert_eq!(objects, count);
    }
}
