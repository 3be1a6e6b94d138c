//! The admin listener: `GET /metrics` in the Prometheus text format and
//! `POST /reload` (re-read the config), on an address of its own so that
//! it can stay off the public network.
//!
//! A web page the operator visits could reach it too: every request must
//! name the listener by address (or `localhost`), which a DNS-rebinding
//! page cannot, and a reload needs the `Moat-Reload` header, which a page
//! of another origin cannot send without a preflight nothing here answers.

use crate::reload::Reloader;
use axum::extract::{Request, State};
use axum::http::header::CONTENT_TYPE;
use axum::http::{HeaderMap, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde_json::{Value, json};
use std::sync::Arc;
use tokio::net::TcpListener;

/// The content type of the OpenMetrics text format, which Prometheus reads.
const OPENMETRICS: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// Serves `/metrics` and `/reload` on `listener` until the process ends.
pub async fn serve(listener: TcpListener, reloader: Option<Arc<Reloader>>) -> anyhow::Result<()> {
    let app = Router::new()
        .route(
            "/metrics",
            get(|| async {
                (
                    [(CONTENT_TYPE, OPENMETRICS)],
                    crate::metrics::get().encode(),
                )
            }),
        )
        .route("/reload", post(reload))
        .with_state(reloader)
        .layer(axum::middleware::from_fn(named_by_address));
    axum::serve(listener, app).await?;
    Ok(())
}

/// Re-reads the config: 200 with what changed, 422 with why the running
/// plugins were kept, 409 when no config file is served.
async fn reload(
    State(reloader): State<Option<Arc<Reloader>>>,
    headers: HeaderMap,
) -> (StatusCode, Json<Value>) {
    if !headers.contains_key(RELOAD_HEADER) {
        return (
            StatusCode::FORBIDDEN,
            Json(
                json!({ "error": format!("send the header {RELOAD_HEADER}: 1 (moat reload does)") }),
            ),
        );
    }
    let Some(reloader) = reloader else {
        return (
            StatusCode::CONFLICT,
            Json(
                json!({ "error": "nothing to reload: the embedded default configuration is served (start with --config)" }),
            ),
        );
    };
    // A task of its own: a client that stops waiting does not cut a
    // reload off half-way.
    let reloading = tokio::spawn(async move { reloader.reload().await });
    match reloading.await {
        Ok(Ok(reloaded)) => (StatusCode::OK, Json(json!({ "reloaded": reloaded }))),
        Ok(Err(e)) => (
            StatusCode::UNPROCESSABLE_ENTITY,
            Json(json!({ "error": format!("{e:#}"), "kept": "the running plugins" })),
        ),
        Err(e) => (
            StatusCode::INTERNAL_SERVER_ERROR,
            Json(
                json!({ "error": format!("the reload stopped: {e}"), "kept": "the running plugins" }),
            ),
        ),
    }
}

/// The header a reload request must carry.
pub const RELOAD_HEADER: &str = "moat-reload";

/// Refuses a request whose Host is a name other than `localhost`: the
/// admin address is reached by IP (or as localhost), and a page that
/// rebinds its own name to it cannot say either.
async fn named_by_address(request: Request, next: Next) -> Response {
    let host = request
        .headers()
        .get(http::header::HOST)
        .and_then(|h| h.to_str().ok())
        .unwrap_or_default();
    let name = match host.rsplit_once(':') {
        Some((name, port)) if port.bytes().all(|b| b.is_ascii_digit()) => name,
        _ => host,
    };
    let name = name.trim_start_matches('[').trim_end_matches(']');
    if name == "localhost" || name.parse::<std::net::IpAddr>().is_ok() {
        return next.run(request).await;
    }
    (
        StatusCode::MISDIRECTED_REQUEST,
        "the admin address answers requests that name it by IP address or as localhost\n",
    )
        .into_response()
}
