//! {{name}}: a Plumbline sanitizer. It receives each object as JSON and
//! returns what of it belongs in Git: here, the object without the
//! annotations whose names start with a prefix its settings list (by
//! default, those kubectl and volume provisioners write). Returning `None`
//! keeps the object out of Git.

wit_bindgen::generate!({
    inline: "
        package local:{{name}};
        world plugin {
            include plumbline:policy/sanitizer@0.1.0;
            export plumbline:policy/settings@0.1.0;
        }
    ",
    path: "wit",
    generate_all,
});

use serde_json::Value;

/// The settings: `{"prefixes": ["example.com/", …]}`.
fn prefixes(settings: &str) -> Result<Vec<String>, String> {
    let settings: Value = match settings.trim() {
        "" => Value::Null,
        text => serde_json::from_str(text).map_err(|e| format!("settings are not JSON: {e}"))?,
    };
    if let Some(unknown) = settings
        .as_object()
        .and_then(|m| m.keys().find(|k| *k != "prefixes"))
    {
        return Err(format!("unknown setting `{unknown}` (known: prefixes)"));
    }
    match settings.get("prefixes") {
        None => Ok(vec!["kubectl.kubernetes.io/".into(), "pv.kubernetes.io/".into()]),
        Some(list) => list
            .as_array()
            .and_then(|l| l.iter().map(|v| v.as_str().map(str::to_owned)).collect())
            .ok_or_else(|| "`prefixes` must be a list of strings".into()),
    }
}

struct Plugin;

impl Guest for Plugin {
    fn sanitize(object: String, settings: String) -> Result<Option<String>, String> {
        let prefixes = prefixes(&settings)?;
        let mut object: Value = serde_json::from_str(&object).map_err(|e| e.to_string())?;
        if let Some(metadata) = object.get_mut("metadata").and_then(Value::as_object_mut) {
            if let Some(found) = metadata.get_mut("annotations").and_then(Value::as_object_mut) {
                found.retain(|name, _| !prefixes.iter().any(|p| name.starts_with(p.as_str())));
                if found.is_empty() {
                    metadata.remove("annotations");
                }
            }
        }
        Ok(Some(object.to_string()))
    }
}

impl exports::plumbline::policy::settings::Guest for Plugin {
    fn validate_settings(settings: String) -> Result<(), String> {
        prefixes(&settings).map(drop)
    }
}

export!(Plugin);
