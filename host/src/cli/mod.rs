//! The `moat` command line: `serve`, `reload`, `check`, `lock`, `inspect`,
//! `call`, `new`, `audit`, `connections` and `probe`.
//!
//! Without `--config`, commands use the embedded default configuration
//! (see [`crate::defaults`]). Exit codes: 0 success; 1 the call's result is
//! an error (a tool error or a limit); 2 a usage, config or load problem.

mod audit;
mod call;
mod check;
mod connections;
mod new;
mod probe;
mod serve;

use crate::config::Config;
use crate::defaults::DefaultConfig;
use clap::{Parser, Subcommand, ValueEnum};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

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
    /// Resolve every plugin source (tags, URLs, files) to the digest it has
    /// now, check its signature, and write the lock file beside the config
    /// (`moat.toml` → `moat.lock`), which `serve --locked` runs exactly.
    Lock {
        /// The config file.
        #[arg(long, short)]
        config: PathBuf,
    },
    /// Show a plugin's tools, schemas and the interfaces it imports.
    Inspect {
        /// The plugin: a component file (.wasm), an oci:// reference, or an
        /// https:// URL (with --sha256).
        plugin: String,
        /// The digest an https:// source must have.
        #[arg(long)]
        sha256: Option<String>,
        /// Take [registries], [trust] and [runtime] from this config: how
        /// to reach the registry, and whose signature to check.
        #[arg(long, short)]
        config: Option<PathBuf>,
        /// The WIT of a component with exports of its own (a .wit file, its
        /// folder, or a binary WIT package): its doc comments describe the
        /// tools.
        #[arg(long, value_name = "PATH")]
        wit: Option<PathBuf>,
        /// Print JSON instead of text.
        #[arg(long)]
        json: bool,
    },
    /// Ask a running `moat serve` to re-read its config (as SIGHUP does):
    /// new, removed and changed plugins are swapped in without dropping a
    /// call. Exit 0 when it reloaded, 1 when it kept the running plugins.
    Reload {
        /// The admin address of the running server (default: `[admin]
        /// listen` of --config).
        #[arg(long, value_name = "ADDR")]
        admin: Option<SocketAddr>,
        /// The config whose `[admin] listen` names the address.
        #[arg(long, short)]
        config: Option<PathBuf>,
        /// How long to wait for the reload, in milliseconds.
        #[arg(long, default_value_t = 300_000)]
        timeout_ms: u64,
    },
    /// Run one tool once and print its result as JSON.
    Call(CallArgs),
    /// Write a new plugin project into ./NAME: one tool, its test, the
    /// build command and a moat.toml to try it with `moat call`.
    New {
        /// The plugin's name (a-z, 0-9, `_`, `-`): the folder, and the
        /// prefix of its tools.
        name: String,
        /// The plugin's language.
        #[arg(long, value_enum, default_value_t = new::Lang::Rust)]
        lang: new::Lang,
        /// For Rust: the moat-plugin SDK folder (plugins/sdk of a Moat
        /// checkout; default: the checkout this moat was built from).
        #[arg(long, value_name = "PATH")]
        sdk: Option<PathBuf>,
    },
    /// Work with audit logs.
    #[command(subcommand)]
    Audit(AuditCommand),
    /// Callers' credentials for upstream connections.
    #[command(subcommand)]
    Connections(ConnectionsCommand),
    /// GET an http:// URL and exit 0 when it answers 2xx: a health check
    /// for images that have no curl (the container's HEALTHCHECK).
    Probe {
        /// What to ask.
        #[arg(default_value = "http://127.0.0.1:8080/healthz")]
        url: String,
        /// How long to wait for the answer, in milliseconds.
        #[arg(long, default_value_t = 3000)]
        timeout_ms: u64,
    },
}

#[derive(Debug, Subcommand)]
enum AuditCommand {
    /// Check an audit log's hash chain (with its rotated files) and name
    /// the first edited, missing or reordered record.
    Verify {
        /// The audit log (the current file; `FILE.1`, `FILE.2`, … are found).
        file: PathBuf,
        /// Also check the signed checkpoints with this public key (64 hex
        /// digits, or the `.pub` file `keygen` wrote).
        #[arg(long)]
        key: Option<String>,
        /// With --key: the log must end with the checkpoint Moat writes at
        /// a clean shutdown (nothing after the last signature).
        #[arg(long, requires = "key")]
        closed: bool,
    },
    /// Make an Ed25519 key that signs audit checkpoints: the private key
    /// in FILE (mode 0600), the public key in FILE.pub.
    Keygen {
        /// Where to write the private key (never overwritten).
        file: PathBuf,
    },
}

#[derive(Debug, Subcommand)]
enum ConnectionsCommand {
    /// Print a fresh random key for [credentials] key (base64, 32 bytes).
    Key,
    /// List the stored credentials: tenant, subject, connection, when
    /// stored and when they expire (never the secrets).
    List {
        /// The config whose [credentials] to read.
        #[arg(long, short)]
        config: PathBuf,
    },
    /// Delete a caller's credentials: their next call that needs one asks
    /// them to connect again.
    Revoke {
        /// The config whose [credentials] to change.
        #[arg(long, short)]
        config: PathBuf,
        /// The caller's tenant (default: the top-level endpoint).
        #[arg(long)]
        tenant: Option<String>,
        /// The caller's subject (the token's `sub`).
        #[arg(long, required_unless_present = "local")]
        subject: Option<String>,
        /// The one local user who runs Moat over stdio, instead of a
        /// token's subject.
        #[arg(long, conflicts_with = "subject")]
        local: bool,
        /// Only this connection (default: every one).
        #[arg(long)]
        connection: Option<String>,
    },
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
    /// Serve `/metrics` on this address, such as 127.0.0.1:9090 (default:
    /// `[admin] listen` from the config).
    #[arg(long, value_name = "ADDR")]
    admin: Option<SocketAddr>,
    /// With --stdio: serve this tenant's plugins instead of the top-level
    /// ones.
    #[arg(long, requires = "stdio")]
    tenant: Option<String>,
    /// Run only what the lock file beside the config (`moat lock`) names:
    /// every plugin at its locked digest, signed by its locked signer.
    #[arg(long, requires = "config")]
    locked: bool,
}

#[derive(Debug, clap::Args)]
struct CallArgs {
    /// The config file that names the plugin and its grants.
    #[arg(long, short)]
    config: Option<PathBuf>,
    /// Take the plugin from this tenant's `[tenants.<name>]` table.
    #[arg(long)]
    tenant: Option<String>,
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
    /// Write the call's audit record to the config's `[audit]` log, as a
    /// served call would.
    #[arg(long, requires = "config")]
    audit: bool,
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
            Command::Serve(args) => serve::serve(args).await,
            Command::Check { config } => check::check(config.as_deref()).await,
            Command::Lock { config } => check::lock(&config).await,
            Command::Inspect {
                plugin,
                sha256,
                config,
                wit,
                json,
            } => {
                let at = check::Inspected {
                    source: &plugin,
                    sha256: sha256.as_deref(),
                    config: config.as_deref(),
                    wit: wit.as_deref(),
                };
                check::inspect(at, json).await
            }
            Command::Call(args) => call::call(args).await,
            Command::New { name, lang, sdk } => new::new(&name, lang, sdk.as_deref()),
            Command::Audit(AuditCommand::Verify { file, key, closed }) => {
                audit::verify_chain(&file, key.as_deref(), closed)
            }
            Command::Audit(AuditCommand::Keygen { file }) => audit::keygen(&file),
            Command::Connections(command) => connections::run(command).await,
            Command::Reload {
                admin,
                config,
                timeout_ms,
            } => {
                probe::reload(
                    admin,
                    config.as_deref(),
                    std::time::Duration::from_millis(timeout_ms),
                )
                .await
            }
            Command::Probe { url, timeout_ms } => {
                probe::probe(&url, std::time::Duration::from_millis(timeout_ms)).await
            }
        }
    });
    // A call stuck in a file operation (a FIFO nobody writes to) keeps its
    // blocking thread; the command has answered, so do not wait for it.
    runtime.shutdown_timeout(std::time::Duration::from_millis(500));
    match outcome {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::from(2)
        }
    }
}

fn init_logging(format: LogFormat, command: &Command) {
    use tracing_subscriber::filter::{EnvFilter, FilterExt, filter_fn};
    use tracing_subscriber::prelude::*;
    // What an operator needs by default: start-up, reloads, refusals and
    // errors. rmcp logs every session's start and end at INFO, and in
    // stateless mode every request is a session (three lines, ~800 bytes
    // a call): those are for debugging. `call` is the plugin author's
    // loop: show what the plugin printed.
    let default = match command {
        Command::Call(_) => "info,moat::plugin=debug,rmcp=warn",
        _ => "info,rmcp=warn",
    };
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(default));
    // The most verbose level the filter lets through: `log` records of the
    // dependencies (wasmtime logs at trace on every instantiation) above it
    // are dropped where they are made, instead of each being converted to
    // an event and filtered (several per call).
    let hint = filter
        .max_level_hint()
        .unwrap_or(tracing::level_filters::LevelFilter::TRACE);
    // rmcp's debug and trace events print whole requests and results,
    // arguments and secrets included; they never reach the log, whatever
    // RUST_LOG says. (The hint is the env filter's, which `and` asks
    // first: keep it the left side.)
    //
    // rmcp's service also warns of every error answer (`response error`,
    // the one event there with both an `id` and an `error`), which Moat's
    // own refusal line and the audit already name: one line per refusal,
    // not two, so a caller sending bad requests fills the log half as
    // fast. Its other warnings (a rejected request, a failed send) stay.
    let filter = filter.and(
        filter_fn(|meta| {
            let verbose = meta.target().starts_with("rmcp") && *meta.level() > tracing::Level::INFO;
            let answer_error = meta.target() == "rmcp::service"
                && meta.fields().field("id").is_some()
                && meta.fields().field("error").is_some();
            !(verbose || answer_error)
        })
        .with_max_level_hint(hint),
    );
    // Colours only on a terminal: a log file or collector gets plain text.
    let layer = tracing_subscriber::fmt::layer()
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()));
    match format {
        LogFormat::Text => tracing_subscriber::registry()
            .with(layer.with_filter(filter))
            .init(),
        LogFormat::Json => tracing_subscriber::registry()
            .with(layer.json().with_filter(filter))
            .init(),
    }
}

/// A configuration and, for the embedded one, the folder it lives in.
struct Loaded {
    config: Config,
    /// The file's text as parsed; `None` for the embedded configuration.
    text: Option<String>,
    /// Where it came from, for messages.
    label: String,
    _default: Option<DefaultConfig>,
}

fn load_config(path: Option<&Path>) -> anyhow::Result<Loaded> {
    match path {
        Some(path) => {
            let (config, text) = Config::load_text(path)?;
            Ok(Loaded {
                config,
                text: Some(text),
                label: path.display().to_string(),
                _default: None,
            })
        }
        None => {
            let default = DefaultConfig::unpack()?;
            Ok(Loaded {
                config: default.config.clone(),
                text: None,
                label: "the embedded default configuration".into(),
                _default: Some(default),
            })
        }
    }
}
