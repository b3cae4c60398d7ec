//! The one wasmtime engine of the process, its linker, its epoch clock and its
//! component cache.
//!
//! The engine owns the defaults that make plugins safe to run on every
//! object: epoch interruption for deadlines, the pooling allocator so that a
//! fresh instance per call is cheap, and a memory cap enforced per store.

use super::Decision;
use super::bindings;
use super::cache::{CacheStats, ComponentCache};
use super::capability::Grants;
use super::error::{PolicyError, describe};
use super::plugin::{Plugin, WorldPre};
use super::store::{EPOCH_TICK, HostState, Identity, Limits};
use plumbline_model::digest::content_digest;
use std::path::PathBuf;
use std::sync::Arc;
use wasmtime::component::{HasSelf, Linker};
use wasmtime::{Config, Engine, InstanceAllocationStrategy, OptLevel, PoolingAllocationConfig};

/// How the runtime is set up; fixed for the life of the process.
#[derive(Debug, Clone)]
pub struct RuntimeConfig {
    /// Per-call deadline and memory cap.
    pub limits: Limits,
    /// How many plugin instances may be alive at once (the pool's size).
    pub max_instances: u32,
    /// Where compiled components are cached; `None` keeps them in memory only.
    pub cache_dir: Option<PathBuf>,
}

impl Default for RuntimeConfig {
    fn default() -> Self {
        RuntimeConfig {
            limits: Limits::default(),
            max_instances: 64,
            cache_dir: None,
        }
    }
}

/// Everything needed to load a plugin.
#[derive(Debug, Clone)]
pub struct PluginSource<'a> {
    /// The plugin's name, used in every message about it.
    pub name: &'a str,
    /// The decision it answers.
    pub decision: Decision,
    /// The component's bytes.
    pub bytes: &'a [u8],
    /// Its settings, as JSON text.
    pub settings: String,
    /// What the operator grants it.
    pub grants: Grants,
}

/// The policy runtime. Cheap to clone; one per process.
#[derive(Clone)]
pub struct Runtime {
    inner: Arc<Inner>,
}

pub(crate) struct Inner {
    pub(crate) engine: Engine,
    linker: Linker<HostState>,
    cache: ComponentCache,
    pub(crate) limits: Limits,
}

impl Runtime {
    /// Builds the engine and linker and starts the epoch clock.
    pub fn new(config: &RuntimeConfig) -> Result<Runtime, PolicyError> {
        let engine = Engine::new(&engine_config(config)).map_err(|e| PolicyError::Engine {
            message: describe(&e),
        })?;
        let mut linker = Linker::new(&engine);
        wasmtime_wasi::p2::add_to_linker_sync(&mut linker).expect("WASI links once");
        bindings::common::plumbline::policy::host::add_to_linker::<_, HasSelf<HostState>>(
            &mut linker,
            |state| state,
        )
        .expect("the host interface links once");
        start_epoch_clock(&engine);
        let cache = ComponentCache::new(&engine, config.cache_dir.clone());
        Ok(Runtime {
            inner: Arc::new(Inner {
                engine,
                linker,
                cache,
                limits: config.limits,
            }),
        })
    }

    /// The per-call limits.
    pub fn limits(&self) -> Limits {
        self.inner.limits
    }

    /// How many components were compiled and how many came from a cache.
    pub fn cache_stats(&self) -> CacheStats {
        self.inner.cache.stats()
    }

    pub(crate) fn inner(&self) -> &Inner {
        &self.inner
    }

    /// Compiles (or fetches from the cache) a component the host itself
    /// runs, not a plugin (the CEL sandbox), and resolves its imports.
    pub(crate) fn instantiate_pre(
        &self,
        bytes: &[u8],
    ) -> wasmtime::Result<wasmtime::component::InstancePre<HostState>> {
        let component = self
            .inner
            .cache
            .get(&self.inner.engine, &content_digest(bytes), bytes)?;
        self.inner.linker.instantiate_pre(&component)
    }

    /// Compiles (or fetches from the cache) a component, checks that it
    /// implements its decision's world and asks for nothing not granted, and
    /// runs its settings check. Only a plugin that passes all of that loads.
    pub fn load(&self, source: PluginSource<'_>) -> Result<Plugin, PolicyError> {
        let PluginSource {
            name,
            decision,
            bytes,
            settings,
            grants,
        } = source;
        let digest = content_digest(bytes);
        let component = self
            .inner
            .cache
            .get(&self.inner.engine, &digest, bytes)
            .map_err(|e| PolicyError::Component {
                plugin: name.into(),
                decision,
                message: describe(&e),
            })?;
        let imports: Vec<String> = component
            .component_type()
            .imports(&self.inner.engine)
            .map(|(import, _)| import.to_owned())
            .collect();
        if let Some((capability, import)) = grants.first_refused(imports.iter().map(String::as_str))
        {
            return Err(PolicyError::NotGranted {
                plugin: name.into(),
                decision,
                capability: capability.name(),
                import: import.to_owned(),
            });
        }
        let wrong_world = |e: wasmtime::Error| PolicyError::WrongWorld {
            plugin: name.into(),
            decision,
            message: describe(&e),
        };
        let instance_pre = self
            .inner
            .linker
            .instantiate_pre(&component)
            .map_err(wrong_world)?;
        let settings_check = bindings::SettingsIndices::new(&instance_pre).ok();
        let pre = WorldPre::new(decision, instance_pre).map_err(wrong_world)?;
        let identity = Identity {
            plugin: name.into(),
            decision,
            grants: Arc::new(grants),
        };
        let plugin = Plugin::new(
            self.inner.engine.clone(),
            self.inner.limits,
            identity,
            digest,
            settings,
            pre,
            imports,
        );
        if let Some(indices) = settings_check {
            plugin.validate_settings(&indices)?;
        }
        Ok(plugin)
    }
}

fn engine_config(config: &RuntimeConfig) -> Config {
    let mut pool = PoolingAllocationConfig::default();
    let instances = config.max_instances.max(1);
    // A Rust guest is one component holding a few core instances (its code
    // and the shims wit-component adds) sharing one memory.
    pool.total_component_instances(instances)
        .total_core_instances(instances * 4)
        .total_memories(instances)
        .total_tables(instances * 4)
        .max_memory_size(config.limits.memory)
        // A fresh instance per call means every page the guest touches is
        // faulted in and reset again. Keeping the first 512 KiB resident
        // (reset with memset instead of returned to the kernel) covers what
        // the default plugins touch: the 64 KiB stack set in
        // .cargo/config.toml, their data and a 5 KiB object's heap. Measured
        // with `cargo bench --bench policy -- neat/`: neat on a 5 KiB
        // Deployment went from 186 µs (1 MiB kept, at the wrong addresses,
        // below a 1 MiB stack) to 111 µs; 128 KiB kept gave 177 µs, 2 MiB
        // no better than 512 KiB and a slower bare instantiation.
        .linear_memory_keep_resident(512 << 10)
        .table_keep_resident(1 << 16);
    let mut engine = Config::new();
    engine
        .wasm_component_model(true)
        .epoch_interruption(true)
        // Bounds checks in the code instead of guard pages and signals: a
        // fresh instance per call otherwise costs two `mprotect`s (the
        // memory the last instance grew is shut, then opened again as
        // this one grows), each a TLB shootdown on every core. Seeding
        // 100,000 objects on two cores: 2.2-5.2 s of system time became
        // 1.2-1.9 s, and no run is the slow one of a pair any more. On one
        // thread the checks cost 6-8% (`cargo bench --bench policy`, the
        // default sanitize chain: 128 µs -> 138 µs); routing is on every
        // core, where the shootdowns cost more than the checks.
        .signals_based_traps(false)
        .memory_guard_size(0)
        .cranelift_opt_level(OptLevel::Speed)
        .allocation_strategy(InstanceAllocationStrategy::Pooling(pool));
    engine
}

/// Advances the engine's epoch every [`EPOCH_TICK`] for as long as the
/// engine lives; a store's deadline is a number of these ticks.
fn start_epoch_clock(engine: &Engine) {
    let weak = engine.weak();
    std::thread::Builder::new()
        .name("plumbline-epoch".into())
        .spawn(move || {
            while let Some(engine) = weak.upgrade() {
                engine.increment_epoch();
                drop(engine);
                std::thread::sleep(EPOCH_TICK);
            }
        })
        .expect("spawn the epoch thread");
}
