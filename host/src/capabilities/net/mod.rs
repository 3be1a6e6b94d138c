//! Network: outbound HTTP only to granted hosts, checked on the URL and
//! again on the address actually connected to.
//!
//! [`allow`] is the allow-list (pure, parsed once); [`outbound`] is the
//! wasi:http send hook that enforces it on every request of a call, with
//! per-call request, size and time limits ([`NetGrant::hook`]). Sockets
//! (wasi:sockets TCP, UDP and name lookup) stay denied ([`apply`]).

pub mod allow;
pub mod outbound;

use crate::capabilities::per_caller::Principal;
use crate::credentials::{Connection, Connections};
use crate::diagnostics::{ConfigError, Source};
use allow::AllowedHosts;
use outbound::Outbound;
use std::sync::Arc;
use std::time::Duration;
use toml::Spanned;
use wasmtime_wasi::WasiCtxBuilder;

/// A plugin's outbound HTTP grant. The default allows nothing.
#[derive(Debug, PartialEq, Eq)]
pub struct NetGrant {
    /// Where requests may go.
    pub allow: AllowedHosts,
    /// Requests one call may send.
    pub max_requests: u32,
    /// Bytes of one response body a plugin may read.
    pub max_response_bytes: u64,
    /// Bytes of one request body a plugin may send.
    pub max_request_bytes: u64,
    /// Connect, first-byte and between-bytes timeout of each request.
    pub request_timeout: Duration,
    /// The plugin's kept-alive connections, shared by its calls.
    pub pool: outbound::Pool,
    /// Upstream connections whose hosts get the caller's credential.
    pub connections: Vec<Arc<Connection>>,
}

impl Default for NetGrant {
    fn default() -> Self {
        NetGrant {
            allow: AllowedHosts::default(),
            max_requests: 16,
            max_response_bytes: 10 << 20,
            max_request_bytes: 10 << 20,
            request_timeout: Duration::from_secs(10),
            pool: outbound::Pool::default(),
            connections: Vec::new(),
        }
    }
}

impl NetGrant {
    /// The send hook of one call of `plugin` by `caller`: every outgoing
    /// request of the call is checked against this grant, and those to a
    /// connection's host carry the caller's credential.
    pub fn hook(self: &Arc<Self>, plugin: Arc<str>, caller: Option<Principal>) -> Outbound {
        Outbound::new(self.clone(), plugin, caller)
    }
}

/// Denies raw sockets to a fresh call: its only way out is wasi:http,
/// through the send hook.
pub(in crate::capabilities) fn apply(wasi: &mut WasiCtxBuilder) {
    wasi.allow_tcp(false)
        .allow_udp(false)
        .allow_ip_name_lookup(false);
}

/// The network keys of `[plugin.grants]` as written.
#[derive(Debug, Default)]
pub(in crate::capabilities) struct RawNet {
    pub allow_hosts: Option<Spanned<Vec<Spanned<String>>>>,
    pub max_http_requests: Option<Spanned<u64>>,
    pub max_response_bytes: Option<Spanned<u64>>,
    pub max_request_bytes: Option<Spanned<u64>>,
    pub http_timeout_ms: Option<Spanned<u64>>,
    pub connections: Option<Vec<Spanned<String>>>,
}

pub(in crate::capabilities) fn parse(
    src: &Source,
    raw: RawNet,
    declared: &Connections,
) -> Result<NetGrant, ConfigError> {
    let mut grant = NetGrant::default();
    if let Some(entries) = raw.allow_hosts {
        let entries = entries.into_inner();
        let texts: Vec<&str> = entries.iter().map(|e| e.get_ref().as_str()).collect();
        grant.allow = AllowedHosts::parse(&texts).map_err(|(i, e)| {
            src.error(
                entries[i].span(),
                format!("allow_hosts: {}", e.message),
                e.fix,
            )
        })?;
    }
    if let Some(v) = &raw.max_http_requests {
        grant.max_requests = src.ranged(v, "max_http_requests", 1, 10_000)? as u32;
    }
    if let Some(v) = &raw.max_response_bytes {
        grant.max_response_bytes = src.ranged(v, "max_response_bytes", 1, 1 << 32)?;
    }
    if let Some(v) = &raw.max_request_bytes {
        grant.max_request_bytes = src.ranged(v, "max_request_bytes", 1, 1 << 32)?;
    }
    if let Some(v) = &raw.http_timeout_ms {
        grant.request_timeout =
            Duration::from_millis(src.ranged(v, "http_timeout_ms", 1, 3_600_000)?);
    }
    for name in raw.connections.unwrap_or_default() {
        let Some(connection) = declared.get(name.get_ref()) else {
            let known: Vec<&str> = declared.keys().map(String::as_str).collect();
            return Err(src.error(
                name.span(),
                format!("connection `{}` is not declared", name.get_ref()),
                match known.is_empty() {
                    true => "declare it in a [[connection]] table".to_string(),
                    false => format!(
                        "declare it in a [[connection]] table, or grant one of: {}",
                        known.join(", ")
                    ),
                },
            ));
        };
        // The grant adds credentials to requests the plugin may already
        // send; it never widens where it may send them.
        if let Some(host) = connection
            .hosts
            .iter()
            .find(|h| !grant.allow.allows(h.scheme, &h.host, h.port))
        {
            return Err(src.error(
                name.span(),
                format!(
                    "connection `{}` is for {host}, which allow_hosts does not grant",
                    name.get_ref()
                ),
                format!(
                    "add \"{}://{}:{}\" to allow_hosts",
                    host.scheme, host.host, host.port
                ),
            ));
        }
        if let Some(other) = grant
            .connections
            .iter()
            .find(|c| c.hosts.iter().any(|h| connection.hosts.contains(h)))
        {
            return Err(src.error(
                name.span(),
                format!(
                    "connections `{}` and `{}` are both for one host: which credential a request there carries would be a guess",
                    other.name, connection.name
                ),
                "grant each plugin one connection per host",
            ));
        }
        grant.connections.push(connection.clone());
    }
    Ok(grant)
}
