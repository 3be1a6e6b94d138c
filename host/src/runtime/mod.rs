//! The sandbox: one engine, plugins compiled once, and a fresh instance
//! for every call.
//!
//! [`Runtime::load`] reads, pins, compiles (or fetches from the compile
//! cache), links and pre-instantiates a plugin, then asks it for its tools
//! in an instance with no grants. [`Runtime::call`] runs one tool in a new
//! store built from the plugin's grants, under its fuel, memory, time and
//! output budgets, and names whatever ended the call.

mod bindings;
pub mod cache;
mod call;
mod capture;
pub mod client;
mod compat;
mod docs;
pub mod engine;
pub mod error;
pub mod events;
mod generic;
mod outcome;
mod plugin;
mod state;

pub use cache::CacheOutcome;
pub use call::{CallReport, CallStats, Completing, Request};
pub use capture::printable;
pub use engine::Allocator;
pub use error::{CallError, LoadError};
pub use plugin::{LoadStats, MAX_URI_BYTES, Plugin};

use crate::capabilities::limits::MAX_MEMORY_MIB;
use crate::config::Config;
use crate::source::lock::Lock;
use crate::source::{FetchOptions, Fetcher};
use cache::CompileCache;
use engine::EpochTicker;
use state::CallState;
use std::path::PathBuf;
use std::sync::Arc;
use tokio::sync::Semaphore;
use wasmtime::Engine;
use wasmtime::component::{HasSelf, Linker};

/// How to build a [`Runtime`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RuntimeOptions {
    /// The instance allocator.
    pub allocator: Allocator,
    /// Instances that may run at once; calls beyond it wait for a slot.
    pub max_instances: u32,
    /// The compile cache folder, if any.
    pub cache_dir: Option<PathBuf>,
    /// How plugins are fetched.
    pub fetch: FetchOptions,
}

impl RuntimeOptions {
    /// Options that fit `config`: a pool sized by `[runtime]` whose memory
    /// slots hold the largest memory any plugin is granted.
    pub fn for_config(config: &Config) -> Self {
        let largest = config
            .all_plugins()
            .map(|p| p.grants.limits.memory_bytes)
            .max()
            .unwrap_or(0);
        RuntimeOptions {
            allocator: Allocator::Pooling {
                max_instances: config.runtime.max_instances,
                max_memory_bytes: largest.max(crate::capabilities::Limits::default().memory_bytes),
            },
            max_instances: config.runtime.max_instances,
            cache_dir: config.runtime.cache_dir.clone(),
            fetch: FetchOptions {
                store: downloads(config.runtime.cache_dir.as_deref()),
                max_bytes: config.runtime.max_plugin_bytes,
                registries: config.registries.clone(),
                lock: None,
                cached_tags: true,
            },
        }
    }

    /// The same options, asking registries for every tag (for `moat
    /// check` and `moat lock`, which report what a tag names now).
    pub fn fresh_tags(mut self) -> Self {
        self.fetch.cached_tags = false;
        self
    }

    /// The same options, running only what `lock` names (`--locked`).
    pub fn locked(mut self, lock: Arc<Lock>) -> Self {
        self.fetch.lock = Some(lock);
        self
    }

    /// Options for running any plugin with any grant (used by `inspect`).
    pub fn permissive(cache_dir: Option<PathBuf>) -> Self {
        RuntimeOptions {
            allocator: Allocator::Pooling {
                max_instances: 16,
                max_memory_bytes: (MAX_MEMORY_MIB as usize) << 20,
            },
            max_instances: 16,
            fetch: FetchOptions {
                store: downloads(cache_dir.as_deref()),
                max_bytes: crate::source::DEFAULT_MAX_PLUGIN_BYTES,
                registries: Default::default(),
                lock: None,
                cached_tags: false,
            },
            cache_dir,
        }
    }
}

/// Where downloaded plugins are kept: beside the compiled code.
fn downloads(cache_dir: Option<&std::path::Path>) -> Option<PathBuf> {
    cache_dir.map(|dir| dir.join("downloads"))
}

/// An engine with the linker its plugins are linked with and the ticker
/// of its epochs. Fuel checks are compiled into a plugin's code, so
/// plugins with `fuel = false` need an engine of their own.
struct Flavor {
    engine: Engine,
    /// WASI 0.2, wasi:http and the log import (see `linker_for` for
    /// plugins without a network grant).
    linker: Linker<CallState>,
    _ticker: EpochTicker,
}

impl Flavor {
    /// Builds the engine (counting fuel if `metered`) and links WASI 0.2
    /// (with wasi:http) and Moat's imports.
    fn new(allocator: Allocator, metered: bool) -> anyhow::Result<Flavor> {
        let engine = engine::build(allocator, metered)?;
        let mut linker = Linker::new(&engine);
        wasmtime_wasi::p2::add_to_linker_async(&mut linker)?;
        // Each request goes through the call's send hook, which refuses
        // everything the grant does not allow.
        wasmtime_wasi_http::p2::add_only_http_to_linker_async(&mut linker)?;
        bindings::moat::plugin::log::add_to_linker::<_, HasSelf<CallState>>(&mut linker, |s| s)?;
        bindings::moat::plugin::progress::add_to_linker::<_, HasSelf<CallState>>(
            &mut linker,
            |s| s,
        )?;
        bindings::moat::plugin::client::add_to_linker::<_, HasSelf<CallState>>(&mut linker, |s| s)?;
        bindings::moat::plugin::changes::add_to_linker::<_, HasSelf<CallState>>(
            &mut linker,
            |s| s,
        )?;
        bindings::v0_1::moat::plugin::log::add_to_linker::<_, HasSelf<CallState>>(
            &mut linker,
            |s| s,
        )?;
        let ticker = EpochTicker::start(&engine)?;
        Ok(Flavor {
            engine,
            linker,
            _ticker: ticker,
        })
    }
}

/// The engines plugins run in and what bounds concurrent calls.
pub struct Runtime {
    /// The engine of plugins that count fuel (the default).
    metered: Arc<Flavor>,
    /// The engine of plugins with `fuel = false`, made when the first
    /// such plugin loads.
    unmetered: std::sync::Mutex<Option<Arc<Flavor>>>,
    allocator: Allocator,
    cache: Option<Arc<CompileCache>>,
    /// Where plugins' bytes come from; a reload may replace it (other
    /// registries, another lock).
    fetcher: std::sync::RwLock<Arc<Fetcher>>,
    /// One permit per instance slot, so a burst of calls queues instead of
    /// failing on an exhausted pool.
    slots: Arc<Semaphore>,
}

impl Runtime {
    /// Builds the engine of plugins that count fuel.
    pub fn new(options: &RuntimeOptions) -> anyhow::Result<Runtime> {
        let metered = Flavor::new(options.allocator, true)?;
        let cache = match &options.cache_dir {
            None => None,
            Some(dir) => match CompileCache::open(dir) {
                Ok(cache) => Some(Arc::new(cache)),
                Err(e) => {
                    tracing::warn!("compile cache disabled: {e:#}");
                    None
                }
            },
        };
        Ok(Runtime {
            metered: Arc::new(metered),
            unmetered: std::sync::Mutex::default(),
            allocator: options.allocator,
            cache,
            fetcher: std::sync::RwLock::new(Arc::new(Fetcher::new(&options.fetch))),
            slots: Arc::new(Semaphore::new(options.max_instances as usize)),
        })
    }

    /// The engine and linker for plugins that count fuel (`metered`) or
    /// not. Each engine has its own pool of `max_instances` slots; the
    /// runtime's slot permits bound the calls of both together.
    fn flavor(&self, metered: bool) -> anyhow::Result<Arc<Flavor>> {
        if metered {
            return Ok(self.metered.clone());
        }
        let mut unmetered = self.unmetered.lock().expect("unmetered engine");
        if let Some(flavor) = &*unmetered {
            return Ok(flavor.clone());
        }
        let flavor = Arc::new(Flavor::new(self.allocator, false)?);
        *unmetered = Some(flavor.clone());
        Ok(flavor)
    }

    /// The engine (for benchmarks and inspection).
    pub fn engine(&self) -> &Engine {
        &self.metered.engine
    }

    /// Fetches with `options` from now on; returns the fetcher it replaced
    /// (for [`Self::restore_fetcher`] should the reload fail).
    pub fn replace_fetcher(&self, options: &FetchOptions) -> Arc<Fetcher> {
        let next = Arc::new(Fetcher::new(options));
        std::mem::replace(&mut *self.fetcher.write().expect("fetcher"), next)
    }

    /// Puts back a fetcher [`Self::replace_fetcher`] replaced.
    pub fn restore_fetcher(&self, fetcher: Arc<Fetcher>) {
        *self.fetcher.write().expect("fetcher") = fetcher;
    }

    /// The fetcher now.
    fn fetcher(&self) -> Arc<Fetcher> {
        self.fetcher.read().expect("fetcher").clone()
    }
}
