//! Loading a plugin: read, pin, compile, link, pre-instantiate, describe.

use super::bindings::Pre;
use super::bindings::moat::plugin::types as wt;
use super::bindings::moat::plugin::types::Tool as WitTool;
use super::cache::CacheOutcome;
use super::call::{Described, Entry, Job, Returned};
use super::docs::Docs;
use super::error::{LoadError, NotGranted};
use super::state::CallState;
use super::{Flavor, Runtime};
use crate::capabilities::{Grants, Limits, Mode, fs};
use crate::config::PluginConfig;
use crate::source::Provenance;
use crate::tool::{Annotations, PromptArgument, PromptInfo, ResourceLink, TemplateInfo, ToolInfo};
use serde_json::{Map, Value};
use std::collections::HashSet;
use std::sync::Arc;
use std::time::{Duration, Instant};
use wasmtime::component::types::ComponentItem;
use wasmtime::component::{Component, Linker};

/// The doc comments that describe a generic component's tools: the
/// plugin's `wit`, then the component's own `package-docs` section (read
/// on a blocking thread: it validates the whole component again).
async fn generic_docs(
    config: &PluginConfig,
    bytes: Arc<Vec<u8>>,
) -> Result<Docs, (String, &'static str)> {
    let wit = match &config.wit {
        None => Docs::default(),
        Some(path) => Docs::from_wit(path).map_err(|e| {
            (
                format!("its WIT `{}` cannot be read: {e:#}", path.display()),
                "point `wit` at the WIT the component was built from (a .wit file, its folder with deps/, or a binary WIT package)",
            )
        })?,
    };
    let own = tokio::task::spawn_blocking(move || Docs::from_component(&bytes))
        .await
        .unwrap_or_else(|e| Err(anyhow::anyhow!("the reader stopped: {e}")));
    match own {
        Ok(own) => Ok(wit.or(own)),
        Err(e) => {
            // Descriptions only: the component itself is sound (it
            // compiled), so it is served with the descriptions it has.
            // The reader's message may quote the component's own text.
            let why = super::capture::printable(&format!("{e:#}")).into_owned();
            tracing::warn!(plugin = %config.name, "its package-docs section cannot be read, so its tools are described without it: {why}");
            Ok(wit)
        }
    }
}

/// Bytes of tool descriptions a plugin may return at load.
const MAX_DESCRIBE_BYTES: usize = 4 << 20;

/// A plugin ready to serve calls.
pub struct Plugin {
    /// Its configured name.
    pub name: String,
    /// SHA-256 of its component bytes (lowercase hex).
    pub sha256: String,
    /// Where its bytes came from and who signed them.
    pub provenance: Provenance,
    /// Its tools, as it described them at load.
    pub tools: Vec<ToolInfo>,
    /// Its resources at fixed URIs.
    pub resources: Vec<ResourceLink>,
    /// Its resource templates.
    pub templates: Vec<TemplateInfo>,
    /// Its prompts.
    pub prompts: Vec<PromptInfo>,
    /// What each call may touch and use (shared with every call).
    pub grants: Arc<Grants>,
    /// How its tools are named to clients.
    pub naming: crate::config::Naming,
    /// The interfaces the component imports (what it could use if granted).
    pub imports: Vec<String>,
    /// How loading went.
    pub load: LoadStats,
    /// Pre-linked, so a call only instantiates.
    pub(super) pre: Pre,
    /// The engine it was compiled for (with fuel checks or without).
    pub(super) engine: wasmtime::Engine,
    /// The name, shared with every call's state for log attribution.
    pub(super) label: Arc<str>,
}

/// How long loading took and whether compiled code came from the cache.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LoadStats {
    /// Compile (or cache load) time.
    pub compile: Duration,
    /// Whether the compile cache was used.
    pub cache: CacheOutcome,
}

/// The wasi:http version wasmtime-wasi-http 48 links (its `wit/deps`).
const WASI_HTTP: &str = "0.2.12";

impl Runtime {
    /// The linker for a plugin with `grants`: with an `rw` directory, its
    /// writes counted and symlinks refused unless granted (see
    /// [`fs::writes`]); with hosts to reach, wasi:http; otherwise every
    /// wasi:http function the plugin imports ends the call with
    /// [`NotGranted`] (no request, body or header map is ever made, so
    /// nothing of it is held on its behalf).
    fn linker_for(
        flavor: &Flavor,
        component: &Component,
        grants: &Grants,
    ) -> wasmtime::Result<Linker<CallState>> {
        let mut linker = flavor.linker.clone();
        if grants.dirs.iter().any(|d| d.mode == Mode::Rw) {
            fs::writes::link(&mut linker, grants.allow_symlinks)?;
        }
        if !grants.net.allow.is_empty() {
            return Ok(linker);
        }
        linker.allow_shadowing(true);
        for (name, item) in component.component_type().imports(&flavor.engine) {
            let (Some(interface), ComponentItem::ComponentInstance(imported)) = (
                name.strip_prefix("wasi:http/")
                    .and_then(|rest| rest.split('@').next()),
                item.ty,
            ) else {
                continue;
            };
            // Imports of any 0.2.x resolve to the version linked, so that is
            // the instance whose functions are replaced.
            let mut linked = linker.instance(&format!("wasi:http/{interface}@{WASI_HTTP}"))?;
            for (function, item) in imported.exports(&flavor.engine) {
                if let ComponentItem::ComponentFunc(_) = item.ty {
                    let denied = NotGranted(format!("wasi:http/{interface}#{function}"));
                    linked.func_new(function, move |_, _, _, _| {
                        Err(wasmtime::Error::new(denied.clone()))
                    })?;
                }
            }
        }
        Ok(linker)
    }

    /// Loads the plugin `config` describes.
    pub async fn load(&self, config: &PluginConfig) -> Result<Plugin, LoadError> {
        let fail = |message: String, fix: &str| LoadError {
            plugin: config.name.clone(),
            origin: Some(config.origin.clone()),
            message,
            fix: fix.to_string(),
        };
        let artifact = self
            .fetcher()
            .fetch(config)
            .await
            .map_err(|e| fail(e.message, &e.fix))?;
        let provenance = artifact.provenance;
        let sha256 = provenance.sha256.clone();
        let bytes = Arc::new(artifact.bytes);

        let flavor = self.flavor(config.grants.limits.metered).map_err(|e| {
            fail(
                format!("no engine without fuel: {e:#}"),
                "count this plugin's fuel (remove `fuel = false`)",
            )
        })?;
        let started = Instant::now();
        // Compiling takes seconds of CPU: on a blocking thread, so that a
        // reload does not stall the calls being served.
        let (engine, cache, digest) = (flavor.engine.clone(), self.cache.clone(), sha256.clone());
        let source = bytes.clone();
        let compiled = tokio::task::spawn_blocking(move || match cache {
            Some(cache) => cache.load_or_compile(&engine, &source, &digest),
            None => Component::new(&engine, source.as_slice())
                .map(|c| (c, CacheOutcome::Disabled))
                .map_err(anyhow::Error::from),
        })
        .await
        .unwrap_or_else(|e| Err(anyhow::anyhow!("the compiler stopped: {e}")));
        let (component, cache) = compiled.map_err(|e| {
            fail(
                format!("not a valid WebAssembly component: {e:#}"),
                "build the plugin for wasm32-wasip2 (`cargo build --release --target wasm32-wasip2`)",
            )
        })?;
        let load = LoadStats {
            compile: started.elapsed(),
            cache,
        };
        let imports: Vec<String> = component
            .component_type()
            .imports(&flavor.engine)
            .map(|(name, _)| name.to_string())
            .collect();
        let instance_pre = Self::linker_for(&flavor, &component, &config.grants)
            .and_then(|linker| linker.instantiate_pre(&component))
            .map_err(|e| {
            let unserved: Vec<&str> = imports
                .iter()
                .map(String::as_str)
                .filter(|i| !SERVED_IMPORTS.iter().any(|p| i.starts_with(p)))
                .collect();
            let fix = match unserved.is_empty() {
                true => "build it against WASI 0.2 and wit/plugin.wit (the moat-plugin SDK does)".to_string(),
                false => format!(
                    "Moat serves WASI 0.2 (each part only as granted) and moat:plugin's imports, not {}: build the component without {}; configuration values can come from environment variables granted with `env`",
                    unserved.join(", "),
                    if unserved.len() == 1 { "it" } else { "them" }
                ),
            };
            fail(format!("cannot be linked: {e:#}"), &fix)
        })?;
        let pre = match super::compat::pre(instance_pre.clone()) {
            Ok(pre) => pre,
            // A component that speaks no `moat:plugin` at all: its own
            // exported functions are its tools.
            Err(_) if !speaks_moat(&component, &flavor.engine) => {
                let docs = generic_docs(config, bytes)
                    .await
                    .map_err(|(message, fix)| fail(message, fix))?;
                let functions = super::generic::functions(&flavor.engine, &component, &docs).map_err(|why| {
                    fail(
                        format!("exports no moat:plugin interface, and cannot be served by its own exports: {why}"),
                        "export functions of plain values (or build the plugin with the moat-plugin SDK)",
                    )
                })?;
                Pre::Generic(Arc::new(super::bindings::GenericPre {
                    pre: instance_pre,
                    functions,
                }))
            }
            Err(e) => {
                return Err(fail(
                    format!("exports neither moat:plugin/tools@0.2.0 nor @0.1.0: {e}"),
                    "build the plugin with the moat-plugin SDK (or export the interface in wit/)",
                ));
            }
        };

        if let (Some(wit), false) = (&config.wit, matches!(pre, Pre::Generic(_))) {
            return Err(fail(
                format!(
                    "`wit = {:?}` describes the functions of a component with exports of its own, and this plugin speaks moat:plugin (it describes its own tools)",
                    wit.display()
                ),
                "remove `wit`; [plugin.tools] can give a tool another description",
            ));
        }
        let label: Arc<str> = Arc::from(config.name.as_str());
        // Descriptions are read with no grants at all: only the limits.
        let describe_grants = Grants {
            limits: Limits {
                timeout: Duration::from_secs(10),
                max_output_bytes: MAX_DESCRIBE_BYTES,
                ..config.grants.limits
            },
            ..Grants::default()
        };
        let (returned, _, _) = self
            .run(Job {
                pre: pre.clone(),
                engine: flavor.engine.clone(),
                label: label.clone(),
                grants: Arc::new(describe_grants),
                scope: Default::default(),
                entry: Entry::Describe,
                events: None,
                relay: None,
            })
            .await;
        let described = match returned {
            Ok(Returned::Described(described)) => described,
            Ok(_) => unreachable!("describe returns descriptions"),
            Err(e) => {
                return Err(fail(
                    format!("failed while describing its tools: {e}"),
                    "`describe` must work without grants; run `moat inspect` on the file to see the error",
                ));
            }
        };
        let Described {
            tools,
            resources,
            templates,
            prompts,
        } = described;
        let size = described_size(&resources, &templates, &prompts);
        if size > MAX_DESCRIBE_BYTES {
            return Err(fail(
                format!(
                    "its resource and prompt lists take {size} bytes, more than {MAX_DESCRIBE_BYTES}"
                ),
                "list fewer resources (a template covers many)",
            ));
        }
        let tools = check_tools(tools).map_err(|m| fail(m, "fix the plugin's tool list"))?;
        let resources = check_resources(resources, &templates)
            .map_err(|m| fail(m, "fix the plugin's resource list"))?;
        let templates = check_templates(templates)
            .map_err(|m| fail(m, "fix the plugin's resource templates"))?;
        let prompts =
            check_prompts(prompts).map_err(|m| fail(m, "fix the plugin's prompt list"))?;
        if let Some(unknown) = config
            .naming
            .named_tools()
            .find(|old| !tools.iter().any(|t| &t.name == *old))
        {
            let names: Vec<&str> = tools.iter().map(|t| t.name.as_str()).collect();
            return Err(fail(
                format!(
                    "[plugin.rename] or [plugin.tools] names `{unknown}`, which the plugin does not have"
                ),
                &format!("name one of its tools: {}", names.join(", ")),
            ));
        }
        Ok(Plugin {
            name: config.name.clone(),
            sha256,
            provenance,
            tools,
            resources,
            templates,
            prompts,
            grants: Arc::new(config.grants.clone()),
            naming: config.naming.clone(),
            imports,
            load,
            pre,
            engine: flavor.engine.clone(),
            label,
        })
    }
}

/// Validates what a plugin says about its tools.
fn check_tools(described: Vec<WitTool>) -> Result<Vec<ToolInfo>, String> {
    let size: usize = described
        .iter()
        .map(|t| t.name.len() + t.description.len() + t.input_schema.len())
        .sum();
    if size > MAX_DESCRIBE_BYTES {
        return Err(format!(
            "its tool descriptions take {size} bytes, more than {MAX_DESCRIBE_BYTES}"
        ));
    }
    let mut seen = HashSet::new();
    let mut tools = Vec::with_capacity(described.len());
    for tool in described {
        let name = tool.name;
        if !plain_name(&name) {
            return Err(format!(
                "tool name {name:?} is not 1 to 64 characters from A-Z, a-z, 0-9, `_` and `-`"
            ));
        }
        if !seen.insert(name.clone()) {
            return Err(format!("tool `{name}` is declared twice"));
        }
        let input_schema = object_schema(&tool.input_schema)
            .map_err(|why| format!("tool `{name}`: input schema {why}"))?;
        let output_schema = match &tool.output_schema {
            None => None,
            Some(s) => Some(
                object_schema(s).map_err(|why| format!("tool `{name}`: output schema {why}"))?,
            ),
        };
        let a = tool.annotations;
        tools.push(ToolInfo {
            name,
            title: tool.title,
            description: tool.description,
            input_schema,
            output_schema,
            annotations: Annotations {
                read_only_hint: a.read_only,
                destructive_hint: a.destructive,
                idempotent_hint: a.idempotent,
                open_world_hint: a.open_world,
            },
        });
    }
    Ok(tools)
}

/// The bytes of what a plugin lists besides its tools.
fn described_size(
    resources: &[wt::ResourceLink],
    templates: &[wt::ResourceTemplate],
    prompts: &[wt::Prompt],
) -> usize {
    let opt = |s: &Option<String>| s.as_ref().map_or(0, String::len);
    let resources: usize = resources
        .iter()
        .map(|r| {
            r.uri.len() + r.name.len() + opt(&r.title) + opt(&r.description) + opt(&r.mime_type)
        })
        .sum();
    let templates: usize = templates
        .iter()
        .map(|t| {
            t.uri_template.len()
                + t.name.len()
                + opt(&t.title)
                + opt(&t.description)
                + opt(&t.mime_type)
        })
        .sum();
    let prompts: usize = prompts
        .iter()
        .map(|p| {
            p.name.len()
                + opt(&p.title)
                + opt(&p.description)
                + p.arguments
                    .iter()
                    .map(|a| a.name.len() + opt(&a.description))
                    .sum::<usize>()
        })
        .sum();
    resources + templates + prompts
}

/// Longest resource URI or template a plugin may list.
pub const MAX_URI_BYTES: usize = 2048;

/// Whether `uri` is an absolute URI: a scheme (a letter, then letters,
/// digits, `+`, `-`, `.`), `:`, and no whitespace or control characters.
fn absolute_uri(uri: &str) -> bool {
    let Some((scheme, _)) = uri.split_once(':') else {
        return false;
    };
    scheme.starts_with(|c: char| c.is_ascii_alphabetic())
        && scheme
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"+-.".contains(&b))
        && uri.len() <= MAX_URI_BYTES
        && !uri.chars().any(|c| c.is_whitespace() || c.is_control())
}

/// Validates the resources a plugin lists at fixed URIs.
fn check_resources(
    listed: Vec<wt::ResourceLink>,
    templates: &[wt::ResourceTemplate],
) -> Result<Vec<ResourceLink>, String> {
    let mut seen = HashSet::new();
    let mut out = Vec::with_capacity(listed.len());
    for r in listed {
        if !absolute_uri(&r.uri) {
            return Err(format!(
                "resource URI {:?} is not an absolute URI (a scheme, `:`, no spaces, at most {MAX_URI_BYTES} bytes)",
                r.uri
            ));
        }
        if r.uri.contains('{') || templates.iter().any(|t| t.uri_template == r.uri) {
            return Err(format!(
                "resource {:?} looks like a template: list it with `templates`",
                r.uri
            ));
        }
        if !seen.insert(r.uri.clone()) {
            return Err(format!("resource {:?} is listed twice", r.uri));
        }
        if r.name.is_empty() {
            return Err(format!("resource {:?} has no name", r.uri));
        }
        out.push(ResourceLink {
            uri: r.uri,
            name: r.name,
            title: r.title,
            description: r.description,
            mime_type: r.mime_type,
            size: r.size,
        });
    }
    Ok(out)
}

/// Most resource templates a plugin may list: every read is matched
/// against all of them.
const MAX_TEMPLATES: usize = 256;

/// Validates a plugin's resource templates (see [`crate::tool::template`]).
fn check_templates(listed: Vec<wt::ResourceTemplate>) -> Result<Vec<TemplateInfo>, String> {
    if listed.len() > MAX_TEMPLATES {
        return Err(format!(
            "it lists {} resource templates, more than {MAX_TEMPLATES}",
            listed.len()
        ));
    }
    let mut seen = HashSet::new();
    let mut out = Vec::with_capacity(listed.len());
    for t in listed {
        crate::tool::template::parse(&t.uri_template)
            .map_err(|why| format!("resource template {:?}: {why}", t.uri_template))?;
        if !absolute_uri(&t.uri_template) {
            return Err(format!(
                "resource template {:?} does not start with a URI scheme and `:`",
                t.uri_template
            ));
        }
        if !seen.insert(t.uri_template.clone()) {
            return Err(format!(
                "resource template {:?} is listed twice",
                t.uri_template
            ));
        }
        if t.name.is_empty() {
            return Err(format!(
                "resource template {:?} has no name",
                t.uri_template
            ));
        }
        out.push(TemplateInfo {
            uri_template: t.uri_template,
            name: t.name,
            title: t.title,
            description: t.description,
            mime_type: t.mime_type,
        });
    }
    Ok(out)
}

/// Validates a plugin's prompts: names as tools have them, arguments
/// named once.
fn check_prompts(listed: Vec<wt::Prompt>) -> Result<Vec<PromptInfo>, String> {
    let mut seen = HashSet::new();
    let mut out = Vec::with_capacity(listed.len());
    for p in listed {
        if !plain_name(&p.name) {
            return Err(format!(
                "prompt name {:?} is not 1 to 64 characters from A-Z, a-z, 0-9, `_` and `-`",
                p.name
            ));
        }
        if !seen.insert(p.name.clone()) {
            return Err(format!("prompt `{}` is declared twice", p.name));
        }
        let mut names = HashSet::new();
        if let Some(a) = p.arguments.iter().find(|a| !names.insert(a.name.as_str())) {
            return Err(format!(
                "prompt `{}` names argument `{}` twice",
                p.name, a.name
            ));
        }
        out.push(PromptInfo {
            name: p.name,
            title: p.title,
            description: p.description,
            arguments: p
                .arguments
                .into_iter()
                .map(|a| PromptArgument {
                    name: a.name,
                    description: a.description,
                    required: a.required,
                })
                .collect(),
        });
    }
    Ok(out)
}

/// 1 to 64 characters from A-Z, a-z, 0-9, `_` and `-`.
/// Letters, digits, `_` and `-`, in at most two parts joined by a dot
/// (a function of an exported interface is `<interface>.<function>`).
fn plain_name(name: &str) -> bool {
    name.len() <= 64
        && name.split('.').count() <= 2
        && name.split('.').all(|part| {
            !part.is_empty()
                && part
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
        })
}

/// The packages of the imports Moat links: WASI 0.2's and its own.
const SERVED_IMPORTS: &[&str] = &[
    "wasi:cli/",
    "wasi:clocks/",
    "wasi:filesystem/",
    "wasi:io/",
    "wasi:random/",
    "wasi:sockets/",
    "wasi:http/",
    "moat:plugin/",
];

/// Whether `component` exports any `moat:plugin` interface (then it must
/// speak the contract whole).
fn speaks_moat(component: &Component, engine: &wasmtime::Engine) -> bool {
    component
        .component_type()
        .exports(engine)
        .any(|(name, _)| name.starts_with("moat:plugin/"))
}

/// MCP requires tool schemas to describe JSON objects.
fn object_schema(text: &str) -> Result<Map<String, Value>, String> {
    match serde_json::from_str::<Value>(text) {
        Ok(Value::Object(map)) if map.get("type") == Some(&Value::from("object")) => Ok(map),
        Ok(_) => Err("must be a JSON Schema with \"type\": \"object\"".into()),
        Err(e) => Err(format!("is not JSON: {e}")),
    }
}
