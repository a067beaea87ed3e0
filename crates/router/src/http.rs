//! The HTTP server: /mcp (the requests answered directly, see
//! crate::direct, else rmcp's Streamable HTTP service; behind the guard,
//! auth and limits), /healthz, /readyz and /metrics. Every request
//! runs in a tracing span, a child of the caller's when it sent a
//! `traceparent`.

use std::sync::Arc;

use axum::Router;
use axum::extract::{Request, State};
use axum::http::{Method, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use metrics_exporter_prometheus::PrometheusHandle;
use rmcp::transport::streamable_http_server::session::local::LocalSessionManager;
use rmcp::transport::streamable_http_server::{StreamableHttpServerConfig, StreamableHttpService};
use tokio_util::sync::CancellationToken;
use tower::ServiceBuilder;
use tower_http::timeout::TimeoutLayer;
use tower_http::trace::TraceLayer;

use mcp_operator_catalog::router;

use crate::args::LimitArgs;
use crate::auth::Auth;
use crate::catalog::CatalogState;
use crate::direct::{self, Direct};
use crate::guard::Guard;
use crate::mcp::{Session, Shared};
use crate::metrics;
use crate::session::RedisSessions;
use crate::trace;

/// What the HTTP layer needs besides the MCP handler.
pub struct Parts {
    pub shared: Arc<Shared>,
    /// This replica's sessions.
    pub local_sessions: Arc<LocalSessionManager>,
    /// All replicas' sessions.
    pub sessions: RedisSessions,
    pub guard: Guard,
    pub auth: Auth,
    pub limits: LimitArgs,
    pub metrics: PrometheusHandle,
    pub shutdown: CancellationToken,
    /// Cancelled at SIGTERM, before `shutdown`: /readyz answers 503 from
    /// then on, while everything else is still served (the drain).
    pub draining: CancellationToken,
}

struct Gate {
    guard: Guard,
    auth: Auth,
}

pub fn app(parts: Parts) -> Router {
    build(parts, true)
}

/// The app with every MCP request left to rmcp: what the direct answers
/// are compared with.
#[cfg(test)]
pub fn app_without_direct(parts: Parts) -> Router {
    build(parts, false)
}

fn build(parts: Parts, answer_directly: bool) -> Router {
    let Parts {
        shared,
        local_sessions,
        sessions,
        guard,
        auth,
        limits,
        metrics: prometheus,
        shutdown,
        draining,
    } = parts;
    let state = shared.state.clone();
    let config = StreamableHttpServerConfig::default()
        // Host and Origin are checked by the guard, which knows wildcards.
        .disable_allowed_hosts()
        .disable_allowed_origins()
        .with_max_request_body_bytes(limits.max_request_bytes)
        // Stateless (2026-07-28) answers as plain JSON when nothing is
        // streamed before the result: one write instead of an SSE stream.
        .with_json_response(true)
        .with_cancellation_token(shutdown);
    let mut config = config;
    config.session_store = Some(Arc::new(sessions));
    let direct = answer_directly.then(|| {
        Arc::new(Direct::new(
            shared.clone(),
            local_sessions.clone(),
            limits.max_request_bytes,
        ))
    });
    let mcp = StreamableHttpService::new(
        move || Ok(Session::new(shared.clone())),
        local_sessions,
        config,
    );
    let gate = Arc::new(Gate { guard, auth });
    let mcp = ServiceBuilder::new()
        .layer(middleware::from_fn_with_state(gate, admit))
        .layer(middleware::from_fn(count_refusals))
        .layer(middleware::from_fn(session_ended))
        .layer(tower::limit::ConcurrencyLimitLayer::new(
            limits.max_concurrent_requests.max(1),
        ))
        .layer(TimeoutLayer::with_status_code(
            StatusCode::REQUEST_TIMEOUT,
            limits.request_timeout,
        ))
        .layer(middleware::from_fn_with_state(direct, direct::answer))
        .service(mcp);
    Router::new()
        .route_service(router::MCP_PATH, mcp)
        .route(router::HEALTH_PATH, get(|| async { "ok" }))
        .route(router::READY_PATH, get(ready).with_state((state, draining)))
        .route(
            router::METRICS_PATH,
            get(move || std::future::ready(prometheus.render())),
        )
        .layer(TraceLayer::new_for_http().make_span_with(request_span))
}

/// tower-http's default request span, in the caller's trace when the
/// request carries a `traceparent` header.
fn request_span(request: &Request) -> tracing::Span {
    let span = tracing::info_span!(
        "request",
        method = %request.method(),
        uri = %request.uri(),
        version = ?request.version(),
    );
    trace::continue_trace(
        &span,
        trace::caller(&Default::default(), Some(request.headers())),
    );
    span
}

/// Host/Origin first (403 before anything else), then authentication.
async fn admit(State(gate): State<Arc<Gate>>, request: Request, next: Next) -> Response {
    if let Err((status, reason)) = gate.guard.check(request.headers()) {
        metrics::refused(reason);
        tracing::debug!(reason, "refused by the host/origin guard");
        return (status, format!("{reason} not allowed")).into_response();
    }
    if let Err(refusal) = gate.auth.check(request.headers()).await {
        metrics::refused("auth");
        tracing::debug!(?refusal, "refused: not authenticated");
        return refusal.into_response();
    }
    next.run(request).await
}

/// Counts the limits' refusals.
async fn count_refusals(request: Request, next: Next) -> Response {
    let response = next.run(request).await;
    match response.status() {
        StatusCode::REQUEST_TIMEOUT => metrics::refused("timeout"),
        StatusCode::PAYLOAD_TOO_LARGE => metrics::refused("body_too_large"),
        _ => {}
    }
    response
}

/// rmcp answers a session's DELETE with 202 Accepted, though the session
/// is closed and out of the store by then; the MCP SDKs expect 200 or 204
/// (the Python SDK logs "Session termination failed: 202" otherwise).
async fn session_ended(request: Request, next: Next) -> Response {
    let delete = request.method() == Method::DELETE;
    let mut response = next.run(request).await;
    if delete && response.status() == StatusCode::ACCEPTED {
        *response.status_mut() = StatusCode::NO_CONTENT;
    }
    response
}

async fn ready(State((state, draining)): State<(CatalogState, CancellationToken)>) -> Response {
    if draining.is_cancelled() {
        // Out of the Service's endpoints for whoever still checks, while
        // the calls that reach this pod meanwhile are answered.
        return (StatusCode::SERVICE_UNAVAILABLE, "draining: stopping").into_response();
    }
    match (state.is_ready(), state.is_stale()) {
        (true, false) => "ready".into_response(),
        (true, true) => "ready (Redis unreachable: serving the last good catalog)".into_response(),
        (false, _) => (StatusCode::SERVICE_UNAVAILABLE, "no catalog loaded yet").into_response(),
    }
}
