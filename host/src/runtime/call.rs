//! Running one call: a fresh store and instance, budgets enforced, and
//! every way a call can end turned into a named outcome.

use super::bindings::PluginPre;
use super::bindings::exports::moat::plugin::tools as wit;
use super::bindings::moat::plugin::types::{CallResult, Content as WitContent};
use super::capture::Capture;
use super::error::CallError;
use super::state::{CallState, truncate};
use super::{Plugin, Runtime};
use crate::capabilities::{Grants, Limits};
use crate::tool::{Content, ToolOutput};
use std::sync::Arc;
use std::time::{Duration, Instant};
use wasmtime::{Store, Trap, UpdateDeadline};
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
pub(super) enum Entry<'a> {
    Describe,
    Call { tool: &'a str, arguments: &'a str },
}

/// What the export returned.
pub(super) enum Returned {
    Tools(Vec<wit::Tool>),
    Call(Result<CallResult, wit::CallError>),
}

/// Raised by the epoch callback when a call's deadline has passed.
#[derive(Debug)]
struct DeadlineExceeded;

impl std::fmt::Display for DeadlineExceeded {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("deadline exceeded")
    }
}

impl std::error::Error for DeadlineExceeded {}

impl Runtime {
    /// Runs `tool` of `plugin` with `arguments` (a JSON object, serialized)
    /// in a fresh instance under the plugin's grants.
    pub async fn call(&self, plugin: &Plugin, tool: &str, arguments: &str) -> CallReport {
        self.call_with_env(plugin, tool, arguments, &[]).await
    }

    /// [`Self::call`], with `env` added to the granted environment (the
    /// caller's identity, for plugins granted it).
    pub async fn call_with_env(
        &self,
        plugin: &Plugin,
        tool: &str,
        arguments: &str,
        env: &[(String, String)],
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
            .run(
                &plugin.pre,
                &plugin.label,
                &plugin.grants,
                env,
                Entry::Call { tool, arguments },
            )
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

    /// Instantiates `pre` in a fresh store built from `grants` and runs
    /// `entry` under the grants' limits.
    pub(super) async fn run(
        &self,
        pre: &PluginPre<CallState>,
        label: &Arc<str>,
        grants: &Grants,
        env: &[(String, String)],
        entry: Entry<'_>,
    ) -> (Result<Returned, CallError>, CallStats, Vec<String>) {
        let limits = grants.limits;
        let _slot = self
            .slots
            .acquire()
            .await
            .expect("the slot semaphore is never closed");
        let stdout = Capture::default();
        let stderr = Capture::default();
        let mut wasi = WasiCtxBuilder::new();
        wasi.stdout(stdout.clone())
            .stderr(stderr.clone())
            .allow_tcp(false)
            .allow_udp(false)
            .allow_ip_name_lookup(false);
        if let Err(e) = grants.apply(&mut wasi) {
            return (
                Err(CallError::Host(e.to_string())),
                CallStats::default(),
                Vec::new(),
            );
        }
        wasi.envs(env);
        let state = CallState::new(
            label.clone(),
            wasi.build(),
            stdout,
            stderr,
            limits.memory_bytes,
            grants.net.clone(),
        );
        let mut store = Store::new(&self.engine, state);
        store.limiter(|s| &mut s.limiter);
        if let Err(e) = store.set_fuel(limits.fuel) {
            return (
                Err(CallError::Host(e.to_string())),
                CallStats::default(),
                Vec::new(),
            );
        }
        // The epoch callback runs once per tick while the guest executes:
        // it ends the call at its deadline and otherwise yields, so a busy
        // guest never starves other calls on the same thread.
        let deadline = Instant::now() + limits.timeout;
        store.set_epoch_deadline(1);
        store.epoch_deadline_callback(move |_| {
            if Instant::now() >= deadline {
                Err(wasmtime::Error::new(DeadlineExceeded))
            } else {
                Ok(UpdateDeadline::Yield(1))
            }
        });

        // The epoch only interrupts running wasm; a guest waiting on host
        // I/O is ended by this timeout instead.
        let ran = tokio::time::timeout(limits.timeout, async {
            let instance = pre.instantiate_async(&mut store).await?;
            let tools = instance.moat_plugin_tools();
            match entry {
                Entry::Describe => tools.call_describe(&mut store).await.map(Returned::Tools),
                Entry::Call { tool, arguments } => tools
                    .call_call(&mut store, tool, arguments)
                    .await
                    .map(Returned::Call),
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
}

/// Sends what the guest wrote to stdout and stderr to the host's log, and
/// returns stderr (where a Rust panic leaves its message).
fn log_captured(state: &CallState) -> String {
    let plugin = &*state.plugin;
    let (out, out_dropped) = state.stdout.take();
    let (err, err_dropped) = state.stderr.take();
    for line in out.lines() {
        tracing::debug!(target: "moat::plugin", plugin, stream = "stdout", "{line}");
    }
    for line in err.lines() {
        tracing::debug!(target: "moat::plugin", plugin, stream = "stderr", "{line}");
    }
    if out_dropped + err_dropped > 0 {
        tracing::debug!(target: "moat::plugin", plugin, dropped = out_dropped + err_dropped, "plugin output over the capture limit was dropped");
    }
    err
}

fn classify(e: &wasmtime::Error, limits: &Limits, memory_hit: bool, stderr: &str) -> CallError {
    if e.downcast_ref::<DeadlineExceeded>().is_some() {
        return CallError::TimedOut {
            limit: limits.timeout,
        };
    }
    match e.downcast_ref::<Trap>() {
        Some(Trap::OutOfFuel) => CallError::OutOfFuel {
            budget: limits.fuel,
        },
        Some(Trap::StackOverflow) => CallError::StackOverflow,
        Some(Trap::Interrupt) => CallError::TimedOut {
            limit: limits.timeout,
        },
        // A refused memory.grow usually ends in an abort: name the cause.
        _ if memory_hit => CallError::MemoryLimit {
            limit: limits.memory_bytes,
        },
        Some(trap) => match panic_message(stderr) {
            Some(message) => CallError::Trap(format!("panicked: {message}")),
            // Languages that keep a stack in linear memory (Rust, C) overflow
            // it with an out-of-bounds access, not a wasm stack overflow.
            None if *trap == Trap::MemoryOutOfBounds => CallError::Trap(format!(
                "{trap} (a stack overflow in the plugin's own stack also ends this way)"
            )),
            None => CallError::Trap(trap.to_string()),
        },
        None => CallError::Trap(truncate(&e.to_string(), 1024).to_string()),
    }
}

/// The message of a Rust panic printed to stderr, if there is one.
fn panic_message(stderr: &str) -> Option<String> {
    let start = stderr.find("panicked at ")?;
    let rest = &stderr[start + "panicked at ".len()..];
    let end = rest.find("\nnote:").unwrap_or(rest.len());
    let message = rest[..end].trim().replace('\n', " ");
    Some(truncate(&message, 1024).to_string())
}

/// Converts the plugin's result, enforcing the output cap; also returns
/// the result's size in bytes.
fn convert(result: CallResult, limits: &Limits) -> Result<(ToolOutput, usize), CallError> {
    let size = result
        .content
        .iter()
        .map(|c| match c {
            WitContent::Text(t) => t.len(),
            WitContent::Image(i) => i.data.len() + i.mime_type.len(),
        })
        .sum::<usize>()
        + result.structured.as_ref().map_or(0, String::len);
    if size > limits.max_output_bytes {
        return Err(CallError::OutputTooLarge {
            size,
            limit: limits.max_output_bytes,
        });
    }
    let structured = match result.structured {
        None => None,
        Some(json) => Some(serde_json::from_str(&json).map_err(|e| {
            CallError::Tool(format!(
                "the plugin returned structured content that is not JSON: {e}"
            ))
        })?),
    };
    let output = ToolOutput {
        content: result
            .content
            .into_iter()
            .map(|c| match c {
                WitContent::Text(t) => Content::Text(t),
                WitContent::Image(i) => Content::Image {
                    mime_type: i.mime_type,
                    data: i.data,
                },
            })
            .collect(),
        structured,
        is_error: result.is_error,
    };
    Ok((output, size))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn panic_message_is_extracted() {
        let stderr = "\nthread '<unnamed>' panicked at testbed/src/lib.rs:62:5:\nboom\nnote: run with `RUST_BACKTRACE=1`\n";
        assert_eq!(
            panic_message(stderr).as_deref(),
            Some("testbed/src/lib.rs:62:5: boom")
        );
        assert_eq!(panic_message("just output"), None);
    }
}
