//! The plugin author's path: `plugin new` makes a crate that builds and
//! passes its fixtures for every decision, and the README's five commands,
//! run exactly as written, take a new plugin to a running daemon.

use crate::support::{Registry, binary, git, root};
use std::os::unix::process::CommandExt as _;
use std::path::{Path, PathBuf};
use std::process::Command;

/// The commands under the README's author-path marker.
fn readme_commands() -> Vec<String> {
    let readme = std::fs::read_to_string(root().join("README.md")).unwrap();
    let (_, after) = readme
        .split_once("<!-- author-path:")
        .expect("the README marks the author's path");
    let block = after.split("```sh\n").nth(1).unwrap();
    let block = block.split("```").next().unwrap();
    block.lines().map(str::to_owned).collect()
}

/// A shell whose `plumbline` is the binary under test, whose `cargo`
/// builds for itself (not inside this test's build), with its own caches.
fn shell(dir: &Path, home: &Path, registry: Option<&Registry>) -> Command {
    let bin = Path::new(binary()).parent().unwrap();
    let path = format!("{}:{}", bin.display(), std::env::var("PATH").unwrap());
    let mut sh = Command::new("sh");
    sh.current_dir(dir)
        .env("PATH", path)
        .env("PLUMBLINE_CACHE_DIR", home.join("cache/components"));
    if let Some(registry) = registry {
        sh.env("PLUMBLINE_INSECURE_REGISTRY", registry.host());
    }
    for var in [
        "CARGO_TARGET_DIR",
        "RUSTFLAGS",
        "CARGO_ENCODED_RUSTFLAGS",
        "CARGO_BUILD_TARGET",
    ] {
        sh.env_remove(var);
    }
    sh
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let path = entry.unwrap().path();
        std::fs::copy(&path, to.join(path.file_name().unwrap())).unwrap();
    }
}

#[test]
fn the_readme_takes_a_new_plugin_to_a_running_daemon_in_five_commands() {
    let commands = readme_commands();
    assert_eq!(commands.len(), 5, "{commands:#?}");
    assert!(
        commands[0].starts_with("plumbline plugin new "),
        "{commands:#?}"
    );

    let registry = Registry::start();
    let work = tempfile::tempdir().unwrap();
    copy_dir(
        &root().join("examples/cluster"),
        &work.path().join("examples/cluster"),
    );
    let script = commands
        .join("\n")
        .replace("localhost:5000", &registry.host());
    let mut commands = ProcessGroup(
        shell(work.path(), work.path(), Some(&registry))
            .args(["-e", "-c", &script])
            .process_group(0)
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap(),
    );
    let repo = work.path().join("drop-noise/plumbline-demo.git");
    let pv = "_cluster/core/persistentvolumes/pvc-54fad2fe-4d7b-11e9-9172-0800271788ca.yaml";
    let written = wait_for_commit(&repo, pv, &mut commands.0);
    drop(commands);

    // neat alone keeps the provisioner's annotation; the new plugin drops it.
    let source =
        std::fs::read_to_string(root().join("examples/cluster/persistentvolume.yaml")).unwrap();
    assert!(source.contains("pv.kubernetes.io/provisioned-by"));
    assert!(written.contains("hostPathProvisionerIdentity"), "{written}");
    assert!(
        !written.contains("pv.kubernetes.io/provisioned-by"),
        "{written}"
    );
}

/// The shell running the commands, and every process it started, killed
/// together however the test ends.
struct ProcessGroup(std::process::Child);

impl Drop for ProcessGroup {
    fn drop(&mut self) {
        let group = format!("-{}", self.0.id());
        let _ = Command::new("kill").args(["-KILL", "--", &group]).status();
        let _ = self.0.wait();
    }
}

/// Waits (long: the first command builds a crate) for `path` on `main`.
fn wait_for_commit(repo: &Path, path: &str, daemon: &mut std::process::Child) -> String {
    let started = std::time::Instant::now();
    loop {
        if let Some(status) = daemon.try_wait().unwrap() {
            let out = daemon_output(daemon);
            panic!("the commands stopped ({status}):\n{out}");
        }
        let exists = repo.join("refs/heads/main").exists() || repo.join("packed-refs").exists();
        if exists {
            let listed = git(repo, &["ls-tree", "-r", "--name-only", "main"]);
            if listed.lines().any(|l| l == path) {
                return git(repo, &["show", &format!("main:{path}")]);
            }
        }
        assert!(
            started.elapsed().as_secs() < 600,
            "no commit of {path} after 10 minutes"
        );
        std::thread::sleep(std::time::Duration::from_millis(250));
    }
}

fn daemon_output(daemon: &mut std::process::Child) -> String {
    use std::io::Read as _;
    let mut text = String::new();
    if let Some(mut out) = daemon.stdout.take() {
        let _ = out.read_to_string(&mut text);
    }
    if let Some(mut err) = daemon.stderr.take() {
        let _ = err.read_to_string(&mut text);
    }
    text
}

#[test]
fn plugin_new_makes_a_crate_that_builds_and_passes_its_fixtures_for_every_decision() {
    let work = tempfile::tempdir().unwrap();
    // One target folder for the four crates, kept between runs: the
    // dependencies build once.
    let target: PathBuf = Path::new(env!("CARGO_TARGET_TMPDIR")).join("scaffolds");
    for decision in ["sanitize", "match", "schema", "gate"] {
        let name = format!("new-{decision}");
        let script = format!(
            "plumbline plugin new {name} --decision {decision}\n\
             cd {name} && CARGO_TARGET_DIR={target} cargo build --release --quiet\n\
             plumbline plugin test {target}/wasm32-wasip2/release/new_{decision}.wasm --fixtures fixtures",
            target = target.display()
        );
        let out = shell(work.path(), work.path(), None)
            .args(["-e", "-c", &script])
            .output()
            .unwrap();
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success(),
            "{decision}:\n{stdout}\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(stdout.contains(&format!("a {decision} plugin")), "{stdout}");
        assert!(stdout.contains(" passed, 0 failed"), "{stdout}");
        assert!(!stdout.contains("FAIL"), "{stdout}");
    }
    let again = Command::new(binary())
        .args(["plugin", "new", "new-gate", "--decision", "gate"])
        .current_dir(work.path())
        .output()
        .unwrap();
    assert!(
        !again.status.success(),
        "an existing folder is not overwritten"
    );
    assert!(String::from_utf8_lossy(&again.stderr).contains("exists and is not empty"));
}
