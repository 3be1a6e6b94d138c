//! The tools Moat serves and the one path every tool call takes.
//!
//! A [`ToolService`] holds one endpoint's loaded plugins (the top-level
//! ones or a tenant's) on a shared runtime, lists their tools as
//! `<plugin>.<tool>`, and runs calls through [`ToolService::call`]: check
//! the caller against the policy, find the tool, check the arguments
//! against its input schema, run it in the sandbox. Transports (stdio,
//! HTTP) only adapt to it.

use crate::auth::policy::{Caller, Policy};
use crate::capabilities::identity;
use crate::config::{Config, Served};
use crate::runtime::{CallReport, Plugin, Runtime, RuntimeOptions};
use crate::tool::ToolInfo;
use serde_json::{Map, Value};
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
        let mut services = Vec::new();
        for served in config.served() {
            let service = Self::load(runtime.clone(), served).await?;
            services.push((served, Arc::new(service)));
        }
        Ok(services)
    }

    /// Loads the plugins of one endpoint into `runtime`.
    pub async fn load(runtime: Arc<Runtime>, served: Served<'_>) -> anyhow::Result<ToolService> {
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
        let mut service = Self::new(runtime, plugins)?;
        service.tenant = served.tenant.map(str::to_string);
        service.policy = served.auth.map(|a| a.policy.clone());
        Ok(service)
    }

    /// Serves `plugins`, already loaded into `runtime`, to every caller.
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

    /// Runs tool `name` with `arguments` for `caller` (`None`: a trusted
    /// transport without tokens): the one path of every call.
    pub async fn call(
        &self,
        caller: Option<&Caller>,
        name: &str,
        arguments: Map<String, Value>,
    ) -> Result<CallReport, Refusal> {
        if !self.allows(caller, name) {
            tracing::warn!(
                tenant = self.tenant,
                subject = caller.map(|c| c.subject.as_str()),
                tool = name,
                "tool call refused: not granted"
            );
            return Err(Refusal::NotAllowed(name.to_string()));
        }
        let tool = self
            .tool(name)
            .ok_or_else(|| Refusal::UnknownTool(name.to_string()))?;
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
        let plugin = &self.plugins[tool.plugin];
        let env = if plugin.grants.caller_identity {
            identity::env(caller, self.tenant.as_deref())
        } else {
            Vec::new()
        };
        let report = self
            .runtime
            .call_with_env(plugin, &tool.info.name, &arguments.to_string(), &env)
            .await;
        tracing::debug!(
            tenant = self.tenant,
            subject = caller.map(|c| c.subject.as_str()),
            client_id = caller.and_then(|c| c.client_id.as_deref()),
            tool = name,
            outcome = report.result.as_ref().map_or_else(|e| e.kind(), |_| "ok"),
            micros = report.stats.duration.as_micros() as u64,
            fuel = report.stats.fuel_used,
            "call"
        );
        Ok(report)
    }
}

/// A shared handle, as transports hold it.
pub type SharedService = Arc<ToolService>;
