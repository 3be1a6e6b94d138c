//! What can go wrong loading a plugin or running a call.

use crate::diagnostics::Origin;
use std::fmt;
use std::time::Duration;

/// Why a call produced no result. Each variant is a distinct outcome that
/// callers (and the audit log) can tell apart by [`CallError::kind`].
/// Messages name what was refused and why, and never carry host paths.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CallError {
    /// The plugin reported a failure.
    #[error("tool error: {0}")]
    Tool(String),
    /// The plugin has no tool by this name.
    #[error("unknown tool `{0}`")]
    UnknownTool(String),
    /// The plugin has no resource at this URI, or no prompt by this name
    /// (it said so when asked).
    #[error("not found: {0}")]
    NotFound(String),
    /// The plugin could not use the arguments.
    #[error("invalid arguments: {0}")]
    InvalidArguments(String),
    /// The call used its whole fuel budget.
    #[error("out of fuel: the call used all of its {budget} fuel units")]
    OutOfFuel {
        /// The budget it had.
        budget: u64,
    },
    /// The call ran past its wall-clock deadline.
    #[error("timed out: the call did not finish within {} ms", .limit.as_millis())]
    TimedOut {
        /// The deadline it had.
        limit: Duration,
    },
    /// The plugin tried to grow its memory past its cap.
    #[error("memory limit: the plugin tried to use more than {} MiB of memory", .limit >> 20)]
    MemoryLimit {
        /// The cap in bytes.
        limit: usize,
    },
    /// The plugin recursed past the wasm stack limit.
    #[error("stack overflow: the plugin recursed too deeply")]
    StackOverflow,
    /// The plugin returned more than its output cap.
    #[error("output too large: {size} bytes exceeds the limit of {limit} bytes")]
    OutputTooLarge {
        /// Bytes returned.
        size: usize,
        /// The cap.
        limit: usize,
    },
    /// The plugin wrote more into its directories than a call may.
    #[error("write limit: the plugin tried to write more than {limit} bytes into its directories")]
    WriteLimit {
        /// The budget.
        limit: u64,
    },
    /// The plugin held more host handles at once than a call may.
    #[error(
        "handle limit: the plugin held more than {limit} host handles (files, streams, HTTP requests and bodies) at once"
    )]
    HandleLimit {
        /// The cap.
        limit: usize,
    },
    /// The plugin used an interface its grants do not include.
    #[error("not granted: the plugin used {0}, which its grants do not include")]
    NotGranted(String),
    /// A host function refused the plugin's request and ended the call
    /// (such as more random bytes than the host gives at once).
    #[error("host refused: {0}")]
    HostRefused(String),
    /// The plugin exited (as a program does) instead of returning.
    #[error("exited: the plugin called exit with status {0} instead of returning a result")]
    Exited(i32),
    /// The plugin crashed (a panic or another trap).
    #[error("plugin crashed: {0}")]
    Trap(String),
    /// The call asked the client (2026-07-28) and ended, to run again when
    /// the client's retry brings the answer.
    #[error("awaiting the client: the call asked the client and runs again with its answer")]
    AwaitingClient,
    /// The host could not set up or finish the call.
    #[error("the host could not run the call: {0}")]
    Host(String),
}

impl CallError {
    /// The free text of the error (what the plugin said, or a trap's
    /// message), for redaction.
    pub fn text_mut(&mut self) -> Option<&mut String> {
        match self {
            CallError::Tool(text)
            | CallError::NotFound(text)
            | CallError::InvalidArguments(text)
            | CallError::NotGranted(text)
            | CallError::HostRefused(text)
            | CallError::Trap(text)
            | CallError::Host(text) => Some(text),
            _ => None,
        }
    }

    /// A stable, machine-readable name for the outcome.
    pub fn kind(&self) -> &'static str {
        match self {
            CallError::Tool(_) => "tool_error",
            CallError::UnknownTool(_) => "unknown_tool",
            CallError::NotFound(_) => "not_found",
            CallError::InvalidArguments(_) => "invalid_arguments",
            CallError::OutOfFuel { .. } => "out_of_fuel",
            CallError::TimedOut { .. } => "timed_out",
            CallError::MemoryLimit { .. } => "memory_limit",
            CallError::StackOverflow => "stack_overflow",
            CallError::OutputTooLarge { .. } => "output_too_large",
            CallError::WriteLimit { .. } => "write_limit",
            CallError::HandleLimit { .. } => "handle_limit",
            CallError::NotGranted(_) => "not_granted",
            CallError::HostRefused(_) => "host_refused",
            CallError::Exited(_) => "exited",
            CallError::Trap(_) => "trap",
            CallError::AwaitingClient => "input_required",
            CallError::Host(_) => "host_error",
        }
    }
}

/// A host function a plugin imported but was not granted ended the call;
/// names the function.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct NotGranted(pub String);

/// Why a plugin could not be loaded: which plugin, where it is configured,
/// what is wrong and how to fix it.
#[derive(Debug, thiserror::Error)]
pub struct LoadError {
    /// The plugin's configured name.
    pub plugin: String,
    /// Its `[[plugin]]` entry, when it came from a config file.
    pub origin: Option<Origin>,
    /// What is wrong.
    pub message: String,
    /// What the operator should do.
    pub fix: String,
}

impl fmt::Display for LoadError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if let Some(origin) = &self.origin {
            write!(f, "{origin}: ")?;
        }
        write!(
            f,
            "plugin `{}`: {}\n  fix: {}",
            self.plugin, self.message, self.fix
        )
    }
}
