//! The `moat` command line: `serve`, `check`, `inspect` and `call`.
//!
//! Without `--config`, commands use the embedded default configuration
//! (see [`crate::defaults`]). Exit codes: 0 success; 1 the call's result is
//! an error (a tool error or a limit); 2 a usage, config or load problem.

use crate::config::Config;
use crate::defaults::DefaultConfig;
use crate::runtime::{CallError, Plugin, Runtime, RuntimeOptions};
use crate::service::ToolService;
use crate::transport;
use anyhow::Context;
use clap::{Parser, Subcommand, ValueEnum};
use serde_json::json;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;

/// Command-line arguments.
#[derive(Debug, Parser)]
#[command(
    name = "moat",
    version,
    about = "A WebAssembly-sandboxed plugin host for MCP tools"
)]
pub struct Cli {
    #[command(subcommand)]
    command: Command,
    /// Log format on stderr.
    #[arg(long, global = true, value_enum, default_value_t = LogFormat::Text)]
    log_format: LogFormat,
}

/// How logs are written.
#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum LogFormat {
    /// Readable on a terminal.
    Text,
    /// One JSON object per line.
    Json,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Serve MCP over stdio or Streamable HTTP.
    Serve(ServeArgs),
    /// Validate the config, load every plugin, print tools and grants.
    Check {
        /// The config file (default: the embedded configuration).
        #[arg(long, short)]
        config: Option<PathBuf>,
    },
    /// Show a plugin's tools, schemas and the interfaces it imports.
    Inspect {
        /// The component file (.wasm).
        plugin: PathBuf,
        /// Print JSON instead of text.
        #[arg(long)]
        json: bool,
    },
    /// Run one tool once and print its result as JSON.
    Call(CallArgs),
}

#[derive(Debug, clap::Args)]
struct ServeArgs {
    /// The config file (default: the embedded configuration with the
    /// `hello` and `files` example plugins).
    #[arg(long, short)]
    config: Option<PathBuf>,
    /// Serve on stdin and stdout (a local client launches Moat).
    #[arg(long, conflicts_with = "http")]
    stdio: bool,
    /// Serve Streamable HTTP on this address, such as 127.0.0.1:8080
    /// (default: `[http] listen` from the config).
    #[arg(long, value_name = "ADDR")]
    http: Option<SocketAddr>,
    /// Serve HTTP beyond loopback without `[auth]` (anyone who can reach
    /// the port can call every tool).
    #[arg(long)]
    insecure_no_auth: bool,
}

#[derive(Debug, clap::Args)]
struct CallArgs {
    /// The config file that names the plugin and its grants.
    #[arg(long, short)]
    config: Option<PathBuf>,
    /// A plugin name from the config, or a .wasm file to run with the grants
    /// given by the flags below.
    plugin: String,
    /// The tool's name within the plugin.
    tool: String,
    /// The arguments, a JSON object.
    #[arg(default_value = "{}")]
    arguments: String,
    /// For a .wasm file: grant a directory, HOST:GUEST[:ro|rw] (read-only by default).
    #[arg(long = "dir", value_name = "HOST:GUEST[:MODE]")]
    dirs: Vec<String>,
    /// For a .wasm file: grant an environment variable, NAME=VALUE.
    #[arg(long = "env", value_name = "NAME=VALUE")]
    env: Vec<String>,
    /// For a .wasm file: fuel budget.
    #[arg(long)]
    fuel: Option<u64>,
    /// For a .wasm file: memory cap in MiB.
    #[arg(long)]
    memory_mib: Option<u64>,
    /// For a .wasm file: wall-clock timeout in milliseconds.
    #[arg(long)]
    timeout_ms: Option<u64>,
}

/// Runs the command line; returns the process exit code.
pub fn main() -> ExitCode {
    let cli = Cli::parse();
    init_logging(cli.log_format, &cli.command);
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::from(2);
        }
    };
    let outcome = runtime.block_on(async {
        match cli.command {
            Command::Serve(args) => serve(args).await,
            Command::Check { config } => check(config.as_deref()).await,
            Command::Inspect { plugin, json } => inspect(&plugin, json).await,
            Command::Call(args) => call(args).await,
        }
    });
    match outcome {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::from(2)
        }
    }
}

fn init_logging(format: LogFormat, command: &Command) {
    use tracing_subscriber::EnvFilter;
    // `call` is the plugin author's loop: show what the plugin printed.
    let default = match command {
        Command::Call(_) => "info,moat::plugin=debug",
        _ => "info",
    };
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(default));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    match format {
        LogFormat::Text => builder.init(),
        LogFormat::Json => builder.json().init(),
    }
}

/// A configuration and, for the embedded one, the folder it lives in.
struct Loaded {
    config: Config,
    /// Where it came from, for messages.
    label: String,
    _default: Option<DefaultConfig>,
}

fn load_config(path: Option<&Path>) -> anyhow::Result<Loaded> {
    match path {
        Some(path) => Ok(Loaded {
            config: Config::load(path)?,
            label: path.display().to_string(),
            _default: None,
        }),
        None => {
            let default = DefaultConfig::unpack()?;
            Ok(Loaded {
                config: default.config.clone(),
                label: "the embedded default configuration".into(),
                _default: Some(default),
            })
        }
    }
}

async fn serve(args: ServeArgs) -> anyhow::Result<ExitCode> {
    let loaded = load_config(args.config.as_deref())?;
    let config = &loaded.config;
    let service = Arc::new(ToolService::load(config).await?);
    let tools = service.tools().len();
    if args.stdio {
        // stdout carries the protocol: everything else goes to stderr.
        eprintln!(
            "moat: serving {tools} tools from {} over stdio",
            loaded.label
        );
        transport::stdio::serve(service).await?;
        return Ok(ExitCode::SUCCESS);
    }
    let Some(addr) = args.http.or(config.http.listen) else {
        anyhow::bail!(
            "choose a transport: --stdio, or --http 127.0.0.1:8080 (or set [http] listen in the config)"
        );
    };
    if config.auth.is_none() && !addr.ip().is_loopback() && !args.insecure_no_auth {
        anyhow::bail!(
            "listening on {addr}, beyond loopback, without [auth] would let anyone who can reach it call every tool; \
             configure [auth], or pass --insecure-no-auth if that is really intended"
        );
    }
    transport::http::allow_lists(addr, &config.http)?;
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .with_context(|| format!("cannot listen on {addr}"))?;
    let local = listener.local_addr()?;
    let url = format!("http://{local}{}", config.http.path);
    println!("moat: serving {tools} tools from {} at {url}", loaded.label);
    println!(
        "moat: client configuration: {}",
        json!({ "mcpServers": { "moat": { "type": "http", "url": url } } })
    );
    match &config.auth {
        Some(auth) => println!(
            "moat: bearer tokens from {} for {} are required; metadata at {}",
            auth.token.issuer,
            auth.token.resource,
            crate::auth::endpoint::Endpoint::new(auth.clone()).metadata_url()
        ),
        None => println!(
            "moat: no authentication is configured: anyone who can reach {local} can call these tools"
        ),
    }
    transport::http::serve(
        service,
        listener,
        &config.http,
        config.auth.clone(),
        transport::http::shutdown_signal(),
    )
    .await?;
    Ok(ExitCode::SUCCESS)
}

async fn load_all(config: &Config) -> anyhow::Result<(Runtime, Vec<Plugin>)> {
    let runtime = Runtime::new(&RuntimeOptions::for_config(config))?;
    let mut plugins = Vec::with_capacity(config.plugins.len());
    for plugin in &config.plugins {
        plugins.push(runtime.load(plugin).await?);
    }
    Ok((runtime, plugins))
}

async fn check(path: Option<&Path>) -> anyhow::Result<ExitCode> {
    let loaded = load_config(path)?;
    let config = &loaded.config;
    let (_runtime, plugins) = load_all(config).await?;
    let mut tools = 0;
    for (plugin, cfg) in plugins.iter().zip(&config.plugins) {
        tools += plugin.tools.len();
        println!("plugin {}", plugin.name);
        println!("  source   {}", cfg.source.display());
        println!("  sha256   {}", plugin.sha256);
        println!(
            "  compile  {:.1} ms ({:?})",
            plugin.load.compile.as_secs_f64() * 1e3,
            plugin.load.cache
        );
        println!("  tools");
        for tool in &plugin.tools {
            println!("    {}.{}  {}", plugin.name, tool.name, tool.description);
        }
        print_grants(plugin);
    }
    println!(
        "ok: {} plugin(s), {tools} tool(s) from {}",
        plugins.len(),
        loaded.label
    );
    Ok(ExitCode::SUCCESS)
}

fn print_grants(plugin: &Plugin) {
    let g = &plugin.grants;
    println!("  grants");
    if g.dirs.is_empty() {
        println!("    dirs     none");
    }
    for dir in &g.dirs {
        println!(
            "    dir      {} -> {} ({:?})",
            dir.host.display(),
            dir.guest,
            dir.mode
        );
    }
    // Values may be secrets: only names are printed.
    let names: Vec<&str> = g.env.vars.iter().map(|(k, _)| k.as_str()).collect();
    println!(
        "    env      {}",
        if names.is_empty() {
            "none".to_string()
        } else {
            names.join(", ")
        }
    );
    let l = &g.limits;
    println!(
        "    limits   fuel {}, memory {} MiB, timeout {} ms, output {} bytes",
        l.fuel,
        l.memory_bytes >> 20,
        l.timeout.as_millis(),
        l.max_output_bytes
    );
}

/// Builds a one-plugin config for a bare .wasm file from command-line
/// grants, through the same parser and checks as a config file.
fn adhoc_config(args: &CallArgs) -> anyhow::Result<Config> {
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

async fn call(args: CallArgs) -> anyhow::Result<ExitCode> {
    let arguments: serde_json::Value = serde_json::from_str(&args.arguments)
        .map_err(|e| anyhow::anyhow!("the arguments are not JSON: {e}"))?;
    if !arguments.is_object() {
        anyhow::bail!("the arguments must be a JSON object, such as '{{\"name\": \"world\"}}'");
    }
    let bare_wasm = args.config.is_none() && args.plugin.ends_with(".wasm");
    let loaded = if bare_wasm {
        Loaded {
            config: adhoc_config(&args)?,
            label: args.plugin.clone(),
            _default: None,
        }
    } else {
        load_config(args.config.as_deref())?
    };
    let config = &loaded.config;
    let selected = if bare_wasm {
        config.plugins[0].clone()
    } else {
        let Some(p) = config.plugins.iter().find(|p| p.name == args.plugin) else {
            let names: Vec<&str> = config.plugins.iter().map(|p| p.name.as_str()).collect();
            anyhow::bail!(
                "no plugin named `{}`; configured: {}",
                args.plugin,
                names.join(", ")
            );
        };
        p.clone()
    };
    let one = Config {
        plugins: vec![selected],
        ..config.clone()
    };
    let (runtime, plugins) = load_all(&one).await?;
    let plugin = &plugins[0];
    if !plugin.tools.iter().any(|t| t.name == args.tool) {
        let names: Vec<&str> = plugin.tools.iter().map(|t| t.name.as_str()).collect();
        anyhow::bail!(
            "plugin `{}` has no tool `{}`; it has: {}",
            plugin.name,
            args.tool,
            names.join(", ")
        );
    }
    let report = runtime
        .call(plugin, &args.tool, &arguments.to_string())
        .await;
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
    let (value, failed) = match &report.result {
        Ok(output) => (output.to_mcp_json(), output.is_error),
        Err(e) => (
            json!({
                "content": [{ "type": "text", "text": e.to_string() }],
                "isError": true,
                "error": { "kind": e.kind(), "message": e.to_string() },
            }),
            true,
        ),
    };
    println!("{}", serde_json::to_string_pretty(&value)?);
    Ok(if failed {
        ExitCode::from(1)
    } else {
        ExitCode::SUCCESS
    })
}

async fn inspect(path: &Path, as_json: bool) -> anyhow::Result<ExitCode> {
    let config = adhoc_config(&CallArgs {
        config: None,
        plugin: path.to_string_lossy().into_owned(),
        tool: String::new(),
        arguments: String::new(),
        dirs: vec![],
        env: vec![],
        fuel: None,
        memory_mib: None,
        timeout_ms: None,
    })?;
    let runtime = Runtime::new(&RuntimeOptions::permissive(
        config.runtime.cache_dir.clone(),
    ))?;
    let plugin = runtime.load(&config.plugins[0]).await?;
    if as_json {
        let value = json!({
            "sha256": plugin.sha256,
            "tools": plugin.tools,
            "imports": plugin.imports,
        });
        println!("{}", serde_json::to_string_pretty(&value)?);
        return Ok(ExitCode::SUCCESS);
    }
    println!("{}", path.display());
    println!("sha256  {}", plugin.sha256);
    println!("tools");
    for tool in &plugin.tools {
        println!("  {}  {}", tool.name, tool.description);
        println!(
            "    annotations    {}",
            serde_json::to_string(&tool.annotations)?
        );
        println!(
            "    input schema   {}",
            serde_json::to_string(&tool.input_schema)?
        );
        if let Some(schema) = &tool.output_schema {
            println!("    output schema  {}", serde_json::to_string(schema)?);
        }
    }
    println!("imports (what it could use if granted)");
    for import in &plugin.imports {
        println!("  {import}");
    }
    Ok(ExitCode::SUCCESS)
}
