//! Moat's end-to-end tests, in one binary (as wasmtime keeps its own): one
//! link of the host instead of one per file. Each module attacks one
//! guarantee through the library, the `moat` binary, real MCP clients and
//! real servers on 127.0.0.1; run one with `cargo test --test all <module>`.

mod audit;
mod auth_http;
mod auth_keys;
mod cli;
mod client_requests;
mod compat;
mod confirm;
mod conformance;
mod connections;
mod container;
mod database;
mod deploy;
mod filesystem;
mod generic;
mod http;
mod isolation;
mod languages;
mod limits;
mod loading;
mod mcp;
mod naming;
mod network;
mod notify;
mod oauth_interop;
mod per_caller;
mod proxy;
mod python_interop;
mod quotas;
mod reload;
mod resources;
mod scaleout;
mod sdk;
mod sources;
mod tenants;

/// reqwest, with the TLS feature Moat's downloads turn on, needs rustls's
/// process-wide provider before any client is built, rmcp's included.
#[ctor::ctor(unsafe)]
fn rustls_provider() {
    moat::source::install_crypto();
}
