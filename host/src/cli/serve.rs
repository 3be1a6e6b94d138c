//! `moat serve`: MCP over stdio or Streamable HTTP.

use super::{ServeArgs, load_config};
use crate::service::ToolService;
use crate::transport;
use anyhow::Context;
use serde_json::json;
use std::process::ExitCode;
use std::sync::Arc;

/// Loads the config and serves it until the client leaves or a signal.
pub(super) async fn serve(args: ServeArgs) -> anyhow::Result<ExitCode> {
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
