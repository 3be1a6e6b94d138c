//! Moat: a WebAssembly-sandboxed plugin host for MCP tools.
//!
//! # Layout
//!
//! - [`config`]: `moat.toml`, parsed once into typed values; errors name
//!   the file, the line and the fix.
//! - [`capabilities`]: one module per thing a plugin can be granted
//!   (filesystem, environment, limits): its grant type, how it is parsed,
//!   and how it is applied to a fresh call.
//! - [`runtime`]: the sandbox. One wasmtime engine (pooling allocator,
//!   fuel, epochs, compile cache); plugins are compiled and pre-linked once
//!   and every call runs in a fresh instance.
//! - [`tool`]: tools and results as plain data, shaped like MCP's.
//! - [`cli`]: the `moat` command (`check`, `inspect`, `call`).
//!
//! The contract with plugins is the WIT package in `wit/`; the plugin SDK
//! and example plugins are in `plugins/`.

pub mod capabilities;
pub mod cli;
pub mod config;
pub mod runtime;
pub mod tool;
