//! Compiled components, cached in memory and on disk.
//!
//! Compiling a component with Cranelift takes far longer than loading one, so
//! each is compiled once per content digest: the compiled form is written to
//! the cache folder under a name made of the component's SHA-256 and the
//! engine's compatibility hash (which changes with the wasmtime version and
//! the settings that affect code generation), and the next start
//! deserializes it instead. A cached file is checked against a digest of its
//! own before it is trusted; a corrupt or stale file is compiled again and
//! replaced.

use plumbline_model::digest::content_digest;
use sha2::{Digest, Sha256};
use std::collections::HashMap;
use std::fs;
use std::hash::{Hash, Hasher};
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use wasmtime::Engine;
use wasmtime::component::Component;

/// How many components were compiled and how many came from a cache.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CacheStats {
    /// Compiled with Cranelift in this process.
    pub compiled: u64,
    /// Deserialized from the on-disk cache.
    pub from_disk: u64,
    /// Already loaded in this process.
    pub from_memory: u64,
}

/// The component cache of one engine.
pub(crate) struct ComponentCache {
    dir: Option<PathBuf>,
    engine_key: String,
    loaded: Mutex<HashMap<String, Component>>,
    compiled: AtomicU64,
    from_disk: AtomicU64,
    from_memory: AtomicU64,
}

/// Feeds `Hash` output into SHA-256, so the engine key is stable across runs
/// and builds (the standard library's hasher promises neither).
struct Sha256Hasher(Sha256);

impl Hasher for Sha256Hasher {
    fn write(&mut self, bytes: &[u8]) {
        self.0.update(bytes);
    }
    fn finish(&self) -> u64 {
        unreachable!("only the full digest is used")
    }
}

impl ComponentCache {
    pub(crate) fn new(engine: &Engine, dir: Option<PathBuf>) -> Self {
        let mut hasher = Sha256Hasher(Sha256::new());
        engine.precompile_compatibility_hash().hash(&mut hasher);
        let engine_key = hex::encode(&hasher.0.finalize()[..8]);
        ComponentCache {
            dir,
            engine_key,
            loaded: Mutex::new(HashMap::new()),
            compiled: AtomicU64::new(0),
            from_disk: AtomicU64::new(0),
            from_memory: AtomicU64::new(0),
        }
    }

    pub(crate) fn stats(&self) -> CacheStats {
        CacheStats {
            compiled: self.compiled.load(Ordering::Relaxed),
            from_disk: self.from_disk.load(Ordering::Relaxed),
            from_memory: self.from_memory.load(Ordering::Relaxed),
        }
    }

    /// The component for `bytes`, from memory, disk, or compiled.
    pub(crate) fn get(
        &self,
        engine: &Engine,
        digest: &str,
        bytes: &[u8],
    ) -> wasmtime::Result<Component> {
        if let Some(component) = self.loaded.lock().expect("cache lock").get(digest) {
            self.from_memory.fetch_add(1, Ordering::Relaxed);
            return Ok(component.clone());
        }
        let file = self.dir.as_ref().map(|dir| {
            let hex = digest.trim_start_matches("sha256:");
            dir.join(format!("{hex}-{}.cwasm", self.engine_key))
        });
        let component = match file.as_deref().and_then(|f| self.read(engine, f)) {
            Some(component) => {
                self.from_disk.fetch_add(1, Ordering::Relaxed);
                component
            }
            None => {
                let component = Component::new(engine, bytes)?;
                self.compiled.fetch_add(1, Ordering::Relaxed);
                if let Some(file) = &file {
                    write(file, &component);
                }
                component
            }
        };
        self.loaded
            .lock()
            .expect("cache lock")
            .insert(digest.to_owned(), component.clone());
        Ok(component)
    }

    /// Reads a cached component, or `None` if it is absent, corrupt or stale.
    fn read(&self, engine: &Engine, file: &Path) -> Option<Component> {
        let bytes = fs::read(file).ok()?;
        let expected = fs::read_to_string(checksum_path(file)).ok()?;
        if content_digest(&bytes) != expected.trim() {
            tracing::warn!(file = %file.display(), "cached component is corrupt; compiling again");
            return None;
        }
        // SAFETY: wasmtime requires that deserialized bytes come from
        // `Component::serialize` of a compatible engine and were not tampered
        // with. The file is named by this engine's compatibility hash, was
        // written by `write` below, and its bytes were just checked against
        // the digest written beside it, so truncation and corruption are
        // caught; wasmtime itself also checks the version and settings header.
        #[allow(unsafe_code)]
        let component = unsafe { Component::deserialize(engine, &bytes) };
        match component {
            Ok(component) => Some(component),
            Err(error) => {
                tracing::warn!(file = %file.display(), error = %super::error::describe(&error), "cached component unusable; compiling again");
                None
            }
        }
    }
}

fn checksum_path(file: &Path) -> PathBuf {
    file.with_extension("cwasm.sha256")
}

/// Writes a compiled component and its checksum, each atomically (a
/// temporary file renamed into place), so a crash never leaves a half file
/// under the final name. A cache that cannot be written only costs speed.
fn write(file: &Path, component: &Component) {
    let result = (|| -> std::io::Result<()> {
        let bytes = component
            .serialize()
            .map_err(|e| std::io::Error::other(super::error::describe(&e)))?;
        let dir = file.parent().expect("cache files live in a folder");
        fs::create_dir_all(dir)?;
        let mut tmp = tempfile::NamedTempFile::new_in(dir)?;
        std::io::Write::write_all(&mut tmp, &bytes)?;
        tmp.persist(file).map_err(|e| e.error)?;
        let mut tmp = tempfile::NamedTempFile::new_in(dir)?;
        std::io::Write::write_all(&mut tmp, content_digest(&bytes).as_bytes())?;
        tmp.persist(checksum_path(file)).map_err(|e| e.error)?;
        Ok(())
    })();
    if let Err(error) = result {
        tracing::warn!(file = %file.display(), %error, "cannot write the component cache");
    }
}
