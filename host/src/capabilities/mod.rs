//! Capabilities: what one plugin's calls may touch and use.
//!
//! Each capability is one module with the same life: its part of
//! `[plugin.grants]` is parsed and checked once when the config loads, then
//! applied to the fresh state of every call: the WASI context
//! ([`Grants::apply`]: files, environment, socket denials, identity), the
//! store ([`Limits::apply`]: fuel, memory, deadline) and the outbound hook
//! ([`NetGrant::hook`]). Everything is denied unless a grant names it: no
//! files, no environment, no network, no arguments, and modest limits.
//! Adding a capability means a module here, a field in [`RawGrants`] and
//! [`Grants`], and one line where it applies. The runtime only assembles.

pub mod env;
pub mod fs;
pub mod identity;
pub mod limits;
pub mod net;
pub mod per_caller;

use crate::diagnostics::{ConfigError, Source};
use serde::Deserialize;
use std::collections::BTreeMap;
use std::sync::Arc;
use toml::Spanned;
use wasmtime_wasi::WasiCtxBuilder;

pub use env::EnvGrant;
pub use fs::{DirGrant, Mode};
pub use limits::Limits;
pub use net::NetGrant;

/// What a plugin's grants are checked against besides their own text.
pub struct GrantContext<'a> {
    /// Whether the plugin serves a tenant (so `{tenant}` names one).
    pub in_tenant: bool,
    /// The config's `[[connection]]`s.
    pub connections: &'a crate::credentials::Connections,
}

/// Everything one plugin is granted, validated.
#[derive(Debug, Clone, PartialEq)]
pub struct Grants {
    /// Preopened directories.
    pub dirs: Vec<DirGrant>,
    /// Environment variables the plugin sees (and no others).
    pub env: EnvGrant,
    /// Fuel, memory, time and output budgets of each call.
    pub limits: Limits,
    /// Outbound HTTP (shared with every call's send hook).
    pub net: Arc<NetGrant>,
    /// Whether calls see who called them (see [`identity`]).
    pub caller_identity: bool,
    /// Bytes a call may write into its `rw` directories (see [`fs::writes`]).
    pub max_write_bytes: u64,
    /// Whether a call may create symlinks in its `rw` directories.
    pub allow_symlinks: bool,
    /// Whether a call may ask the client's model for answers (MCP
    /// sampling), and for how many tokens in all.
    pub sampling: Option<SamplingGrant>,
    /// Whether a call may ask the person for input (MCP elicitation).
    pub elicitation: bool,
}

/// `sampling = { max_tokens = N }`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SamplingGrant {
    /// The sum of `max_tokens` over a call's sampling requests.
    pub max_tokens: u32,
}

/// `sampling` as written.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawSampling {
    max_tokens: Spanned<u64>,
}

/// The default of `max_write_bytes`.
pub const DEFAULT_MAX_WRITE_BYTES: u64 = 64 << 20;

impl Default for Grants {
    /// Nothing granted, with the default limits.
    fn default() -> Self {
        Grants {
            dirs: Vec::new(),
            env: EnvGrant::default(),
            limits: Limits::default(),
            net: Arc::default(),
            caller_identity: false,
            max_write_bytes: DEFAULT_MAX_WRITE_BYTES,
            allow_symlinks: false,
            sampling: None,
            elicitation: false,
        }
    }
}

/// `[plugin.grants]` as written.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawGrants {
    #[serde(default)]
    dirs: Vec<Spanned<fs::RawDir>>,
    #[serde(default)]
    env: BTreeMap<String, Spanned<env::RawValue>>,
    fuel: Option<Spanned<limits::RawFuel>>,
    memory_mib: Option<Spanned<u64>>,
    timeout_ms: Option<Spanned<u64>>,
    max_output_bytes: Option<Spanned<u64>>,
    max_handles: Option<Spanned<u64>>,
    allow_hosts: Option<Spanned<Vec<Spanned<String>>>>,
    max_http_requests: Option<Spanned<u64>>,
    max_response_bytes: Option<Spanned<u64>>,
    max_request_bytes: Option<Spanned<u64>>,
    http_timeout_ms: Option<Spanned<u64>>,
    connections: Option<Vec<Spanned<String>>>,
    #[serde(default)]
    caller_identity: bool,
    max_write_bytes: Option<Spanned<u64>>,
    #[serde(default)]
    allow_symlinks: bool,
    sampling: Option<RawSampling>,
    #[serde(default)]
    elicitation: bool,
}

impl Grants {
    /// Checks the grants written in `src`, of a plugin in `context`.
    pub fn parse(
        src: &Source,
        raw: RawGrants,
        context: &GrantContext,
    ) -> Result<Grants, ConfigError> {
        Ok(Grants {
            dirs: fs::parse(src, raw.dirs, context.in_tenant)?,
            env: env::parse(src, raw.env, context.in_tenant)?,
            limits: limits::parse(
                src,
                limits::RawLimits {
                    fuel: raw.fuel,
                    memory_mib: raw.memory_mib,
                    timeout_ms: raw.timeout_ms,
                    max_output_bytes: raw.max_output_bytes,
                    max_handles: raw.max_handles,
                },
            )?,
            net: Arc::new(net::parse(
                src,
                net::RawNet {
                    allow_hosts: raw.allow_hosts,
                    max_http_requests: raw.max_http_requests,
                    max_response_bytes: raw.max_response_bytes,
                    max_request_bytes: raw.max_request_bytes,
                    http_timeout_ms: raw.http_timeout_ms,
                    connections: raw.connections,
                },
                context.connections,
            )?),
            caller_identity: raw.caller_identity,
            max_write_bytes: match &raw.max_write_bytes {
                Some(v) => src.ranged(v, "max_write_bytes", 0, 1 << 40)?,
                None => DEFAULT_MAX_WRITE_BYTES,
            },
            allow_symlinks: raw.allow_symlinks,
            sampling: match &raw.sampling {
                Some(s) => Some(SamplingGrant {
                    max_tokens: src.ranged(&s.max_tokens, "sampling.max_tokens", 1, 1 << 24)?
                        as u32,
                }),
                None => None,
            },
            elicitation: raw.elicitation,
        })
    }

    /// Whether a grant names the caller (see [`per_caller`]).
    pub fn per_caller(&self) -> bool {
        self.dirs.iter().any(|d| !d.per_caller.is_empty()) || !self.env.per_caller.is_empty()
    }

    /// Applies the grants that WASI enforces to a fresh call's context,
    /// for the caller `scope` describes.
    pub fn apply(&self, wasi: &mut WasiCtxBuilder, scope: &identity::Scope) -> anyhow::Result<()> {
        let principal = scope.principal.as_ref();
        fs::apply(&self.dirs, wasi, principal)?;
        env::apply(&self.env, wasi, principal);
        net::apply(wasi);
        identity::apply(scope, wasi);
        Ok(())
    }
}
