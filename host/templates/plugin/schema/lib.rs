//! {{name}}: a Plumbline schema rule. It receives a workflow's parameter
//! schema (JSON Schema) and reports what is wrong with it, each violation
//! with the JSON pointer it is about: here, every parameter without a
//! description.

wit_bindgen::generate!({
    inline: "
        package local:{{name}};
        world plugin {
            include plumbline:policy/schema-rule@0.1.0;
            export plumbline:policy/settings@0.1.0;
        }
    ",
    path: "wit",
    generate_all,
});

use serde_json::Value;

/// No settings yet: `{}` or nothing.
fn no_settings(settings: &str) -> Result<(), String> {
    match settings.trim() {
        "" | "{}" => Ok(()),
        other => Err(format!("this plugin takes no settings, got {other}")),
    }
}

struct Plugin;

impl Guest for Plugin {
    fn check(schema: String, _context: String, settings: String) -> Result<Vec<Violation>, String> {
        no_settings(&settings)?;
        let schema: Value = serde_json::from_str(&schema).map_err(|e| e.to_string())?;
        let Some(properties) = schema.get("properties").and_then(Value::as_object) else {
            return Ok(Vec::new());
        };
        Ok(properties
            .iter()
            .filter(|(_, property)| property.get("description").is_none())
            .map(|(name, _)| Violation {
                path: format!("/properties/{name}"),
                message: format!("parameter `{name}` has no description"),
            })
            .collect())
    }
}

impl exports::plumbline::policy::settings::Guest for Plugin {
    fn validate_settings(settings: String) -> Result<(), String> {
        no_settings(&settings)
    }
}

export!(Plugin);
