//! Registry credentials, read from a Docker `config.json` (`auths` with a
//! base64 `user:password` in `auth`, or `username`/`password`, or an
//! `identitytoken`), which `docker login`, `oras login` and `podman login`
//! all write. Credential helpers are not run.

use base64::Engine as _;
use oci_client::secrets::RegistryAuth;
use serde::Deserialize;
use std::collections::BTreeMap;
use std::path::Path;

/// Credentials per registry host. `Debug` never shows a secret.
#[derive(Clone, Default)]
pub struct Credentials {
    by_registry: BTreeMap<String, (String, String)>,
}

impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Credentials")
            .field("registries", &self.by_registry.keys().collect::<Vec<_>>())
            .finish()
    }
}

#[derive(Deserialize)]
struct DockerConfig {
    #[serde(default)]
    auths: BTreeMap<String, DockerAuth>,
}

#[derive(Deserialize)]
struct DockerAuth {
    auth: Option<String>,
    username: Option<String>,
    password: Option<String>,
    identitytoken: Option<String>,
}

impl Credentials {
    /// Reads a Docker `config.json`; an error names the file and why.
    pub fn from_docker_config(path: &Path) -> Result<Credentials, String> {
        let text = std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
        Credentials::from_docker_config_text(&text).map_err(|e| format!("{}: {e}", path.display()))
    }

    /// Parses the text of a Docker `config.json`.
    pub fn from_docker_config_text(text: &str) -> Result<Credentials, String> {
        let config: DockerConfig = serde_json::from_str(text).map_err(|e| e.to_string())?;
        let mut by_registry = BTreeMap::new();
        for (registry, auth) in config.auths {
            let pair = match (auth.auth, auth.username, auth.password, auth.identitytoken) {
                (Some(encoded), ..) => {
                    let decoded = base64::engine::general_purpose::STANDARD
                        .decode(encoded.trim())
                        .map_err(|_| format!("auths.{registry}.auth is not base64"))?;
                    let decoded = String::from_utf8(decoded)
                        .map_err(|_| format!("auths.{registry}.auth is not UTF-8"))?;
                    let (user, password) = decoded
                        .split_once(':')
                        .ok_or_else(|| format!("auths.{registry}.auth is not user:password"))?;
                    (user.to_owned(), password.to_owned())
                }
                (None, Some(user), Some(password), _) => (user, password),
                // An identity token is a refresh token, sent with the
                // conventional empty user name.
                (None, _, _, Some(token)) => ("<token>".to_owned(), token),
                _ => continue,
            };
            by_registry.insert(host_of(&registry).to_owned(), pair);
        }
        Ok(Credentials { by_registry })
    }

    /// Adds a user and password for `registry` (`host:port`).
    pub fn insert(&mut self, registry: &str, user: &str, password: &str) {
        self.by_registry.insert(
            host_of(registry).to_owned(),
            (user.to_owned(), password.to_owned()),
        );
    }

    /// What to send to `registry`: basic auth if known, else anonymous
    /// (the client still follows a bearer-token challenge).
    pub fn for_registry(&self, registry: &str) -> RegistryAuth {
        match self.by_registry.get(host_of(registry)) {
            Some((user, password)) => RegistryAuth::Basic(user.clone(), password.clone()),
            None => RegistryAuth::Anonymous,
        }
    }
}

/// `https://index.docker.io/v1/` and `index.docker.io` name one registry.
fn host_of(registry: &str) -> &str {
    let host = registry
        .trim_start_matches("https://")
        .trim_start_matches("http://");
    host.split('/').next().unwrap_or(host)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn docker_config_entries_become_basic_auth_and_debug_hides_them() {
        let text = r#"{"auths": {
            "https://registry.example.com/v1/": {"auth": "Ym90OnMzY3IzdA=="},
            "127.0.0.1:5000": {"username": "u", "password": "p"}
        }}"#;
        let credentials = Credentials::from_docker_config_text(text).unwrap();
        assert_eq!(
            credentials.for_registry("registry.example.com"),
            RegistryAuth::Basic("bot".into(), "s3cr3t".into())
        );
        assert_eq!(
            credentials.for_registry("127.0.0.1:5000"),
            RegistryAuth::Basic("u".into(), "p".into())
        );
        assert_eq!(
            credentials.for_registry("other.example"),
            RegistryAuth::Anonymous
        );
        assert!(!format!("{credentials:?}").contains("s3cr3t"));
        let broken = Credentials::from_docker_config_text(r#"{"auths": {"r": {"auth": "%%"}}}"#);
        assert_eq!(broken.unwrap_err(), "auths.r.auth is not base64");
    }
}
