//! {{name}}: a Plumbline drift gate. It receives an execution request and
//! allows it or denies it with reasons: here, a request whose image is not
//! pinned by digest is denied.

wit_bindgen::generate!({
    inline: "
        package local:{{name}};
        world plugin {
            include plumbline:policy/drift-gate@0.1.0;
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
    fn decide(request: String, settings: String) -> Result<Verdict, String> {
        no_settings(&settings)?;
        let request: Value = serde_json::from_str(&request).map_err(|e| e.to_string())?;
        let digest = request.pointer("/image/digest").and_then(Value::as_str);
        Ok(match digest {
            Some(d) if d.starts_with("sha256:") => Verdict::Allow,
            _ => Verdict::Deny(vec!["the image is not pinned by digest".into()]),
        })
    }
}

impl exports::plumbline::policy::settings::Guest for Plugin {
    fn validate_settings(settings: String) -> Result<(), String> {
        no_settings(&settings)
    }
}

export!(Plugin);
