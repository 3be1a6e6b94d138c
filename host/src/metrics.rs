//! Prometheus metrics, served as text on the admin listener's `/metrics`.
//! One registry per process: every endpoint and transport records here.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;
use std::sync::LazyLock;
use std::time::Duration;

/// A call's labels.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct CallLabels {
    /// The tenant (`default` for the top-level endpoint).
    pub tenant: String,
    /// The plugin.
    pub plugin: String,
    /// The tool, `<plugin>.<tool>`.
    pub tool: String,
    /// `ok`, `tool_error`, a limit such as `out_of_fuel`, …
    pub outcome: String,
}

/// A histogram's labels.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ToolLabels {
    /// The tenant.
    pub tenant: String,
    /// The tool.
    pub tool: String,
}

/// A refusal's labels.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RefusalLabels {
    /// The tenant.
    pub tenant: String,
    /// `unauthenticated`, `forbidden`, `rate_limited`, …
    pub kind: String,
}

/// A plugin load's labels.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct LoadLabels {
    /// The tenant.
    pub tenant: String,
    /// The plugin.
    pub plugin: String,
    /// Whether compiled code came from the cache.
    pub cache: String,
}

/// Every metric Moat keeps.
pub struct Metrics {
    registry: Registry,
    /// Calls that ran, by outcome.
    pub calls: Family<CallLabels, Counter>,
    /// Call duration in seconds.
    pub duration: Family<ToolLabels, Histogram>,
    /// Fuel per call.
    pub fuel: Family<ToolLabels, Histogram>,
    /// Requests and calls refused, by kind.
    pub refusals: Family<RefusalLabels, Counter>,
    /// Calls refused by a rate limit or concurrency cap.
    pub rate_limited: Family<RefusalLabels, Counter>,
    /// Capabilities refused to running calls (such as a host not granted).
    pub denied_capabilities: Family<ToolLabels, Counter>,
    /// Calls running now.
    pub in_flight: Gauge,
    /// Plugin load (compile or cache load) time in seconds.
    pub load_seconds: Family<LoadLabels, Gauge<f64, std::sync::atomic::AtomicU64>>,
    /// Look-ups in the shared limit store (Redis) that failed or timed out.
    pub limit_store_errors: Counter,
    /// Config reloads, by outcome (`ok`, `failed`).
    pub reloads: Family<ReloadLabels, Counter>,
    /// Flushes of audit logs with `sync` (records per flush: the group
    /// commit's batch size).
    pub audit_flushes: Counter,
    /// Plugin runs found running wasm at an epoch tick and moved off the
    /// runtime's workers to a thread of their own.
    pub cpu_bound_calls: Counter,
    /// Connections opened for plugins' outbound HTTP requests.
    pub outbound_connections: Counter,
    /// Outbound requests sent on a connection kept alive from an earlier
    /// request of the same plugin.
    pub outbound_reused: Counter,
    /// What happened to callers' credentials, by connection.
    pub credentials: Family<CredentialLabels, Counter>,
}

/// A credential event's labels.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct CredentialLabels {
    /// The connection.
    pub connection: String,
    /// `injected`, `missing`, `refreshed`, `refresh_failed`,
    /// `refused_upstream`, `connected`, `revoked`.
    pub event: String,
}

/// A reload's labels.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ReloadLabels {
    /// `ok`, or `failed` (the running plugins were kept).
    pub outcome: String,
}

static METRICS: LazyLock<Metrics> = LazyLock::new(Metrics::new);

/// The process's metrics.
pub fn get() -> &'static Metrics {
    &METRICS
}

impl Metrics {
    fn new() -> Metrics {
        let mut registry = Registry::with_prefix("moat");
        let calls = Family::default();
        registry.register("calls", "Tool calls that ran, by outcome", calls.clone());
        let duration = Family::<ToolLabels, Histogram>::new_with_constructor(|| {
            Histogram::new(exponential_buckets(0.000_05, 2.5, 14))
        });
        registry.register(
            "call_duration_seconds",
            "Wall-clock time of tool calls",
            duration.clone(),
        );
        let fuel = Family::<ToolLabels, Histogram>::new_with_constructor(|| {
            Histogram::new(exponential_buckets(1e4, 10.0, 8))
        });
        registry.register("call_fuel", "Fuel used by tool calls", fuel.clone());
        let refusals = Family::default();
        registry.register(
            "refusals",
            "Requests and calls refused, by kind",
            refusals.clone(),
        );
        let rate_limited = Family::default();
        registry.register(
            "rate_limited",
            "Calls refused by a rate limit or a concurrency cap",
            rate_limited.clone(),
        );
        let denied_capabilities = Family::default();
        registry.register(
            "denied_capabilities",
            "Capabilities refused to running calls",
            denied_capabilities.clone(),
        );
        let in_flight = Gauge::default();
        registry.register(
            "calls_in_flight",
            "Tool calls running now",
            in_flight.clone(),
        );
        let load_seconds = Family::default();
        registry.register(
            "plugin_load_seconds",
            "Time to compile (or load from the cache) and link each plugin",
            load_seconds.clone(),
        );
        let limit_store_errors = Counter::default();
        registry.register(
            "limit_store_errors",
            "Look-ups in the shared limit store (Redis) that failed or timed out",
            limit_store_errors.clone(),
        );
        let reloads = Family::default();
        registry.register(
            "reloads",
            "Config reloads (SIGHUP or moat reload), by outcome; a failed one kept the running plugins",
            reloads.clone(),
        );
        let audit_flushes = Counter::default();
        registry.register(
            "audit_flushes",
            "Flushes of audit logs to stable storage ([audit] sync = true); each covers every record written before it",
            audit_flushes.clone(),
        );
        let cpu_bound_calls = Counter::default();
        registry.register(
            "cpu_bound_calls",
            "Plugin runs still running wasm at an epoch tick, moved off the runtime's workers to a thread of their own",
            cpu_bound_calls.clone(),
        );
        let outbound_connections = Counter::default();
        registry.register(
            "outbound_connections",
            "Connections opened for plugins' outbound HTTP requests",
            outbound_connections.clone(),
        );
        let outbound_reused = Counter::default();
        registry.register(
            "outbound_reused",
            "Outbound HTTP requests sent on a connection kept alive from an earlier request of the same plugin",
            outbound_reused.clone(),
        );
        let credentials = Family::default();
        registry.register(
            "credential_events",
            "Callers' credentials injected into plugins' requests, missing, refreshed, refused by the upstream, connected and revoked, by connection",
            credentials.clone(),
        );
        Metrics {
            registry,
            credentials,
            cpu_bound_calls,
            outbound_connections,
            outbound_reused,
            reloads,
            audit_flushes,
            calls,
            duration,
            fuel,
            refusals,
            rate_limited,
            denied_capabilities,
            in_flight,
            load_seconds,
            limit_store_errors,
        }
    }

    /// Counts a refusal of `kind` at `tenant`.
    pub fn refused(&self, tenant: &str, kind: &str) {
        let labels = RefusalLabels {
            tenant: tenant.to_string(),
            kind: kind.to_string(),
        };
        if kind == "rate_limited" {
            self.rate_limited.get_or_create(&labels).inc();
        }
        self.refusals.get_or_create(&labels).inc();
    }

    /// Counts `event` of a caller's credential for `connection`.
    pub fn credential(&self, connection: &str, event: &str) {
        let labels = CredentialLabels {
            connection: connection.to_string(),
            event: event.to_string(),
        };
        self.credentials.get_or_create(&labels).inc();
    }

    /// Records a call that ran.
    pub fn ran(&self, labels: CallLabels, duration: Duration, fuel: u64, denied: usize) {
        let tool = ToolLabels {
            tenant: labels.tenant.clone(),
            tool: labels.tool.clone(),
        };
        self.duration
            .get_or_create(&tool)
            .observe(duration.as_secs_f64());
        self.fuel.get_or_create(&tool).observe(fuel as f64);
        if denied > 0 {
            self.denied_capabilities
                .get_or_create(&tool)
                .inc_by(denied as u64);
        }
        self.calls.get_or_create(&labels).inc();
    }

    /// The text exposition of every metric.
    pub fn encode(&self) -> String {
        let mut text = String::new();
        prometheus_client::encoding::text::encode(&mut text, &self.registry)
            .expect("writing to a String cannot fail");
        text
    }
}

/// The tenant label of an endpoint.
pub fn tenant_label(tenant: Option<&str>) -> &str {
    tenant.unwrap_or("default")
}
