//! The tools Moat serves and the one path every tool call takes.
//!
//! A [`ToolService`] holds one endpoint's loaded plugins (the top-level
//! ones or a tenant's) on a shared runtime, lists their tools as
//! `<plugin>.<tool>`, and runs calls through [`ToolService::call`]: check
//! the caller against the policy and the limits, find the tool, check the
//! arguments against its input schema, run it in the sandbox, and audit
//! and count what happened (see [`accounting`]). Transports (stdio, HTTP)
//! only adapt to it.

mod accounting;

pub use accounting::Operations;

use crate::auth::policy::{Caller, Policy};
use crate::capabilities::identity;
use crate::config::{Config, Served};
use crate::quota::{Admitted, Gate, Limited};
use crate::runtime::{CallReport, Plugin, Runtime, RuntimeOptions};
use crate::tool::ToolInfo;
use serde_json::{Map, Value};
use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

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
}

/// Why a call was refused before it reached the sandbox.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    /// No tool has this name.
    #[error("unknown tool `{0}`")]
    UnknownTool(String),
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
    /// The audit log cannot be written and calls fail closed.
    #[error("{0}; calls are refused until it can be written (on_failure = \"refuse\")")]
    AuditUnavailable(String),
}

impl Refusal {
    /// The stable name of this refusal, as audit records and metrics give it.
    pub fn kind(&self) -> &'static str {
        match self {
            Refusal::UnknownTool(_) => "unknown_tool",
            Refusal::NotAllowed(_) => "forbidden",
            Refusal::InvalidArguments { .. } => "invalid_arguments",
            Refusal::RateLimited(_) => "rate_limited",
            Refusal::AuditUnavailable(_) => "audit_unavailable",
        }
    }

    /// For a limit, when a retry may succeed.
    pub fn retry_after(&self) -> Option<Duration> {
        match self {
            Refusal::RateLimited(limited) => Some(limited.retry_after),
            _ => None,
        }
    }
}

/// Who is calling, as the transport knows it.
#[derive(Debug, Clone, Copy, Default)]
pub struct CallContext<'a> {
    /// The authenticated caller; `None` over stdio and HTTP without `[auth]`.
    pub caller: Option<&'a Caller>,
    /// The peer's address over HTTP.
    pub peer: Option<SocketAddr>,
    /// The transport has admitted the call through [`ToolService::admit`]
    /// already (HTTP does, to answer 429 with `Retry-After`).
    pub admitted: bool,
}

impl CallContext<'_> {
    /// Whom rate limits count against: the token's subject, else its
    /// client, else the peer's address, else the process that launched
    /// Moat over stdio.
    pub fn limit_key(&self) -> String {
        if let Some(caller) = self.caller {
            if !caller.subject.is_empty() {
                return format!("sub:{}", caller.subject);
            }
            if let Some(client) = &caller.client_id {
                return format!("client:{client}");
            }
        }
        match self.peer {
            Some(peer) => format!("ip:{}", peer.ip()),
            None => "stdio".into(),
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
}

impl ToolService {
    /// Builds a runtime for `config` and loads every endpoint's plugins
    /// into it; fails on the first plugin that cannot be loaded (never
    /// half-configured).
    pub async fn load_all(config: &Config) -> anyhow::Result<Vec<(Served<'_>, SharedService)>> {
        let runtime = Arc::new(Runtime::new(&RuntimeOptions::for_config(config))?);
        let ops = Operations::for_config(config)?;
        let mut services = Vec::new();
        for served in config.served() {
            let service = Self::load(runtime.clone(), served, &ops).await?;
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
        service.tenant = served.tenant.map(str::to_string);
        service.policy = served.auth.map(|a| a.policy.clone());
        service.gate = Some(ops.gate());
        service.ops = ops.clone();
        Ok(service)
    }

    /// Serves `plugins`, already loaded into `runtime`, to every caller,
    /// without limits or audit.
    pub fn new(runtime: Arc<Runtime>, plugins: Vec<Plugin>) -> anyhow::Result<ToolService> {
        let mut tools = Vec::new();
        for (index, plugin) in plugins.iter().enumerate() {
            for info in &plugin.tools {
                let schema = Value::Object(info.input_schema.clone());
                let validator = jsonschema::validator_for(&schema).map_err(|e| {
                    anyhow::anyhow!(
                        "plugin `{}`: tool `{}` has an input schema that is not valid JSON Schema: {e}",
                        plugin.name,
                        info.name
                    )
                })?;
                tools.push(ToolEntry {
                    name: format!("{}.{}", plugin.name, info.name),
                    plugin: index,
                    info: info.clone(),
                    validator,
                });
            }
        }
        tools.sort_by(|a, b| a.name.cmp(&b.name));
        let by_name = tools
            .iter()
            .enumerate()
            .map(|(i, t)| (t.name.clone(), i))
            .collect();
        Ok(ToolService {
            runtime,
            tenant: None,
            policy: None,
            gate: None,
            ops: Operations::default(),
            plugins,
            tools,
            by_name,
        })
    }

    /// Every tool, sorted by name.
    pub fn tools(&self) -> &[ToolEntry] {
        &self.tools
    }

    /// The loaded plugins.
    pub fn plugins(&self) -> &[Plugin] {
        &self.plugins
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

    /// The tool called `name`, if any.
    pub fn tool(&self, name: &str) -> Option<&ToolEntry> {
        self.by_name.get(name).map(|&i| &self.tools[i])
    }

    /// Admits a call of `tool` through the rate limits and concurrency
    /// caps; the call counts as running until the result is dropped.
    pub async fn admit(
        &self,
        context: &CallContext<'_>,
        tool: &str,
    ) -> Result<Option<Admitted>, Refusal> {
        match &self.gate {
            None => Ok(None),
            Some(gate) => gate
                .admit(&context.limit_key(), tool)
                .await
                .map(Some)
                .map_err(Refusal::RateLimited),
        }
    }

    /// Runs tool `name` with `arguments` for the caller of `context`: the
    /// one path of every call. Its record is written before it returns.
    pub async fn call(
        &self,
        context: CallContext<'_>,
        name: &str,
        arguments: Map<String, Value>,
    ) -> Result<CallReport, Refusal> {
        let mut record = self
            .ops
            .begin(self.tenant(), context.caller, name, &arguments);
        let result = self.run(&context, name, arguments, &mut record).await;
        self.ops.finish(self.tenant(), name, record, result).await
    }

    async fn run(
        &self,
        context: &CallContext<'_>,
        name: &str,
        arguments: Map<String, Value>,
        record: &mut Option<crate::audit::Record>,
    ) -> Result<CallReport, Refusal> {
        self.ops.check_audit()?;
        if !self.allows(context.caller, name) {
            return Err(Refusal::NotAllowed(name.to_string()));
        }
        let _admitted = if context.admitted {
            None
        } else {
            self.admit(context, name).await?
        };
        let tool = self
            .tool(name)
            .ok_or_else(|| Refusal::UnknownTool(name.to_string()))?;
        let plugin = &self.plugins[tool.plugin];
        if let Some(record) = record {
            record.plugin_sha256 = Some(plugin.sha256.clone());
        }
        let arguments = Value::Object(arguments);
        // `is_valid` is the fast path; the error walk runs only on failure.
        if !tool.validator.is_valid(&arguments)
            && let Some(error) = tool.validator.iter_errors(&arguments).next()
        {
            return Err(Refusal::InvalidArguments {
                tool: tool.name.clone(),
                field: error.instance_path().to_string(),
                message: error.to_string(),
            });
        }
        let env = if plugin.grants.caller_identity {
            identity::env(context.caller, self.tenant.as_deref())
        } else {
            Vec::new()
        };
        let _running = self.ops.running();
        Ok(self
            .runtime
            .call_with_env(plugin, &tool.info.name, arguments.to_string(), env)
            .await)
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
    /// (no or bad token, a tool the policy refuses, a limit, a bad body).
    pub async fn refused(
        &self,
        caller: Option<&Caller>,
        tool: Option<&str>,
        kind: &str,
        reason: &str,
    ) -> Result<(), crate::audit::AuditError> {
        self.ops
            .refused(self.tenant(), caller, tool, kind, reason)
            .await
    }
}

/// A shared handle, as transports hold it.
pub type SharedService = Arc<ToolService>;
