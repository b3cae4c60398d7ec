//! Manifests read the way `kubectl` reads them.
//!
//! What reaches Git must be what the API server would store for the same
//! file, and `kubectl` (through `sigs.k8s.io/yaml` and go-yaml v2) reads
//! YAML with the YAML 1.1 rules: `0755` is octal (493), `0x10` is 16,
//! `1_000` is 1000, `yes`, `on` and `y` are `true`; then it converts the
//! result to JSON, which the API server reads back, so an integral float
//! (`2.0`) is the integer 2 and an integer past `i64` is a float. A YAML 1.2
//! reader gets several of these wrong (`0755` is 755, `tRue` is `true`), and
//! the information needed to fix them afterwards (was the scalar quoted?)
//! is gone by then, so this module resolves scalars itself, from the events
//! of the `granit-parser` pull parser (serde-saphyr's own parser), and
//! builds `serde_json` values directly.
//!
//! Files are split into documents as `kubectl` splits them (at lines that
//! start with `---`), and each document is parsed alone, so one broken
//! document does not lose the others. A document whose root is a `List`
//! can stream its items to a callback, so a 20,000-item dump is never held
//! whole as a tree.

use granit_parser::{Event, Parser, ScalarStyle, Tag};
use serde_json::{Map, Number, Value};

/// Nodes an alias may copy per document, all aliases together: enough for
/// any real manifest, far too few for an alias bomb.
const ALIAS_BUDGET: usize = 100_000;

/// A document this large is first scanned for its kind, so that a `List`
/// streams its items instead of being built whole.
pub const STREAM_LISTS_FROM: usize = 1 << 20;

/// Why a document could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct YamlError {
    /// What is wrong, with the line (counted in the whole file) when known.
    pub message: String,
}

impl YamlError {
    fn new(message: impl Into<String>) -> YamlError {
        YamlError {
            message: message.into(),
        }
    }
}

/// One document of a file, as `kubectl`'s document reader cuts it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Chunk<'a> {
    /// The document's text.
    pub text: &'a str,
    /// The line of the file it starts on, from 1.
    pub first_line: usize,
}

/// Splits `text` at document separators: lines that start with `---`. As
/// in `kubectl`, a separator may be followed only by spaces or a comment;
/// `--- {…}` is an error, returned in the list at its place.
pub fn split(text: &str) -> Vec<Result<Chunk<'_>, YamlError>> {
    let mut out = Vec::new();
    let mut start = 0;
    let mut start_line = 1;
    let mut offset = 0;
    for (i, line) in text.split_inclusive('\n').enumerate() {
        if let Some(rest) = line.strip_prefix("---") {
            let rest = rest.trim();
            if !rest.is_empty() && !rest.starts_with('#') {
                out.push(Err(YamlError::new(format!(
                    "line {}: invalid document separator: `---` may be followed only by a comment, not `{rest}`",
                    i + 1
                ))));
            }
            out.push(Ok(Chunk {
                text: &text[start..offset],
                first_line: start_line,
            }));
            start = offset + line.len();
            start_line = i + 2;
        }
        offset += line.len();
    }
    out.push(Ok(Chunk {
        text: &text[start..],
        first_line: start_line,
    }));
    out
}

/// What a document holds.
#[derive(Debug, Clone, PartialEq)]
pub enum Parsed {
    /// Nothing but comments and space.
    Empty,
    /// A value.
    Value(Value),
    /// A `List` whose items went to the callback one by one; this is the
    /// rest of it (`kind`, `apiVersion`, …) without `items`.
    StreamedList(Value),
}

/// Parses one document. When it is large and its root is a `…List` with
/// `items`, each item is handed to `item` as it is read.
pub fn parse(chunk: Chunk<'_>, item: &mut dyn FnMut(Value)) -> Result<Parsed, YamlError> {
    let stream = chunk.text.len() >= STREAM_LISTS_FROM
        && root_kind(chunk)?.is_some_and(|kind| kind.ends_with("List"));
    let mut builder = Builder {
        stack: Vec::new(),
        anchors: Vec::new(),
        budget: ALIAS_BUDGET,
        stream: stream.then_some(item),
    };
    let root = builder.run(chunk)?;
    Ok(match root {
        None => Parsed::Empty,
        Some(value) if stream => Parsed::StreamedList(value),
        Some(value) => Parsed::Value(value),
    })
}

/// Parses a document wholly; for tests and small texts.
pub fn parse_value(text: &str) -> Result<Option<Value>, YamlError> {
    let chunk = Chunk {
        text,
        first_line: 1,
    };
    match parse(chunk, &mut |_| {
        unreachable!("small documents are not streamed")
    })? {
        Parsed::Empty => Ok(None),
        Parsed::Value(value) | Parsed::StreamedList(value) => Ok(Some(value)),
    }
}

/// The root mapping's `kind`, read from the events alone (nothing is built).
fn root_kind(chunk: Chunk<'_>) -> Result<Option<String>, YamlError> {
    let mut depth = 0usize;
    // Nodes finished directly in the root mapping: even ones are keys.
    let mut index = 0usize;
    let mut after_kind = false;
    for event in Parser::new_from_str(chunk.text) {
        let (event, _) = event.map_err(|e| scan_error(&e, chunk))?;
        match event {
            Event::SequenceStart(..) if depth == 0 => return Ok(None),
            Event::MappingStart(..) | Event::SequenceStart(..) => depth += 1,
            Event::MappingEnd | Event::SequenceEnd => {
                depth -= 1;
                if depth == 1 {
                    after_kind = false;
                    index += 1;
                }
            }
            Event::Scalar(text, ..) if depth == 1 => {
                if index % 2 == 1 && after_kind {
                    return Ok(Some(text.into_owned()));
                }
                after_kind = index.is_multiple_of(2) && text == "kind";
                index += 1;
            }
            Event::Alias(_) if depth == 1 => {
                after_kind = false;
                index += 1;
            }
            Event::DocumentEnd => break,
            _ => {}
        }
    }
    Ok(None)
}

fn scan_error(error: &granit_parser::ScanError, chunk: Chunk<'_>) -> YamlError {
    let mark = error.marker();
    YamlError::new(format!(
        "line {} column {}: {}",
        mark.line() + chunk.first_line - 1,
        mark.col() + 1,
        error.info()
    ))
}

/// A collection being built.
enum Frame {
    Sequence {
        items: Vec<Value>,
        anchor: usize,
        /// The root List's `items`: each item goes to the callback.
        streamed: bool,
    },
    Mapping {
        map: Map<String, Value>,
        anchor: usize,
        /// The key read, waiting for its value.
        key: Option<Key>,
        /// Values of `<<` keys, merged when the mapping ends.
        merges: Vec<Value>,
    },
}

/// A mapping key: a string, or the YAML merge key.
enum Key {
    Text(String),
    Merge,
}

struct Builder<'f> {
    stack: Vec<Frame>,
    /// Anchored values by anchor id (ids start at 1).
    anchors: Vec<Option<Value>>,
    /// Nodes aliases may still copy.
    budget: usize,
    stream: Option<&'f mut dyn FnMut(Value)>,
}

impl Builder<'_> {
    fn run(&mut self, chunk: Chunk<'_>) -> Result<Option<Value>, YamlError> {
        let mut root = None;
        let mut ended = false;
        for event in Parser::new_from_str(chunk.text) {
            let (event, span) = event.map_err(|e| scan_error(&e, chunk))?;
            let at = |message: String| {
                YamlError::new(format!(
                    "line {}: {message}",
                    span.start.line() + chunk.first_line - 1
                ))
            };
            let done = match event {
                Event::Scalar(text, style, anchor, tag) => {
                    let value = resolve(&text, style, tag.as_deref()).map_err(at)?;
                    let key = (style == ScalarStyle::Plain && text == "<<").then_some(Key::Merge);
                    self.node(value, anchor, key).map_err(at)?
                }
                Event::Alias(id) => {
                    let value = self.alias(id).map_err(at)?;
                    self.node(value, 0, None).map_err(at)?
                }
                Event::SequenceStart(_, anchor, _) => {
                    let streamed = self.stream.is_some()
                        && matches!(&self.stack[..], [Frame::Mapping { key: Some(Key::Text(k)), .. }] if k == "items");
                    self.stack.push(Frame::Sequence {
                        items: Vec::new(),
                        anchor,
                        streamed,
                    });
                    None
                }
                Event::MappingStart(_, anchor, _) => {
                    self.stack.push(Frame::Mapping {
                        map: Map::new(),
                        anchor,
                        key: None,
                        merges: Vec::new(),
                    });
                    None
                }
                Event::SequenceEnd | Event::MappingEnd => {
                    let (value, anchor) = self.close().map_err(at)?;
                    self.node(value, anchor, None).map_err(at)?
                }
                Event::DocumentEnd => {
                    ended = true;
                    None
                }
                Event::StreamEnd | Event::StreamStart => None,
                // What follows the end of the document (`{…} trailing`, a
                // second document with no `---`) would be lost unseen.
                _ if ended => {
                    return Err(at(
                        "content after the end of the document (a second document needs a `---` line)"
                            .into(),
                    ));
                }
                _ => None,
            };
            if done.is_some() {
                root = done;
            }
        }
        Ok(root)
    }

    /// Places a finished node; returns it when it is the document's root.
    fn node(
        &mut self,
        value: Value,
        anchor: usize,
        merge_key: Option<Key>,
    ) -> Result<Option<Value>, String> {
        if anchor > 0 {
            if self.anchors.len() <= anchor {
                self.anchors.resize(anchor + 1, None);
            }
            self.anchors[anchor] = Some(value.clone());
        }
        match self.stack.last_mut() {
            None => Ok(Some(value)),
            Some(Frame::Sequence {
                items, streamed, ..
            }) => {
                match (streamed, self.stream.as_mut()) {
                    (true, Some(stream)) => stream(value),
                    _ => items.push(value),
                }
                Ok(None)
            }
            Some(Frame::Mapping {
                map, key, merges, ..
            }) => {
                match key.take() {
                    None => {
                        *key = Some(merge_key.map_or_else(|| key_text(&value).map(Key::Text), Ok)?)
                    }
                    Some(Key::Merge) => merges.push(value),
                    Some(Key::Text(text)) => {
                        // A repeated key: the last one wins, as in kubectl.
                        map.insert(text, value);
                    }
                }
                Ok(None)
            }
        }
    }

    fn close(&mut self) -> Result<(Value, usize), String> {
        match self.stack.pop() {
            Some(Frame::Sequence { items, anchor, .. }) => Ok((Value::Array(items), anchor)),
            Some(Frame::Mapping {
                mut map,
                anchor,
                merges,
                ..
            }) => {
                for merged in merges {
                    merge_into(&mut map, merged)?;
                }
                Ok((Value::Object(map), anchor))
            }
            None => Err("a collection ends that never began".into()),
        }
    }

    fn alias(&mut self, id: usize) -> Result<Value, String> {
        let value = self
            .anchors
            .get(id)
            .and_then(Option::as_ref)
            .ok_or("an alias to an anchor not yet complete")?;
        let size = nodes(value);
        if size > self.budget {
            return Err(format!(
                "aliases copy more than {ALIAS_BUDGET} nodes (an alias bomb?)"
            ));
        }
        self.budget -= size;
        Ok(value.clone())
    }
}

/// `<<: *base` or `<<: [*a, *b]`: keys the mapping does not set itself
/// come from the merged mappings, earlier ones first.
fn merge_into(map: &mut Map<String, Value>, merged: Value) -> Result<(), String> {
    let sources = match merged {
        Value::Object(source) => vec![source],
        Value::Array(items) => items
            .into_iter()
            .map(|item| match item {
                Value::Object(source) => Ok(source),
                _ => Err("a merge key (`<<`) takes a mapping or a list of mappings"),
            })
            .collect::<Result<_, _>>()?,
        _ => return Err("a merge key (`<<`) takes a mapping or a list of mappings".into()),
    };
    for source in sources {
        for (key, value) in source {
            map.entry(key).or_insert(value);
        }
    }
    Ok(())
}

fn nodes(value: &Value) -> usize {
    match value {
        Value::Array(items) => 1 + items.iter().map(nodes).sum::<usize>(),
        Value::Object(map) => 1 + map.values().map(nodes).sum::<usize>(),
        _ => 1,
    }
}

/// A key as JSON needs it: `sigs.k8s.io/yaml` turns `true` into `"true"`
/// and `0755` into `"493"`, and refuses null and collection keys.
fn key_text(value: &Value) -> Result<String, String> {
    match value {
        Value::String(text) => Ok(text.clone()),
        Value::Bool(b) => Ok(b.to_string()),
        Value::Number(n) => Ok(n.to_string()),
        Value::Null => Err("a mapping key is null, which JSON cannot hold".into()),
        _ => Err("a mapping key is a list or mapping, which JSON cannot hold".into()),
    }
}

/// Resolves a scalar as go-yaml v2 does, then as the API server reads the
/// JSON `kubectl` sends.
fn resolve(text: &str, style: ScalarStyle, tag: Option<&Tag>) -> Result<Value, String> {
    // `!!x` is `tag:yaml.org,2002:x`, the 1.1 types (`binary`, `timestamp`)
    // as well as the core schema's.
    let core = tag.and_then(|t| (t.handle() == "tag:yaml.org,2002:").then(|| t.suffix()));
    match (core, tag) {
        (Some("str" | "timestamp"), _) => return Ok(Value::String(text.into())),
        // go-yaml decodes `!!binary` and kubectl sends the bytes as a string.
        (Some("binary"), _) => return binary(text),
        (Some(wanted @ ("int" | "float" | "bool" | "null")), _) => {
            let value = plain(text)?;
            let found = match &value {
                Value::Null => "null",
                Value::Bool(_) => "bool",
                Value::Number(n) if n.is_f64() => "float",
                Value::Number(_) => "int",
                _ => "str",
            };
            // An integer is a fine float; nothing else converts.
            if found == wanted || (wanted == "float" && found == "int") {
                return Ok(value);
            }
            return Err(format!("cannot read !!{found} `{text}` as a !!{wanted}"));
        }
        // Other tags (`!Ref`, `!!map` on a scalar) are not resolved.
        (_, Some(_)) => return Ok(Value::String(text.into())),
        (_, None) => {}
    }
    if style != ScalarStyle::Plain {
        return Ok(Value::String(text.into()));
    }
    plain(text)
}

/// A `!!binary` scalar: base64 (line breaks allowed) of UTF-8 text.
fn binary(text: &str) -> Result<Value, String> {
    use base64::Engine as _;
    let compact: String = text.split_whitespace().collect();
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(compact)
        .map_err(|e| format!("a !!binary value that is not base64: {e}"))?;
    String::from_utf8(bytes)
        .map(Value::String)
        .map_err(|_| "a !!binary value that is not UTF-8 text, which JSON cannot hold".into())
}

/// go-yaml v2's resolution of a plain scalar (`resolve.go`).
fn plain(text: &str) -> Result<Value, String> {
    match text {
        "" | "~" | "null" | "Null" | "NULL" => return Ok(Value::Null),
        "y" | "Y" | "yes" | "Yes" | "YES" | "true" | "True" | "TRUE" | "on" | "On" | "ON" => {
            return Ok(Value::Bool(true));
        }
        "n" | "N" | "no" | "No" | "NO" | "false" | "False" | "FALSE" | "off" | "Off" | "OFF" => {
            return Ok(Value::Bool(false));
        }
        ".nan" | ".NaN" | ".NAN" | ".inf" | ".Inf" | ".INF" | "+.inf" | "+.Inf" | "+.INF"
        | "-.inf" | "-.Inf" | "-.INF" => {
            return Err(format!("`{text}` is not a number JSON can hold"));
        }
        _ => {}
    }
    let first = text.as_bytes()[0];
    if first == b'.' {
        return Ok(text
            .parse::<f64>()
            .ok()
            .and_then(float)
            .unwrap_or_else(|| Value::String(text.into())));
    }
    if !(first.is_ascii_digit() || first == b'+' || first == b'-') {
        return Ok(Value::String(text.into()));
    }
    let digits = text.replace('_', "");
    if let Some(n) = go_int(&digits) {
        return Ok(n);
    }
    if is_yaml_float(&digits)
        && let Ok(f) = digits.parse::<f64>()
    {
        // Past f64's range (`1e400`) Go's ParseFloat fails, and go-yaml
        // keeps the text as a string.
        return Ok(float(f).unwrap_or_else(|| Value::String(text.into())));
    }
    Ok(Value::String(text.into()))
}

/// Go's `strconv.ParseInt(s, 0, 64)`, then `ParseUint`: an optional sign,
/// then `0x`, `0o`, `0b` or a leading `0` (octal), or decimal. An integer
/// past `i64` becomes a float, as the API server's JSON reader makes it.
fn go_int(text: &str) -> Option<Value> {
    let (negative, body) = match text.as_bytes().first()? {
        b'-' => (true, &text[1..]),
        b'+' => (false, &text[1..]),
        _ => (false, text),
    };
    let lower = body.get(..2).map(str::to_ascii_lowercase);
    let (radix, digits) = match lower.as_deref() {
        Some("0x") => (16, &body[2..]),
        Some("0o") => (8, &body[2..]),
        Some("0b") => (2, &body[2..]),
        _ if body.len() > 1 && body.starts_with('0') => (8, &body[1..]),
        _ => (10, body),
    };
    if digits.is_empty() || !digits.chars().all(|c| c.is_digit(radix)) {
        return None;
    }
    let magnitude = u128::from_str_radix(digits, radix).ok()?;
    if magnitude > u128::from(u64::MAX) {
        return None;
    }
    let signed = if negative {
        -(magnitude as i128)
    } else {
        magnitude as i128
    };
    if negative && signed < i128::from(i64::MIN) {
        return None;
    }
    Some(match i64::try_from(signed) {
        Ok(n) => Value::Number(n.into()),
        Err(_) => float(signed as f64)?,
    })
}

/// go-yaml v2's `yamlStyleFloat`:
/// `^[-+]?(\.[0-9]+|[0-9]+(\.[0-9]*)?)([eE][-+]?[0-9]+)?$`.
fn is_yaml_float(text: &str) -> bool {
    let s = text.strip_prefix(['-', '+']).unwrap_or(text);
    let (mantissa, exponent) = match s.find(['e', 'E']) {
        Some(i) => (&s[..i], Some(&s[i + 1..])),
        None => (s, None),
    };
    let digits = |t: &str| !t.is_empty() && t.bytes().all(|b| b.is_ascii_digit());
    let mantissa_ok = match mantissa.split_once('.') {
        Some(("", fraction)) => digits(fraction),
        Some((whole, fraction)) => digits(whole) && (fraction.is_empty() || digits(fraction)),
        None => digits(mantissa),
    };
    let exponent_ok = exponent.is_none_or(|e| digits(e.strip_prefix(['-', '+']).unwrap_or(e)));
    mantissa_ok && exponent_ok
}

/// A float as the API server reads it back from `kubectl`'s JSON: an
/// integral value within `i64` is an integer (`2.0` is 2).
fn float(f: f64) -> Option<Value> {
    if !f.is_finite() {
        return None;
    }
    // 2^63 exactly: the first float past i64::MAX.
    const LIMIT: f64 = 9_223_372_036_854_775_808.0;
    if f.fract() == 0.0 && (-LIMIT..LIMIT).contains(&f) {
        return Some(Value::Number((f as i64).into()));
    }
    Number::from_f64(f).map(Value::Number)
}

/// Reads a JSON value the same way: integral floats become integers and
/// integers past `i64` floats, so YAML and JSON manifests agree.
pub fn normalize_json(value: &mut Value) {
    match value {
        Value::Number(n) if !n.is_i64() => {
            if let Some(f) = n.as_f64()
                && let Some(normal) = float(f)
            {
                *value = normal;
            }
        }
        Value::Array(items) => items.iter_mut().for_each(normalize_json),
        Value::Object(map) => map.values_mut().for_each(normalize_json),
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn one(text: &str) -> Value {
        parse_value(&format!("v: {text}\n")).unwrap().unwrap()["v"].clone()
    }

    #[test]
    fn yaml_1_1_numbers_as_kubectl_reads_them() {
        for (text, expected) in [
            ("0755", json!(493)),
            ("-0755", json!(-493)),
            ("+0755", json!(493)),
            ("0789", json!(789)),
            ("0o17", json!(15)),
            ("0x10", json!(16)),
            ("0x_1F", json!(31)),
            ("-0b11", json!(-3)),
            ("1_000", json!(1000)),
            ("1__0", json!(10)),
            ("1_000.5", json!(1000.5)),
            (".5", json!(0.5)),
            ("2.0", json!(2)),
            ("1e3", json!(1000)),
            ("1.", json!(1)),
            ("3e-2", json!(0.03)),
            ("00", json!(0)),
            ("0o", json!("0o")),
            ("1:20", json!("1:20")),
            ("2001-12-14", json!("2001-12-14")),
            ("'0755'", json!("0755")),
            ("!!str 0755", json!("0755")),
            ("!!int '12'", json!(12)),
            ("!!binary aGVsbG8=", json!("hello")),
            ("1e400", json!("1e400")),
        ] {
            assert_eq!(one(text), expected, "`{text}`");
        }
        assert!(one("12345678901234567890").is_f64());
        assert!(one("9223372036854775807").is_i64());
    }

    #[test]
    fn yaml_1_1_booleans_and_nulls() {
        for text in ["yes", "Yes", "on", "ON", "y", "True"] {
            assert_eq!(one(text), json!(true), "`{text}`");
        }
        for text in ["no", "off", "N", "FALSE"] {
            assert_eq!(one(text), json!(false), "`{text}`");
        }
        assert_eq!(one("tRue"), json!("tRue"));
        assert_eq!(one("~"), Value::Null);
        assert_eq!(one(""), Value::Null);
    }

    #[test]
    fn keys_become_json_strings_as_kubectl_makes_them() {
        let value = parse_value("on: a\n0755: b\n1: c\n").unwrap().unwrap();
        assert_eq!(value, json!({"true": "a", "493": "b", "1": "c"}));
        assert!(parse_value("~: a\n").is_err());
    }

    #[test]
    fn non_finite_numbers_are_refused_with_the_line() {
        let error = parse_value("a: 1\nb: .inf\n").unwrap_err();
        assert!(error.message.starts_with("line 2:"), "{error}");
    }

    #[test]
    fn anchors_merges_and_alias_bombs() {
        let value = parse_value("base: &b {a: 1, b: 2}\nd:\n  <<: *b\n  b: 3\n")
            .unwrap()
            .unwrap();
        assert_eq!(value["d"], json!({"a": 1, "b": 3}));
        let mut bomb = String::from("a: &a [x, x, x, x, x, x, x, x, x, x]\n");
        for i in 0..8 {
            let prev = if i == 0 {
                "a".to_owned()
            } else {
                format!("l{}", i - 1)
            };
            bomb.push_str(&format!(
                "l{i}: &l{i} [*{prev}, *{prev}, *{prev}, *{prev}, *{prev}, *{prev}, *{prev}, *{prev}, *{prev}, *{prev}]\n"
            ));
        }
        let error = parse_value(&bomb).unwrap_err();
        assert!(error.message.contains("alias bomb"), "{error}");
    }

    #[test]
    fn content_after_the_document_is_an_error_not_lost() {
        for text in [
            "{a: 1}\nxx{b: 2}\n",
            "{a: 1} garbage\n",
            "a: 1\n...\nb: 2\n",
        ] {
            // The parser's own error, or ours: never the first part alone.
            assert!(parse_value(text).is_err(), "{text}");
        }
        assert!(parse_value("a: 1\n...\n").is_ok());
    }

    #[test]
    fn a_document_nested_too_deep_is_refused_not_a_crash() {
        // The parser's own recursion limit refuses it, before a tree deep
        // enough to overflow the stack when dropped could be built.
        let text = format!("a: {}", "[".repeat(200_000));
        let error = parse_value(&text).unwrap_err();
        assert!(error.message.contains("recursion limit"), "{error}");
        let ok = format!("a: {}1{}\n", "[".repeat(100), "]".repeat(100));
        assert!(parse_value(&ok).is_ok());
    }

    #[test]
    fn documents_split_at_separator_lines_with_their_lines() {
        let chunks = split("a: 1\n--- # one\nb: 2\n---\nc: [\n");
        let starts: Vec<_> = chunks
            .iter()
            .map(|c| c.as_ref().unwrap().first_line)
            .collect();
        assert_eq!(starts, [1, 3, 5]);
        let error = parse_value_at(chunks[2].clone().unwrap()).unwrap_err();
        assert!(error.message.starts_with("line 5 "), "{error}");
        assert!(split("--- {a: 1}\n").iter().any(Result::is_err));
    }

    fn parse_value_at(chunk: Chunk<'_>) -> Result<Parsed, YamlError> {
        parse(chunk, &mut |_| {})
    }

    #[test]
    fn a_large_list_streams_its_items() {
        let mut text = String::from("apiVersion: v1\nitems:\n");
        let item = "- apiVersion: v1\n  kind: ConfigMap\n  metadata: {name: cm, namespace: ns}\n  data: {k: vvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvv}\n";
        while text.len() < STREAM_LISTS_FROM {
            text.push_str(item);
        }
        text.push_str("kind: List\nmetadata: {}\n");
        let mut items = 0;
        let chunk = Chunk {
            text: &text,
            first_line: 1,
        };
        let parsed = parse(chunk, &mut |v| {
            assert_eq!(v["kind"], "ConfigMap");
            items += 1;
        })
        .unwrap();
        assert!(items > 1000);
        let Parsed::StreamedList(rest) = parsed else {
            panic!("not streamed: {parsed:?}")
        };
        assert_eq!(rest["kind"], "List");
        assert_eq!(rest["items"], json!([]));
    }

    #[test]
    fn json_numbers_read_as_yaml_numbers() {
        let mut value = json!({"a": 2.0, "b": [1.5, 3.0], "c": 18446744073709551615u64});
        normalize_json(&mut value);
        assert_eq!(value["a"], json!(2));
        assert_eq!(value["b"], json!([1.5, 3]));
        assert!(value["c"].is_f64());
    }
}
