//! Secrets encrypted with SOPS and age instead of redacted, checked by
//! tools that are not ours: Debian's `age` decrypts the data key, the npm
//! package `sops-age` decrypts every value, and node's OpenSSL checks
//! SOPS's MAC (`tests/tools/sops_check.cjs`). An unchanged Secret makes no
//! commit; a Secret that cannot be encrypted is not written at all.

use crate::support::{binary, git, root, run_once};
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::Command;

const PASSWORD: &str = "hunter2-correct-horse";

/// An age identity made by `age-keygen`: its file and its recipient.
fn keypair(dir: &Path) -> (PathBuf, String) {
    let file = dir.join("age-key.txt");
    let out = Command::new("age-keygen")
        .arg("-o")
        .arg(&file)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let out = Command::new("age-keygen")
        .arg("-y")
        .arg(&file)
        .output()
        .unwrap();
    (
        file,
        String::from_utf8(out.stdout).unwrap().trim().to_owned(),
    )
}

/// A policy file: neat, then `sops` for `recipients`, in a chain that is
/// `failure: open` (the step fails closed whatever the chain says).
fn policy(dir: &Path, recipients: &[&str]) -> PathBuf {
    let path = dir.join("policies.yaml");
    let list: Vec<String> = recipients.iter().map(|r| format!("\"{r}\"")).collect();
    let text = format!(
        "decisions:\n  sanitize:\n    failure: open\n    steps:\n      - plugin: neat\n      - sops: {{ age: [{}] }}\n",
        list.join(", ")
    );
    std::fs::write(&path, text).unwrap();
    path
}

fn secret(name: &str, password: &str) -> String {
    use base64::Engine as _;
    let encoded = base64::engine::general_purpose::STANDARD.encode(password);
    format!(
        "apiVersion: v1\nkind: Secret\nmetadata:\n  name: {name}\n  namespace: shop\n  labels:\n    app: db\ntype: Opaque\ndata:\n  password: {encoded}\n  empty: \"\"\nstringData:\n  user: admin-{name}\n"
    )
}

/// The data key of the SOPS file `text`, as Debian's `age` decrypts it
/// with `identity`, in hex.
fn data_key(text: &str, identity: &Path, entry: usize) -> String {
    let document: Value = serde_saphyr::from_str(text).unwrap();
    let enc = document["sops"]["age"][entry]["enc"].as_str().unwrap();
    let mut child = Command::new("age")
        .arg("-d")
        .arg("-i")
        .arg(identity)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    use std::io::Write as _;
    child
        .stdin
        .take()
        .unwrap()
        .write_all(enc.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "age: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(out.stdout.len(), 32, "a SOPS data key is 32 bytes");
    hex::encode(out.stdout)
}

/// `text` decrypted by sops-age, its MAC checked: the document as JSON.
fn decrypted(text: &str, identity: &Path) -> Value {
    decrypted_with(text, identity, 0)
}

/// [`decrypted`], with the data key of the `entry`th recipient.
fn decrypted_with(text: &str, identity: &Path, entry: usize) -> Value {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("file.sops.yaml");
    std::fs::write(&file, text).unwrap();
    let out = Command::new("node")
        .arg(root().join("tests/tools/sops_check.cjs"))
        .arg(&file)
        .arg(identity)
        .arg(data_key(text, identity, entry))
        .env("NODE_TOOLS", root().join("target/test-tools/node"))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}\n{text}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

/// `plumbline sanitize --policy POLICY` of the Secret `db`.
fn sanitize(dir: &Path, policy: &Path) -> std::process::Output {
    let manifest = dir.join("secret.yaml");
    std::fs::write(&manifest, secret("db", PASSWORD)).unwrap();
    Command::new(binary())
        .args(["sanitize", "--policy"])
        .arg(policy)
        .arg(&manifest)
        .output()
        .unwrap()
}

/// The password a decrypted Secret holds, decoded.
fn password(decrypted: &Value) -> Vec<u8> {
    use base64::Engine as _;
    let encoded = decrypted["data"]["password"].as_str().unwrap();
    base64::engine::general_purpose::STANDARD
        .decode(encoded)
        .unwrap()
}

#[test]
fn sanitize_encrypts_a_secret_that_age_sops_age_and_the_mac_agree_on() {
    let dir = tempfile::tempdir().unwrap();
    let (identity, recipient) = keypair(dir.path());
    let second = dir.path().join("second");
    std::fs::create_dir(&second).unwrap();
    let (second_identity, other) = keypair(&second);
    let policy = policy(dir.path(), &[&recipient, &other]);
    let out = sanitize(dir.path(), &policy);
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        !text.contains(PASSWORD) && !text.contains("admin-db"),
        "{text}"
    );
    assert!(text.contains("ENC[AES256_GCM,data:"), "{text}");
    let plain = decrypted(&text, &identity);
    assert_eq!(password(&plain), PASSWORD.as_bytes());
    assert_eq!(plain["stringData"]["user"], "admin-db");
    assert_eq!(plain["data"]["empty"], "");
    assert_eq!(plain["metadata"]["labels"]["app"], "db");
    let document: Value = serde_saphyr::from_str(&text).unwrap();
    assert_eq!(
        document["sops"]["age"].as_array().unwrap().len(),
        2,
        "one entry per recipient"
    );
    // Either recipient decrypts: sops-age tries each entry.
    assert_eq!(
        decrypted_with(&text, &second_identity, 1)["stringData"]["user"],
        "admin-db"
    );
}

#[test]
fn a_sops_step_without_recipients_is_refused_naming_the_step() {
    let dir = tempfile::tempdir().unwrap();
    let policy = policy(dir.path(), &[]);
    let out = sanitize(dir.path(), &policy);
    let (stdout, stderr) = (
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr),
    );
    assert!(!out.status.success());
    assert!(stderr.contains("decisions.sanitize.steps[1]"), "{stderr}");
    assert!(stderr.contains("no recipient"), "{stderr}");
    assert!(
        !stdout.contains(PASSWORD) && !stdout.contains("admin-db"),
        "{stdout}"
    );
}

/// The mirror writes `{name}.sops.yaml`; a second run over the same
/// Secrets commits nothing (their ciphertext kept); a changed one commits
/// its new values; one that cannot be encrypted is not written, and the
/// others are; no plaintext is anywhere in the history.
#[test]
fn the_mirror_commits_encrypted_secrets_once_and_changes_only() {
    let dir = tempfile::tempdir().unwrap();
    let (identity, recipient) = keypair(dir.path());
    let policy = policy(dir.path(), &[&recipient]);
    let source = dir.path().join("source");
    std::fs::create_dir(&source).unwrap();
    std::fs::write(source.join("db.yaml"), secret("db", PASSWORD)).unwrap();
    std::fs::write(
        source.join("cache.yaml"),
        secret("cache", "cache-password-1"),
    )
    .unwrap();
    // Named like `db`'s encrypted file: refused, `db`'s file untouched.
    std::fs::write(
        source.join("db-sops.yaml"),
        secret("db.sops", "other-password"),
    )
    .unwrap();
    // A top-level `sops` field of its own: it cannot be encrypted.
    let clash = secret("clash", "clash-password-1") + "sops: mine\n";
    std::fs::write(source.join("clash.yaml"), clash).unwrap();
    let (repo, state) = (dir.path().join("mirror.git"), dir.path().join("state"));
    let repo_url = repo.to_str().unwrap();
    let policy_arg = ["--policy", policy.to_str().unwrap()];
    let run = || run_once(&source, repo_url, &state, &policy_arg);
    let first = run();
    let said = String::from_utf8_lossy(&first.stderr).into_owned();
    assert!(said.contains("clash") && said.contains("sops"), "{said}");
    assert!(
        said.contains("db.sops") && said.contains("reserved"),
        "{said}"
    );
    let file = |name: &str| {
        git(
            &repo,
            &["show", &format!("main:shop/core/secrets/{name}.sops.yaml")],
        )
    };
    let files = git(&repo, &["ls-tree", "-r", "--name-only", "main"]);
    assert_eq!(
        files.lines().collect::<Vec<_>>(),
        [
            "shop/core/secrets/cache.sops.yaml",
            "shop/core/secrets/db.sops.yaml"
        ],
        "{said}"
    );
    assert_eq!(
        decrypted(&file("db"), &identity)["stringData"]["user"],
        "admin-db"
    );
    let commits = || git(&repo, &["rev-list", "--count", "main"]);
    let before = commits();
    let again = run();
    assert_eq!(
        commits(),
        before,
        "{}",
        String::from_utf8_lossy(&again.stderr)
    );
    std::fs::write(
        source.join("cache.yaml"),
        secret("cache", "cache-password-2"),
    )
    .unwrap();
    let old_db = file("db");
    run();
    assert_ne!(commits(), before);
    assert_eq!(
        file("db"),
        old_db,
        "an unchanged Secret keeps its ciphertext"
    );
    let cache = decrypted(&file("cache"), &identity);
    assert_eq!(password(&cache), b"cache-password-2");
    // A Secret gone from the source: its SOPS file is pruned.
    std::fs::remove_file(source.join("cache.yaml")).unwrap();
    run();
    let files = git(&repo, &["ls-tree", "-r", "--name-only", "main"]);
    assert_eq!(files.trim(), "shop/core/secrets/db.sops.yaml");
    let history = git(&repo, &["log", "-p", "--all"]);
    for plain in [
        PASSWORD,
        "cache-password-1",
        "cache-password-2",
        "clash-password-1",
        "other-password",
        "admin-",
    ] {
        assert!(!history.contains(plain), "`{plain}` is in the history");
    }
}

/// Followed: a Secret written encrypted, then deleted, takes its SOPS file
/// with it.
#[test]
fn a_deleted_secret_takes_its_sops_file_with_it_when_followed() {
    let dir = tempfile::tempdir().unwrap();
    let (_, recipient) = keypair(dir.path());
    let policy = policy(dir.path(), &[&recipient]);
    let source = dir.path().join("source");
    std::fs::create_dir(&source).unwrap();
    std::fs::write(source.join("db.yaml"), secret("db", PASSWORD)).unwrap();
    std::fs::write(source.join("web.yaml"), secret("web", "web-password")).unwrap();
    let repo = dir.path().join("mirror.git");
    let state = dir.path().join("state");
    let daemon = crate::support::Daemon::start(&[
        "--repo".as_ref(),
        repo.as_os_str(),
        "--source-dir".as_ref(),
        source.as_os_str(),
        "--state-dir".as_ref(),
        state.as_os_str(),
        "--policy".as_ref(),
        policy.as_os_str(),
    ]);
    // The daemon makes the repository, then the branch: none yet is none.
    let files = || {
        let out = Command::new("git")
            .arg("--git-dir")
            .arg(&repo)
            .args(["ls-tree", "-r", "--name-only", "main"])
            .output()
            .unwrap();
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    crate::support::wait_for("both SOPS files", || {
        (files().lines().count() == 2).then_some(())
    });
    std::fs::remove_file(source.join("db.yaml")).unwrap();
    crate::support::wait_for("the deleted Secret's file to go", || {
        (files().trim() == "shop/core/secrets/web.sops.yaml").then_some(())
    });
    drop(daemon);
}

/// A Secret-shaped custom resource goes the same way, in the fields its
/// step names.
#[test]
fn a_secret_shaped_custom_resource_is_encrypted_in_the_fields_named() {
    let dir = tempfile::tempdir().unwrap();
    let (identity, recipient) = keypair(dir.path());
    let policy = dir.path().join("policies.yaml");
    std::fs::write(
        &policy,
        format!(
            "decisions:\n  sanitize:\n    steps:\n      - plugin: neat\n      - sops: {{ age: [\"{recipient}\"], fields: [spec] }}\n        kinds: [DatabaseCredential]\n"
        ),
    )
    .unwrap();
    let manifest = dir.path().join("credential.yaml");
    std::fs::write(
        &manifest,
        "apiVersion: db.example.com/v1\nkind: DatabaseCredential\nmetadata:\n  name: orders\n  namespace: shop\nspec:\n  user: orders\n  password: s3cret-orders\n  port: 5432\n---\napiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: plain\n  namespace: shop\ndata:\n  spec: visible\n",
    )
    .unwrap();
    let out = Command::new(binary())
        .args(["sanitize", "--policy"])
        .arg(&policy)
        .arg(&manifest)
        .output()
        .unwrap();
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let (credential, configmap) = text.split_once("\n---\n").unwrap();
    assert!(!credential.contains("s3cret-orders"), "{credential}");
    assert!(
        configmap.contains("spec: visible"),
        "other kinds skip the step:\n{configmap}"
    );
    let plain = decrypted(credential.trim_start_matches("---\n"), &identity);
    assert_eq!(plain["spec"]["password"], "s3cret-orders");
    assert_eq!(plain["spec"]["port"], 5432);
    assert_eq!(plain["metadata"]["name"], "orders");
}
