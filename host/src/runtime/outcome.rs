//! How a call ended, named: traps, limits and the deadline become
//! [`CallError`] kinds, and a plugin's result is checked against the
//! output cap and converted.

use super::bindings::moat::plugin::types::{CallResult, Content as WitContent};
use super::error::CallError;
use super::state::{CallState, truncate};
use crate::capabilities::Limits;
use crate::tool::{Content, ToolOutput};
use wasmtime::Trap;

/// Raised by the epoch callback when a call's deadline has passed.
#[derive(Debug)]
pub(super) struct DeadlineExceeded;

impl std::fmt::Display for DeadlineExceeded {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("deadline exceeded")
    }
}

impl std::error::Error for DeadlineExceeded {}

/// Sends what the guest wrote to stdout and stderr to the host's log, and
/// returns stderr (where a Rust panic leaves its message).
pub(super) fn log_captured(state: &CallState) -> String {
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

pub(super) fn classify(
    e: &wasmtime::Error,
    limits: &Limits,
    memory_hit: bool,
    stderr: &str,
) -> CallError {
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
pub(super) fn convert(
    result: CallResult,
    limits: &Limits,
) -> Result<(ToolOutput, usize), CallError> {
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
