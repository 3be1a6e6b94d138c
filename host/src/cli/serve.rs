//! `moat serve`: MCP over stdio or Streamable HTTP.

use super::{Loaded, ServeArgs, load_config};
use crate::auth::endpoint::Endpoint;
use crate::config::Config;
use crate::mcp::{LiveEndpoint, Serving};
use crate::reload::Reloader;
use crate::runtime::{Runtime, RuntimeOptions};
use crate::service::Live;
use crate::service::{Operations, ToolService};
use crate::source::lock::Lock;
use crate::transport;
use crate::transport::http::Mount;
use anyhow::Context;
use serde_json::json;
use std::process::ExitCode;
use std::sync::Arc;

/// Loads the config and serves it until the client leaves or a signal.
pub(super) async fn serve(args: ServeArgs) -> anyhow::Result<ExitCode> {
    let loaded = load_config(args.config.as_deref())?;
    let config = &loaded.config;
    let handles = config
        .all_plugins()
        .map(|p| p.grants.limits.max_handles)
        .max()
        .unwrap_or_default();
    raise_open_file_limit(config.runtime.max_instances, handles);
    let admin = match args.admin.or(config.admin.listen) {
        None => None,
        Some(addr) => {
            let listener = tokio::net::TcpListener::bind(addr)
                .await
                .with_context(|| format!("cannot listen on {addr} for /metrics"))?;
            // Over stdio, stdout is the protocol's.
            eprintln!(
                "moat: metrics at http://{0}/metrics; POST http://{0}/reload re-reads the config",
                listener.local_addr()?
            );
            Some(listener)
        }
    };
    if args.stdio {
        return serve_stdio(&loaded, &args, admin).await;
    }
    let Some(addr) = args.http.or(config.http.listen) else {
        anyhow::bail!(
            "choose a transport: --stdio, or --http 127.0.0.1:8080 (or set [http] listen in the config)"
        );
    };
    let open: Vec<_> = config
        .served()
        .iter()
        .filter(|s| s.auth.is_none())
        .map(|s| s.path.to_string())
        .collect();
    if !open.is_empty() && !addr.ip().is_loopback() && !args.insecure_no_auth {
        anyhow::bail!(
            "listening on {addr}, beyond loopback, without [auth] for {} would let anyone who can reach it call those tools; \
             configure [auth] (for a tenant, [tenants.<name>.auth]), or pass --insecure-no-auth if that is really intended",
            open.join(", ")
        );
    }
    transport::http::allow_lists(addr, &config.http)?;
    // With the audit log on stdout, stdout holds records alone, so that
    // `moat audit verify` can read what a log collector kept.
    let audit_on_stdout = config.audit.as_ref().is_some_and(|a| a.stdout);
    let say = |line: String| {
        if audit_on_stdout {
            eprintln!("{line}");
        } else {
            println!("{line}");
        }
    };
    let ops = Operations::for_config(config)?;
    let options = runtime_options(config, &args)?;
    let runtime = Arc::new(Runtime::new(&options)?);
    let services = ToolService::load_all(config, runtime.clone(), &ops).await?;
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .with_context(|| format!("cannot listen on {addr}"))?;
    let local = listener.local_addr()?;
    let mut mounts = Vec::with_capacity(services.len());
    let mut endpoints = Vec::with_capacity(services.len());
    for (served, service) in services {
        let url = format!("http://{local}{}", served.path);
        let whose = match served.tenant {
            Some(tenant) => format!("tenant {tenant}"),
            None => loaded.label.clone(),
        };
        say(format!(
            "moat: serving {} tools from {whose} at {url}",
            service.tools().len()
        ));
        match served.auth {
            Some(auth) => say(format!(
                "moat: bearer tokens from {} for {} are required; metadata at {}",
                auth.token.issuer,
                auth.token.resource,
                Endpoint::new(auth.clone()).metadata_url()
            )),
            None => {
                say(format!(
                    "moat: no authentication is configured: anyone who can reach {url} can call these tools"
                ));
                if let Some(note) = unverified(served.plugins, &url, true) {
                    say(note);
                }
            }
        }
        let mount = Mount::new(served, service);
        endpoints.push((served.tenant.map(str::to_string), mount.live.clone()));
        mounts.push(mount);
    }
    let reloader = reloader(&loaded, &args, options, runtime, &ops, endpoints);
    start_admin(admin, reloader.clone());
    reload_on_hangup(reloader);
    if let [only] = &mounts[..] {
        let url = format!("http://{local}{}", only.path);
        say(format!(
            "moat: client configuration: {}",
            json!({ "mcpServers": { "moat": { "type": "http", "url": url } } })
        ));
    }
    transport::http::serve(
        mounts,
        listener,
        &config.http,
        ops.connect.clone(),
        transport::http::shutdown_signal(),
    )
    .await?;
    ops.close().await;
    Ok(ExitCode::SUCCESS)
}

/// Serves one endpoint's tools over stdio, without tokens or policy: the
/// process that launched Moat is trusted with every tool of the endpoint.
async fn serve_stdio(
    loaded: &Loaded,
    args: &ServeArgs,
    admin: Option<tokio::net::TcpListener>,
) -> anyhow::Result<ExitCode> {
    let (config, label, tenant) = (&loaded.config, &loaded.label, args.tenant.as_deref());
    let Some(mut served) = config.endpoint(tenant) else {
        let tenants: Vec<&str> = config.tenants.iter().map(|t| t.name.as_str()).collect();
        anyhow::bail!(
            "{} has no {}; choose one of its tenants with --tenant: {}",
            label,
            tenant.map_or("top-level [[plugin]]".to_string(), |t| format!(
                "tenant `{t}`"
            )),
            tenants.join(", ")
        );
    };
    served.auth = None;
    if config.audit.as_ref().is_some_and(|a| a.stdout) {
        anyhow::bail!(
            "[audit] stdout = true cannot be used with --stdio, where stdout carries the protocol; write the audit log to a file"
        );
    }
    let ops = Operations::for_config(config)?;
    let options = runtime_options(config, args)?;
    let runtime = Arc::new(Runtime::new(&options)?);
    let service = Arc::new(ToolService::load(runtime.clone(), served, &ops).await?);
    // stdout carries the protocol: everything else goes to stderr.
    eprintln!(
        "moat: serving {} tools from {} over stdio",
        service.tools().len(),
        tenant.map_or(label.to_string(), |t| format!("tenant {t} of {label}"))
    );
    if let Some(note) = unverified(served.plugins, "stdio", false) {
        eprintln!("{note}");
    }
    if let Some(connect) = ops.connect.clone() {
        // The local user connects accounts in their browser, on this
        // machine only.
        let address = connect.local_address();
        let listener = tokio::net::TcpListener::bind(address)
            .await
            .with_context(|| format!("cannot listen on {address} for the connect pages"))?;
        let address = listener.local_addr()?;
        connect.serving_locally(address);
        eprintln!("moat: pages to connect accounts at http://{address}/connect/…");
        let pages = connect.routes(Vec::new());
        tokio::spawn(async move {
            if let Err(e) = axum::serve(listener, pages).await {
                tracing::error!("the connect pages stopped: {e}");
            }
        });
    }
    let live = Live::new(Serving::new(service));
    let endpoints = vec![(tenant.map(str::to_string), live.clone())];
    let reloader = reloader(loaded, args, options, runtime, &ops, endpoints);
    start_admin(admin, reloader.clone());
    reload_on_hangup(reloader);
    transport::stdio::serve(live).await?;
    ops.close().await;
    Ok(ExitCode::SUCCESS)
}

/// What to tell the operator when `plugins` name the caller in their
/// grants at `place`, where nobody is verified (nor, unless `owned`, owns
/// connections: over stdio the local user does).
fn unverified(plugins: &[crate::config::PluginConfig], place: &str, owned: bool) -> Option<String> {
    let named: Vec<&str> = plugins
        .iter()
        .filter(|p| p.grants.per_caller() || (owned && !p.grants.net.connections.is_empty()))
        .map(|p| p.name.as_str())
        .collect();
    (!named.is_empty()).then(|| {
        format!(
            "moat: {} name the caller in their grants, and nobody is verified over {place}: \
             their calls there get no such folder, variable or credential",
            named.join(", ")
        )
    })
}

/// The reloader of the config file served; `None` for the embedded
/// configuration, which cannot change.
fn reloader(
    loaded: &Loaded,
    args: &ServeArgs,
    options: RuntimeOptions,
    runtime: Arc<Runtime>,
    ops: &Operations,
    endpoints: Vec<(Option<String>, LiveEndpoint)>,
) -> Option<Arc<Reloader>> {
    let (path, text) = (args.config.clone()?, loaded.text.clone()?);
    Some(Arc::new(Reloader::new(
        path,
        args.locked,
        args.stdio,
        text,
        options,
        runtime,
        ops.clone(),
        endpoints,
    )))
}

/// Serves `/metrics` and `/reload` on the admin listener, if there is one.
fn start_admin(listener: Option<tokio::net::TcpListener>, reloader: Option<Arc<Reloader>>) {
    if let Some(listener) = listener {
        tokio::spawn(async move {
            if let Err(e) = transport::admin::serve(listener, reloader).await {
                tracing::error!("the admin listener failed: {e:#}");
            }
        });
    }
}

/// Reloads at each SIGHUP (which would otherwise end the process).
fn reload_on_hangup(reloader: Option<Arc<Reloader>>) {
    let mut hangups = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup()) {
        Ok(signals) => signals,
        Err(e) => {
            tracing::warn!("cannot listen for SIGHUP; reload with `moat reload`: {e}");
            return;
        }
    };
    tokio::spawn(async move {
        while hangups.recv().await.is_some() {
            match &reloader {
                // The outcome is logged and counted by the reload itself.
                Some(reloader) => {
                    let _ = reloader.reload().await;
                }
                None => tracing::warn!(
                    "SIGHUP: nothing to reload; the embedded default configuration is served (start with --config to reload one)"
                ),
            }
        }
    });
}

/// The runtime for `config`; with `--locked`, bound to the lock file
/// beside the config.
fn runtime_options(config: &Config, args: &ServeArgs) -> anyhow::Result<RuntimeOptions> {
    let options = RuntimeOptions::for_config(config);
    if !args.locked {
        return Ok(options);
    }
    let path = args
        .config
        .as_deref()
        .map(Lock::beside)
        .expect("clap requires --config with --locked");
    Ok(options.locked(Arc::new(Lock::read(&path)?)))
}

/// Descriptors kept for everything but calls: listeners, connections,
/// the audit log, the compile cache.
const DESCRIPTOR_HEADROOM: u64 = 1024;

/// Raises this process's soft limit on open files to its hard limit (a
/// call may hold up to its `max_handles` files, and accepting a
/// connection needs a descriptor too), and warns when a full instance
/// pool of calls holding `handles` each could still use them all up.
fn raise_open_file_limit(max_instances: u32, handles: usize) {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit and setrlimit only read and write the struct given.
    let current = unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) != 0 {
            return;
        }
        let raised = libc::rlimit {
            rlim_cur: limit.rlim_max,
            ..limit
        };
        if limit.rlim_cur < limit.rlim_max && libc::setrlimit(libc::RLIMIT_NOFILE, &raised) == 0 {
            raised.rlim_cur
        } else {
            limit.rlim_cur
        }
    };
    let needed = u64::from(max_instances) * handles as u64 + DESCRIPTOR_HEADROOM;
    if current < needed {
        tracing::warn!(
            open_files = current,
            needed,
            "{max_instances} instances holding {handles} files each could use up this process's \
             open-file limit and stall new connections; raise it (ulimit -n), or lower [runtime] \
             max_instances or the plugins' max_handles"
        );
    }
}
