//! How the operator runs a router: the environment it sets, the port and
//! paths the Deployment's probes and Service use, where Secrets are
//! mounted. The operator writes these (crates/controller, the workload)
//! and the router reads them (crates/router, its flags), so both take
//! them from here; the Redis variables are the store's flags
//! (`mcp_operator_store::env`).

/// Where routers listen; the Service's target port.
pub const PORT: u16 = 8080;
/// The MCP endpoint.
pub const MCP_PATH: &str = "/mcp";
/// The liveness probe: the process serves HTTP.
pub const HEALTH_PATH: &str = "/healthz";
/// The readiness probe: the catalog is loaded.
pub const READY_PATH: &str = "/readyz";
/// Prometheus metrics, on the same port.
pub const METRICS_PATH: &str = "/metrics";
/// Where a router finds the Secrets its backend headers name: one
/// directory per Secret, one file per key.
pub const SECRETS_DIR: &str = "/var/run/secrets/kubemcp.io/backends";
/// The drain the operator gives its routers: after SIGTERM a deleted pod
/// is still an endpoint for a moment (until every Service proxy, kube-proxy
/// and load balancer has seen it go), and calls sent to it meanwhile must
/// still be answered. A few seconds covers that propagation in a cluster;
/// the pod's grace period leaves room for the calls in flight after it.
pub const DRAIN_SECONDS: u64 = 5;
/// The router pods' termination grace period: the drain, then up to this
/// long for in-flight calls before the kubelet kills the container.
pub const TERMINATION_GRACE_SECONDS: u64 = 30;

/// The router's environment variables that the operator sets.
pub mod env {
    /// Every variable that configures a router starts with this; only the
    /// operator may set them (a server's `spec.env` may not).
    pub const PREFIX: &str = "MCP_";
    /// The server whose catalog to serve, `namespace/name`.
    pub const SERVER: &str = "MCP_SERVER";
    /// The address to listen on.
    pub const LISTEN: &str = "MCP_LISTEN";
    /// [`super::SECRETS_DIR`], unless a test moves it.
    pub const SECRETS_DIR: &str = "MCP_SECRETS_DIR";
    /// `text` or `json`; the operator asks for JSON.
    pub const LOG_FORMAT: &str = "MCP_LOG_FORMAT";
    /// How long a router keeps serving after SIGTERM, not ready; the
    /// operator sets [`super::DRAIN_SECONDS`].
    pub const DRAIN_PERIOD: &str = "MCP_DRAIN_PERIOD";
    /// The collector traces go to: OpenTelemetry's own name for it, so
    /// that the SDKs' convention holds; the operator sets it from its
    /// --router-otlp-endpoint, and then a server's `spec.env` cannot.
    pub const OTLP_ENDPOINT: &str = "OTEL_EXPORTER_OTLP_ENDPOINT";
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The drain ends within the grace period, with time left for the
    /// calls in flight.
    #[test]
    fn the_drain_fits_in_the_grace_period() {
        const { assert!(DRAIN_SECONDS < TERMINATION_GRACE_SECONDS) };
    }

    #[test]
    fn every_variable_has_the_operator_prefix() {
        for name in [
            env::SERVER,
            env::LISTEN,
            env::SECRETS_DIR,
            env::LOG_FORMAT,
            env::DRAIN_PERIOD,
        ] {
            assert!(name.starts_with(env::PREFIX), "{name}");
        }
    }
}
