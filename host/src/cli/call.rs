//! `moat call`: run one tool once, the plugin author's inner loop.

use super::{CallArgs, Loaded, load_config};
use crate::config::{Config, Served};
use crate::confirm::ConfirmPolicy;
use crate::runtime::{CallError, Runtime, RuntimeOptions};
use crate::service::{CallContext, Operations, ToolService};
use serde_json::json;
use std::path::Path;
use std::process::ExitCode;
use std::sync::Arc;

/// Builds a one-plugin config for a bare .wasm file from command-line
/// grants, through the same parser and checks as a config file.
pub(super) fn adhoc_config(args: &CallArgs) -> anyhow::Result<Config> {
    let wasm = std::path::absolute(&args.plugin)?;
    let name = wasm
        .file_stem()
        .map(|s| {
            s.to_string_lossy()
                .to_lowercase()
                .replace(|c: char| !c.is_ascii_alphanumeric() && c != '-', "_")
        })
        .filter(|s| s.starts_with(|c: char| c.is_ascii_lowercase()))
        .unwrap_or_else(|| "plugin".into());
    let mut plugin = toml::Table::new();
    plugin.insert("name".into(), name.into());
    plugin.insert("source".into(), wasm.to_string_lossy().into_owned().into());
    let mut grants = toml::Table::new();
    let mut dirs = Vec::new();
    for spec in &args.dirs {
        let mut parts = spec.splitn(3, ':');
        let (Some(host), Some(guest)) = (parts.next(), parts.next()) else {
            anyhow::bail!("--dir {spec:?}: expected HOST:GUEST[:ro|rw]");
        };
        let mut dir = toml::Table::new();
        dir.insert(
            "host".into(),
            std::path::absolute(host)?
                .to_string_lossy()
                .into_owned()
                .into(),
        );
        dir.insert("guest".into(), guest.into());
        dir.insert("mode".into(), parts.next().unwrap_or("ro").into());
        dirs.push(toml::Value::Table(dir));
    }
    grants.insert("dirs".into(), dirs.into());
    let mut env = toml::Table::new();
    for spec in &args.env {
        let Some((k, v)) = spec.split_once('=') else {
            anyhow::bail!("--env {spec:?}: expected NAME=VALUE");
        };
        env.insert(k.into(), v.into());
    }
    grants.insert("env".into(), env.into());
    for (key, value) in [
        ("fuel", args.fuel),
        ("memory_mib", args.memory_mib),
        ("timeout_ms", args.timeout_ms),
    ] {
        if let Some(v) = value {
            grants.insert(key.into(), toml::Value::Integer(i64::try_from(v)?));
        }
    }
    plugin.insert("grants".into(), grants.into());
    let mut root = toml::Table::new();
    root.insert("plugin".into(), vec![toml::Value::Table(plugin)].into());
    Ok(Config::parse(
        Path::new("<command line>"),
        &toml::to_string(&root)?,
    )?)
}

/// Runs one tool once, through the same admission (schema checks) and
/// the same result encoder as a client's call, and prints what a client
/// would get: the `CallToolResult`, or `{"error": …}` for a refusal.
pub(super) async fn call(args: CallArgs) -> anyhow::Result<ExitCode> {
    let arguments: serde_json::Value = serde_json::from_str(&args.arguments)
        .map_err(|e| anyhow::anyhow!("the arguments are not JSON: {e}"))?;
    let serde_json::Value::Object(arguments) = arguments else {
        anyhow::bail!("the arguments must be a JSON object, such as '{{\"name\": \"world\"}}'");
    };
    let bare_wasm = args.config.is_none() && args.plugin.ends_with(".wasm");
    let loaded = if bare_wasm {
        Loaded {
            config: adhoc_config(&args)?,
            text: None,
            label: args.plugin.clone(),
            _default: None,
        }
    } else {
        load_config(args.config.as_deref())?
    };
    let config = &loaded.config;
    let Some(served) = config.endpoint(if bare_wasm {
        None
    } else {
        args.tenant.as_deref()
    }) else {
        anyhow::bail!(
            "{} has no {}",
            loaded.label,
            args.tenant.as_deref().map_or(
                "top-level [[plugin]]; name a tenant with --tenant".to_string(),
                |t| format!("tenant `{t}`")
            )
        );
    };
    let selected = if bare_wasm {
        &served.plugins[0]
    } else {
        let Some(p) = served.plugins.iter().find(|p| p.name == args.plugin) else {
            let names: Vec<&str> = served.plugins.iter().map(|p| p.name.as_str()).collect();
            anyhow::bail!(
                "no plugin named `{}`; configured: {}",
                args.plugin,
                names.join(", ")
            );
        };
        p
    };
    // The endpoint as the author's own process sees it over stdio: only
    // the plugin called, no token; the audit log only when asked for. No
    // confirmation either: the person at the terminal asked for this call.
    let one = Served {
        plugins: std::slice::from_ref(selected),
        auth: None,
        confirm: &ConfirmPolicy::NONE,
        ..served
    };
    let runtime = Arc::new(Runtime::new(&RuntimeOptions::for_config(config))?);
    let ops = match (args.audit, &config.audit) {
        (false, _) => Operations::default(),
        (true, None) => anyhow::bail!("--audit: {} has no [audit] section", loaded.label),
        (true, Some(audit)) if audit.stdout => anyhow::bail!(
            "--audit: [audit] stdout = true would mix records into the result on stdout; write the audit log to a file"
        ),
        (true, Some(_)) => Operations::for_config(config)?,
    };
    let service = Arc::new(ToolService::load(runtime, one, &ops).await?);
    let plugin = &service.plugins()[0];
    // The plugin's own tool name first, else the name clients see.
    let tools = service.tools();
    let Some(name) = tools
        .iter()
        .find(|t| t.info.name == args.tool)
        .or_else(|| tools.iter().find(|t| t.name == args.tool))
        .map(|t| t.name.clone())
    else {
        let names: Vec<&str> = plugin.tools.iter().map(|t| t.name.as_str()).collect();
        anyhow::bail!(
            "plugin `{}` has no tool `{}`; it has: {}",
            plugin.name,
            args.tool,
            names.join(", ")
        );
    };
    let outcome = service.call(CallContext::default(), &name, arguments).await;
    ops.close().await;
    if let Ok(report) = &outcome {
        let s = report.stats;
        tracing::info!(
            "{} in {:.2} ms, fuel {}, peak memory {:.1} MiB, output {} bytes",
            report
                .result
                .as_ref()
                .map_or_else(CallError::kind, |o| if o.is_error {
                    "tool returned an error"
                } else {
                    "ok"
                }),
            s.duration.as_secs_f64() * 1e3,
            s.fuel_used,
            s.peak_memory_bytes as f64 / (1 << 20) as f64,
            s.output_bytes
        );
    }
    let (value, code) = match crate::mcp::answer(outcome) {
        Ok(result) => {
            let failed = result.is_error == Some(true);
            (serde_json::to_value(result)?, u8::from(failed))
        }
        Err(error) => (json!({ "error": error }), 2),
    };
    println!("{}", serde_json::to_string_pretty(&value)?);
    Ok(ExitCode::from(code))
}
