//! Operations: `[audit]` (where call records go), `[limits]` (rate limits
//! and concurrency caps per caller and tenant) and `[admin]` (where
//! `/metrics` is served).

use crate::capabilities::env::{RawValue, from_source};
use crate::diagnostics::{ConfigError, Source};
use serde::Deserialize;
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;
use toml::Spanned;

/// Unauthenticated refusals answered per minute per peer by default:
/// plenty for a client that lost its token, little for a flood.
const DEFAULT_REFUSALS_PER_MINUTE: u32 = 120;
/// Tokenless requests answered per minute at one endpoint, all sources
/// together: a bound on the audit records they can cause.
const DEFAULT_REFUSALS_PER_MINUTE_TOTAL: u32 = 1200;

/// `[audit]`: one record per call and per refusal.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuditConfig {
    /// The append-only file, if any.
    pub file: Option<PathBuf>,
    /// Also (or only) write records to stdout (not with `serve --stdio`).
    pub stdout: bool,
    /// Refuse calls while records cannot be written (`true`, the default),
    /// or serve them and log the failure.
    pub fail_closed: bool,
    /// Size at which the file is rotated (the chain continues).
    pub max_file_bytes: u64,
    /// A call's response waits until its record is on stable storage
    /// (flushes shared by concurrent calls), so records survive a power loss.
    pub sync: bool,
    /// Bytes of redacted arguments kept in a record.
    pub max_argument_bytes: usize,
    /// The Ed25519 key (from `moat audit keygen`) that signs checkpoints;
    /// `None`: the chain is not signed.
    pub signing_key: Option<PathBuf>,
    /// Records between signed checkpoints.
    pub checkpoint_every: u64,
}

/// `[limits]`: how much each caller may call.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QuotaConfig {
    /// Calls per minute per caller (subject, else client id, else address).
    pub calls_per_minute: Option<u32>,
    /// Calls a caller may make at once after being idle.
    pub burst: u32,
    /// Per-tool rates, replacing the caller-wide one for that tool.
    pub tools: BTreeMap<String, ToolQuota>,
    /// Calls of one tenant running at once.
    pub max_concurrent_per_tenant: Option<u32>,
    /// Calls running at once in the process (see
    /// [`super::Config::max_in_flight`] for the default).
    pub max_in_flight: Option<u32>,
    /// Requests without a valid token answered (and audited) per minute per
    /// peer address; past it they get 429 unrecorded, so that nobody can
    /// fill the audit log without a token.
    pub refusals_per_minute: u32,
    /// Requests without a valid token answered per minute at one endpoint,
    /// from all sources together.
    pub refusals_per_minute_total: u32,
    /// Bits of an IPv6 peer address that name its source for
    /// `refusals_per_minute` (a host usually holds a whole /64).
    pub ipv6_prefix: u8,
    /// Where replicas share rate limits, the tokenless-refusal throttle
    /// and tenant concurrency; `None`: in this process.
    pub backend: Option<LimitBackend>,
}

/// `[limits] backend`: a Redis that every replica names.
#[derive(Clone, PartialEq, Eq)]
pub struct LimitBackend {
    /// `redis://…`.
    pub url: String,
    /// How long one look-up may take before it counts as failed.
    pub timeout: Duration,
    /// Admit calls when the store fails (`false`, the default: refuse).
    pub fail_open: bool,
}

impl std::fmt::Debug for LimitBackend {
    /// Never the URL, which may carry a password.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LimitBackend")
            .field("timeout", &self.timeout)
            .field("fail_open", &self.fail_open)
            .finish_non_exhaustive()
    }
}

/// `[limits.tools."<plugin>.<tool>"]`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ToolQuota {
    /// Calls per minute per caller of this tool.
    pub calls_per_minute: u32,
    /// Its burst.
    pub burst: u32,
}

/// `[admin]`: the operator's side door.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct AdminConfig {
    /// Where `/metrics` is served; `None`: nowhere.
    pub listen: Option<SocketAddr>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawAudit {
    file: Option<Spanned<String>>,
    #[serde(default)]
    stdout: bool,
    on_failure: Option<Spanned<String>>,
    max_file_bytes: Option<Spanned<u64>>,
    #[serde(default)]
    sync: bool,
    max_argument_bytes: Option<Spanned<u64>>,
    signing_key_file: Option<Spanned<String>>,
    checkpoint_every: Option<Spanned<u64>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawQuota {
    calls_per_minute: Option<Spanned<u64>>,
    burst: Option<Spanned<u64>>,
    #[serde(default)]
    tools: BTreeMap<String, Spanned<RawToolQuota>>,
    max_concurrent_per_tenant: Option<Spanned<u64>>,
    max_in_flight: Option<Spanned<u64>>,
    refusals_per_minute: Option<Spanned<u64>>,
    refusals_per_minute_total: Option<Spanned<u64>>,
    ipv6_prefix: Option<Spanned<u64>>,
    backend: Option<Spanned<RawValue>>,
    backend_timeout_ms: Option<Spanned<u64>>,
    on_backend_failure: Option<Spanned<String>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawToolQuota {
    calls_per_minute: Spanned<u64>,
    burst: Option<Spanned<u64>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawAdmin {
    listen: Option<Spanned<String>>,
}

pub(super) fn parse_audit(
    src: &Source,
    raw: Spanned<RawAudit>,
) -> Result<AuditConfig, ConfigError> {
    let span = raw.span();
    let raw = raw.into_inner();
    if raw.file.is_none() && !raw.stdout {
        return Err(src.error(
            span,
            "[audit] names no sink",
            "set file = \"audit/moat-audit.jsonl\" and/or stdout = true",
        ));
    }
    let fail_closed = match raw
        .on_failure
        .as_ref()
        .map(|v| (v.get_ref().as_str(), v.span()))
    {
        None | Some(("refuse", _)) => true,
        Some(("continue", _)) => false,
        Some((other, span)) => {
            return Err(src.error(
                span,
                format!("on_failure = {other:?} is not a choice"),
                "use \"refuse\" (calls fail while records cannot be written) or \"continue\"",
            ));
        }
    };
    Ok(AuditConfig {
        file: raw.file.map(|f| src.resolve(f.get_ref())),
        stdout: raw.stdout,
        fail_closed,
        max_file_bytes: match &raw.max_file_bytes {
            Some(v) => src.ranged(v, "max_file_bytes", 4096, u64::MAX)?,
            None => 100 << 20,
        },
        sync: raw.sync,
        max_argument_bytes: match &raw.max_argument_bytes {
            Some(v) => src.ranged(v, "max_argument_bytes", 0, 1 << 20)? as usize,
            None => 4096,
        },
        signing_key: raw.signing_key_file.map(|k| src.resolve(k.get_ref())),
        checkpoint_every: match &raw.checkpoint_every {
            Some(v) => src.ranged(v, "checkpoint_every", 1, 1_000_000)?,
            None => 1000,
        },
    })
}

pub(super) fn parse_quota(src: &Source, raw: RawQuota) -> Result<QuotaConfig, ConfigError> {
    let count = |v: &Spanned<u64>, key: &str| -> Result<u32, ConfigError> {
        Ok(src.ranged(v, key, 1, 1_000_000)? as u32)
    };
    let calls_per_minute = raw
        .calls_per_minute
        .as_ref()
        .map(|v| count(v, "calls_per_minute"))
        .transpose()?;
    let burst = match &raw.burst {
        Some(v) => count(v, "burst")?,
        None => calls_per_minute.map_or(1, |c| c.div_ceil(10).max(1)),
    };
    let mut tools = BTreeMap::new();
    for (name, quota) in raw.tools {
        if crate::auth::policy::ToolPattern::parse(&name)
            .is_none_or(|p| !matches!(p, crate::auth::policy::ToolPattern::Exact(_)))
        {
            return Err(src.error(
                quota.span(),
                format!("[limits.tools] key {name:?} is not a tool name"),
                "write the tool as it is listed: [limits.tools.\"files.search\"]",
            ));
        }
        let quota = quota.into_inner();
        let calls_per_minute = count(&quota.calls_per_minute, "calls_per_minute")?;
        let burst = match &quota.burst {
            Some(v) => count(v, "burst")?,
            None => calls_per_minute.div_ceil(10).max(1),
        };
        tools.insert(
            name,
            ToolQuota {
                calls_per_minute,
                burst,
            },
        );
    }
    Ok(QuotaConfig {
        calls_per_minute,
        burst,
        tools,
        max_concurrent_per_tenant: raw
            .max_concurrent_per_tenant
            .as_ref()
            .map(|v| count(v, "max_concurrent_per_tenant"))
            .transpose()?,
        max_in_flight: raw
            .max_in_flight
            .as_ref()
            .map(|v| count(v, "max_in_flight"))
            .transpose()?,
        refusals_per_minute: match &raw.refusals_per_minute {
            Some(v) => count(v, "refusals_per_minute")?,
            None => DEFAULT_REFUSALS_PER_MINUTE,
        },
        refusals_per_minute_total: match &raw.refusals_per_minute_total {
            Some(v) => count(v, "refusals_per_minute_total")?,
            None => DEFAULT_REFUSALS_PER_MINUTE_TOTAL,
        },
        ipv6_prefix: match &raw.ipv6_prefix {
            Some(v) => src.ranged(v, "ipv6_prefix", 16, 128)? as u8,
            None => 64,
        },
        backend: parse_backend(
            src,
            raw.backend,
            raw.backend_timeout_ms,
            raw.on_backend_failure,
        )?,
    })
}

/// `backend`, `backend_timeout_ms` and `on_backend_failure`.
fn parse_backend(
    src: &Source,
    url: Option<Spanned<RawValue>>,
    timeout: Option<Spanned<u64>>,
    on_failure: Option<Spanned<String>>,
) -> Result<Option<LimitBackend>, ConfigError> {
    let Some(url) = url else {
        if let Some(span) = timeout
            .as_ref()
            .map(|t| t.span())
            .or(on_failure.as_ref().map(|f| f.span()))
        {
            return Err(src.error(
                span,
                "backend_timeout_ms and on_backend_failure need a backend",
                "set backend = \"redis://…\" in [limits], or remove them",
            ));
        }
        return Ok(None);
    };
    let fail_open = match on_failure
        .as_ref()
        .map(|v| (v.get_ref().as_str(), v.span()))
    {
        None | Some(("refuse", _)) => false,
        Some(("admit", _)) => true,
        Some((other, span)) => {
            return Err(src.error(
                span,
                format!("on_backend_failure = {other:?} is not a choice"),
                "use \"refuse\" (calls are refused while the backend is down, the default) or \"admit\" (calls run unlimited across replicas)",
            ));
        }
    };
    Ok(Some(LimitBackend {
        url: redis_url(src, url, "backend")?,
        timeout: Duration::from_millis(match &timeout {
            Some(v) => src.ranged(v, "backend_timeout_ms", 1, 10_000)?,
            None => 250,
        }),
        fail_open,
    }))
}

/// A Redis URL for `key`, written or from the environment or a file (it
/// may carry a password).
pub(super) fn redis_url(
    src: &Source,
    raw: Spanned<RawValue>,
    key: &str,
) -> Result<String, ConfigError> {
    let span = raw.span();
    let url = match raw.into_inner() {
        RawValue::Literal(url) => url,
        RawValue::From(from) => from_source(src, span.clone(), key, from)?.0,
    };
    if !url.starts_with("redis://") || redis::Client::open(url.as_str()).is_err() {
        return Err(src.error(
            span,
            format!("{key} is not a redis:// URL"),
            "write redis://[:password@]host[:port][/db], such as redis://127.0.0.1:6379/0",
        ));
    }
    Ok(url)
}

/// A tenant's `[tenants.<name>.limits]`: the per-caller and per-tenant
/// keys of `[limits]`, each replacing the top-level one (`top`) it names;
/// the process-wide ones belong to `[limits]` alone.
pub(super) fn parse_tenant_quota(
    src: &Source,
    raw: RawQuota,
    top: &QuotaConfig,
) -> Result<QuotaConfig, ConfigError> {
    let process_wide = [
        (
            "max_in_flight",
            raw.max_in_flight.as_ref().map(|v| v.span()),
        ),
        (
            "refusals_per_minute",
            raw.refusals_per_minute.as_ref().map(|v| v.span()),
        ),
        (
            "refusals_per_minute_total",
            raw.refusals_per_minute_total.as_ref().map(|v| v.span()),
        ),
        ("ipv6_prefix", raw.ipv6_prefix.as_ref().map(|v| v.span())),
        ("backend", raw.backend.as_ref().map(|v| v.span())),
        (
            "backend_timeout_ms",
            raw.backend_timeout_ms.as_ref().map(|v| v.span()),
        ),
        (
            "on_backend_failure",
            raw.on_backend_failure.as_ref().map(|v| v.span()),
        ),
    ];
    for (key, span) in process_wide {
        if let Some(span) = span {
            return Err(src.error(
                span,
                format!("{key} is process-wide and cannot be set per tenant"),
                format!("move {key} to the top-level [limits] table"),
            ));
        }
    }
    let (rate, burst, cap) = (
        raw.calls_per_minute.is_some(),
        raw.burst.is_some(),
        raw.max_concurrent_per_tenant.is_some(),
    );
    let own = parse_quota(src, raw)?;
    let mut limits = top.clone();
    if rate {
        limits.calls_per_minute = own.calls_per_minute;
    }
    // A tenant's own rate brings its own default burst.
    if rate || burst {
        limits.burst = own.burst;
    }
    if cap {
        limits.max_concurrent_per_tenant = own.max_concurrent_per_tenant;
    }
    limits.tools.extend(own.tools);
    Ok(limits)
}

pub(super) fn parse_admin(src: &Source, raw: RawAdmin) -> Result<AdminConfig, ConfigError> {
    let listen = match raw.listen {
        None => None,
        Some(listen) => Some(listen.get_ref().parse().map_err(|_| {
            src.error(
                listen.span(),
                format!("listen = {:?} is not an address and port", listen.get_ref()),
                "write it as \"127.0.0.1:9090\"",
            )
        })?),
    };
    Ok(AdminConfig { listen })
}

impl Default for QuotaConfig {
    fn default() -> Self {
        QuotaConfig {
            calls_per_minute: None,
            burst: 1,
            tools: BTreeMap::new(),
            max_concurrent_per_tenant: None,
            max_in_flight: None,
            refusals_per_minute: DEFAULT_REFUSALS_PER_MINUTE,
            refusals_per_minute_total: DEFAULT_REFUSALS_PER_MINUTE_TOTAL,
            ipv6_prefix: 64,
            backend: None,
        }
    }
}
