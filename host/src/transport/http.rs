//! MCP over Streamable HTTP, with health endpoints and graceful shutdown.
//!
//! rmcp's Streamable HTTP service does the protocol work: sessions (IDs
//! from a CSPRNG) or stateless mode, `MCP-Protocol-Version` checks (400),
//! the body limit (413), and the `Host` and `Origin` checks against DNS
//! rebinding (403). This module chooses safe defaults for those checks from
//! the bound address, turns malformed bodies into JSON-RPC errors, and adds
//! `/healthz` and `/readyz`, a per-request timeout, and a shutdown that
//! lets in-flight calls finish. Each endpoint (the top-level one and every
//! tenant's) is mounted at its own path with its own sessions, token
//! checks and RFC 9728 metadata.

use super::admission::{EndpointState, InFlight, admit};
use super::direct::Direct;
use super::forwarded::{self, TrustedProxies};
use super::rebinding::Expected;
use super::sessions::Sessions;
use crate::auth::AuthConfig;
use crate::auth::endpoint::Endpoint;
use crate::config::{HttpConfig, Served};
use crate::credentials::connect::Connect;
use crate::mcp::{LiveEndpoint, McpHandler, Serving};
use crate::service::{Live, SharedService};
use anyhow::{Context, bail};
use axum::Router;
use axum::extract::State;
use axum::http::StatusCode;
use axum::middleware;
use axum::routing::get;
use axum::serve::{ListenerExt, TapIo};
use rmcp::transport::streamable_http_server::session::local::LocalSessionManager;
use rmcp::transport::streamable_http_server::{StreamableHttpServerConfig, StreamableHttpService};
use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;
use tokio::net::{TcpListener, TcpStream};
use tokio_util::sync::CancellationToken;
use tower::ServiceBuilder;
use tower_http::timeout::TimeoutLayer;

/// The root form of the RFC 9728 metadata URL.
const ROOT_METADATA: &str = "/.well-known/oauth-protected-resource";
/// Names a loopback-bound server accepts in `Host` by default.
const LOOPBACK_HOSTS: &[&str] = &["localhost", "127.0.0.1", "::1"];
/// Origins a loopback-bound server accepts by default (local pages only).
const LOOPBACK_ORIGINS: &[&str] = &["http://localhost:*", "http://127.0.0.1:*", "http://[::1]:*"];

/// The `Host` and `Origin` allow-lists for a server bound to `addr`.
/// Fails for a non-loopback address without configured hosts: rebinding
/// protection needs the names clients really use.
pub fn allow_lists(
    addr: SocketAddr,
    http: &HttpConfig,
) -> anyhow::Result<(Vec<String>, Vec<String>)> {
    let loopback = addr.ip().is_loopback();
    let hosts = match (&http.allowed_hosts, loopback) {
        (Some(hosts), _) => hosts.clone(),
        (None, true) => LOOPBACK_HOSTS.iter().map(|h| h.to_string()).collect(),
        (None, false) => bail!(
            "listening on {addr}, which is not a loopback address, needs [http] allowed_hosts: \
             the host names clients use to reach this server (for example [\"tools.example.com\"]), \
             so that DNS-rebinding attacks are refused; allowed_hosts = [\"*\"] turns the check off"
        ),
    };
    let origins = match (&http.allowed_origins, loopback) {
        (Some(origins), _) => origins.clone(),
        (None, true) => LOOPBACK_ORIGINS.iter().map(|o| o.to_string()).collect(),
        (None, false) => Vec::new(),
    };
    Ok((hosts, origins))
}

/// One MCP endpoint to serve.
pub struct Mount {
    /// Its path, such as `/mcp` or `/t/acme/mcp`.
    pub path: String,
    /// Its tools, as a reload replaces them.
    pub live: LiveEndpoint,
    /// Its token rules; `None`: no authentication.
    pub auth: Option<AuthConfig>,
    /// The tenant it serves; `None`: the top-level endpoint.
    pub tenant: Option<String>,
}

impl Mount {
    /// Mounts `service`, loaded for the endpoint `served`.
    pub fn new(served: Served<'_>, service: SharedService) -> Mount {
        Mount {
            path: served.path.to_string(),
            live: Live::new(Serving::new(service)),
            auth: served.auth.cloned(),
            tenant: served.tenant.map(str::to_string),
        }
    }
}

/// Serves `mounts` (and, with `[credentials]`, the pages where callers
/// connect accounts) on `listener` until `shutdown` resolves, then stops
/// taking requests, waits (up to the grace period) for running calls, and
/// closes every session.
pub async fn serve(
    mounts: Vec<Mount>,
    listener: TcpListener,
    http: &HttpConfig,
    connect: Option<Arc<Connect>>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    let addr = listener.local_addr()?;
    let (hosts, origins) = allow_lists(addr, http)?;
    let sessions = CancellationToken::new();
    let in_flight = Arc::new(InFlight::default());
    let ready = Arc::new(Readiness {
        serving: AtomicBool::new(true),
        services: mounts.iter().map(|m| m.live.clone()).collect(),
    });
    let expected = Arc::new(Expected::new(&hosts, &origins));
    let mut app = Router::new();
    let protected = mounts.iter().filter(|m| m.auth.is_some()).count();
    let mut verifiers = Vec::new();
    for mount in mounts {
        let auth = mount.auth.map(|a| Arc::new(Endpoint::new(a)));
        if let Some(endpoint) = &auth {
            verifiers.push((mount.tenant.clone(), endpoint.clone()));
        }
        let manager = Arc::new(LocalSessionManager::default());
        let mut handler = McpHandler::new(mount.live.clone());
        if http.stateless {
            handler = handler.without_server_requests();
        }
        let mcp = mcp_service(
            handler.clone(),
            manager.clone(),
            http,
            &hosts,
            &origins,
            &sessions,
        );
        let state = EndpointState {
            sessions: (!http.stateless).then(|| Arc::new(Sessions::new(manager))),
            expected: expected.clone(),
            in_flight: in_flight.clone(),
            max_body_bytes: http.max_body_bytes,
            auth: auth.clone(),
            live: mount.live.clone(),
            direct: http
                .stateless
                .then(|| Direct::new(handler, sessions.child_token())),
        };
        let mcp = ServiceBuilder::new()
            .layer(TimeoutLayer::with_status_code(
                StatusCode::REQUEST_TIMEOUT,
                http.request_timeout,
            ))
            .layer(middleware::from_fn_with_state(state, admit))
            .service(mcp);
        app = app.nest_service(&mount.path, mcp);
        if let Some(endpoint) = &auth {
            // RFC 9728: at the path-inserted URL, and at the root form too
            // when only one endpoint is protected, so it is unambiguous.
            let document = axum::Json(endpoint.metadata());
            let metadata = move || {
                let document = document.clone();
                async move { document }
            };
            let path = endpoint.metadata_path();
            if protected == 1 && path != ROOT_METADATA {
                app = app.route(ROOT_METADATA, get(metadata.clone()));
            }
            app = app.route(&path, get(metadata));
        }
    }
    let mut app = app
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/readyz", get(readyz))
        .with_state(ready.clone());
    if let Some(connect) = connect {
        connect.listening_at(addr)?;
        app = app.merge(connect.routes(verifiers));
    }
    let app = app.layer(middleware::from_fn_with_state(
        Arc::new(TrustedProxies::new(
            http.trusted_proxies.clone(),
            http.proxy_headers,
        )),
        forwarded::apply,
    ));

    let stop_accepting = CancellationToken::new();
    let server = tokio::spawn({
        let stop = stop_accepting.clone();
        // The peer's address names callers without a token for rate limits.
        axum::serve(
            without_nagle(listener),
            app.into_make_service_with_connect_info::<SocketAddr>(),
        )
        .with_graceful_shutdown(async move { stop.cancelled().await })
        .into_future()
    });

    shutdown.await;
    let started = Instant::now();
    tracing::info!(
        in_flight = in_flight.count(),
        grace_ms = http.shutdown_grace.as_millis() as u64,
        "shutting down: no new requests; waiting for running calls"
    );
    ready.serving.store(false, Ordering::SeqCst);
    stop_accepting.cancel();
    if tokio::time::timeout(http.shutdown_grace, in_flight.drained())
        .await
        .is_err()
    {
        tracing::warn!(
            in_flight = in_flight.count(),
            "grace period over; ending the remaining calls"
        );
    }
    // Every response is sent: close sessions, which ends their open event
    // streams and so lets the remaining connections finish.
    sessions.cancel();
    let left = http.shutdown_grace.saturating_sub(started.elapsed());
    match tokio::time::timeout(left.max(std::time::Duration::from_millis(100)), server).await {
        Ok(joined) => joined.context("the HTTP server task failed")??,
        Err(_) => tracing::warn!("connections still open after the grace period; closing them"),
    }
    tracing::info!("stopped");
    Ok(())
}

/// `listener` with Nagle's algorithm off on every accepted connection: a
/// response can leave in more than one write (headers, then an event), and
/// with Nagle on, the second waits for the client's delayed ACK (~40 ms
/// per call with Node's `fetch` or Python's `http.client`).
fn without_nagle(listener: TcpListener) -> TapIo<TcpListener, fn(&mut TcpStream)> {
    fn no_delay(tcp: &mut TcpStream) {
        if let Err(e) = tcp.set_nodelay(true) {
            tracing::debug!("cannot turn Nagle's algorithm off: {e}");
        }
    }
    listener.tap_io(no_delay)
}

/// rmcp's Streamable HTTP service over `handler`, with its own sessions
/// (a session of one endpoint is unknown at every other).
fn mcp_service(
    handler: McpHandler,
    manager: Arc<LocalSessionManager>,
    http: &HttpConfig,
    hosts: &[String],
    origins: &[String],
    sessions: &CancellationToken,
) -> StreamableHttpService<McpHandler, LocalSessionManager> {
    let mut config = StreamableHttpServerConfig::default()
        .with_legacy_session_mode(!http.stateless)
        .with_json_response(http.stateless)
        .with_max_request_body_bytes(http.max_body_bytes)
        .with_cancellation_token(sessions.child_token())
        .with_allowed_origins(origins.to_vec())
        .enforce_origin_validation();
    config = if hosts.iter().any(|h| h == "*") {
        config.disable_allowed_hosts()
    } else {
        config.with_allowed_hosts(hosts.to_vec())
    };
    StreamableHttpService::new(move || Ok(handler.for_session()), manager, config)
}

/// What `/readyz` looks at.
struct Readiness {
    /// False once shutdown has begun.
    serving: AtomicBool,
    /// Every endpoint: each must be able to audit its calls.
    services: Vec<LiveEndpoint>,
}

/// 200 while calls can be served; 503 while shutting down or while an
/// audit log refuses calls, so that a load balancer drains this replica.
async fn readyz(State(ready): State<Arc<Readiness>>) -> (StatusCode, String) {
    if !ready.serving.load(Ordering::SeqCst) {
        return (StatusCode::SERVICE_UNAVAILABLE, "shutting down\n".into());
    }
    for service in &ready.services {
        // The error names a host path: it goes to the log, not the peer.
        if let Err(e) = service.current().service.ready().await {
            tracing::debug!("not ready: {e}");
            return (
                StatusCode::SERVICE_UNAVAILABLE,
                "calls are refused: the audit log cannot be written\n".into(),
            );
        }
    }
    (StatusCode::OK, "ready\n".into())
}

/// Resolves on SIGTERM or Ctrl-C.
pub async fn shutdown_signal() {
    let ctrl_c = async {
        if let Err(e) = tokio::signal::ctrl_c().await {
            tracing::error!("cannot listen for Ctrl-C: {e}");
            std::future::pending::<()>().await;
        }
    };
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(e) => {
                tracing::error!("cannot listen for SIGTERM: {e}");
                std::future::pending::<()>().await;
            }
        }
    };
    tokio::select! {
        () = ctrl_c => {}
        () = term => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::serve::Listener;

    #[tokio::test]
    async fn accepted_connections_send_without_waiting_for_acks() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let mut listener = without_nagle(listener);
        let (accepted, client) =
            tokio::join!(listener.accept(), tokio::net::TcpStream::connect(addr));
        let _client = client.unwrap();
        assert!(accepted.0.nodelay().unwrap());
    }
}
