//! Transports: they adapt MCP's wire formats to [`crate::mcp::McpHandler`]
//! and hold no tool logic of their own.

pub mod admin;
mod drain;
mod guard;
pub mod http;
pub mod stdio;
