//! The operator's own HTTP endpoints: Prometheus metrics and probes.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use axum::Router;
use axum::http::StatusCode;
use axum::routing::get;
use metrics_exporter_prometheus::PrometheusHandle;

/// Serves `/metrics`, `/healthz` and `/readyz` (ready once every watch
/// has listed its objects) until the process ends.
pub async fn serve(
    listen: SocketAddr,
    metrics: PrometheusHandle,
    ready: Arc<AtomicBool>,
) -> anyhow::Result<()> {
    let app = Router::new()
        .route(
            "/metrics",
            get(move || std::future::ready(metrics.render())),
        )
        .route("/healthz", get(|| std::future::ready("ok")))
        .route(
            "/readyz",
            get(move || {
                let status = if ready.load(Ordering::Relaxed) {
                    (StatusCode::OK, "ok")
                } else {
                    (
                        StatusCode::SERVICE_UNAVAILABLE,
                        "waiting for the caches to fill",
                    )
                };
                std::future::ready(status)
            }),
        );
    let listener = tokio::net::TcpListener::bind(listen).await?;
    tracing::info!(%listen, "serving metrics and probes");
    axum::serve(listener, app).await?;
    Ok(())
}
