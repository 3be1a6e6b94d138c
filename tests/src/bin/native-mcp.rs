//! The benchmarks' native baseline as a process of its own, so a client
//! outside it measures it the way it measures the `moat` binary:
//! `native-mcp --stdio CORPUS` or `native-mcp --http ADDR CORPUS` (stateless,
//! JSON answers, Nagle off, as Moat serves). No log output.

use moat_tests::native::NativeTools;
use rmcp::ServiceExt;
use rmcp::transport::streamable_http_server::session::local::LocalSessionManager;
use rmcp::transport::streamable_http_server::{StreamableHttpServerConfig, StreamableHttpService};
use std::path::Path;

/// The allocator the `moat` binary ships with.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[tokio::main(worker_threads = 2)]
async fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let usage = "usage: native-mcp --stdio CORPUS | --http ADDR CORPUS";
    // The corpus folder is also the one `data.select` reads from.
    let tools = |corpus: &str| NativeTools::new(Path::new(corpus), Path::new(corpus));
    match args.iter().map(String::as_str).collect::<Vec<_>>()[..] {
        ["--stdio", corpus] => {
            let running = tools(corpus).serve(rmcp::transport::stdio()).await?;
            running.waiting().await?;
        }
        ["--http", addr, corpus] => {
            let native = tools(corpus);
            let config = StreamableHttpServerConfig::default()
                .with_legacy_session_mode(false)
                .with_json_response(true);
            let service = StreamableHttpService::new(
                move || Ok(native.clone()),
                LocalSessionManager::default().into(),
                config,
            );
            let app = axum::Router::new().nest_service("/mcp", service);
            let listener = tokio::net::TcpListener::bind(addr).await?;
            use axum::serve::ListenerExt;
            let listener = listener.tap_io(|tcp| {
                let _ = tcp.set_nodelay(true);
            });
            axum::serve(listener, app).await?;
        }
        _ => anyhow::bail!("{usage}"),
    }
    Ok(())
}
