//! Limits: the fuel, memory, time and output budgets of every call.

use crate::diagnostics::{ConfigError, Source};
use std::time::Duration;
use toml::Spanned;

/// The budgets of one call. The defaults are modest on purpose.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Fuel units (roughly wasm instructions) a call may use.
    pub fuel: u64,
    /// Bytes of linear memory a call's instance may hold in total.
    pub memory_bytes: usize,
    /// Wall-clock time a call may take, including waiting on host I/O.
    pub timeout: Duration,
    /// Bytes a call may return (text, image and structured content together).
    pub max_output_bytes: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            fuel: 1_000_000_000,
            memory_bytes: 64 << 20,
            timeout: Duration::from_secs(5),
            max_output_bytes: 1 << 20,
        }
    }
}

/// The largest memory a plugin may be granted; also sizes the pooling
/// allocator's slots, so it is kept well inside a 64-bit address space.
pub const MAX_MEMORY_MIB: u64 = 4096;

#[derive(Debug, Default)]
pub(super) struct RawLimits {
    pub fuel: Option<Spanned<u64>>,
    pub memory_mib: Option<Spanned<u64>>,
    pub timeout_ms: Option<Spanned<u64>>,
    pub max_output_bytes: Option<Spanned<u64>>,
}

pub(super) fn parse(src: &Source, raw: RawLimits) -> Result<Limits, ConfigError> {
    let mut limits = Limits::default();
    if let Some(v) = &raw.fuel {
        limits.fuel = src.ranged(v, "fuel", 1, u64::MAX / 2)?;
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
    Ok(limits)
}
