//! The tools Moat serves and the one path every tool call takes.
//!
//! A [`ToolService`] holds one endpoint's loaded plugins (the top-level
//! ones or a tenant's) on a shared runtime and lists their tools as
//! `<plugin>.<tool>`. Every call is admitted and run through
//! [`admission`]: audit writable, policy, limits, tool lookup, arguments
//! against the input schema, then a fresh sandbox; what happened is
//! audited and counted (see [`accounting`]). Transports (stdio, HTTP)
//! only adapt to it.

mod accounting;
mod admission;
mod confirmation;
mod live;
mod requests;

pub use accounting::Operations;
pub use admission::{AdmittedCall, CallContext};
pub use live::Live;
pub use requests::{PromptEntry, Reference, ResourceEntry, TemplateEntry};

use crate::auth::policy::{Caller, Policy};
use crate::config::{Config, Served};
use crate::quota::{Gate, Limited};
use crate::runtime::{Plugin, Runtime};
use crate::tool::ToolInfo;
use serde_json::Value;
use std::collections::HashMap;
use std::sync::Arc;

/// One tool as served: its MCP name, its plugin and its argument checker.
pub struct ToolEntry {
    /// `<plugin>.<tool>`.
    pub name: String,
    /// Index into the service's plugins.
    plugin: usize,
    /// What the plugin said about the tool.
    pub info: ToolInfo,
    /// The compiled input schema.
    validator: jsonschema::Validator,
    /// A person must confirm each call.
    pub confirm: bool,
}

/// Why a call was refused before it reached the sandbox.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    /// No tool has this name.
    #[error("unknown tool `{0}`")]
    UnknownTool(String),
    /// No resource has this URI, and no template fits it.
    #[error("unknown resource `{0}`")]
    UnknownResource(String),
    /// No prompt has this name.
    #[error("unknown prompt `{0}`")]
    UnknownPrompt(String),
    /// The policy does not grant the tool to this caller.
    #[error("the caller may not use `{0}`")]
    NotAllowed(String),
    /// The arguments do not match the tool's input schema.
    #[error("invalid arguments for {tool}: {message} (at {})", if .field.is_empty() { "the top level" } else { .field.as_str() })]
    InvalidArguments {
        /// The tool called.
        tool: String,
        /// JSON pointer to the failing value (`""` for the arguments object).
        field: String,
        /// What is wrong with it.
        message: String,
    },
    /// A rate limit or concurrency cap.
    #[error("{}; retry after {} s", .0.reason, .0.retry_after.as_secs_f64().ceil())]
    RateLimited(Limited),
    /// The shared store of limits cannot be reached and calls fail closed
    /// (`on_backend_failure = "refuse"`).
    #[error("{}; retry after {} s", .0.reason, .0.retry_after.as_secs_f64().ceil())]
    LimitsUnavailable(Limited),
    /// The audit log cannot be written and calls fail closed.
    #[error("{0}; calls are refused until it can be written (on_failure = \"refuse\")")]
    AuditUnavailable(String),
    /// Admitted, then refused by the transport before it ran (such as a
    /// protocol header rmcp does not take): recorded, never answered.
    #[error("the transport refused the request after it was admitted")]
    Abandoned,
    /// A person's confirmation was needed and not given.
    #[error("{0}; the tool did not run")]
    NotConfirmed(String),
}

impl Refusal {
    /// The stable name of this refusal, as audit records and metrics give it.
    pub fn kind(&self) -> &'static str {
        match self {
            Refusal::UnknownTool(_) => "unknown_tool",
            Refusal::UnknownResource(_) => "unknown_resource",
            Refusal::UnknownPrompt(_) => "unknown_prompt",
            Refusal::NotAllowed(_) => "forbidden",
            Refusal::InvalidArguments { .. } => "invalid_arguments",
            Refusal::RateLimited(_) => "rate_limited",
            Refusal::LimitsUnavailable(_) => "limits_unavailable",
            Refusal::AuditUnavailable(_) => "audit_unavailable",
            Refusal::Abandoned => "abandoned",
            Refusal::NotConfirmed(_) => "not_confirmed",
        }
    }
}

impl From<Limited> for Refusal {
    /// A limit that was hit, or the store that keeps them being down.
    fn from(limited: Limited) -> Refusal {
        if limited.unavailable {
            Refusal::LimitsUnavailable(limited)
        } else {
            Refusal::RateLimited(limited)
        }
    }
}

/// The loaded plugins and everything needed to call their tools.
pub struct ToolService {
    runtime: Arc<Runtime>,
    /// The tenant served; `None` for the top-level endpoint.
    tenant: Option<String>,
    /// Who may use which tool; `None`: every caller may use every tool
    /// (stdio, where the launching process is trusted, or HTTP without
    /// `[auth]`).
    policy: Option<Policy>,
    /// Rate limits and concurrency caps.
    gate: Option<Gate>,
    /// Audit log and metrics.
    ops: Operations,
    plugins: Vec<Plugin>,
    tools: Vec<ToolEntry>,
    by_name: HashMap<String, usize>,
    /// Resources at fixed URIs, sorted by URI.
    resources: Vec<ResourceEntry>,
    /// Resource templates, in plugin order.
    templates: Vec<TemplateEntry>,
    /// Prompts, sorted by name.
    prompts: Vec<PromptEntry>,
}

impl ToolService {
    /// Loads every endpoint's plugins of `config` into `runtime` (built
    /// for it), under `ops`; fails on the first plugin that cannot be
    /// loaded (never half-configured).
    pub async fn load_all<'c>(
        config: &'c Config,
        runtime: Arc<Runtime>,
        ops: &Operations,
    ) -> anyhow::Result<Vec<(Served<'c>, SharedService)>> {
        let mut services = Vec::new();
        for served in config.served() {
            let service = Self::load(runtime.clone(), served, ops).await?;
            services.push((served, Arc::new(service)));
        }
        Ok(services)
    }

    /// Loads the plugins of one endpoint into `runtime`, under `ops`.
    pub async fn load(
        runtime: Arc<Runtime>,
        served: Served<'_>,
        ops: &Operations,
    ) -> anyhow::Result<ToolService> {
        let mut plugins = Vec::with_capacity(served.plugins.len());
        for plugin in served.plugins {
            plugins.push(
                runtime
                    .load(plugin)
                    .await
                    .map_err(|e| match served.tenant {
                        Some(t) => anyhow::anyhow!("tenant `{t}`: {e}"),
                        None => e.into(),
                    })?,
            );
        }
        ops.loaded(served.tenant, &plugins);
        let mut service = Self::new(runtime, plugins)?;
        service
            .require_confirmation(served.confirm)
            .map_err(|e| match served.tenant {
                Some(t) => anyhow::anyhow!("tenant `{t}`: {e}"),
                None => e,
            })?;
        if let Some(unknown) = served
            .limits
            .tools
            .keys()
            .find(|name| !service.by_name.contains_key(name.as_str()))
        {
            let names: Vec<&str> = service.tools.iter().map(|t| t.name.as_str()).collect();
            anyhow::bail!(
                "[limits.tools] names `{unknown}`, which no tool of {} is called; the tools are: {}",
                served
                    .tenant
                    .map_or("this endpoint".to_string(), |t| format!("tenant `{t}`")),
                names.join(", ")
            );
        }
        service.tenant = served.tenant.map(str::to_string);
        service.policy = served.auth.map(|a| a.policy.clone());
        service.gate = Some(ops.gate(served.tenant, served.limits));
        service.ops = ops.clone();
        Ok(service)
    }

    /// Serves `plugins`, already loaded into `runtime`, to every caller,
    /// without limits or audit.
    pub fn new(runtime: Arc<Runtime>, plugins: Vec<Plugin>) -> anyhow::Result<ToolService> {
        let mut tools = Vec::new();
        for (index, plugin) in plugins.iter().enumerate() {
            for info in plugin
                .tools
                .iter()
                .filter(|t| plugin.naming.serves(&t.name))
            {
                let schema = Value::Object(info.input_schema.clone());
                let validator = jsonschema::validator_for(&schema).map_err(|e| {
                    anyhow::anyhow!(
                        "plugin `{}`: tool `{}` has an input schema that is not valid JSON Schema: {e}",
                        plugin.name,
                        info.name
                    )
                })?;
                let mut info = info.clone();
                if let Some(description) = plugin.naming.description(&info.name) {
                    info.description = description.to_string();
                }
                tools.push(ToolEntry {
                    name: plugin.naming.exposed(&plugin.name, &info.name),
                    plugin: index,
                    info,
                    validator,
                    confirm: false,
                });
            }
        }
        tools.sort_by(|a, b| a.name.cmp(&b.name));
        check_names(&plugins, &tools)?;
        let by_name = tools
            .iter()
            .enumerate()
            .map(|(i, t)| (t.name.clone(), i))
            .collect();
        let (resources, templates, prompts) = requests::entries(&plugins)?;
        Ok(ToolService {
            runtime,
            tenant: None,
            policy: None,
            gate: None,
            ops: Operations::default(),
            plugins,
            tools,
            by_name,
            resources,
            templates,
            prompts,
        })
    }

    /// Counts this service's calls against `previous`'s limits (the same
    /// endpoint before a reload): its rate buckets and concurrency caps go
    /// on, and calls still running there keep their places.
    pub fn keep_limits(&mut self, previous: &ToolService) {
        self.gate = previous.gate.clone();
    }

    /// Every tool, sorted by name.
    pub fn tools(&self) -> &[ToolEntry] {
        &self.tools
    }

    /// The loaded plugins.
    pub fn plugins(&self) -> &[Plugin] {
        &self.plugins
    }

    /// Who may use which tool here; `None` when everyone may.
    pub fn policy(&self) -> Option<&Policy> {
        self.policy.as_ref()
    }

    /// The tenant served; `None` for the top-level endpoint.
    pub fn tenant(&self) -> Option<&str> {
        self.tenant.as_deref()
    }

    /// Whether `caller` may use tool `name`. Without a policy everyone may;
    /// with one, an unauthenticated caller may use nothing (fail closed).
    pub fn allows(&self, caller: Option<&Caller>, name: &str) -> bool {
        match (&self.policy, caller) {
            (None, _) => true,
            (Some(policy), Some(caller)) => policy.allows(caller, name),
            (Some(_), None) => false,
        }
    }

    /// Whether this endpoint can serve calls now (for `/readyz`): `Err`
    /// while its audit log cannot be written and calls fail closed.
    pub async fn ready(&self) -> Result<(), crate::audit::AuditError> {
        self.ops.ready().await
    }

    /// Audits and counts a request from `peer` refused for want of a valid
    /// token; `Err` when the peer has had its share of such answers and is
    /// to get a 429 instead.
    pub async fn unauthenticated(
        &self,
        peer: Option<std::net::IpAddr>,
        reason: &str,
    ) -> Result<(), Limited> {
        self.ops.unauthenticated(self.tenant(), peer, reason).await
    }

    /// Audits and counts a request the transport refused before any call
    /// (a bad body, a session that is not the caller's).
    pub async fn refused(
        &self,
        caller: Option<&Caller>,
        peer: Option<std::net::IpAddr>,
        kind: &str,
        reason: &str,
    ) -> Result<(), crate::audit::AuditError> {
        self.ops
            .refused(self.tenant(), caller, peer, None, kind, reason)
            .await
    }
}

/// Names an endpoint in the keys of limits shared by every endpoint.
fn endpoint_key(tenant: Option<&str>) -> String {
    match tenant {
        Some(tenant) => format!("tenant:{tenant}"),
        None => "top".into(),
    }
}

/// Refuses names clients could not tell apart, and names that would fall
/// under another plugin's prefix (where its policy patterns, limits and
/// confirmations reach): two tools named alike ignoring case, or a tool
/// named `p.…` by a plugin other than the one whose prefix or name `p` is.
fn check_names(plugins: &[Plugin], tools: &[ToolEntry]) -> anyhow::Result<()> {
    let source = |t: &ToolEntry| {
        format!(
            "plugin `{}` (its tool `{}`)",
            plugins[t.plugin].name, t.info.name
        )
    };
    let mut seen: HashMap<String, &ToolEntry> = HashMap::new();
    for tool in tools {
        if let Some(other) = seen.insert(tool.name.to_ascii_lowercase(), tool) {
            anyhow::bail!(
                "two tools would both be named `{}`{} at this endpoint: {} and {}; \
                 give one of them another name with `prefix` or [plugin.rename]",
                tool.name,
                if other.name == tool.name {
                    String::new()
                } else {
                    format!(" (or `{}`, which differs only in case)", other.name)
                },
                source(other),
                source(tool)
            );
        }
    }
    // A plugin's namespaces: its name, and its prefix. A tool may sit in
    // its own plugin's, never in another's.
    let other_owner = |space: &str, plugin: usize| {
        plugins.iter().enumerate().position(|(i, p)| {
            i != plugin
                && (p.name.eq_ignore_ascii_case(space)
                    || p.naming
                        .prefix
                        .as_deref()
                        .is_some_and(|q| q.eq_ignore_ascii_case(space)))
        })
    };
    for tool in tools {
        let Some((space, _)) = tool.name.split_once('.') else {
            continue;
        };
        if let Some(other) = other_owner(space, tool.plugin) {
            anyhow::bail!(
                "{} would be listed as `{}`, under `{space}.`, which belongs to plugin `{}`: \
                 patterns such as `{space}.*` in policy, limits and confirm would cover it; \
                 choose a name outside another plugin's prefix",
                source(tool),
                tool.name,
                plugins[other].name
            );
        }
    }
    Ok(())
}

/// A shared handle, as transports hold it.
pub type SharedService = Arc<ToolService>;
