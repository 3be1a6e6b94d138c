//! The host state of one call: a fresh WASI context built from the
//! plugin's grants, the resource table, the memory limiter, captured
//! output and the `log` import.

use super::bindings::moat::plugin::log::{Host as LogHost, Level};
use super::capture::Capture;
use crate::capabilities::Grants;
use crate::capabilities::fs::writes::{Budgeted, WriteBudget};
use crate::capabilities::limits::{Limited, MemoryLimiter};
use crate::capabilities::net::outbound::Outbound;
use crate::capabilities::per_caller::Principal;
use std::sync::Arc;
use wasmtime::component::ResourceTable;
use wasmtime_wasi::{WasiCtx, WasiCtxView, WasiView};
use wasmtime_wasi_http::{WasiHttpCtx, WasiHttpCtxView, WasiHttpView};

/// Log bytes a plugin may write through the `log` import per call.
const LOG_BUDGET: usize = 64 << 10;

/// Bytes one header map may take in host memory (wasmtime's default is
/// 128 KiB; with a call's 1,024 handles that would be 128 MiB).
const HEADER_MAP_BYTES: usize = 16 << 10;

/// Everything the host keeps for one call. Dropped with the call's store.
pub struct CallState {
    /// What the plugin may touch, built from its grants.
    pub wasi: WasiCtx,
    /// Handles to host resources (files, streams) the guest holds.
    pub table: ResourceTable,
    /// Enforces the memory cap and remembers whether it was hit.
    pub limiter: MemoryLimiter,
    /// The guest's stdout and stderr.
    pub stdout: Capture,
    pub stderr: Capture,
    /// The plugin's name, for its log records.
    pub plugin: Arc<str>,
    /// What is left of the `log` import's budget.
    log_budget: usize,
    /// wasi:http state.
    http: WasiHttpCtx,
    /// Checks and sends every outgoing HTTP request of this call.
    pub outbound: Outbound,
    /// What the call may still write into its directories.
    writes: WriteBudget,
    /// Where progress and log records go to the client, when one listens.
    pub events: Option<super::events::EventSink>,
    /// What the call may still ask the client (see [`super::client`]).
    pub asking: super::client::Asking,
    /// Resource URIs the plugin said changed (at most [`MAX_CHANGED`]).
    pub changed: Vec<String>,
}

/// Resource changes a call may report.
pub const MAX_CHANGED: usize = 64;

impl CallState {
    /// State for a call of `plugin` by `caller` with `wasi`, under
    /// `grants` (its memory cap and its outbound HTTP hook).
    pub fn new(
        plugin: Arc<str>,
        wasi: WasiCtx,
        stdout: Capture,
        stderr: Capture,
        grants: &Grants,
        caller: Option<Principal>,
    ) -> Self {
        let mut http = WasiHttpCtx::new();
        http.set_field_size_limit(HEADER_MAP_BYTES);
        let mut table = ResourceTable::new();
        table.set_max_capacity(grants.limits.max_handles);
        CallState {
            http,
            outbound: grants.net.hook(plugin.clone(), caller),
            wasi,
            table,
            limiter: MemoryLimiter::new(grants.limits.memory_bytes),
            writes: WriteBudget::new(grants.max_write_bytes),
            stdout,
            stderr,
            plugin,
            log_budget: LOG_BUDGET,
            events: None,
            asking: super::client::Asking::new(grants, None),
            changed: Vec::new(),
        }
    }
}

impl WasiView for CallState {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView {
            ctx: &mut self.wasi,
            table: &mut self.table,
        }
    }
}

impl WasiHttpView for CallState {
    fn http(&mut self) -> WasiHttpCtxView<'_> {
        WasiHttpCtxView {
            ctx: &mut self.http,
            table: &mut self.table,
            hooks: &mut self.outbound,
        }
    }
}

impl super::bindings::moat::plugin::changes::Host for CallState {
    fn resource_updated(&mut self, uri: String) {
        // Which URIs are the plugin's is checked when the call ends (the
        // endpoint knows the routes); here only what the host keeps.
        if self.changed.len() < MAX_CHANGED
            && uri.len() <= crate::runtime::MAX_URI_BYTES
            && !self.changed.contains(&uri)
        {
            self.changed.push(uri);
        }
    }
}

impl LogHost for CallState {
    fn log(&mut self, level: Level, message: String) {
        if self.log_budget == 0 {
            return;
        }
        if let Some(events) = &mut self.events {
            let level = match level {
                Level::Trace | Level::Debug => super::events::LogLevel::Debug,
                Level::Info => super::events::LogLevel::Info,
                Level::Warn => super::events::LogLevel::Warning,
                Level::Error => super::events::LogLevel::Error,
            };
            events.log(level, &message, self.log_budget);
        }
        let message = truncate(&message, self.log_budget);
        self.log_budget -= message.len();
        let message = super::capture::printable(message);
        let plugin = &*self.plugin;
        match level {
            Level::Trace => tracing::trace!(target: "moat::plugin", plugin, "{message}"),
            Level::Debug => tracing::debug!(target: "moat::plugin", plugin, "{message}"),
            Level::Info => tracing::info!(target: "moat::plugin", plugin, "{message}"),
            Level::Warn => tracing::warn!(target: "moat::plugin", plugin, "{message}"),
            Level::Error => tracing::error!(target: "moat::plugin", plugin, "{message}"),
        }
    }
}

/// The longest prefix of `s` of at most `max` bytes that ends on a char
/// boundary.
pub fn truncate(s: &str, max: usize) -> &str {
    if s.len() <= max {
        return s;
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    &s[..end]
}

impl Limited for CallState {
    fn memory_limiter(&mut self) -> &mut MemoryLimiter {
        &mut self.limiter
    }
}

impl Budgeted for CallState {
    fn write_budget(&self) -> &WriteBudget {
        &self.writes
    }
}

impl super::bindings::moat::plugin::progress::Host for CallState {
    fn report(&mut self, progress: f64, total: Option<f64>, message: Option<String>) {
        if let Some(events) = &mut self.events {
            events.progress(progress, total, message.as_deref());
        }
    }
}
