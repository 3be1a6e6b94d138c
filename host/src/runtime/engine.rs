//! The one wasmtime `Engine` of a process, and the clock that drives
//! call deadlines.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread;
use std::time::Duration;
use wasmtime::{Config, Enabled, Engine, InstanceAllocationStrategy, PoolingAllocationConfig};

/// How often the epoch advances. A call's deadline is checked, and a busy
/// guest yields to other tasks, once per tick.
pub const TICK: Duration = Duration::from_millis(5);

/// How instances get their memory.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Allocator {
    /// Preallocated slots reused across calls: fast instantiation and a hard
    /// bound on concurrent instances.
    Pooling {
        /// Instances that may exist at once.
        max_instances: u32,
        /// The largest linear memory any plugin may be granted.
        max_memory_bytes: usize,
    },
    /// Fresh mappings for each instance (slower; kept for comparison).
    OnDemand,
}

/// Builds an engine: component model, fuel if `metered`, epoch
/// interruption, copy-on-write memory images and the chosen allocator.
pub fn build(allocator: Allocator, metered: bool) -> anyhow::Result<Engine> {
    let mut config = Config::new();
    config
        .wasm_component_model(true)
        .consume_fuel(metered)
        .epoch_interruption(true)
        .memory_init_cow(true)
        // Deep enough for real programs; unbounded recursion ends as a
        // stack-overflow trap well before the fiber's own stack runs out.
        .max_wasm_stack(1 << 20)
        .async_stack_size(2 << 20);
    if let Allocator::Pooling {
        max_instances,
        max_memory_bytes,
    } = allocator
    {
        let mut pool = PoolingAllocationConfig::new();
        pool.total_component_instances(max_instances)
            // A Rust wasip2 component holds a handful of core instances,
            // tables and (usually) one memory; leave room for more.
            .total_core_instances(max_instances * 16)
            .total_memories(max_instances * 2)
            .total_tables(max_instances * 16)
            .total_stacks(max_instances)
            .max_memory_size(max_memory_bytes)
            // Reset only the pages a call actually dirtied (found with the
            // PAGEMAP_SCAN ioctl on Linux 6.7+), with memset, up to these
            // budgets; beyond them pages are returned to the kernel. Without
            // the scan, wasmtime would memset the whole budget on every call.
            // Measured in docs/BENCHMARKS.md: this halves a trivial call.
            .pagemap_scan(Enabled::Auto)
            .linear_memory_keep_resident(1 << 20)
            .table_keep_resident(64 << 10)
            .async_stack_keep_resident(64 << 10);
        config.allocation_strategy(InstanceAllocationStrategy::Pooling(pool));
    }
    Engine::new(&config).map_err(anyhow::Error::from)
}

/// Advances an engine's epoch every [`TICK`] until dropped.
pub struct EpochTicker {
    stop: Arc<AtomicBool>,
}

impl EpochTicker {
    /// Starts the ticker thread. It holds only a weak reference, so it never
    /// keeps an engine alive.
    pub fn start(engine: &Engine) -> std::io::Result<EpochTicker> {
        let stop = Arc::new(AtomicBool::new(false));
        let weak = engine.weak();
        let flag = stop.clone();
        thread::Builder::new()
            .name("moat-epoch".into())
            .spawn(move || {
                while !flag.load(Ordering::Relaxed) {
                    thread::sleep(TICK);
                    match weak.upgrade() {
                        Some(engine) => engine.increment_epoch(),
                        None => break,
                    }
                }
            })?;
        Ok(EpochTicker { stop })
    }
}

impl Drop for EpochTicker {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}
