//! The admin listener: `GET /metrics` in the Prometheus text format and
//! `POST /reload` (re-read the config), on an address of its own so that
//! it can stay off the public network.

use crate::reload::Reloader;
use axum::extract::State;
use axum::http::StatusCode;
use axum::http::header::CONTENT_TYPE;
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
        .with_state(reloader);
    axum::serve(listener, app).await?;
    Ok(())
}

/// Re-reads the config: 200 with what changed, 422 with why the running
/// plugins were kept, 409 when no config file is served.
async fn reload(State(reloader): State<Option<Arc<Reloader>>>) -> (StatusCode, Json<Value>) {
    let Some(reloader) = reloader else {
        return (
            StatusCode::CONFLICT,
            Json(
                json!({ "error": "nothing to reload: the embedded default configuration is served (start with --config)" }),
            ),
        );
    };
    match reloader.reload().await {
        Ok(reloaded) => (StatusCode::OK, Json(json!({ "reloaded": reloaded }))),
        Err(e) => (
            StatusCode::UNPROCESSABLE_ENTITY,
            Json(json!({ "error": format!("{e:#}"), "kept": "the running plugins" })),
        ),
    }
}
