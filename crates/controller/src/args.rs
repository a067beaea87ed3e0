//! `mcp-operator controller` flags; each can also come from the environment.

use std::net::SocketAddr;

use clap::Args;
use mcp_operator_store::RedisArgs;

#[derive(Args, Clone, Debug)]
pub struct ControllerArgs {
    #[command(flatten)]
    pub redis: RedisArgs,

    /// Address of the /metrics, /healthz and /readyz endpoints.
    #[arg(long, env = "MCP_METRICS_LISTEN", default_value = "0.0.0.0:8080")]
    pub metrics_listen: SocketAddr,

    /// Router image for MCPServers that do not name one.
    #[arg(long, env = "MCP_ROUTER_IMAGE", default_value = concat!("ghcr.io/kubemcp/mcp-operator:", env!("CARGO_PKG_VERSION")))]
    pub router_image: String,

    /// Redis URL routers use, when it differs from the operator's own
    /// (--redis-url); routers in another network need another address.
    #[arg(long, env = "MCP_ROUTER_REDIS_URL")]
    pub router_redis_url: Option<String>,

    /// Reconciles run at once, per kind.
    #[arg(long, env = "MCP_CONCURRENCY", default_value_t = 16)]
    pub concurrency: u16,
}
