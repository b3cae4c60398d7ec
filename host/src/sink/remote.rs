//! The remote, through the `git` program: fetch a branch, push a commit.
//!
//! Why the program and not a library for these two: gitoxide (`gix`) has no
//! push in any released version, and libgit2 would add a C dependency with
//! its own transport and credential quirks. The `git` program speaks every
//! transport and credential helper an operator already uses. Everything
//! local (reading trees, writing blobs, trees and commits) goes through
//! `gix` in [`super::store`], in process. Each call here is one short
//! process with a fixed, isolated configuration (no hooks, no user config,
//! no automatic gc), and every failure comes back with git's own message
//! and the remote's URL with any credentials in it redacted.

use crate::model::RepoUrl;
use crate::model::auth::GitAuth;
use crate::model::url::redact_text;
use gix::ObjectId;
use std::ffi::OsStr;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// Why a Git operation failed.
#[derive(Debug, thiserror::Error)]
pub enum GitError {
    /// The `git` program could not be started.
    #[error("cannot run git: {0}")]
    Spawn(#[source] std::io::Error),
    /// A git command failed.
    #[error("git {command} ({remote}): {message}")]
    Command {
        /// The subcommand that failed.
        command: String,
        /// The remote, with credentials redacted.
        remote: String,
        /// What git printed.
        message: String,
    },
    /// The local repository's folder could not be made owner-only.
    #[error("local repository {}: {source}", path.display())]
    State {
        /// The repository.
        path: PathBuf,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// The local repository could not be read or written.
    #[error("local repository {}: {source}", path.display())]
    Local {
        /// The repository.
        path: PathBuf,
        /// The cause.
        #[source]
        source: Box<gix::Error>,
    },
    /// A commit could not be signed: it is not written unsigned.
    #[error("signing the commit")]
    Sign(#[source] Box<crate::signing::SigningError>),
}

/// What a push did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Push {
    /// The remote took it.
    Accepted,
    /// The remote moved on since the last fetch (not a fast-forward).
    Rejected,
}

/// One branch of one remote, fetched into and pushed from a local bare
/// repository.
#[derive(Debug)]
pub struct Remote {
    gitdir: PathBuf,
    url: RepoUrl,
    branch: String,
    /// Environment that authenticates git to the remote, if credentials
    /// were given: passed in the environment, never on the command line
    /// (which every local user can read).
    auth: Vec<(&'static str, String)>,
}

impl Remote {
    /// The branch `branch` of `url`, kept in the bare repository `gitdir`
    /// (made if missing).
    pub fn new(url: &RepoUrl, branch: &str, gitdir: &Path) -> Result<Remote, GitError> {
        if !gitdir.join("HEAD").is_file() {
            init(gitdir)?;
        }
        Ok(Remote {
            gitdir: gitdir.to_owned(),
            url: url.clone(),
            branch: branch.to_owned(),
            auth: Vec::new(),
        })
    }

    /// Authenticates with `credentials` from now on. HTTPS credentials go
    /// to git's credential protocol (asked only when the server asks, for
    /// its host only); an SSH key and its known hosts go to files beside
    /// the repository, owner-only, and host keys are checked strictly.
    pub fn authenticate(&mut self, credentials: &GitAuth) -> Result<(), GitError> {
        self.auth = match credentials {
            GitAuth::Basic { username, password } => vec![
                // The first resets any helper; the second answers `get`.
                ("GIT_CONFIG_COUNT", "2".into()),
                ("GIT_CONFIG_KEY_0", "credential.helper".into()),
                ("GIT_CONFIG_VALUE_0", String::new()),
                ("GIT_CONFIG_KEY_1", "credential.helper".into()),
                ("GIT_CONFIG_VALUE_1", CREDENTIAL_HELPER.into()),
                ("PLUMBLINE_GIT_USERNAME", username.clone()),
                ("PLUMBLINE_GIT_PASSWORD", password.clone()),
            ],
            GitAuth::Ssh {
                private_key,
                known_hosts,
            } => {
                let dir = self.gitdir.join("plumbline-ssh");
                let write = |name: &str, text: &str| -> Result<PathBuf, std::io::Error> {
                    crate::state::create_dir(&dir)?;
                    let path = dir.join(name);
                    crate::state::write_private(&path, text.as_bytes())?;
                    Ok(path)
                };
                let state = |source| GitError::State {
                    path: dir.clone(),
                    source,
                };
                // ssh refuses a key file that does not end in a newline.
                let key = write("key", &format!("{}\n", private_key.trim_end())).map_err(state)?;
                let hosts = write("known_hosts", known_hosts).map_err(state)?;
                let command = format!(
                    "ssh -i {} -o IdentitiesOnly=yes -o IdentityAgent=none -o UserKnownHostsFile={} \
                     -o StrictHostKeyChecking=yes -o BatchMode=yes",
                    shell_quote(&key),
                    shell_quote(&hosts)
                );
                vec![("GIT_SSH_COMMAND", command)]
            }
        };
        Ok(())
    }

    /// The local bare repository.
    pub fn gitdir(&self) -> &Path {
        &self.gitdir
    }

    /// The remote's URL, credentials redacted.
    pub fn display_url(&self) -> String {
        self.url.to_string()
    }

    /// Fetches the branch; returns its tip, or `None` if the remote has no
    /// such branch yet.
    pub fn fetch(&self) -> Result<Option<ObjectId>, GitError> {
        let tracking = format!("refs/remotes/origin/{}", self.branch);
        let refspec = format!("+refs/heads/{}:{tracking}", self.branch);
        // FETCH_HEAD is the one file git writes with the umask's mode,
        // whatever core.sharedRepository says, and nothing here reads it.
        let fetched = self.git_output([
            "fetch",
            "--quiet",
            "--no-tags",
            "--no-write-fetch-head",
            self.url.as_str(),
            &refspec,
        ])?;
        if !fetched.status.success() {
            if missing_ref(&fetched) {
                return Ok(None);
            }
            return Err(self.failure("fetch", &fetched));
        }
        let out = self.git_output(["rev-parse", "--verify", "--quiet", &tracking])?;
        if !out.status.success() {
            return Ok(None);
        }
        let hex = String::from_utf8_lossy(&out.stdout);
        ObjectId::from_hex(hex.trim().as_bytes())
            .map(Some)
            .map_err(|e| GitError::Command {
                command: "rev-parse".into(),
                remote: self.url.to_string(),
                message: e.to_string(),
            })
    }

    /// Pushes `commit` to the branch, fast-forward only.
    pub fn push(&self, commit: ObjectId) -> Result<Push, GitError> {
        let refspec = format!("{commit}:refs/heads/{}", self.branch);
        let out = self.git_output([
            "push",
            "--quiet",
            "--porcelain",
            self.url.as_str(),
            &refspec,
        ])?;
        if out.status.success() {
            return Ok(Push::Accepted);
        }
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        // A non-fast-forward, or a ref that another writer moved between our
        // fetch and the remote's update: both mean "replay on the new tip".
        let moved = [
            "[rejected]",
            "non-fast-forward",
            "fetch first",
            "failed to update ref",
            "cannot lock ref",
        ];
        if moved.iter().any(|m| text.contains(m)) {
            Ok(Push::Rejected)
        } else {
            Err(self.failure("push", &out))
        }
    }

    /// Merges the local repository's packs geometrically (each persisted
    /// batch is a pack of its own), so that their number stays logarithmic
    /// in the objects at a cost linear in them. Local, but through the
    /// program too: gix has no repack. No delta search (`--window=0`): the
    /// objects it merges were pushed already, so deltas found here would
    /// serve no push, and the search was most of a repack's time (a
    /// 100,000-object seed: 2.7 s of repacks became 1.0 s); a push still
    /// finds deltas for what it sends.
    pub fn repack(&self) -> Result<(), GitError> {
        let out = self.git_output(["repack", "-d", "-q", "--geometric=2", "--window=0"])?;
        if out.status.success() {
            Ok(())
        } else {
            Err(self.failure("repack", &out))
        }
    }

    fn git_output<I, S>(&self, args: I) -> Result<Output, GitError>
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        let mut command = Command::new("git");
        command
            .arg("--git-dir")
            .arg(&self.gitdir)
            // Only Plumbline's own settings: no user or system config, no
            // hooks, no prompts, no gc (which could drop objects of commits
            // not pushed yet).
            .env("GIT_CONFIG_NOSYSTEM", "1")
            .env("GIT_CONFIG_GLOBAL", "/dev/null")
            .env("GIT_TERMINAL_PROMPT", "0")
            .args(["-c", "core.hooksPath=/dev/null", "-c", "gc.auto=0"])
            .args(["-c", "core.fsync=none"])
            // Files git creates are 0600 and its folders 0700, ignoring
            // the umask, like the rest of the state folder.
            .args(["-c", "core.sharedRepository=0600"])
            .envs(self.auth.iter().map(|(k, v)| (k, v)))
            .args(args);
        command.output().map_err(GitError::Spawn)
    }

    fn failure(&self, command: &str, out: &Output) -> GitError {
        // Git may echo the URL (normalised, with a trailing slash, decoded):
        // every URL and every credential of ours in its text is hidden.
        let message = redact_text(
            String::from_utf8_lossy(&out.stderr).trim(),
            self.url.as_str(),
        );
        GitError::Command {
            command: command.to_owned(),
            remote: self.url.to_string(),
            message,
        }
    }
}

/// A credential helper (run by git's shell) that answers `get` from the
/// environment git inherited.
const CREDENTIAL_HELPER: &str = "!f() { test \"$1\" = get && printf 'username=%s\\npassword=%s\\n' \"$PLUMBLINE_GIT_USERNAME\" \"$PLUMBLINE_GIT_PASSWORD\"; }; f";

/// `path` in single quotes, for the shell git runs `GIT_SSH_COMMAND` with.
fn shell_quote(path: &Path) -> String {
    format!("'{}'", path.display().to_string().replace('\'', r"'\''"))
}

/// Makes the bare repository `gitdir`: owner-only whatever the umask (it
/// holds every object on its way to the remote; the `git` program keeps it
/// so through `core.sharedRepository`, and gix writes packs through
/// temporary files, which are owner-only), and made in a temporary folder
/// renamed into place, so that a daemon killed meanwhile leaves nothing
/// half made. A folder without `HEAD` is what an older version killed so
/// left: nothing in it is needed (what is not pushed is in the queue), so
/// it is made again.
fn init(gitdir: &Path) -> Result<(), GitError> {
    let io = |source| GitError::State {
        path: gitdir.to_owned(),
        source,
    };
    let parent = gitdir
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    crate::state::create_dir(parent).map_err(io)?;
    if gitdir.exists() {
        std::fs::remove_dir_all(gitdir).map_err(io)?;
    }
    let temp = tempfile::Builder::new()
        .prefix(".new-repo-")
        .tempdir_in(parent)
        .map_err(io)?;
    gix::init_bare(temp.path()).map_err(|e| GitError::Local {
        path: gitdir.to_owned(),
        source: Box::new(e),
    })?;
    crate::state::restrict_tree(temp.path()).map_err(io)?;
    std::fs::rename(temp.keep(), gitdir).map_err(io)
}

fn missing_ref(out: &Output) -> bool {
    String::from_utf8_lossy(&out.stderr).contains("couldn't find remote ref")
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A daemon killed while making its local repository left a folder
    /// without `HEAD`, which every later start failed to initialise.
    #[test]
    fn a_local_repository_half_made_by_a_killed_daemon_is_made_again() {
        let state = tempfile::tempdir().unwrap();
        let gitdir = state.path().join("repo-1");
        std::fs::create_dir_all(gitdir.join("objects/pack")).unwrap();
        std::fs::write(gitdir.join("config"), "[core]\n").unwrap();
        Remote::new(&"unused".into(), "main", &gitdir).unwrap();
        assert!(gitdir.join("HEAD").is_file());
        crate::sink::store::Store::open(&gitdir).unwrap();
        let left: Vec<_> = std::fs::read_dir(state.path())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(left, ["repo-1"], "no temporary folder left");
    }

    #[test]
    fn an_ssh_key_goes_to_owner_only_files_and_host_keys_are_checked_strictly() {
        use std::os::unix::fs::PermissionsExt as _;
        let state = tempfile::tempdir().unwrap();
        let gitdir = state.path().join("it's here");
        let url: RepoUrl = "ssh://git@127.0.0.1:1/repo.git".into();
        let mut remote = Remote::new(&url, "main", &gitdir).unwrap();
        let key = "-----BEGIN OPENSSH PRIVATE KEY-----\nnot-a-real-key\n-----END OPENSSH PRIVATE KEY-----";
        let auth = GitAuth::Ssh {
            private_key: key.into(),
            known_hosts: "127.0.0.1 ssh-ed25519 AAAA".into(),
        };
        remote.authenticate(&auth).unwrap();
        for file in ["key", "known_hosts"] {
            let path = gitdir.join("plumbline-ssh").join(file);
            let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
            assert_eq!(mode, 0o600, "{file}");
        }
        let written = std::fs::read_to_string(gitdir.join("plumbline-ssh/key")).unwrap();
        assert!(written.ends_with("-----\n"), "ssh needs the final newline");
        let (_, command) = &remote.auth[0];
        assert!(command.contains("StrictHostKeyChecking=yes"), "{command}");
        assert!(
            command.contains("'\\''s here"),
            "quoted for the shell: {command}"
        );
        // The remote cannot be reached: the error says so, not the key.
        let error = remote.fetch().unwrap_err().to_string();
        assert!(!error.contains("not-a-real-key"), "{error}");
    }
}
