//! Moat: a WebAssembly-sandboxed plugin host for MCP tools.
//!
//! # Layout
//!
//! - [`config`]: `moat.toml`, parsed once into typed values; errors name
//!   the file, the line and the fix ([`diagnostics`], shared with the
//!   grant parsers). [`defaults`] is the embedded default.
//! - [`capabilities`]: one module per thing a plugin can be granted
//!   (filesystem, environment, network, identity, limits): its grant type,
//!   how it is parsed, and how it applies itself to a fresh call.
//! - [`source`]: where plugins come from (files, HTTPS pinned by digest,
//!   OCI registries), the download store, publishers' signatures and
//!   `moat.lock`.
//! - [`runtime`]: the sandbox. One wasmtime engine (pooling allocator,
//!   fuel, epochs, compile cache); plugins are compiled and pre-linked once
//!   and every call runs in a fresh instance.
//! - [`auth`]: who may call what over HTTP: bearer JWTs checked against
//!   the issuer's keys, and the tool policy.
//! - [`service`]: the tools of one endpoint (the top-level one or a
//!   tenant's) and the one path every call takes (policy, limits, find the
//!   tool, check the arguments, run it in the sandbox, audit).
//! - [`credentials`]: upstream connections and each caller's credential
//!   for them, encrypted at rest and added to a plugin's requests at the
//!   egress boundary, never given to the plugin.
//! - [`confirm`]: a person's confirmation before chosen tools run: the
//!   policy, the prompt and the sealed multi round-trip state.
//! - [`audit`]: the hash-chained audit log and its verifier.
//! - [`quota`]: rate limits and concurrency caps.
//! - [`reload`]: re-reading the config while serving (SIGHUP, `moat
//!   reload`), swapping each endpoint's plugins without dropping a call.
//! - [`metrics`]: Prometheus metrics.
//! - [`mcp`]: the MCP server handler over the service.
//! - [`transport`]: stdio and Streamable HTTP, adapting to [`mcp`].
//! - [`tool`]: tools and results as plain data, shaped like MCP's.
//! - [`cli`]: the `moat` command, one file per subcommand.
//! - [`tls`]: the TLS client of every outbound connection.
//!
//! The contract with plugins is the WIT package in `wit/`; the plugin SDK
//! and example plugins are in `plugins/`.

pub mod audit;
pub mod auth;
pub mod capabilities;
pub mod cli;
pub mod config;
pub mod confirm;
pub mod credentials;
pub mod defaults;
pub mod diagnostics;
pub mod mcp;
pub mod metrics;
pub mod quota;
pub mod reload;
pub mod runtime;
pub mod service;
pub mod source;
pub mod tls;
pub mod tool;
pub mod transport;
