//! Limits: the fuel, memory, time and output budgets of every call, and
//! how they are applied to a fresh store: fuel, a memory limiter, and an
//! epoch deadline that ends a running guest at its time and otherwise
//! yields, so a busy guest never starves other calls on its thread, and
//! says it is busy, so the runtime can move it off a shared worker.

use crate::diagnostics::{ConfigError, Source};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};
use toml::Spanned;
use wasmtime::{ResourceLimiter, Store, UpdateDeadline};

/// The budgets of one call. The defaults are modest on purpose.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Fuel units (roughly wasm instructions) a call may use.
    pub fuel: u64,
    /// Whether fuel is counted at all (`fuel = false`: the call is bounded
    /// by its deadline alone, and its code runs without fuel checks).
    pub metered: bool,
    /// Bytes of linear memory a call's instance may hold in total.
    pub memory_bytes: usize,
    /// Wall-clock time a call may take, including waiting on host I/O.
    pub timeout: Duration,
    /// Bytes a call may return (text, image and structured content together).
    pub max_output_bytes: usize,
    /// Host handles (open files and directories, streams, HTTP requests,
    /// bodies and header maps) a call may hold at once: each is host
    /// memory, and an open file is a descriptor of the host process.
    pub max_handles: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            fuel: 1_000_000_000,
            metered: true,
            memory_bytes: 64 << 20,
            timeout: Duration::from_secs(5),
            max_output_bytes: 1 << 20,
            max_handles: 1024,
        }
    }
}

/// The largest memory a plugin may be granted; also sizes the pooling
/// allocator's slots, so it is kept well inside a 64-bit address space.
pub const MAX_MEMORY_MIB: u64 = 4096;

/// `fuel` as written: a number of units, or `false` (not counted; `true`
/// is the default count).
#[derive(Debug, Clone, Copy)]
pub(super) enum RawFuel {
    Units(u64),
    Counted(bool),
}

impl<'de> serde::Deserialize<'de> for RawFuel {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct Expected;
        impl serde::de::Visitor<'_> for Expected {
            type Value = RawFuel;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("a number of fuel units, or false to count none")
            }
            fn visit_bool<E>(self, v: bool) -> Result<RawFuel, E> {
                Ok(RawFuel::Counted(v))
            }
            fn visit_u64<E>(self, v: u64) -> Result<RawFuel, E> {
                Ok(RawFuel::Units(v))
            }
            fn visit_i64<E: serde::de::Error>(self, v: i64) -> Result<RawFuel, E> {
                u64::try_from(v)
                    .map(RawFuel::Units)
                    .map_err(|_| E::invalid_value(serde::de::Unexpected::Signed(v), &self))
            }
        }
        d.deserialize_any(Expected)
    }
}

#[derive(Debug, Default)]
pub(super) struct RawLimits {
    pub fuel: Option<Spanned<RawFuel>>,
    pub memory_mib: Option<Spanned<u64>>,
    pub timeout_ms: Option<Spanned<u64>>,
    pub max_output_bytes: Option<Spanned<u64>>,
    pub max_handles: Option<Spanned<u64>>,
}

pub(super) fn parse(src: &Source, raw: RawLimits) -> Result<Limits, ConfigError> {
    let mut limits = Limits::default();
    if let Some(v) = &raw.fuel {
        match *v.get_ref() {
            RawFuel::Units(units) => {
                let units = Spanned::new(v.span(), units);
                limits.fuel = src.ranged(&units, "fuel", 1, u64::MAX / 2)?;
            }
            RawFuel::Counted(counted) => limits.metered = counted,
        }
    }
    if let Some(v) = &raw.memory_mib {
        limits.memory_bytes = (src.ranged(v, "memory_mib", 1, MAX_MEMORY_MIB)? as usize) << 20;
    }
    if let Some(v) = &raw.timeout_ms {
        limits.timeout = Duration::from_millis(src.ranged(v, "timeout_ms", 1, 3_600_000)?);
    }
    if let Some(v) = &raw.max_output_bytes {
        limits.max_output_bytes = src.ranged(v, "max_output_bytes", 1, 1 << 30)? as usize;
    }
    if let Some(v) = &raw.max_handles {
        limits.max_handles = src.ranged(v, "max_handles", 16, 65_536)? as usize;
    }
    Ok(limits)
}

/// A store's data that holds the memory limiter of its call.
pub trait Limited {
    /// The call's limiter.
    fn memory_limiter(&mut self) -> &mut MemoryLimiter;
}

impl Limits {
    /// Applies the fuel, memory and time budgets to a fresh store. (The
    /// runtime also ends a call waiting on host I/O at the deadline; the
    /// epoch only interrupts running wasm.) `busy` is set when the guest
    /// is found running wasm at its second epoch tick, and at every tick
    /// it yields.
    pub fn apply<T: Limited + 'static>(
        &self,
        store: &mut Store<T>,
        busy: Arc<AtomicBool>,
    ) -> wasmtime::Result<()> {
        store.limiter(|s| s.memory_limiter());
        if self.metered {
            store.set_fuel(self.fuel)?;
        }
        store.set_hostcall_fuel(self.hostcall_bytes());
        let deadline = Instant::now() + self.timeout;
        store.set_epoch_deadline(1);
        // The first tick may come just after the call started: a short
        // call caught running then is not busy. Running wasm at a second
        // tick means it has used at least a whole tick period.
        let mut ticks = 0u32;
        store.epoch_deadline_callback(move |_| {
            if Instant::now() >= deadline {
                Err(wasmtime::Error::new(DeadlineExceeded))
            } else {
                ticks += 1;
                if ticks >= 2 {
                    busy.store(true, Ordering::Relaxed);
                }
                Ok(UpdateDeadline::Yield(1))
            }
        });
        Ok(())
    }
}

impl Limits {
    /// Host memory that one crossing from the guest may fill: the values
    /// of a result lifted out of its memory (a generic component's
    /// `list<u8>` becomes one host value per byte), or a host call's
    /// arguments. As much as the call may hold itself (its memory), or, if
    /// more, what a result that fits the output cap needs: each lifted
    /// value costs its host size, and no value is shorter than one byte of
    /// JSON. A bigger crossing is refused before the host allocates it.
    pub fn hostcall_bytes(&self) -> usize {
        self.max_output_bytes
            .saturating_mul(size_of::<wasmtime::component::Val>())
            .max(self.memory_bytes)
            .min(MAX_HOSTCALL_BYTES)
    }
}

/// The most one crossing may fill, whatever the limits: a result this
/// large is far past any sensible output cap already.
const MAX_HOSTCALL_BYTES: usize = 256 << 20;

/// Raised by the epoch callback when a call's deadline has passed.
#[derive(Debug)]
pub struct DeadlineExceeded;

impl std::fmt::Display for DeadlineExceeded {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("deadline exceeded")
    }
}

impl std::error::Error for DeadlineExceeded {}

/// Table elements an instance may hold; generous for real programs, small
/// enough that a table bomb cannot eat host memory.
const MAX_TABLE_ELEMENTS: usize = 1 << 20;

/// Caps the total linear memory of an instance. Growth past the cap is
/// refused (the guest sees a failed `memory.grow`, as the spec allows);
/// the flag lets the runtime name the trap that usually follows.
pub struct MemoryLimiter {
    limit: usize,
    total: usize,
    /// Highest total seen, for the call's statistics.
    pub peak: usize,
    /// Whether a growth was refused.
    pub hit: bool,
}

impl MemoryLimiter {
    /// A limiter of `limit` bytes.
    pub fn new(limit: usize) -> Self {
        MemoryLimiter {
            limit,
            total: 0,
            peak: 0,
            hit: false,
        }
    }
}

impl ResourceLimiter for MemoryLimiter {
    fn memory_growing(
        &mut self,
        current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        let total = self.total.saturating_sub(current).saturating_add(desired);
        if total > self.limit {
            self.hit = true;
            return Ok(false);
        }
        self.total = total;
        self.peak = self.peak.max(total);
        Ok(true)
    }

    fn table_growing(
        &mut self,
        _current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        Ok(desired <= MAX_TABLE_ELEMENTS)
    }
}
