//! `schema-lint`: the checks an operator wants of every workflow's parameter
//! schema before it enters the catalog.
//!
//! The schema is a JSON Schema object whose `properties` are the workflow's
//! parameters. Every finding is a violation with a JSON pointer and a message;
//! all of them are reported at once, so an author fixes a schema in one pass.
//!
//! Settings (all optional):
//! `{"requireDescription": true, "namePattern": "upper-snake" | "any", "maxParameters": 64}`.

use serde_json::{Map, Value};

/// One finding: where and what.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Violation {
    pub path: String,
    pub message: String,
}

/// What the lint insists on.
#[derive(Debug, Clone)]
pub struct Settings {
    pub require_description: bool,
    pub upper_snake_names: bool,
    pub max_parameters: usize,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            require_description: true,
            upper_snake_names: false,
            max_parameters: 64,
        }
    }
}

/// Reads the settings text; empty text means the defaults.
pub fn parse_settings(text: &str) -> Result<Settings, String> {
    let mut settings = Settings::default();
    if text.trim().is_empty() {
        return Ok(settings);
    }
    let value: Value =
        serde_json::from_str(text).map_err(|e| format!("settings are not JSON: {e}"))?;
    let map = value.as_object().ok_or("settings must be a JSON object")?;
    for (key, value) in map {
        match key.as_str() {
            "requireDescription" => {
                settings.require_description = value
                    .as_bool()
                    .ok_or("`requireDescription` must be true or false")?
            }
            "namePattern" => {
                settings.upper_snake_names = match value.as_str() {
                    Some("upper-snake") => true,
                    Some("any") => false,
                    _ => return Err("`namePattern` must be `upper-snake` or `any`".to_owned()),
                }
            }
            "maxParameters" => {
                settings.max_parameters = value
                    .as_u64()
                    .filter(|n| *n > 0)
                    .ok_or("`maxParameters` must be a positive integer")?
                    as usize
            }
            other => {
                return Err(format!(
                    "unknown setting `{other}` (known: requireDescription, namePattern, maxParameters)"
                ));
            }
        }
    }
    Ok(settings)
}

const TYPES: &[&str] = &["string", "integer", "number", "boolean", "array", "object"];

struct Lint<'s> {
    settings: &'s Settings,
    found: Vec<Violation>,
}

impl Lint<'_> {
    fn report(&mut self, path: String, message: impl Into<String>) {
        self.found.push(Violation {
            path,
            message: message.into(),
        });
    }
}

/// Checks `schema` and returns every violation.
pub fn check(schema: &Value, settings: &Settings) -> Vec<Violation> {
    let mut lint = Lint {
        settings,
        found: Vec::new(),
    };
    let Some(root) = schema.as_object() else {
        lint.report(String::new(), "the schema must be a JSON object");
        return lint.found;
    };
    if root.get("type").is_some_and(|t| t != "object") {
        lint.report("/type".into(), "a parameter schema must have type `object`");
    }
    let empty = Map::new();
    let properties = match root.get("properties") {
        None => &empty,
        Some(Value::Object(p)) => p,
        Some(_) => {
            lint.report("/properties".into(), "`properties` must be an object");
            &empty
        }
    };
    if properties.len() > settings.max_parameters {
        lint.report(
            "/properties".into(),
            format!(
                "{} parameters is more than the {} allowed",
                properties.len(),
                settings.max_parameters
            ),
        );
    }
    for (name, property) in properties {
        check_parameter(&mut lint, name, property);
    }
    check_required(&mut lint, root.get("required"), properties);
    lint.found
}

fn pointer_escape(name: &str) -> String {
    name.replace('~', "~0").replace('/', "~1")
}

fn check_parameter(lint: &mut Lint<'_>, name: &str, property: &Value) {
    let at = format!("/properties/{}", pointer_escape(name));
    if lint.settings.upper_snake_names && !is_upper_snake(name) {
        lint.report(
            at.clone(),
            format!("parameter `{name}` must be UPPER_SNAKE_CASE"),
        );
    }
    let Some(property) = property.as_object() else {
        lint.report(at, format!("parameter `{name}` must be a schema object"));
        return;
    };
    let ty = property.get("type").and_then(Value::as_str);
    match property.get("type") {
        None => lint.report(
            format!("{at}/type"),
            format!("parameter `{name}` has no type"),
        ),
        Some(t) if !ty.is_some_and(|t| TYPES.contains(&t)) => lint.report(
            format!("{at}/type"),
            format!(
                "parameter `{name}` has type {t}, which is not one of {}",
                TYPES.join(", ")
            ),
        ),
        Some(_) => {}
    }
    let described = property
        .get("description")
        .and_then(Value::as_str)
        .is_some_and(|d| !d.trim().is_empty());
    if lint.settings.require_description && !described {
        lint.report(
            format!("{at}/description"),
            format!("parameter `{name}` has no description"),
        );
    }
    if let Some(enumeration) = property.get("enum") {
        check_enum(lint, &at, name, enumeration, ty);
    }
    if let (Some(default), Some(ty)) = (property.get("default"), ty)
        && !has_type(default, ty)
    {
        lint.report(
            format!("{at}/default"),
            format!("parameter `{name}`: default {default} is not of type {ty}"),
        );
    }
    check_bounds(lint, &at, name, property, "minimum", "maximum");
    check_bounds(lint, &at, name, property, "minLength", "maxLength");
    check_bounds(lint, &at, name, property, "minItems", "maxItems");
}

fn check_enum(lint: &mut Lint<'_>, at: &str, name: &str, enumeration: &Value, ty: Option<&str>) {
    let Some(values) = enumeration.as_array() else {
        lint.report(
            format!("{at}/enum"),
            format!("parameter `{name}`: `enum` must be an array"),
        );
        return;
    };
    if values.is_empty() {
        lint.report(
            format!("{at}/enum"),
            format!("parameter `{name}`: `enum` is empty, so no value is valid"),
        );
    }
    for (i, value) in values.iter().enumerate() {
        if let Some(ty) = ty
            && !has_type(value, ty)
        {
            lint.report(
                format!("{at}/enum/{i}"),
                format!("parameter `{name}`: enum value {value} is not of type {ty}"),
            );
        }
        if values[..i].contains(value) {
            lint.report(
                format!("{at}/enum/{i}"),
                format!("parameter `{name}`: enum value {value} is repeated"),
            );
        }
    }
}

fn check_bounds(
    lint: &mut Lint<'_>,
    at: &str,
    name: &str,
    property: &Map<String, Value>,
    low: &str,
    high: &str,
) {
    let (Some(min), Some(max)) = (
        property.get(low).and_then(Value::as_f64),
        property.get(high).and_then(Value::as_f64),
    ) else {
        return;
    };
    if min > max {
        lint.report(
            format!("{at}/{low}"),
            format!("parameter `{name}`: {low} {min} is above {high} {max}"),
        );
    }
}

fn check_required(lint: &mut Lint<'_>, required: Option<&Value>, properties: &Map<String, Value>) {
    let Some(required) = required else { return };
    let Some(names) = required.as_array() else {
        lint.report(
            "/required".into(),
            "`required` must be an array of parameter names",
        );
        return;
    };
    for (i, name) in names.iter().enumerate() {
        match name.as_str() {
            None => lint.report(
                format!("/required/{i}"),
                format!("{name} is not a parameter name"),
            ),
            Some(n) if !properties.contains_key(n) => lint.report(
                format!("/required/{i}"),
                format!("`{n}` is required but is not a declared parameter"),
            ),
            Some(n) if names[..i].contains(name) => lint.report(
                format!("/required/{i}"),
                format!("`{n}` is listed as required twice"),
            ),
            Some(_) => {}
        }
    }
}

fn has_type(value: &Value, ty: &str) -> bool {
    match ty {
        "string" => value.is_string(),
        "integer" => value.is_i64() || value.is_u64(),
        "number" => value.is_number(),
        "boolean" => value.is_boolean(),
        "array" => value.is_array(),
        "object" => value.is_object(),
        _ => true,
    }
}

fn is_upper_snake(name: &str) -> bool {
    let mut chars = name.chars();
    chars.next().is_some_and(|c| c.is_ascii_uppercase())
        && chars.all(|c| c.is_ascii_uppercase() || c.is_ascii_digit() || c == '_')
}

/// Checks a schema given as JSON text: what the component exports.
pub fn check_json(schema: &str, settings: &str) -> Result<Vec<Violation>, String> {
    let settings = parse_settings(settings)?;
    let schema: Value =
        serde_json::from_str(schema).map_err(|e| format!("schema is not JSON: {e}"))?;
    Ok(check(&schema, &settings))
}

#[cfg(target_arch = "wasm32")]
mod component {
    //! The component's exports: the schema-rule world plus a settings check.
    wit_bindgen::generate!({
        inline: "
            package plumbline:schema-lint;
            world schema-lint {
                include plumbline:policy/schema-rule@0.1.0;
                export plumbline:policy/settings@0.1.0;
            }
        ",
        path: "../../wit",
        generate_all,
    });

    struct SchemaLint;

    impl Guest for SchemaLint {
        fn check(
            schema: String,
            _context: String,
            settings: String,
        ) -> Result<Vec<Violation>, String> {
            let found = super::check_json(&schema, &settings)?;
            Ok(found
                .into_iter()
                .map(|v| Violation {
                    path: v.path,
                    message: v.message,
                })
                .collect())
        }
    }

    impl exports::plumbline::policy::settings::Guest for SchemaLint {
        fn validate_settings(settings: String) -> Result<(), String> {
            super::parse_settings(&settings).map(drop)
        }
    }

    export!(SchemaLint);
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn paths(schema: Value) -> Vec<String> {
        check(&schema, &Settings::default())
            .into_iter()
            .map(|v| v.path)
            .collect()
    }

    #[test]
    fn a_good_schema_passes() {
        let schema = json!({"type": "object", "required": ["NAMESPACE"],
            "properties": {"NAMESPACE": {"type": "string", "description": "Target namespace"},
                           "MODE": {"type": "string", "description": "How", "enum": ["fast", "safe"], "default": "safe"}}});
        assert_eq!(paths(schema), Vec::<String>::new());
    }

    #[test]
    fn every_finding_is_reported() {
        let schema = json!({"type": "object", "required": ["MISSING", "A", "A"],
            "properties": {"A": {"description": "a"}, "B": {"type": "strin", "description": " "},
                           "C": {"type": "integer", "description": "c", "enum": [1, "two"], "minimum": 5, "maximum": 1},
                           "D": {"type": "string", "description": "d", "enum": []}}});
        assert_eq!(
            paths(schema),
            [
                "/properties/A/type",
                "/properties/B/type",
                "/properties/B/description",
                "/properties/C/enum/1",
                "/properties/C/minimum",
                "/properties/D/enum",
                "/required/0",
                "/required/2"
            ]
        );
    }

    #[test]
    fn upper_snake_when_asked() {
        let settings = parse_settings(r#"{"namePattern": "upper-snake"}"#).unwrap();
        let schema = json!({"properties": {"podName": {"type": "string", "description": "x"}}});
        assert_eq!(
            check(&schema, &settings)[0].message,
            "parameter `podName` must be UPPER_SNAKE_CASE"
        );
        assert!(
            parse_settings(r#"{"namePatern": "x"}"#)
                .unwrap_err()
                .contains("unknown setting")
        );
    }
}
