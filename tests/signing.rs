//! Signed commits, verified by the `git` program (through `ssh-keygen`)
//! against an allowed signers file that `plumbline git signing-key`
//! printed; and keys that cannot sign, which stop the run before anything
//! unsigned is written.

use crate::support::{binary, example_source, git, run_once};
use std::path::{Path, PathBuf};
use std::process::Command;

/// A new OpenSSH key of `kind` in `dir`, with `passphrase` (none if empty).
pub(crate) fn keygen(dir: &Path, kind: &str, passphrase: &str) -> PathBuf {
    let path = dir.join(format!("id_{kind}"));
    let made = Command::new("ssh-keygen")
        .args([
            "-q",
            "-t",
            kind,
            "-C",
            "plumbline-test",
            "-N",
            passphrase,
            "-f",
        ])
        .arg(&path)
        .status()
        .unwrap();
    assert!(made.success(), "ssh-keygen -t {kind}");
    path
}

/// What `plumbline git signing-key` prints for `key`.
pub(crate) fn allowed_signer(key: &Path) -> String {
    let out = Command::new(binary())
        .args([
            "git",
            "signing-key",
            "--allowed-signer",
            "plumbline@plumbline.invalid",
        ])
        .arg("--signing-key")
        .arg(key)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

/// Asserts that no line of the key in `key` (its base64 body) is in
/// `said`.
pub(crate) fn assert_no_key_material(said: &str, key: &Path) {
    let text = std::fs::read_to_string(key).unwrap_or_default();
    for line in text
        .lines()
        .filter(|l| l.len() > 16 && !l.starts_with("-----"))
    {
        assert!(!said.contains(line), "key material: {said}");
    }
}

/// `git verify-commit` of `commit` in `repo` against `allowed`.
pub(crate) fn verify(repo: &Path, allowed: &Path, commit: &str) -> (bool, String) {
    let out = Command::new("git")
        .arg("--git-dir")
        .arg(repo)
        .arg("-c")
        .arg(format!("gpg.ssh.allowedSignersFile={}", allowed.display()))
        .args(["verify-commit", commit])
        .output()
        .unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn every_commit_is_signed_and_git_verifies_it_with_the_printed_key() {
    for kind in ["ed25519", "ecdsa"] {
        let work = tempfile::tempdir().unwrap();
        let key = keygen(work.path(), kind, "");
        let allowed = work.path().join("allowed_signers");
        std::fs::write(&allowed, allowed_signer(&key)).unwrap();
        let (source, repo) = (example_source(), work.path().join("mirror.git"));
        let repo_text = repo.to_string_lossy().into_owned();
        let state = work.path().join("state");
        let key_text = key.to_string_lossy().into_owned();
        let out = run_once(
            source.path(),
            &repo_text,
            &state,
            &["--signing-key", &key_text],
        );
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );

        let commits = git(&repo, &["rev-list", "main"]);
        assert!(!commits.trim().is_empty());
        for commit in commits.lines() {
            let (good, said) = verify(&repo, &allowed, commit);
            assert!(good, "{kind}: {commit}: {said}");
            assert!(said.contains("Good \"git\" signature"), "{said}");
        }

        // Another key in the allowed file: the same commits do not verify.
        let elsewhere = work.path().join("other");
        std::fs::create_dir(&elsewhere).unwrap();
        let other = keygen(&elsewhere, kind, "");
        std::fs::write(&allowed, allowed_signer(&other)).unwrap();
        let tip = commits.lines().next().unwrap();
        let (good, said) = verify(&repo, &allowed, tip);
        assert!(!good, "{kind}: verified by a key that did not sign: {said}");
    }
}

#[test]
fn a_key_that_cannot_sign_stops_the_run_before_any_commit() {
    let work = tempfile::tempdir().unwrap();
    let encrypted = keygen(work.path(), "ed25519", "a passphrase");
    let missing = work.path().join("no-such-key");
    let not_a_key = work.path().join("not-a-key");
    std::fs::write(
        &not_a_key,
        "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAA public only\n",
    )
    .unwrap();
    let rsa = keygen(work.path(), "rsa", "");
    let cases = [
        (&rsa, "which Plumbline cannot sign with"),
        (&encrypted, "encrypted with a passphrase"),
        (&missing, "reading the signing key"),
        (&not_a_key, "is not an OpenSSH private key"),
    ];
    for (key, why) in cases {
        let source = example_source();
        let repo = work.path().join("mirror.git");
        let state = tempfile::tempdir().unwrap();
        let key_text = key.to_string_lossy().into_owned();
        let out = run_once(
            source.path(),
            &repo.to_string_lossy(),
            state.path(),
            &["--signing-key", &key_text],
        );
        let said = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{why}: {said}");
        assert!(said.contains(why) && said.contains(&key_text), "{said}");
        assert_no_key_material(&said, key);
        let branch = Command::new("git")
            .arg("--git-dir")
            .arg(&repo)
            .args(["rev-parse", "--verify", "-q", "main"])
            .output()
            .unwrap();
        assert!(!branch.status.success(), "{why}: nothing was committed");
    }
}
