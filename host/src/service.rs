//! The tools Moat serves and the one path every tool call takes.
//!
//! [`ToolService`] owns the runtime and the loaded plugins, lists their
//! tools as `<plugin>.<tool>`, and runs calls through [`ToolService::call`]:
//! find the tool, check the arguments against its input schema, run it in
//! the sandbox. Transports (stdio, HTTP) only adapt to it.

use crate::config::Config;
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
    runtime: Runtime,
    plugins: Vec<Plugin>,
    tools: Vec<ToolEntry>,
    by_name: HashMap<String, usize>,
}

impl ToolService {
    /// Builds the runtime for `config` and loads every plugin; fails on the
    /// first plugin that cannot be loaded (never half-configured).
    pub async fn load(config: &Config) -> anyhow::Result<ToolService> {
        let runtime = Runtime::new(&RuntimeOptions::for_config(config))?;
        let mut plugins = Vec::with_capacity(config.plugins.len());
        for plugin in &config.plugins {
            plugins.push(runtime.load(plugin).await?);
        }
        Self::new(runtime, plugins)
    }

    /// Serves `plugins`, already loaded into `runtime`.
    pub fn new(runtime: Runtime, plugins: Vec<Plugin>) -> anyhow::Result<ToolService> {
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

    /// The tool called `name`, if any.
    pub fn tool(&self, name: &str) -> Option<&ToolEntry> {
        self.by_name.get(name).map(|&i| &self.tools[i])
    }

    /// Runs tool `name` with `arguments`: the one path of every call.
    pub async fn call(
        &self,
        name: &str,
        arguments: Map<String, Value>,
    ) -> Result<CallReport, Refusal> {
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
        Ok(self
            .runtime
            .call(plugin, &tool.info.name, &arguments.to_string())
            .await)
    }
}

/// A shared handle, as transports hold it.
pub type SharedService = Arc<ToolService>;
