//! {{name}}: a Plumbline matcher. For each event it answers which of the
//! watch rules select it, as indexes into `rules`: here, every rule, except
//! for events in the namespaces its settings exclude (by default
//! `kube-system`).

wit_bindgen::generate!({
    inline: "
        package local:{{name}};
        world plugin {
            include plumbline:policy/matcher@0.1.0;
            export plumbline:policy/settings@0.1.0;
        }
    ",
    path: "wit",
    generate_all,
});

use serde_json::Value;

/// The settings: `{"excludeNamespaces": ["name", …]}`.
fn excluded(settings: &str) -> Result<Vec<String>, String> {
    let settings: Value = match settings.trim() {
        "" => Value::Null,
        text => serde_json::from_str(text).map_err(|e| format!("settings are not JSON: {e}"))?,
    };
    if let Some(unknown) = settings
        .as_object()
        .and_then(|m| m.keys().find(|k| *k != "excludeNamespaces"))
    {
        return Err(format!("unknown setting `{unknown}` (known: excludeNamespaces)"));
    }
    match settings.get("excludeNamespaces") {
        None => Ok(vec!["kube-system".into()]),
        Some(list) => list
            .as_array()
            .and_then(|l| l.iter().map(|v| v.as_str().map(str::to_owned)).collect())
            .ok_or_else(|| "`excludeNamespaces` must be a list of strings".into()),
    }
}

struct Plugin;

impl Guest for Plugin {
    fn matches(event: Event, rules: Vec<String>, settings: String) -> Result<Vec<u32>, String> {
        let excluded = excluded(&settings)?;
        if event.target.namespace.is_some_and(|ns| excluded.contains(&ns)) {
            return Ok(Vec::new());
        }
        Ok((0..rules.len() as u32).collect())
    }
}

impl exports::plumbline::policy::settings::Guest for Plugin {
    fn validate_settings(settings: String) -> Result<(), String> {
        excluded(&settings).map(drop)
    }
}

export!(Plugin);
