//! How to reach Redis, as command-line flags (or environment variables, as
//! the MCPServer Deployment passes them).

use std::num::NonZeroU32;

use clap::Args;

/// Redis settings shared by `mcp-operator controller` and `router`.
#[derive(Args, Clone, Debug)]
pub struct RedisArgs {
    /// URL of a single Redis node, e.g. redis://redis:6379.
    #[arg(long, env = "MCP_REDIS_URL", conflicts_with = "redis_cluster_urls")]
    pub redis_url: Option<String>,

    /// Comma-separated seed URLs of a Redis Cluster; any reachable subset
    /// of the nodes will do.
    #[arg(long, env = "MCP_REDIS_CLUSTER_URLS", value_delimiter = ',')]
    pub redis_cluster_urls: Vec<String>,

    /// Connections kept in the pool.
    #[arg(long, env = "MCP_REDIS_POOL_SIZE", default_value_t = 8)]
    pub redis_pool_size: usize,

    /// Sustained Redis commands per second this process may send; every
    /// command waits for the rate limiter, so a reconcile storm cannot
    /// flood Redis.
    #[arg(long, env = "MCP_REDIS_QPS", default_value = "500")]
    pub redis_qps: NonZeroU32,

    /// Commands that may be sent at once above the sustained rate.
    #[arg(long, env = "MCP_REDIS_BURST", default_value = "100")]
    pub redis_burst: NonZeroU32,
}
