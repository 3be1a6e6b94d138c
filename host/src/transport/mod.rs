//! Transports: they adapt MCP's wire formats to [`crate::mcp::McpHandler`]
//! and hold no tool logic of their own.

pub mod admin;
mod admission;
mod body;
pub mod forwarded;
pub mod http;
mod rebinding;
mod sessions;
pub mod stdio;
