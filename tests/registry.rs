//! A real OCI registry for tests and benchmarks: Debian's `docker-registry`
//! (the CNCF distribution registry) started as a plain process on
//! 127.0.0.1, storing into a temporary folder, stopped when dropped, and
//! the image layers pushed to it. Shared by the test binary and the
//! benchmarks, so it depends on nothing of either.

use std::io::{Read as _, Write as _};
use std::path::PathBuf;
use std::time::{Duration, Instant};

/// A running registry.
pub struct Registry {
    root: tempfile::TempDir,
    port: u16,
    process: Option<std::process::Child>,
}

impl Registry {
    /// Starts a registry with no authentication, over plain HTTP.
    pub fn start() -> Registry {
        Registry::start_with(None)
    }

    /// Starts a registry with this `auth:` section of its configuration
    /// (indented by two spaces): `htpasswd` or `token`.
    #[allow(dead_code)] // the benchmark needs no authentication
    pub fn start_with_auth(auth: &str) -> Registry {
        Registry::start_with(Some(auth))
    }

    /// A port free now, for a registry started later on it (when what it
    /// notifies must know its address first).
    #[allow(dead_code)] // the benchmark does not notify
    pub fn free_port() -> u16 {
        std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port()
    }

    /// Starts a registry on `port` that notifies `url` of every push (its
    /// `notifications` section), as a registry configured for Plumbline's
    /// `/registry-webhook` does.
    #[allow(dead_code)] // the benchmark does not notify
    pub fn start_notifying(port: u16, url: &str) -> Registry {
        let notifications = format!(
            "notifications:\n  endpoints:\n  - name: plumbline\n    url: {url}\n    timeout: 2s\n    threshold: 3\n    backoff: 1s\n"
        );
        Registry::launch(port, None, &notifications)
    }

    fn start_with(auth: Option<&str>) -> Registry {
        Registry::launch(Registry::free_port(), auth, "")
    }

    fn launch(port: u16, auth: Option<&str>, more: &str) -> Registry {
        let root = tempfile::tempdir().unwrap();
        let mut config = format!(
            "version: 0.1\nlog: {{level: warn}}\nstorage:\n  filesystem: {{rootdirectory: {}}}\n  delete: {{enabled: true}}\nhttp:\n  addr: 127.0.0.1:{port}\n",
            root.path().join("storage").display()
        );
        if let Some(auth) = auth {
            config.push_str(&format!("auth:\n{auth}"));
        }
        config.push_str(more);
        let config_path = root.path().join("config.yml");
        std::fs::write(&config_path, config).unwrap();
        let process = std::process::Command::new("docker-registry")
            .arg("serve")
            .arg(&config_path)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("docker-registry (apt-get install docker-registry; scripts/test does)");
        let registry = Registry {
            root,
            port,
            process: Some(process),
        };
        registry.wait_until_up();
        registry
    }

    /// Waits up to 30 s for `/v2/` to answer (200, or 401 with auth).
    fn wait_until_up(&self) {
        let started = Instant::now();
        while !matches!(self.status("/v2/"), Some(200 | 401)) {
            assert!(
                started.elapsed() < Duration::from_secs(30),
                "the registry did not start"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// The status of a plain GET of `path`, if the registry answers.
    fn status(&self, path: &str) -> Option<u16> {
        let mut stream = std::net::TcpStream::connect(self.host()).ok()?;
        write!(
            stream,
            "GET {path} HTTP/1.1\r\nHost: {}\r\nConnection: close\r\n\r\n",
            self.host()
        )
        .ok()?;
        let mut head = [0u8; 12];
        stream.read_exact(&mut head).ok()?;
        std::str::from_utf8(&head[9..12]).ok()?.parse().ok()
    }

    /// `127.0.0.1:PORT`.
    pub fn host(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// Where the registry keeps a blob's bytes.
    #[allow(dead_code)] // the benchmark does not tamper with blobs
    pub fn blob_path(&self, digest: &str) -> PathBuf {
        let hex = digest.trim_start_matches("sha256:");
        self.root
            .path()
            .join("storage/docker/registry/v2/blobs/sha256")
            .join(&hex[..2])
            .join(hex)
            .join("data")
    }

    /// Stops the registry.
    pub fn stop(&mut self) {
        if let Some(mut process) = self.process.take() {
            let _ = process.kill();
            let _ = process.wait();
        }
    }
}

impl Drop for Registry {
    fn drop(&mut self) {
        self.stop();
    }
}

/// A gzip tarball layer of `files`, as an image's layer is pushed.
#[allow(dead_code)] // the bundle benchmark pushes no image
pub fn layer(files: &[(&str, &[u8])]) -> plumbline::oci::Blob {
    let mut builder = tar::Builder::new(Vec::new());
    for (path, bytes) in files {
        let mut header = tar::Header::new_gnu();
        header.set_size(bytes.len() as u64);
        header.set_mode(0o644);
        header.set_cksum();
        builder.append_data(&mut header, path, *bytes).unwrap();
    }
    let mut gzip = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    gzip.write_all(&builder.into_inner().unwrap()).unwrap();
    plumbline::oci::Blob {
        media_type: "application/vnd.oci.image.layer.v1.tar+gzip".into(),
        data: gzip.finish().unwrap(),
        annotations: Default::default(),
    }
}
