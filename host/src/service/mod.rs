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
    /// Admitted, then refused by the transport before it ran (such as a
    /// protocol header rmcp does not take): recorded, never answered.
    #[error("the transport refused the request after it was admitted")]
    Abandoned,
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
            Refusal::Abandoned => "abandoned",
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
}

impl CallContext<'_> {
    /// Whom rate limits count against: the token's issuer and subject
    /// (a subject is unique only at its issuer), else its client, else
    /// the peer's address (an IPv6 peer by its first `ipv6_prefix` bits,
    /// since one host usually holds a whole prefix), else the process that
    /// launched Moat over stdio.
    pub fn limit_key(&self, ipv6_prefix: u8) -> String {
        if let Some(caller) = self.caller {
            if !caller.subject.is_empty() {
                return format!("iss:{} sub:{}", caller.issuer, caller.subject);
            }
            if let Some(client) = &caller.client_id {
                return format!("iss:{} client:{client}", caller.issuer);
            }
        }
        match self.peer {
            Some(peer) => format!("ip:{}", crate::quota::source(peer.ip(), ipv6_prefix)),
            None => "stdio".into(),
        }
    }
}

/// A call that passed every check of [`ToolService::admit`]; it runs with
/// [`ToolService::run`] of the same service, from these values alone.
pub struct AdmittedCall {
    /// Index into the service's tools.
    tool: usize,
    /// The arguments, valid against the tool's input schema.
    arguments: Value,
    /// The caller's identity, for plugins granted `caller_identity`.
    env: Vec<(String, String)>,
    /// The audit record, completed when the call ends.
    record: Option<crate::audit::Record>,
    /// Values of secret-looking arguments, kept out of error messages.
    secrets: Vec<String>,
    /// The address of the service that admitted it, the only one that may
    /// run it (its tool index means nothing to another).
    admitted_by: usize,
    /// Where its record goes should it be dropped without running.
    accounts: Accounts,
    /// The call's place under the concurrency caps, until it ends.
    _permit: Option<Admitted>,
}

/// What an admitted call needs to record its own abandonment.
struct Accounts {
    ops: Operations,
    tenant: Option<String>,
    tool: String,
}

impl Drop for AdmittedCall {
    /// A call admitted but never run (the transport refused the request
    /// after admission) still leaves its record: a refusal.
    fn drop(&mut self) {
        let (Some(record), Ok(runtime)) =
            (self.record.take(), tokio::runtime::Handle::try_current())
        else {
            return;
        };
        let Accounts { ops, tenant, tool } = std::mem::replace(
            &mut self.accounts,
            Accounts {
                ops: Operations::default(),
                tenant: None,
                tool: String::new(),
            },
        );
        runtime.spawn(async move {
            let _ = ops
                .finish(
                    tenant.as_deref(),
                    &tool,
                    Some(record),
                    Err(Refusal::Abandoned),
                )
                .await;
        });
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
    /// into it, under `ops`; fails on the first plugin that cannot be
    /// loaded (never half-configured).
    pub async fn load_all<'c>(
        config: &'c Config,
        ops: &Operations,
    ) -> anyhow::Result<Vec<(Served<'c>, SharedService)>> {
        let runtime = Arc::new(Runtime::new(&RuntimeOptions::for_config(config))?);
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
        service.tenant = served.tenant.map(str::to_string);
        service.policy = served.auth.map(|a| a.policy.clone());
        service.gate = Some(ops.gate(served.limits));
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

    /// The one admission step of every call, whatever its transport:
    /// audit available, policy, limits, tool lookup, arguments against the
    /// input schema, in that order. A refusal is audited and counted
    /// before it is returned.
    pub async fn admit(
        &self,
        context: &CallContext<'_>,
        name: &str,
        arguments: Map<String, Value>,
    ) -> Result<AdmittedCall, Refusal> {
        let peer = context.peer.map(|p| p.ip());
        let mut record = self
            .ops
            .begin(self.tenant(), context.caller, peer, name, &arguments);
        let secrets = crate::audit::secrets(&arguments);
        match self.check(context, name, arguments, &mut record).await {
            Ok((tool, arguments, permit)) => Ok(AdmittedCall {
                tool,
                secrets,
                admitted_by: self.address(),
                arguments,
                env: if self.plugins[self.tools[tool].plugin].grants.caller_identity {
                    identity::env(context.caller, self.tenant.as_deref())
                } else {
                    Vec::new()
                },
                record,
                accounts: Accounts {
                    ops: self.ops.clone(),
                    tenant: self.tenant.clone(),
                    tool: name.to_string(),
                },
                _permit: permit,
            }),
            Err(refusal) => {
                let refused = self.ops.finish(self.tenant(), name, record, Err(refusal));
                Err(refused.await.expect_err("a refusal stays a refusal"))
            }
        }
    }

    async fn check(
        &self,
        context: &CallContext<'_>,
        name: &str,
        arguments: Map<String, Value>,
        record: &mut Option<crate::audit::Record>,
    ) -> Result<(usize, Value, Option<Admitted>), Refusal> {
        self.ops.check_audit()?;
        if !self.allows(context.caller, name) {
            return Err(Refusal::NotAllowed(name.to_string()));
        }
        let permit = match &self.gate {
            None => None,
            Some(gate) => {
                // Buckets are per endpoint; the key names it too, so that a
                // store shared by every endpoint (and replica) keeps them apart.
                let key = format!(
                    "{} {}",
                    endpoint_key(self.tenant()),
                    context.limit_key(self.ops.ipv6_prefix())
                );
                Some(gate.admit(&key, name).await.map_err(Refusal::RateLimited)?)
            }
        };
        let index = *self
            .by_name
            .get(name)
            .ok_or_else(|| Refusal::UnknownTool(name.to_string()))?;
        let tool = &self.tools[index];
        if let Some(record) = record {
            record.plugin_sha256 = Some(self.plugins[tool.plugin].sha256.clone());
        }
        let arguments = Value::Object(arguments);
        // `is_valid` is the fast path; the error walk runs only on failure.
        if !tool.validator.is_valid(&arguments)
            && let Some(error) = tool.validator.iter_errors(&arguments).next()
        {
            return Err(Refusal::InvalidArguments {
                tool: tool.name.clone(),
                field: error.instance_path().to_string(),
                // The message never repeats the value: it may be a secret,
                // and it goes to the log, the audit record and the client.
                message: error.masked().to_string(),
            });
        }
        Ok((index, arguments, permit))
    }

    /// Runs a call [`Self::admit`] let through, in a fresh sandbox; its
    /// record is written before this returns.
    pub async fn run(&self, mut call: AdmittedCall) -> Result<CallReport, Refusal> {
        assert_eq!(
            call.admitted_by,
            self.address(),
            "a call runs on the service that admitted it"
        );
        let tool = &self.tools[call.tool];
        let plugin = &self.plugins[tool.plugin];
        let mut report = {
            let _running = self.ops.running();
            self.runtime
                .call_with_env(
                    plugin,
                    &tool.info.name,
                    call.arguments.to_string(),
                    std::mem::take(&mut call.env),
                )
                .await
        };
        // A plugin's message may quote its arguments (serde's do); it goes
        // to the log, the audit record and the client.
        if let Err(e) = &mut report.result
            && let Some(text) = e.text_mut()
            && !call.secrets.is_empty()
        {
            *text = crate::audit::scrub(text, &call.secrets);
        }
        self.ops
            .finish(self.tenant(), &tool.name, call.record.take(), Ok(report))
            .await
    }

    /// This service's identity, for [`AdmittedCall::admitted_by`].
    fn address(&self) -> usize {
        std::ptr::from_ref(self) as usize
    }

    /// Admits and runs tool `name` with `arguments` for the caller of
    /// `context`.
    pub async fn call(
        &self,
        context: CallContext<'_>,
        name: &str,
        arguments: Map<String, Value>,
    ) -> Result<CallReport, Refusal> {
        let call = self.admit(&context, name, arguments).await?;
        self.run(call).await
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

/// A shared handle, as transports hold it.
pub type SharedService = Arc<ToolService>;
