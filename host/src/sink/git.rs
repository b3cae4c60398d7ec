//! A thin wrapper over the `git` program: clone, fetch, reset, commit, push.
//!
//! Why the program and not a library: pushing is the operation that matters
//! most here, and gitoxide (`gix`) has no push in any released version;
//! libgit2 would add a C dependency and its own transport and credential
//! quirks. The `git` program speaks every transport and credential helper an
//! operator already uses. Each call is one short process with a fixed,
//! isolated configuration (no hooks, no signing, no user config), and every
//! failure comes back with git's own message and the remote's URL with any
//! credentials in it redacted.

use std::ffi::OsStr;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// A person, as Git records them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Person {
    /// Display name.
    pub name: String,
    /// Email address.
    pub email: String,
}

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
    /// A file in the work tree could not be written or removed.
    #[error("{}: {source}", path.display())]
    Io {
        /// The file.
        path: PathBuf,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
}

/// What a push did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Push {
    /// The remote took it.
    Accepted,
    /// The remote moved on since the last fetch (not a fast-forward).
    Rejected,
}

/// A local clone of one branch of one remote.
#[derive(Debug)]
pub struct Clone {
    workdir: PathBuf,
    remote: String,
    branch: String,
    /// The branch's tip and its tree, once known; reset with the work tree.
    tip: std::cell::RefCell<Option<(String, String)>>,
}

/// A URL with its password or token replaced, for messages and logs.
pub fn redact(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_owned();
    };
    match rest.split_once('@') {
        Some((userinfo, host)) if !userinfo.contains('/') => {
            let user = userinfo.split(':').next().unwrap_or_default();
            format!("{scheme}://{user}:***@{host}")
        }
        _ => url.to_owned(),
    }
}

impl Clone {
    /// Opens the clone in `workdir`, making it if needed, and brings it to
    /// the remote's tip (or an empty branch if the remote has none yet).
    pub fn open(remote: &str, branch: &str, workdir: &Path) -> Result<Clone, GitError> {
        let clone = Clone {
            workdir: workdir.to_owned(),
            remote: remote.to_owned(),
            branch: branch.to_owned(),
            tip: std::cell::RefCell::new(None),
        };
        if !workdir.join(".git").is_dir() {
            std::fs::create_dir_all(workdir).map_err(|source| GitError::Io {
                path: workdir.to_owned(),
                source,
            })?;
            clone.git(["init", "--quiet", "--initial-branch", branch])?;
            clone.git(["remote", "add", "origin", remote])?;
        }
        clone.reset_to_remote()?;
        Ok(clone)
    }

    /// The work tree.
    pub fn workdir(&self) -> &Path {
        &self.workdir
    }

    /// Fetches the branch and resets the work tree to it, dropping local
    /// commits that were not pushed (they are replayed from the desired
    /// state). Returns whether the remote has the branch.
    pub fn reset_to_remote(&self) -> Result<bool, GitError> {
        self.tip.replace(None);
        let refspec = format!("+refs/heads/{0}:refs/remotes/origin/{0}", self.branch);
        let fetched = self.git_output(["fetch", "--quiet", "--no-tags", "origin", &refspec])?;
        let has_branch = fetched.status.success()
            && self
                .git_output([
                    "rev-parse",
                    "--verify",
                    "--quiet",
                    &format!("refs/remotes/origin/{}", self.branch),
                ])?
                .status
                .success();
        if !fetched.status.success() && !missing_ref(&fetched) {
            return Err(self.failure("fetch", &fetched));
        }
        if has_branch {
            self.git([
                "checkout",
                "--quiet",
                "-B",
                &self.branch,
                &format!("origin/{}", self.branch),
            ])?;
            self.git([
                "reset",
                "--quiet",
                "--hard",
                &format!("origin/{}", self.branch),
            ])?;
        } else {
            // An empty remote: start the branch from nothing.
            self.git(["checkout", "--quiet", "--orphan", &self.branch])?;
            self.git_output(["rm", "-r", "--quiet", "--cached", "--ignore-unmatch", "."])?;
        }
        self.git(["clean", "--quiet", "-d", "--force", "-x"])?;
        Ok(has_branch)
    }

    /// Every tracked file under `folder` (empty for all), as paths relative
    /// to the work tree.
    pub fn tracked_files(&self, folder: &str) -> Result<Vec<String>, GitError> {
        let mut args = vec!["ls-files", "-z"];
        if !folder.is_empty() {
            args.extend(["--", folder]);
        }
        let out = self.git(args)?;
        Ok(out
            .split('\0')
            .filter(|p| !p.is_empty())
            .map(str::to_owned)
            .collect())
    }

    /// Stages `paths` (written or deleted) and commits them; `false` if
    /// there was nothing to commit.
    ///
    /// Plumbing, not `git add` and `git commit`: with thousands of files in
    /// the tree, those walk and stat the whole work tree on every commit,
    /// while `update-index` takes exactly the named paths and `write-tree`
    /// rebuilds only the folders that changed.
    pub fn commit(
        &self,
        paths: &[&str],
        message: &str,
        author: &Person,
        committer: &Person,
    ) -> Result<bool, GitError> {
        let mut list = Vec::new();
        for path in paths {
            list.extend_from_slice(path.as_bytes());
            list.push(0);
        }
        let stage = self.command(["update-index", "--add", "--remove", "-z", "--stdin"]);
        let out = run_with_input(stage, &list)?;
        if !out.status.success() {
            return Err(self.failure("update-index", &out));
        }
        let tree = self.git(["write-tree"])?.trim().to_owned();
        let tip = self.tip()?;
        let parent = tip.as_ref().map(|(commit, _)| commit.clone());
        if tip
            .as_ref()
            .is_some_and(|(_, parent_tree)| *parent_tree == tree)
        {
            return Ok(false);
        }
        let mut args = vec!["commit-tree".to_owned(), tree.clone()];
        if let Some(parent) = &parent {
            args.extend(["-p".to_owned(), parent.clone()]);
        }
        args.extend(["-F".to_owned(), "-".to_owned()]);
        let mut command = self.command(&args);
        command
            .env("GIT_AUTHOR_NAME", &author.name)
            .env("GIT_AUTHOR_EMAIL", &author.email)
            .env("GIT_COMMITTER_NAME", &committer.name)
            .env("GIT_COMMITTER_EMAIL", &committer.email);
        let out = run_with_input(command, message.as_bytes())?;
        if !out.status.success() {
            return Err(self.failure("commit-tree", &out));
        }
        let commit = String::from_utf8_lossy(&out.stdout).trim().to_owned();
        let mut update = vec!["update-ref", "HEAD", &commit];
        if let Some(parent) = &parent {
            update.push(parent);
        }
        self.git(update)?;
        *self.tip.borrow_mut() = Some((commit, tree));
        Ok(true)
    }

    /// The local branch's tip and its tree, remembered between commits so
    /// that a batch of commits asks git once.
    fn tip(&self) -> Result<Option<(String, String)>, GitError> {
        if let Some(tip) = self.tip.borrow().clone() {
            return Ok(Some(tip));
        }
        // Not `--verify`, which takes exactly one name; an unborn branch
        // makes this fail, which means "no tip yet".
        let out = self.git_output(["rev-parse", "HEAD", "HEAD^{tree}"])?;
        if !out.status.success() {
            return Ok(None);
        }
        let text = String::from_utf8_lossy(&out.stdout);
        let mut lines = text.lines();
        let tip = lines
            .next()
            .zip(lines.next())
            .map(|(c, t)| (c.to_owned(), t.to_owned()));
        *self.tip.borrow_mut() = tip.clone();
        Ok(tip)
    }

    /// Pushes the branch, fast-forward only.
    pub fn push(&self) -> Result<Push, GitError> {
        let refspec = format!("HEAD:refs/heads/{}", self.branch);
        let out = self.git_output(["push", "--quiet", "--porcelain", "origin", &refspec])?;
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

    /// The commit at the tip of the local branch, if any.
    pub fn head(&self) -> Result<Option<String>, GitError> {
        let out = self.git_output(["rev-parse", "--verify", "--quiet", "HEAD"])?;
        Ok(out
            .status
            .success()
            .then(|| String::from_utf8_lossy(&out.stdout).trim().to_owned()))
    }

    fn command<I, S>(&self, args: I) -> Command
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        let mut command = Command::new("git");
        command
            .current_dir(&self.workdir)
            // Only Plumbline's own settings: no user or system config, no
            // hooks, no signing, no prompts.
            .env("GIT_CONFIG_NOSYSTEM", "1")
            .env("GIT_CONFIG_GLOBAL", "/dev/null")
            .env("GIT_TERMINAL_PROMPT", "0")
            .args([
                "-c",
                "core.hooksPath=/dev/null",
                "-c",
                "commit.gpgsign=false",
            ])
            .args(["-c", "core.autocrlf=false", "-c", "core.quotepath=false"])
            // The clone is a cache of the remote, rebuilt from it after a
            // crash: flushing every loose object to disk buys nothing.
            .args(["-c", "core.fsync=none"])
            .args(args);
        command
    }

    fn git_output<I, S>(&self, args: I) -> Result<Output, GitError>
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        self.command(args).output().map_err(GitError::Spawn)
    }

    fn git<I, S>(&self, args: I) -> Result<String, GitError>
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        let args: Vec<S> = args.into_iter().collect();
        let name = args
            .first()
            .map(|a| a.as_ref().to_string_lossy().into_owned())
            .unwrap_or_default();
        let out = self.git_output(args)?;
        if out.status.success() {
            Ok(String::from_utf8_lossy(&out.stdout).into_owned())
        } else {
            Err(self.failure(&name, &out))
        }
    }

    fn failure(&self, command: &str, out: &Output) -> GitError {
        let message = String::from_utf8_lossy(&out.stderr)
            .trim()
            .replace(&self.remote, &redact(&self.remote));
        GitError::Command {
            command: command.to_owned(),
            remote: redact(&self.remote),
            message,
        }
    }
}

fn missing_ref(out: &Output) -> bool {
    String::from_utf8_lossy(&out.stderr).contains("couldn't find remote ref")
}

fn run_with_input(mut command: Command, input: &[u8]) -> Result<Output, GitError> {
    use std::io::Write;
    use std::process::Stdio;
    let mut child = command
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(GitError::Spawn)?;
    child
        .stdin
        .take()
        .expect("piped")
        .write_all(input)
        .map_err(GitError::Spawn)?;
    child.wait_with_output().map_err(GitError::Spawn)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn credentials_never_reach_messages() {
        assert_eq!(
            redact("https://bot:s3cr3t@git.example.com/r.git"),
            "https://bot:***@git.example.com/r.git"
        );
        assert_eq!(
            redact("https://git.example.com/r.git"),
            "https://git.example.com/r.git"
        );
        assert_eq!(redact("/srv/git/r.git"), "/srv/git/r.git");
    }
}
