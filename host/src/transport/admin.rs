//! The admin listener: `GET /metrics` in the Prometheus text format, on
//! an address of its own so that it can stay off the public network.

use axum::Router;
use axum::http::header::CONTENT_TYPE;
use axum::routing::get;
use tokio::net::TcpListener;

/// The content type of the OpenMetrics text format, which Prometheus reads.
const OPENMETRICS: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// Serves `/metrics` on `listener` until the process ends.
pub async fn serve(listener: TcpListener) -> anyhow::Result<()> {
    let app = Router::new().route(
        "/metrics",
        get(|| async {
            (
                [(CONTENT_TYPE, OPENMETRICS)],
                crate::metrics::get().encode(),
            )
        }),
    );
    axum::serve(listener, app).await?;
    Ok(())
}
