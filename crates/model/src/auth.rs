//! Credentials for a Git remote, as a `GitRepoConfig`'s `secretRef` names
//! them: HTTPS user and password (or token), or an SSH key with the hosts
//! it may trust. They are printed as a digest only, whatever prints them.

use std::collections::BTreeMap;
use std::fmt;

/// How to authenticate to a Git remote.
#[derive(Clone, PartialEq, Eq)]
pub enum GitAuth {
    /// HTTP basic authentication (a token is a password).
    Basic {
        /// The user name.
        username: String,
        /// The password or token.
        password: String,
    },
    /// An SSH key, and the host keys it may trust (checked strictly).
    Ssh {
        /// The private key (OpenSSH PEM).
        private_key: String,
        /// `known_hosts` lines.
        known_hosts: String,
    },
}

impl GitAuth {
    /// The credentials a Secret's `data` holds (values decoded): `username`
    /// and `password`, or `token` (the user then `git`, which forges
    /// ignore), for HTTPS; `ssh-privatekey` (or `identity`) and
    /// `known_hosts` for SSH. The message says what is missing.
    pub fn from_secret(data: &BTreeMap<String, Vec<u8>>) -> Result<GitAuth, String> {
        let text = |key: &str| -> Result<Option<String>, String> {
            data.get(key)
                .map(|v| String::from_utf8(v.clone()).map_err(|_| format!("`{key}` is not UTF-8")))
                .transpose()
        };
        if let Some(private_key) = text("ssh-privatekey")?.or(text("identity")?) {
            let known_hosts = text("known_hosts")?.filter(|k| !k.trim().is_empty()).ok_or(
                "an SSH key needs `known_hosts` beside it: host keys are checked, never trusted on first use",
            )?;
            return Ok(GitAuth::Ssh {
                private_key,
                known_hosts,
            });
        }
        match (text("username")?, text("password")?, text("token")?) {
            (user, Some(password), _) | (user, None, Some(password)) => Ok(GitAuth::Basic {
                username: user.unwrap_or_else(|| "git".into()),
                password,
            }),
            _ => Err(
                "it holds neither `username` and `password` (or `token`) nor `ssh-privatekey` and `known_hosts`"
                    .into(),
            ),
        }
    }

    /// A digest of the credentials: tells two apart, reveals nothing.
    pub fn digest(&self) -> String {
        let text = match self {
            GitAuth::Basic { username, password } => format!("basic\n{username}\n{password}"),
            GitAuth::Ssh {
                private_key,
                known_hosts,
            } => format!("ssh\n{private_key}\n{known_hosts}"),
        };
        hex::encode(crate::digest::short_digest(text.as_bytes()))
    }
}

impl fmt::Debug for GitAuth {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let kind = match self {
            GitAuth::Basic { .. } => "Basic",
            GitAuth::Ssh { .. } => "Ssh",
        };
        write!(f, "GitAuth::{kind}({})", self.digest())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn data(pairs: &[(&str, &str)]) -> BTreeMap<String, Vec<u8>> {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), v.as_bytes().to_vec()))
            .collect()
    }

    #[test]
    fn a_secret_gives_basic_or_ssh_credentials_or_says_what_is_missing() {
        let basic = GitAuth::from_secret(&data(&[("username", "bot"), ("password", "hunter2")]));
        assert!(matches!(basic, Ok(GitAuth::Basic { ref username, .. }) if username == "bot"));
        let token = GitAuth::from_secret(&data(&[("token", "ghp_x")])).unwrap();
        assert!(matches!(token, GitAuth::Basic { ref username, .. } if username == "git"));
        let ssh = GitAuth::from_secret(&data(&[("ssh-privatekey", "KEY"), ("known_hosts", "h k")]));
        assert!(matches!(ssh, Ok(GitAuth::Ssh { .. })));
        let error = GitAuth::from_secret(&data(&[("ssh-privatekey", "KEY")])).unwrap_err();
        assert!(error.contains("known_hosts"), "{error}");
        let error = GitAuth::from_secret(&data(&[("user", "x")])).unwrap_err();
        assert!(error.contains("neither"), "{error}");
    }

    #[test]
    fn credentials_print_as_a_digest() {
        let auth = GitAuth::Basic {
            username: "bot".into(),
            password: "hunter2".into(),
        };
        let printed = format!("{auth:?}");
        assert!(
            !printed.contains("hunter2") && !printed.contains("bot"),
            "{printed}"
        );
        assert!(printed.starts_with("GitAuth::Basic("), "{printed}");
    }
}
