//! Helpers shared by the tests: where the built guests and fixtures are,
//! and how to load a plugin.

pub use crate::registry::Registry;
use plumbline::policy::capability::Grants;
use plumbline::policy::{Decision, Limits, Plugin, PluginSource, Runtime, RuntimeConfig};
use std::path::{Path, PathBuf};
use std::time::Duration;

/// The folder holding every component the build script built.
pub fn guest(name: &str) -> Vec<u8> {
    let path = Path::new(plumbline::policy::builtin::GUESTS_DIR).join(format!("{name}.wasm"));
    std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// The repository's root.
pub fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_owned()
}

/// A file under `tests/fixtures/`.
pub fn fixture(path: &str) -> PathBuf {
    root().join("tests/fixtures").join(path)
}

/// The `plumbline` binary built for these tests.
pub fn binary() -> &'static str {
    env!("CARGO_BIN_EXE_plumbline")
}

/// A runtime with a short deadline and a small memory cap. Its component
/// cache is shared by the tests, so each component compiles once per run.
pub fn runtime() -> Runtime {
    Runtime::new(&RuntimeConfig {
        limits: Limits {
            deadline: Duration::from_millis(200),
            memory: 32 << 20,
        },
        max_instances: 16,
        cache_dir: Some(Path::new(env!("CARGO_TARGET_TMPDIR")).join("component-cache")),
    })
    .expect("runtime")
}

/// Loads `guest` for `decision` with `settings` and no grants.
pub fn load(runtime: &Runtime, guest_name: &str, decision: Decision, settings: &str) -> Plugin {
    try_load(runtime, guest_name, decision, settings, Grants::default()).expect("plugin loads")
}

/// Loads `guest` for `decision`, returning the error if it does not load.
pub fn try_load(
    runtime: &Runtime,
    guest_name: &str,
    decision: Decision,
    settings: &str,
    grants: Grants,
) -> Result<Plugin, plumbline::policy::PolicyError> {
    let bytes = guest(guest_name);
    runtime.load(PluginSource {
        name: guest_name,
        decision,
        bytes: &bytes,
        settings: settings.to_owned(),
        grants,
    })
}

/// Reads a YAML or JSON file into JSON text.
pub fn json_of(path: &Path) -> String {
    let text = std::fs::read_to_string(path).unwrap();
    let value: serde_json::Value = serde_saphyr::from_str(&text).unwrap();
    value.to_string()
}

/// A `git daemon` serving bare repositories from a temporary folder on
/// 127.0.0.1, with pushes enabled. Stopped when dropped.
pub struct GitServer {
    root: tempfile::TempDir,
    port: u16,
    daemon: Option<std::process::Child>,
}

impl GitServer {
    /// Starts a server with one empty bare repository, `repo.git`.
    pub fn start() -> GitServer {
        let root = tempfile::tempdir().unwrap();
        git(
            root.path(),
            &[
                "init",
                "--quiet",
                "--bare",
                "--initial-branch=main",
                "repo.git",
            ],
        );
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let mut server = GitServer {
            root,
            port,
            daemon: None,
        };
        server.resume();
        server
    }

    /// The repository's URL.
    pub fn url(&self) -> String {
        format!("git://127.0.0.1:{}/repo.git", self.port)
    }

    /// The bare repository on disk.
    pub fn bare(&self) -> PathBuf {
        self.root.path().join("repo.git")
    }

    /// Stops serving (the repository stays).
    pub fn stop(&mut self) {
        if let Some(mut daemon) = self.daemon.take() {
            let _ = daemon.kill();
            let _ = daemon.wait();
        }
    }

    /// Serves again, on the same port.
    pub fn resume(&mut self) {
        // The daemon itself, not the `git` wrapper: some builds of git fork
        // it as a child, which would outlive a kill of the wrapper.
        let exec_path = git(Path::new("."), &["--exec-path"]);
        let daemon = std::process::Command::new(Path::new(exec_path.trim()).join("git-daemon"))
            .args([
                "--reuseaddr",
                "--export-all",
                "--enable=receive-pack",
                "--listen=127.0.0.1",
            ])
            .arg(format!("--port={}", self.port))
            .arg(format!("--base-path={}", self.root.path().display()))
            .arg(self.root.path())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("git daemon");
        self.daemon = Some(daemon);
        for _ in 0..100 {
            if std::net::TcpStream::connect(("127.0.0.1", self.port)).is_ok() {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        panic!("git daemon did not start on port {}", self.port);
    }

    /// `git log` of the branch: (author name, subject) per commit, newest first.
    pub fn log(&self) -> Vec<(String, String)> {
        let out = git(&self.bare(), &["log", "--format=%an%x09%s", "main"]);
        out.lines()
            .map(|l| {
                let (a, s) = l.split_once('\t').unwrap();
                (a.to_owned(), s.to_owned())
            })
            .collect()
    }

    /// How many commits the branch has (0 while it does not exist).
    pub fn log_len(&self) -> usize {
        let out = std::process::Command::new("git")
            .current_dir(self.bare())
            .args(["rev-list", "--count", "main"])
            .output()
            .unwrap();
        String::from_utf8_lossy(&out.stdout)
            .trim()
            .parse()
            .unwrap_or(0)
    }

    /// Every file of the branch's tip with its content (none while the
    /// branch does not exist). The tip is read once, so a commit landing
    /// meanwhile cannot mix two trees.
    pub fn tree(&self) -> std::collections::BTreeMap<String, String> {
        if self.log_len() == 0 {
            return Default::default();
        }
        let tip = git(&self.bare(), &["rev-parse", "main"]);
        let tip = tip.trim();
        let files = git(&self.bare(), &["ls-tree", "-r", "--name-only", tip]);
        files
            .lines()
            .map(|f| {
                (
                    f.to_owned(),
                    git(&self.bare(), &["show", &format!("{tip}:{f}")]),
                )
            })
            .collect()
    }
}

impl Drop for GitServer {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Runs git in `dir` and returns its output; panics on failure.
pub fn git(dir: &Path, args: &[&str]) -> String {
    let out = std::process::Command::new("git")
        .current_dir(dir)
        .env("GIT_CONFIG_GLOBAL", "/dev/null")
        .env("GIT_AUTHOR_NAME", "Other Writer")
        .env("GIT_AUTHOR_EMAIL", "other@example.com")
        .env("GIT_COMMITTER_NAME", "Other Writer")
        .env("GIT_COMMITTER_EMAIL", "other@example.com")
        .args(args)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "git {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// A `plumbline run` following a source folder in the background, its
/// standard error collected; killed when dropped.
pub struct Daemon {
    child: std::process::Child,
    stderr: std::sync::Arc<std::sync::Mutex<String>>,
}

impl Daemon {
    /// Starts `plumbline run` with `args` (after `run`), serving HTTP on a
    /// free port, polling its source every second.
    pub fn start(args: &[&std::ffi::OsStr]) -> Daemon {
        Daemon::start_with(&[], args)
    }

    /// [`Daemon::start`], the binary run by `wrapper` (a program and its
    /// arguments, such as `prlimit --nofile=64:64 --`).
    pub fn start_with(wrapper: &[&str], args: &[&std::ffi::OsStr]) -> Daemon {
        use std::io::Read as _;
        let mut command = match wrapper.split_first() {
            Some((program, rest)) => {
                let mut command = std::process::Command::new(program);
                command.args(rest).arg(binary());
                command
            }
            None => std::process::Command::new(binary()),
        };
        let mut child = command
            .args(["run", "--interval", "1", "--batch-wait", "0.2"])
            .args(["--listen", "127.0.0.1:0", "--cache-dir"])
            .arg(Path::new(env!("CARGO_TARGET_TMPDIR")).join("component-cache"))
            .args(args)
            .stderr(std::process::Stdio::piped())
            .spawn()
            .expect("start plumbline");
        let stderr = std::sync::Arc::new(std::sync::Mutex::new(String::new()));
        let (mut pipe, sink) = (child.stderr.take().unwrap(), stderr.clone());
        std::thread::spawn(move || {
            let mut buffer = [0u8; 4096];
            while let Ok(n) = pipe.read(&mut buffer) {
                if n == 0 {
                    break;
                }
                sink.lock()
                    .unwrap()
                    .push_str(&String::from_utf8_lossy(&buffer[..n]));
            }
        });
        Daemon { child, stderr }
    }

    /// What the daemon printed so far.
    pub fn stderr(&self) -> String {
        self.stderr.lock().unwrap().clone()
    }

    /// The address its HTTP server bound, once it says so.
    pub fn address(&self) -> String {
        let started = std::time::Instant::now();
        wait_for("the daemon to serve HTTP", || {
            let text = self.stderr();
            assert!(
                started.elapsed().as_secs() < 55,
                "the daemon never served HTTP; it said:\n{text}"
            );
            let (_, rest) = text
                .split_once(" on http://")
                .or_else(|| text.split_once(" on https://"))?;
            Some(rest.split_whitespace().next()?.to_owned())
        })
    }

    /// Sends the signal `name` (`TERM`, `INT`) to the daemon.
    pub fn signal(&self, name: &str) {
        let status = std::process::Command::new("kill")
            .args(["-s", name, &self.child.id().to_string()])
            .status()
            .unwrap();
        assert!(status.success(), "kill -s {name}");
    }

    /// Waits for the daemon to exit by itself; its exit status.
    pub fn exited(&mut self) -> std::process::ExitStatus {
        wait_for("the daemon to exit", || self.try_exited())
    }

    /// Its exit status, if it exited.
    pub fn try_exited(&mut self) -> Option<std::process::ExitStatus> {
        self.child.try_wait().unwrap()
    }

    /// SIGKILL, no goodbye.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Polls `probe` every 100 ms for up to 60 s; panics naming `what`.
pub fn wait_for<T>(what: &str, mut probe: impl FnMut() -> Option<T>) -> T {
    let started = std::time::Instant::now();
    loop {
        if let Some(value) = probe() {
            return value;
        }
        assert!(
            started.elapsed().as_secs() < 60,
            "timed out waiting for {what}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// A plain HTTP/1.1 GET: the status code and the body.
pub fn http_get(address: &str, path: &str) -> (u16, String) {
    let (status, _, body) = http_request(address, "GET", path, &[], "");
    (status, body)
}

/// A plain HTTP/1.1 request with `headers` and a `body`: the status code,
/// the content type, and the body.
pub fn http_request(
    address: &str,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &str,
) -> (u16, String, String) {
    use std::io::{Read as _, Write as _};
    let mut stream = std::net::TcpStream::connect(address).expect("connect");
    let mut head = format!("{method} {path} HTTP/1.1\r\nConnection: close\r\n");
    if !headers
        .iter()
        .any(|(name, _)| name.eq_ignore_ascii_case("host"))
    {
        head.push_str(&format!("Host: {address}\r\n"));
    }
    for (name, value) in headers {
        head.push_str(&format!("{name}: {value}\r\n"));
    }
    if !body.is_empty() {
        head.push_str(&format!("Content-Length: {}\r\n", body.len()));
    }
    write!(stream, "{head}\r\n{body}").unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).unwrap();
    let status = response
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .expect("an HTTP status line");
    let (head, body) = response.split_once("\r\n\r\n").unwrap_or((&response, ""));
    let content_type = head
        .lines()
        .find_map(|l| {
            let (name, value) = l.split_once(':')?;
            name.eq_ignore_ascii_case("content-type")
                .then(|| value.trim().to_owned())
        })
        .unwrap_or_default();
    (status, content_type, body.to_owned())
}

/// Runs a Python script in the test tools' environment (with `oras` and
/// `bcrypt`) in the current folder; its standard output.
pub fn python(script: &str) -> String {
    python_in(Path::new("."), script)
}

/// [`python`], in `dir`.
pub fn python_in(dir: &Path, script: &str) -> String {
    let python = root().join("target/test-tools/bin/python");
    let out = std::process::Command::new(&python)
        .current_dir(dir)
        .arg("-c")
        .arg(script)
        .output()
        .unwrap_or_else(|e| {
            panic!(
                "{}: {e} (scripts/test installs the test tools there)",
                python.display()
            )
        });
    assert!(
        out.status.success(),
        "python: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

/// A registry that wants `user` and `password` (HTTP basic authentication
/// against an htpasswd file, as the packaged default configuration has it),
/// and the folder holding that file.
pub fn registry_with_user(user: &str, password: &str) -> (Registry, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let hash = python(&format!(
        "import bcrypt; print(bcrypt.hashpw(b'{password}', bcrypt.gensalt()).decode())"
    ));
    let file = dir.path().join("htpasswd");
    std::fs::write(&file, format!("{user}:{}\n", hash.trim())).unwrap();
    let auth = format!(
        "  htpasswd:\n    realm: plumbline-tests\n    path: {}\n",
        file.display()
    );
    (Registry::start_with_auth(&auth), dir)
}

/// A token server (`tests/tools/token_server.py`) issuing bearer tokens to
/// `user` and `password`; killed when dropped.
pub struct TokenServer {
    process: std::process::Child,
    _dir: tempfile::TempDir,
}

impl Drop for TokenServer {
    fn drop(&mut self) {
        let _ = self.process.kill();
        let _ = self.process.wait();
    }
}

/// A registry that wants bearer tokens from a token server of its own, as
/// Docker Hub, GHCR or Harbor do.
pub fn registry_with_token_server(user: &str, password: &str) -> (Registry, TokenServer) {
    use std::io::BufRead as _;
    let dir = tempfile::tempdir().unwrap();
    let cert = dir.path().join("token-signer.pem");
    let mut process = std::process::Command::new(root().join("target/test-tools/bin/python"))
        .arg(root().join("tests/tools/token_server.py"))
        .arg(&cert)
        .args([user, password, "plumbline-token-issuer", "plumbline-tests"])
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("the test tools' python (scripts/test installs it)");
    let mut port = String::new();
    std::io::BufReader::new(process.stdout.take().unwrap())
        .read_line(&mut port)
        .unwrap();
    let auth = format!(
        "  token:\n    realm: http://127.0.0.1:{}/token\n    service: plumbline-tests\n    issuer: plumbline-token-issuer\n    rootcertbundle: {}\n",
        port.trim(),
        cert.display()
    );
    let server = TokenServer { process, _dir: dir };
    (Registry::start_with_auth(&auth), server)
}

/// A copy of the example folder, to edit.
pub fn example_source() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    for entry in std::fs::read_dir(root().join("examples/cluster")).unwrap() {
        let path = entry.unwrap().path();
        std::fs::copy(&path, dir.path().join(path.file_name().unwrap())).unwrap();
    }
    dir
}

/// `plumbline run --once` of `source` into `repo`, with the state in
/// `state`, the tests' shared component cache, and a 20 s retry budget
/// unless `extra` sets its own.
pub fn run_once(source: &Path, repo: &str, state: &Path, extra: &[&str]) -> std::process::Output {
    let retry = if extra.contains(&"--retry-for") {
        &[][..]
    } else {
        &["--retry-for", "20"][..]
    };
    std::process::Command::new(binary())
        .args(["run", "--once", "--repo", repo, "--source-dir"])
        .arg(source)
        .arg("--state-dir")
        .arg(state)
        .arg("--cache-dir")
        .arg(Path::new(env!("CARGO_TARGET_TMPDIR")).join("component-cache"))
        .args(retry)
        .args(extra)
        .output()
        .expect("run plumbline")
}
