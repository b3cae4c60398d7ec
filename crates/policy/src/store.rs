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
use rustix::time::{ClockId, clock_gettime};
use std::sync::Arc;
use std::time::{Duration, Instant};
use wasmtime::component::ResourceTable;
use wasmtime::{Engine, ResourceLimiter, Store, UpdateDeadline};
use wasmtime_wasi::p2::pipe::MemoryOutputPipe;
use wasmtime_wasi::{FsPerms, WasiCtx, WasiCtxBuilder, WasiCtxView, WasiView};

/// Per-call limits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// How much CPU time one call may use, on the thread it runs on; the
    /// call also stops after [`WALL_FACTOR`] times as long on the clock,
    /// so that one waiting without using the CPU ends too.
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

/// How many times its deadline a call may take on the clock, whatever CPU
/// time it used.
pub const WALL_FACTOR: u32 = 10;

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
    store.epoch_deadline_callback(cpu_deadline(limits.deadline));
    store
}

/// What happens when a call's epoch deadline passes: it is stopped if it
/// used its deadline's worth of CPU time, else it goes on until it has.
///
/// The epoch clock counts time on the clock; on a loaded machine (two
/// cores shared with a build, a pod throttled by its CPU limit) a thread
/// can wait that long for a core and a plugin that did a millisecond of
/// work would be stopped. The thread's CPU time says what the guest used.
/// A guest waiting in a host call uses none, so the clock still bounds a
/// call at [`WALL_FACTOR`] times its deadline.
fn cpu_deadline(
    deadline: Duration,
) -> impl FnMut(wasmtime::StoreContextMut<'_, HostState>) -> wasmtime::Result<UpdateDeadline>
+ Send
+ Sync
+ 'static {
    let budget = CpuBudget::start(deadline);
    move |_| match budget.left() {
        Some(left) => Ok(UpdateDeadline::Continue(deadline_ticks(left))),
        None => Err(wasmtime::Trap::Interrupt.into()),
    }
}

/// A call's deadline in CPU time, bounded on the clock.
struct CpuBudget {
    deadline: Duration,
    started: Instant,
    cpu_at_start: Duration,
}

impl CpuBudget {
    /// Starts counting on the calling thread.
    fn start(deadline: Duration) -> CpuBudget {
        CpuBudget {
            deadline,
            started: Instant::now(),
            cpu_at_start: thread_cpu_time(),
        }
    }

    /// The CPU time left, or `None` when the call must stop.
    fn left(&self) -> Option<Duration> {
        let used = thread_cpu_time().saturating_sub(self.cpu_at_start);
        let on_the_clock = self.started.elapsed();
        (used < self.deadline && on_the_clock < self.deadline * WALL_FACTOR)
            .then(|| self.deadline - used)
    }
}

/// The CPU time the calling thread has used.
fn thread_cpu_time() -> Duration {
    let time = clock_gettime(ClockId::ThreadCPUTime);
    Duration::new(time.tv_sec as u64, time.tv_nsec as u32)
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
    fn waiting_for_a_core_uses_no_budget_and_using_the_cpu_does() {
        let budget = CpuBudget::start(Duration::from_millis(40));
        // Off the CPU past the deadline (as a thread waiting for a core is):
        // the call goes on.
        std::thread::sleep(Duration::from_millis(60));
        assert!(budget.left().is_some());
        // On the CPU for the deadline's worth: it stops.
        let mut spins = 0u64;
        while thread_cpu_time() < budget.cpu_at_start + Duration::from_millis(40) {
            spins = std::hint::black_box(spins + 1);
        }
        assert_eq!(budget.left(), None);
    }

    #[test]
    fn the_clock_bounds_a_call_that_uses_no_cpu() {
        let budget = CpuBudget::start(Duration::from_millis(2));
        std::thread::sleep(Duration::from_millis(2) * WALL_FACTOR);
        assert_eq!(budget.left(), None);
    }

    #[test]
    fn deadlines_round_up_to_whole_ticks() {
        assert_eq!(deadline_ticks(Duration::from_millis(100)), 21);
        assert_eq!(deadline_ticks(Duration::from_millis(1)), 2);
    }
}
