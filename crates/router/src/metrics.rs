//! The router's metrics, all named `mcp_router_*`. Recording goes through
//! these functions so names and labels are written once.

use std::time::Duration;

use metrics::{counter, gauge, histogram};

use crate::catalog::Compiled;

/// A JSON-RPC request handled: method (`tools/call`, ...) and outcome
/// (`ok`, `error`, `tool_error`).
pub fn request(method: &'static str, outcome: &'static str, elapsed: Duration) {
    counter!("mcp_router_requests_total", "method" => method, "outcome" => outcome).increment(1);
    histogram!("mcp_router_request_duration_seconds", "method" => method).record(elapsed);
}

/// An HTTP request refused before MCP: `auth`, `host`, `origin`,
/// `body_too_large`, `timeout`, `overloaded`.
pub fn refused(reason: &'static str) {
    counter!("mcp_router_http_refused_total", "reason" => reason).increment(1);
}

/// One backend request of a tool call or resource read (each attempt).
pub fn backend(target: &str, outcome: &'static str, elapsed: Duration) {
    histogram!("mcp_router_backend_duration_seconds", "target" => target.to_owned())
        .record(elapsed);
    if outcome != "ok" {
        counter!("mcp_router_backend_errors_total", "target" => target.to_owned(), "kind" => outcome)
            .increment(1);
    }
}

pub fn catalog_loaded(previous: Option<&Compiled>, compiled: &Compiled) {
    counter!("mcp_router_catalog_loads_total").increment(1);
    gauge!("mcp_router_catalog_tools").set(compiled.tools.len() as f64);
    gauge!("mcp_router_catalog_prompts").set(compiled.prompts.len() as f64);
    gauge!("mcp_router_catalog_resources").set(compiled.resources.len() as f64);
    // The version is a hash: exported as a label of an info-style gauge
    // that is 1 for the served version only.
    if let Some(previous) = previous {
        gauge!("mcp_router_catalog_info", "version" => previous.version.to_string()).set(0.0);
    }
    gauge!("mcp_router_catalog_info", "version" => compiled.version.to_string()).set(1.0);
    gauge!("mcp_router_catalog_loaded_timestamp_seconds").set(now_seconds());
}

/// A stored catalog refused (see `Rejection::reason` in crates/catalog).
pub fn catalog_rejected(reason: &'static str) {
    counter!("mcp_router_catalog_rejected_total", "reason" => reason).increment(1);
}

pub fn catalog_stale(stale: bool) {
    gauge!("mcp_router_catalog_stale").set(if stale { 1.0 } else { 0.0 });
}

/// An invalidation message arrived on the server's channel.
pub fn invalidation() {
    counter!("mcp_router_invalidations_total").increment(1);
}

/// A full reload: `start`, `reconnect`, `periodic`, `invalidation`.
pub fn resync(reason: &'static str) {
    counter!("mcp_router_resyncs_total", "reason" => reason).increment(1);
}

pub fn sessions(delta: f64) {
    gauge!("mcp_router_open_sessions").increment(delta);
}

pub fn streams(delta: f64) {
    gauge!("mcp_router_open_streams").increment(delta);
}

fn now_seconds() -> f64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64())
}
