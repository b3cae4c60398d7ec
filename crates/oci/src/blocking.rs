//! The blocking face of [`Registry`], for the CLI and for stages that run
//! on threads of their own (the policy reload, which compiles Wasm).
//!
//! It drives the async client either on a small runtime of its own (the
//! CLI's commands) or on the daemon's runtime through its handle. It never
//! panics for being called in the wrong place: from a task of a
//! multi-threaded runtime it steps off the worker (`block_in_place`) so
//! the other tasks go on; from a single-threaded runtime, where waiting
//! would stop everything, it refuses with [`OciError::Blocking`].

use super::{Artifact, Descriptor, Manifest, OciConfig, OciError, Registry};
use std::future::Future;
use std::io::Write;
use tokio::runtime::{Handle, Runtime, RuntimeFlavor};

/// A blocking registry client.
pub struct OciClient {
    registry: Registry,
    driver: Driver,
}

/// What runs the client's futures.
enum Driver {
    /// A current-thread runtime of the client's own.
    Own(Runtime),
    /// A runtime someone else owns (the daemon's).
    Shared(Handle),
}

impl OciClient {
    /// A client for `config` on a runtime of its own.
    pub fn new(config: OciConfig) -> Result<OciClient, OciError> {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(OciError::Runtime)?;
        Ok(OciClient {
            registry: Registry::new(config),
            driver: Driver::Own(runtime),
        })
    }

    /// A client for `config` on the runtime `handle` belongs to, which
    /// must outlive the client. It must be multi-threaded (as the daemon's
    /// is): a single-threaded runtime's handle cannot drive its I/O from
    /// another thread, and is refused.
    pub fn on(handle: Handle, config: OciConfig) -> Result<OciClient, OciError> {
        if handle.runtime_flavor() != RuntimeFlavor::MultiThread {
            return Err(OciError::Blocking);
        }
        Ok(OciClient {
            registry: Registry::new(config),
            driver: Driver::Shared(handle),
        })
    }

    /// The async client underneath.
    pub fn registry(&self) -> &Registry {
        &self.registry
    }

    /// The digest `reference` (a tag or a digest) names now.
    pub fn resolve(&self, reference: &str) -> Result<String, OciError> {
        self.driver.run(self.registry.resolve(reference))?
    }

    /// The manifest `reference` names (an index resolves to this platform's
    /// manifest), with its digest.
    pub fn manifest(&self, reference: &str) -> Result<Manifest, OciError> {
        self.driver.run(self.registry.manifest(reference))?
    }

    /// Every tag of `repository` ([`Registry::tags`]).
    pub fn tags(&self, repository: &str) -> Result<Vec<String>, OciError> {
        self.driver.run(self.registry.tags(repository))?
    }

    /// The manifests of `artifact_type` that refer to `digest`
    /// ([`Registry::referrers`]).
    pub fn referrers(
        &self,
        reference: &str,
        digest: &str,
        artifact_type: &str,
    ) -> Result<Vec<Descriptor>, OciError> {
        let referrers = self.registry.referrers(reference, digest, artifact_type);
        self.driver.run(referrers)?
    }

    /// Streams the blob `descriptor` names into `out` ([`Registry::pull_blob`]).
    pub fn pull_blob(
        &self,
        reference: &str,
        descriptor: &Descriptor,
        out: &mut dyn Write,
        progress: &mut dyn FnMut(u64),
    ) -> Result<(), OciError> {
        let pull = self
            .registry
            .pull_blob(reference, descriptor, out, progress);
        self.driver.run(pull)?
    }

    /// Pulls the artifact `reference` names, verifying every blob against
    /// its digest.
    pub fn pull(&self, reference: &str) -> Result<Artifact, OciError> {
        self.pull_with_progress(reference, &mut |_| {})
    }

    /// [`OciClient::pull`], telling `progress` of every chunk.
    pub fn pull_with_progress(
        &self,
        reference: &str,
        progress: &mut dyn FnMut(u64),
    ) -> Result<Artifact, OciError> {
        self.driver.run(self.registry.pull(reference, progress))?
    }

    /// Pushes `artifact` to `reference`; returns the manifest's digest.
    pub fn push(&self, reference: &str, artifact: &Artifact) -> Result<String, OciError> {
        self.push_with_progress(reference, artifact, &mut |_| {})
    }

    /// [`Registry::push`]: blob by blob, then the manifest.
    pub fn push_with_progress(
        &self,
        reference: &str,
        artifact: &Artifact,
        progress: &mut dyn FnMut(u64),
    ) -> Result<String, OciError> {
        self.driver
            .run(self.registry.push(reference, artifact, progress))?
    }
}

impl Driver {
    /// Waits for `future` on this driver's runtime, wherever it is called.
    fn run<F: Future>(&self, future: F) -> Result<F::Output, OciError> {
        let Ok(current) = Handle::try_current() else {
            return Ok(self.block_on(future));
        };
        // `RuntimeFlavor` is non-exhaustive: only the flavour known to let
        // a task step off its worker is trusted to.
        if current.runtime_flavor() != RuntimeFlavor::MultiThread {
            return Err(OciError::Blocking);
        }
        Ok(tokio::task::block_in_place(|| self.block_on(future)))
    }

    fn block_on<F: Future>(&self, future: F) -> F::Output {
        match self {
            Driver::Own(runtime) => runtime.block_on(future),
            Driver::Shared(handle) => handle.block_on(future),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A reference to a registry that refuses connections: the port was
    /// bound and let go.
    fn nowhere() -> (OciConfig, String) {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .map(|a| a.port())
            .unwrap();
        let host = format!("127.0.0.1:{port}");
        let config = OciConfig {
            insecure: vec![host.clone()],
            ..OciConfig::default()
        };
        (config, format!("{host}/plumbline/bundles:v1"))
    }

    fn multi_threaded() -> Runtime {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap()
    }

    fn is_registry_error(result: Result<String, OciError>) -> bool {
        matches!(
            result,
            Err(OciError::Registry {
                operation: "resolving",
                ..
            })
        )
    }

    #[test]
    fn from_a_task_of_the_shared_runtime_a_call_waits_instead_of_panicking() {
        let runtime = multi_threaded();
        let (config, reference) = nowhere();
        let client = OciClient::on(runtime.handle().clone(), config).unwrap();
        let result = runtime.block_on(async move {
            tokio::spawn(async move { client.resolve(&reference) })
                .await
                .unwrap()
        });
        assert!(is_registry_error(result));
    }

    #[test]
    fn from_its_blocking_pool_and_from_a_plain_thread_a_call_waits() {
        let runtime = multi_threaded();
        let (config, reference) = nowhere();
        let client = std::sync::Arc::new(OciClient::on(runtime.handle().clone(), config).unwrap());
        let (pooled, again) = (client.clone(), reference.clone());
        let result = runtime
            .block_on(runtime.spawn_blocking(move || pooled.resolve(&again)))
            .unwrap();
        assert!(is_registry_error(result));
        let result = std::thread::spawn(move || client.resolve(&reference))
            .join()
            .unwrap();
        assert!(is_registry_error(result));
    }

    #[test]
    fn inside_a_single_threaded_runtime_a_call_is_refused_instead_of_panicking() {
        let (config, reference) = nowhere();
        let client = OciClient::new(config.clone()).unwrap();
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let result = runtime.block_on(async { client.resolve(&reference) });
        assert!(matches!(result, Err(OciError::Blocking)), "{result:?}");
        let refused = OciClient::on(runtime.handle().clone(), config);
        assert!(matches!(refused, Err(OciError::Blocking)));
        // Outside any runtime the client's own one serves.
        assert!(is_registry_error(client.resolve(&reference)));
    }
}
