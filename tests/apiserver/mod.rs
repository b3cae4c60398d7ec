//! A Kubernetes API server for the tests, since none can be installed here:
//! it speaks the real HTTP protocol (discovery, get, list with pagination,
//! chunked watches with bookmarks and 410 Gone, writes with
//! resourceVersion conflicts, CRDs and their status subresource), keeps its
//! objects in memory, and is driven by the real `kubectl`, which is how we
//! know it answers as a cluster does. Plumbline reaches it through a
//! kubeconfig, exactly as a cluster.
//!
//! Users are named by impersonation (`kubectl --as bob`, which kubectl
//! sends over plain HTTP, unlike a bearer token) or a bearer token (a
//! request with `Authorization: Bearer alice` is alice's).

mod admission;
mod audit;
mod http;
mod openapi;
mod protobuf;
mod resources;
pub mod store;
mod tests;

pub use store::Store;

use crate::support::root;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::Arc;
use std::time::Duration;

/// A running test API server.
pub struct ApiServer {
    server: Arc<http::Server>,
    address: std::net::SocketAddr,
    shutdown: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
    home: tempfile::TempDir,
}

impl ApiServer {
    /// Starts a server on a free port of 127.0.0.1, with bookmarks every
    /// second to watches that ask for them.
    pub fn start() -> ApiServer {
        ApiServer::start_with(Duration::from_secs(1))
    }

    /// Starts a server sending bookmarks every `bookmark_every`.
    pub fn start_with(bookmark_every: Duration) -> ApiServer {
        let server = Arc::new(http::Server {
            store: Store::new(),
            bookmark_every,
            expiry: tokio::sync::broadcast::channel(4).0,
            audit: Default::default(),
            forbidden: Default::default(),
        });
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.set_nonblocking(true).unwrap();
        let address = listener.local_addr().unwrap();
        let (shutdown, stopped) = tokio::sync::oneshot::channel::<()>();
        let state = server.clone();
        let thread = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(2)
                .enable_all()
                .build()
                .unwrap();
            runtime.block_on(async move {
                let listener = tokio::net::TcpListener::from_std(listener).unwrap();
                let app = axum::Router::new().fallback(http::handle).with_state(state);
                // Not a graceful shutdown: it would wait for open watches.
                tokio::select! {
                    served = std::future::IntoFuture::into_future(axum::serve(listener, app)) => served.unwrap(),
                    _ = stopped => {}
                }
            });
            // Open watches end with the runtime.
            runtime.shutdown_timeout(Duration::from_millis(100));
        });
        let home = tempfile::tempdir().unwrap();
        let api = ApiServer {
            server,
            address,
            shutdown: Some(shutdown),
            thread: Some(thread),
            home,
        };
        api.write_kubeconfig(&api.kubeconfig(), "alice");
        api
    }

    /// The server's URL.
    pub fn url(&self) -> String {
        format!("http://{}", self.address)
    }

    /// Posts the audit event of every write from now on to `url`
    /// (`http://host:port/path`), as an API server with an audit webhook.
    pub fn send_audit_to(&self, url: &str) {
        self.server.audit.send_to(url);
    }

    /// Posts the AdmissionReview of every write, before it persists, from
    /// now on to `url` (`http://host:port/path`), as an API server with a
    /// ValidatingWebhookConfiguration (failurePolicy Ignore) does.
    pub fn send_admission_to(&self, url: &str) {
        self.server.store.admission.send_to(url);
    }

    /// Has the webhook `name` at `url` review the `operations` (`CREATE`,
    /// `UPDATE`) of `plurals` from now on and refuse what it denies
    /// (failurePolicy Fail), as an API server with an enforcing
    /// ValidatingWebhookConfiguration does.
    pub fn enforce_admission_with(
        &self,
        url: &str,
        name: &str,
        plurals: &[&str],
        operations: &[&str],
    ) {
        let admission = &self.server.store.admission;
        admission.enforce_with(url, name, plurals, operations);
    }

    /// Refuses (403) every request for `plural` from now on, or, with
    /// `false`, no more.
    pub fn forbid(&self, plural: &str, forbidden: bool) {
        let mut set = self.server.forbidden.lock().unwrap();
        if forbidden {
            set.insert(plural.to_owned());
        } else {
            set.remove(plural);
        }
    }

    /// Ends the open watches of `plural` with 410 Gone.
    pub fn expire_watches(&self, plural: &str) {
        let _ = self.server.expiry.send(plural.to_owned());
    }

    /// The objects, for a test to look at or change without a client.
    pub fn store(&self) -> &Store {
        &self.server.store
    }

    /// A kubeconfig for this server as `alice`.
    pub fn kubeconfig(&self) -> PathBuf {
        self.home.path().join("kubeconfig")
    }

    /// Writes a kubeconfig for this server as `user` at `path`.
    pub fn write_kubeconfig(&self, path: &Path, user: &str) {
        let text = format!(
            "apiVersion: v1\nkind: Config\nclusters:\n- name: test\n  cluster: {{server: '{}'}}\n\
             users:\n- name: {user}\n  user: {{token: {user}}}\n\
             contexts:\n- name: test\n  context: {{cluster: test, user: {user}}}\n\
             current-context: test\n",
            self.url()
        );
        std::fs::write(path, text).unwrap();
    }

    /// Runs `kubectl` against this server as `user`.
    pub fn kubectl_as(&self, user: &str, args: &[&str]) -> Output {
        let config = self.home.path().join(format!("kubeconfig-{user}"));
        if !config.exists() {
            self.write_kubeconfig(&config, user);
        }
        Command::new(kubectl())
            .arg("--kubeconfig")
            .arg(&config)
            .args(["--as", user])
            .args(args)
            // kubectl's discovery cache would outlive the server's port.
            .env("KUBECACHEDIR", self.home.path().join("cache"))
            .env("HOME", self.home.path())
            .output()
            .expect("run kubectl")
    }

    /// Runs `kubectl` as alice; panics with its stderr unless it succeeds.
    pub fn kubectl(&self, args: &[&str]) -> String {
        let out = self.kubectl_as("alice", args);
        assert!(
            out.status.success(),
            "kubectl {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap()
    }

    /// `kubectl apply -f -` of `manifest`, as `user`.
    pub fn apply_as(&self, user: &str, manifest: &str) -> Output {
        self.with_input_as(user, &["apply", "-f", "-"], manifest)
    }

    /// `kubectl ARGS` as `user`, with `input` on its standard input (a
    /// manifest for `-f -`).
    pub fn with_input_as(&self, user: &str, args: &[&str], input: &str) -> Output {
        let config = self.home.path().join(format!("kubeconfig-{user}"));
        if !config.exists() {
            self.write_kubeconfig(&config, user);
        }
        let mut child = Command::new(kubectl())
            .arg("--kubeconfig")
            .arg(&config)
            .args(["--as", user])
            .args(args)
            .env("KUBECACHEDIR", self.home.path().join("cache"))
            .env("HOME", self.home.path())
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .expect("run kubectl");
        std::io::Write::write_all(child.stdin.as_mut().unwrap(), input.as_bytes()).unwrap();
        drop(child.stdin.take());
        child.wait_with_output().unwrap()
    }
}

impl Drop for ApiServer {
    fn drop(&mut self) {
        if let Some(shutdown) = self.shutdown.take() {
            let _ = shutdown.send(());
        }
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// kubectl 1.35 from the test tools, else the machine's.
pub fn kubectl() -> PathBuf {
    let ours = root().join("target/test-tools/kubectl/kubectl");
    if ours.exists() {
        ours
    } else {
        PathBuf::from("kubectl")
    }
}
