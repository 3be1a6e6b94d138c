//! Running one call: a fresh store and instance on a thread that fits the
//! plugin's grants, with its budgets enforced; [`super::outcome`] names how
//! it ended.

use super::bindings::Pre;
use super::bindings::exports::moat::plugin::tools as wit;
use super::bindings::moat::plugin::types::CallResult;
use super::capture::Capture;
use super::error::CallError;
use super::outcome::{classify, convert, log_captured};
use super::state::CallState;
use super::{Plugin, Runtime};
use crate::capabilities::Grants;
use crate::tool::ToolOutput;
use std::sync::Arc;
use std::time::{Duration, Instant};
use wasmtime::{Engine, Store};
use wasmtime_wasi::WasiCtxBuilder;

/// What a call cost.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CallStats {
    /// Wall-clock time from admission to result.
    pub duration: Duration,
    /// Fuel consumed.
    pub fuel_used: u64,
    /// Highest total linear memory of the instance, in bytes.
    pub peak_memory_bytes: usize,
    /// Bytes of content returned (0 when the call failed).
    pub output_bytes: usize,
}

/// The outcome of a call and what it cost.
#[derive(Debug, Clone, PartialEq)]
pub struct CallReport {
    /// The tool's output, or why there is none.
    pub result: Result<ToolOutput, CallError>,
    /// Resources used.
    pub stats: CallStats,
    /// Capabilities the call asked for and was refused.
    pub denied: Vec<String>,
}

/// Which export to run.
pub(super) enum Entry {
    Describe,
    Call { tool: String, arguments: String },
}

/// What the export returned.
pub(super) enum Returned {
    Tools(Vec<wit::Tool>),
    Call(Result<CallResult, wit::CallError>),
}

/// One run of a plugin export, owning its inputs so that it can move to a
/// thread of its own.
pub(super) struct Job {
    pub pre: Pre,
    pub label: Arc<str>,
    pub grants: Arc<Grants>,
    pub env: Vec<(String, String)>,
    pub entry: Entry,
    /// Where progress and client-bound log records go, if anywhere.
    pub events: Option<super::events::Listener>,
}

/// How a run ended, what it cost, and what it was refused.
type Ran = (Result<Returned, CallError>, CallStats, Vec<String>);

/// A run that ended with `error` before it cost anything.
fn failed(error: CallError) -> Ran {
    (Err(error), CallStats::default(), Vec::new())
}

/// How long past its deadline a call on its own thread may take to report
/// before the caller is answered without it: the guest's own deadline
/// checks end it well within this unless a file operation holds the thread.
const BLOCKED_GRACE: Duration = Duration::from_millis(250);

impl Runtime {
    /// Runs `tool` of `plugin` with `arguments` (a JSON object, serialized)
    /// in a fresh instance under the plugin's grants.
    pub async fn call(&self, plugin: &Plugin, tool: &str, arguments: &str) -> CallReport {
        self.call_with_env(plugin, tool, arguments.to_string(), Vec::new(), None)
            .await
    }

    /// [`Self::call`], with `env` added to the granted environment (the
    /// caller's identity, for plugins granted it), and its progress and
    /// log records sent to `events` for the client.
    pub async fn call_with_env(
        &self,
        plugin: &Plugin,
        tool: &str,
        arguments: String,
        env: Vec<(String, String)>,
        events: Option<super::events::Listener>,
    ) -> CallReport {
        let start = Instant::now();
        if !plugin.tools.iter().any(|t| t.name == tool) {
            return CallReport {
                result: Err(CallError::UnknownTool(tool.to_string())),
                stats: CallStats::default(),
                denied: Vec::new(),
            };
        }
        let limits = plugin.grants.limits;
        let (returned, mut stats, denied) = self
            .run(Job {
                pre: plugin.pre.clone(),
                label: plugin.label.clone(),
                grants: plugin.grants.clone(),
                env,
                entry: Entry::Call {
                    tool: tool.to_string(),
                    arguments,
                },
                events,
            })
            .await;
        let result = returned.and_then(|r| match r {
            Returned::Call(Ok(result)) => convert(result, &limits).map(|(output, size)| {
                stats.output_bytes = size;
                output
            }),
            Returned::Call(Err(e)) => Err(match e {
                wit::CallError::UnknownTool(t) => CallError::UnknownTool(t),
                wit::CallError::InvalidArguments(m) => CallError::InvalidArguments(m),
                wit::CallError::Failed(m) => CallError::Tool(m),
            }),
            Returned::Tools(_) => unreachable!("a call entry returns a call result"),
        });
        stats.duration = start.elapsed();
        CallReport {
            result,
            stats,
            denied,
        }
    }

    /// Runs `job` in a fresh instance once a slot is free.
    ///
    /// A plugin without preopened directories has nothing that can block a
    /// thread (its only host I/O is async), so it runs on the calling task.
    /// A plugin with files runs on a blocking-pool thread of its own, where
    /// WASI may do each file operation inline: one thread hand-off per
    /// call instead of one per `open`, `stat` and `read` (3-4x the
    /// throughput of a file search, docs/BENCHMARKS.md), and an operation
    /// that never returns (a FIFO, a hung network mount) holds only that
    /// call's thread and slot, never a runtime worker.
    pub(super) async fn run(&self, job: Job) -> Ran {
        let permit = self
            .slots
            .clone()
            .acquire_owned()
            .await
            .expect("the slot semaphore is never closed");
        if job.grants.dirs.is_empty() {
            return execute(&self.engine, job, false).await;
        }
        let limits = job.grants.limits;
        let label = job.label.clone();
        let engine = self.engine.clone();
        let handle = tokio::runtime::Handle::current();
        let thread = tokio::task::spawn_blocking(move || {
            // The instance lives in this thread's store: its slot stays
            // taken until the thread is done with it.
            let _permit = permit;
            handle.block_on(execute(&engine, job, true))
        });
        match tokio::time::timeout(limits.timeout + BLOCKED_GRACE, thread).await {
            Ok(Ok(ran)) => ran,
            Ok(Err(e)) => {
                // The detail stays in the host's log: a panic message may
                // name host paths.
                tracing::error!(plugin = &*label, "a call's thread failed: {e}");
                failed(CallError::Host("the call's thread ended abnormally".into()))
            }
            Err(_elapsed) => {
                tracing::warn!(
                    plugin = &*label,
                    "a call is blocked in a file operation past its deadline; \
                     its thread and instance slot stay in use until the operation returns"
                );
                failed(CallError::TimedOut {
                    limit: limits.timeout,
                })
            }
        }
    }
}

/// Instantiates `job.pre` in a fresh store built from its grants and runs
/// its entry under the grants' limits. `blocking`: file operations may
/// block the current thread.
async fn execute(engine: &Engine, job: Job, blocking: bool) -> Ran {
    let Job {
        pre,
        label,
        grants,
        env,
        entry,
        events,
    } = job;
    let limits = grants.limits;
    let stdout = Capture::default();
    let stderr = Capture::default();
    let mut wasi = WasiCtxBuilder::new();
    wasi.stdout(stdout.clone())
        .stderr(stderr.clone())
        .allow_blocking_current_thread(blocking);
    if let Err(e) = grants.apply(&mut wasi, &env) {
        return failed(CallError::Host(e.to_string()));
    }
    let mut state = CallState::new(label, wasi.build(), stdout, stderr, &grants);
    state.events = events.map(super::events::EventSink::new);
    let mut store = Store::new(engine, state);
    if let Err(e) = limits.apply(&mut store) {
        return failed(CallError::Host(e.to_string()));
    }

    // The epoch only interrupts running wasm; a guest waiting on host
    // I/O is ended by this timeout instead.
    let ran = tokio::time::timeout(limits.timeout, async {
        match pre {
            Pre::Current(pre) => {
                let instance = pre.instantiate_async(&mut store).await?;
                let tools = instance.moat_plugin_tools();
                match entry {
                    Entry::Describe => tools.call_describe(&mut store).await.map(Returned::Tools),
                    Entry::Call { tool, arguments } => tools
                        .call_call(&mut store, &tool, &arguments)
                        .await
                        .map(Returned::Call),
                }
            }
            Pre::V0_1(pre) => {
                let instance = pre.instantiate_async(&mut store).await?;
                let tools = instance.moat_plugin_tools();
                match entry {
                    Entry::Describe => tools.call_describe(&mut store).await.map(|described| {
                        Returned::Tools(described.into_iter().map(super::compat::tool).collect())
                    }),
                    Entry::Call { tool, arguments } => tools
                        .call_call(&mut store, &tool, &arguments)
                        .await
                        .map(|answer| Returned::Call(super::compat::answer(answer))),
                }
            }
        }
    })
    .await;

    let stats = CallStats {
        duration: Duration::ZERO,
        fuel_used: limits.fuel - store.get_fuel().unwrap_or(0),
        peak_memory_bytes: store.data().limiter.peak,
        output_bytes: 0,
    };
    let state = store.data();
    let stderr_text = log_captured(state);
    let denied = state.outbound.denials();
    let result = match ran {
        Err(_elapsed) => Err(CallError::TimedOut {
            limit: limits.timeout,
        }),
        Ok(Ok(returned)) => Ok(returned),
        Ok(Err(e)) => Err(classify(&e, &limits, state.limiter.hit, &stderr_text)),
    };
    (result, stats, denied)
}
