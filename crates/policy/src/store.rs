//! The state each guest call runs with, and the one function that makes a
//! store and installs every limit on it.
//!
//! A store lives for exactly one call. Its WASI context is built only if the
//! guest touches a WASI interface at all: most calls never do (a sanitizer
//! parses JSON and returns JSON), and building a context costs more than
//! instantiating the component.

use super::Decision;
use super::bindings::{Host, Level};
use super::capability::Grants;
use std::sync::Arc;
use std::time::Duration;
use wasmtime::component::ResourceTable;
use wasmtime::{Engine, ResourceLimiter, Store};
use wasmtime_wasi::p2::pipe::MemoryOutputPipe;
use wasmtime_wasi::{FsPerms, WasiCtx, WasiCtxBuilder, WasiCtxView, WasiView};

/// Per-call limits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// How long one call may run.
    pub deadline: Duration,
    /// The most linear memory one instance may have, in bytes.
    pub memory: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            deadline: Duration::from_millis(100),
            memory: 64 << 20,
        }
    }
}

/// How often the epoch advances; deadlines are counted in these ticks.
pub(crate) const EPOCH_TICK: Duration = Duration::from_millis(5);

/// Most bytes of a guest's stdout/stderr kept to explain a trap.
const CAPTURED_OUTPUT: usize = 4096;
/// Longest log line a guest may write, so a guest cannot flood the log.
const MAX_LOG_LINE: usize = 4096;

/// Who is running, for log lines and error messages.
#[derive(Debug, Clone)]
pub(crate) struct Identity {
    pub plugin: Arc<str>,
    pub decision: Decision,
    pub grants: Arc<Grants>,
}

/// The data of one call's store.
pub struct HostState {
    identity: Identity,
    memory_cap: usize,
    memory_refused: bool,
    wasi: Option<WasiCtx>,
    output: Option<MemoryOutputPipe>,
    table: ResourceTable,
}

impl HostState {
    /// Whether the guest asked for memory beyond its cap during this call.
    pub(crate) fn memory_refused(&self) -> bool {
        self.memory_refused
    }

    /// What the guest wrote to stdout/stderr, if it touched WASI at all.
    pub(crate) fn output(&self) -> Option<String> {
        let bytes = self.output.as_ref()?.contents();
        let text = String::from_utf8_lossy(&bytes).trim().to_owned();
        (!text.is_empty()).then_some(text)
    }
}

/// Makes the store for one call: limits, deadline, and nothing else.
pub(crate) fn new_store(engine: &Engine, identity: Identity, limits: &Limits) -> Store<HostState> {
    let state = HostState {
        identity,
        memory_cap: limits.memory,
        memory_refused: false,
        wasi: None,
        output: None,
        table: ResourceTable::new(),
    };
    let mut store = Store::new(engine, state);
    store.limiter(|state| state as &mut dyn ResourceLimiter);
    store.set_epoch_deadline(deadline_ticks(limits.deadline));
    store.epoch_deadline_trap();
    store
}

/// Ticks to wait so that at least `deadline` passes (the first tick may come
/// at once).
fn deadline_ticks(deadline: Duration) -> u64 {
    deadline.as_nanos().div_ceil(EPOCH_TICK.as_nanos()) as u64 + 1
}

impl ResourceLimiter for HostState {
    fn memory_growing(
        &mut self,
        _current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        let allowed = desired <= self.memory_cap;
        self.memory_refused |= !allowed;
        Ok(allowed)
    }

    fn table_growing(
        &mut self,
        _current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        Ok(desired <= 100_000)
    }
}

impl WasiView for HostState {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        if self.wasi.is_none() {
            let output = MemoryOutputPipe::new(CAPTURED_OUTPUT);
            self.wasi = Some(build_wasi(&self.identity.grants, output.clone()));
            self.output = Some(output);
        }
        WasiCtxView {
            ctx: self.wasi.as_mut().expect("built above"),
            table: &mut self.table,
        }
    }
}

/// A clock stopped at the Unix epoch: a plugin's output must not depend on
/// when it ran.
struct FixedClock;

impl wasmtime_wasi::HostWallClock for FixedClock {
    fn resolution(&self) -> Duration {
        Duration::from_secs(1)
    }
    fn now(&self) -> Duration {
        Duration::ZERO
    }
}

impl wasmtime_wasi::HostMonotonicClock for FixedClock {
    fn resolution(&self) -> u64 {
        1_000_000_000
    }
    fn now(&self) -> u64 {
        0
    }
}

/// The seed of a guest's randomness when real randomness is not granted.
const RANDOM_SEED: u64 = 0x706c_756d_626c_696e; // "plumblin"

fn build_wasi(grants: &Grants, output: MemoryOutputPipe) -> WasiCtx {
    use rand::SeedableRng;
    let mut builder = WasiCtxBuilder::new();
    builder.stdout(output.clone()).stderr(output);
    for name in &grants.environment {
        if let Ok(value) = std::env::var(name) {
            builder.env(name, value);
        }
    }
    for preopen in &grants.filesystem {
        // The folder was checked when the configuration was loaded; if it has
        // gone since, the guest simply does not see it.
        if let Err(error) = builder.preopened_dir(&preopen.host, &preopen.guest, FsPerms::ReadOnly)
        {
            tracing::warn!(folder = %preopen.host.display(), %error, "cannot offer folder to plugin");
        }
    }
    if grants.network {
        builder.inherit_network().allow_ip_name_lookup(true);
    }
    if !grants.real_clock {
        builder.wall_clock(FixedClock).monotonic_clock(FixedClock);
    }
    if !grants.real_random {
        builder
            .secure_random(rand::rngs::StdRng::seed_from_u64(RANDOM_SEED))
            .insecure_random(rand::rngs::StdRng::seed_from_u64(RANDOM_SEED + 1))
            .insecure_random_seed(u128::from(RANDOM_SEED));
    }
    builder.build()
}

impl Host for HostState {
    fn log(&mut self, level: Level, mut message: String) {
        if message.len() > MAX_LOG_LINE {
            let mut end = MAX_LOG_LINE;
            while !message.is_char_boundary(end) {
                end -= 1;
            }
            message.truncate(end);
            message.push('…');
        }
        let plugin = &*self.identity.plugin;
        let decision = self.identity.decision.name();
        match level {
            Level::Trace => tracing::trace!(plugin, decision, "{message}"),
            Level::Debug => tracing::debug!(plugin, decision, "{message}"),
            Level::Info => tracing::info!(plugin, decision, "{message}"),
            Level::Warn => tracing::warn!(plugin, decision, "{message}"),
            Level::Error => tracing::error!(plugin, decision, "{message}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn deadlines_round_up_to_whole_ticks() {
        assert_eq!(deadline_ticks(Duration::from_millis(100)), 21);
        assert_eq!(deadline_ticks(Duration::from_millis(1)), 2);
    }
}
