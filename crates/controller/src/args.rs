//! `mcp-operator controller` flags; each can also come from the environment.

use std::net::SocketAddr;
use std::time::Duration;

use clap::{Args, ValueEnum};
use mcp_operator_store::{Password, RedisArgs};

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

    /// Other images an MCPServer's spec.image may name, as comma-separated
    /// globs (`*` matches any run of characters, `/` and `:` included, so
    /// `registry.corp/mcp/*` allows every image below that path). The
    /// --router-image is always allowed; with none given, only it is.
    #[arg(long, env = "MCP_ALLOWED_ROUTER_IMAGES", value_delimiter = ',')]
    pub allowed_router_images: Vec<String>,

    /// Largest catalog published, in bytes of JSON. A server whose catalog
    /// is larger says so (CatalogPublished=False, CatalogTooLarge) and its
    /// routers keep serving the last one published.
    #[arg(long, env = "MCP_MAX_CATALOG_BYTES", default_value_t = 8 << 20)]
    pub max_catalog_bytes: usize,

    /// Redis URL routers use, when it differs from the operator's own
    /// (--redis-url); routers in another network need another address.
    #[arg(long, env = "MCP_ROUTER_REDIS_URL")]
    pub router_redis_url: Option<String>,

    /// How routers authenticate to Redis. `isolated`: each MCPServer's
    /// routers get a Redis ACL user of their own that reaches only that
    /// server's keys (the operator runs ACL SETUSER on every node).
    /// `shared`: for a Redis that forbids ACL SETUSER, every router uses
    /// --router-redis-username/--router-redis-password (else the
    /// operator's own), and every MCPServer says it is not isolated.
    #[arg(long, env = "MCP_ROUTER_REDIS_CREDENTIALS", value_enum, default_value_t = RouterCredentials::Isolated)]
    pub router_redis_credentials: RouterCredentials,

    /// The user routers share with --router-redis-credentials=shared.
    #[arg(
        long,
        env = "MCP_ROUTER_REDIS_USERNAME",
        requires = "router_redis_password"
    )]
    pub router_redis_username: Option<String>,

    /// The password routers share with --router-redis-credentials=shared.
    #[arg(long, env = "MCP_ROUTER_REDIS_PASSWORD", hide_env_values = true)]
    pub router_redis_password: Option<Password>,

    /// Reconciles run at once, per kind.
    #[arg(long, env = "MCP_CONCURRENCY", default_value_t = 16)]
    pub concurrency: u16,

    /// How long a server's reconcile waits for more changes of its members
    /// before it runs: a burst of member changes (a deploy of many tools,
    /// a cold start) becomes one catalog publish instead of one each. It
    /// adds this much to the time a change takes to reach the routers.
    #[arg(long, env = "MCP_SERVER_DEBOUNCE", default_value = "200ms", value_parser = humantime::parse_duration)]
    pub server_debounce: Duration,

    /// The longest a server's reconcile waits while its members keep
    /// changing without a --server-debounce pause: such a server still
    /// publishes at least this often.
    #[arg(long, env = "MCP_SERVER_DEBOUNCE_MAX", default_value = "500ms", value_parser = humantime::parse_duration)]
    pub server_debounce_max: Duration,

    /// How often each held server's catalog in Redis is compared with its
    /// status, to publish again what Redis lost (a Cluster failover, a
    /// restart without persistence) or that someone else rewrote: its
    /// version, and a SHA-1 of the stored document that Redis computes, so
    /// one small script call per server per interval; 0s turns the audit
    /// off.
    #[arg(long, env = "MCP_CATALOG_AUDIT_INTERVAL", default_value = "30s", value_parser = humantime::parse_duration)]
    pub catalog_audit_interval: Duration,

    /// The Secret, in the operator's namespace (POD_NAMESPACE), holding the
    /// Ed25519 key that signs every catalog: `current`, and optionally
    /// `previous`, which routers also trust during a rotation. The first
    /// replica that finds none creates it with a new key.
    #[arg(
        long,
        env = "MCP_CATALOG_SIGNING_SECRET",
        default_value = "mcp-operator-catalog-signing"
    )]
    pub catalog_signing_secret: String,

    /// Reconcile only objects in namespaces whose labels match this label
    /// selector (e.g. `kubemcp.io/enabled=true`, as the confined install
    /// sets it); all namespaces when unset. Nothing is written in other
    /// namespaces: no status, finalizer, workload or Event. Namespaces are
    /// watched, so a label change takes effect without a restart; a
    /// malformed selector stops the operator at start with the apiserver's
    /// reason (docs/operations.md, confined write rights).
    #[arg(long, env = "MCP_NAMESPACE_SELECTOR")]
    pub namespace_selector: Option<String>,

    /// OTLP/HTTP collector the routers export their traces to, set as
    /// their OTEL_EXPORTER_OTLP_ENDPOINT (docs/operations.md, traces);
    /// unset: routers export none. A server's spec.env cannot change it.
    #[arg(long, env = "MCP_ROUTER_OTLP_ENDPOINT")]
    pub router_otlp_endpoint: Option<String>,

    #[command(flatten)]
    pub sharding: ShardingArgs,
}

/// How routers authenticate to Redis (docs/security.md).
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum RouterCredentials {
    /// A Redis ACL user per MCPServer.
    Isolated,
    /// One credential for every router.
    Shared,
}

/// How replicas divide the work (docs/sharding.md).
#[derive(Args, Clone, Debug)]
pub struct ShardingArgs {
    /// Shards the namespaces are hashed into; every replica must use the
    /// same number. More shards spread work more evenly over replicas, at
    /// one Lease (and its renewals) per shard.
    #[arg(long, env = "MCP_SHARDS", default_value_t = 16, value_parser = clap::value_parser!(u32).range(1..=1024))]
    pub shards: u32,

    /// Namespace of the shard Leases: the operator's own.
    #[arg(long, env = "POD_NAMESPACE", default_value = "default")]
    pub lease_namespace: String,

    /// This replica's name (the pod name); a random suffix is added at
    /// every start, so a restarted pod is a new holder.
    #[arg(long, env = "POD_NAME", default_value = "mcp-operator")]
    pub identity: String,

    /// A shard whose Lease goes unrenewed this long is taken over.
    #[arg(long, env = "MCP_LEASE_DURATION", default_value = "5s", value_parser = humantime::parse_duration)]
    pub lease_duration: Duration,

    /// How often held Leases are renewed; well below the lease duration.
    #[arg(long, env = "MCP_RENEW_INTERVAL", default_value = "1s", value_parser = humantime::parse_duration)]
    pub renew_interval: Duration,

    /// How often free shards are looked for and surplus ones handed over.
    #[arg(long, env = "MCP_RETRY_PERIOD", default_value = "500ms", value_parser = humantime::parse_duration)]
    pub retry_period: Duration,

    /// How long a replica still filling its caches has its share of the
    /// shards left free for it, rather than taken by a ready replica and
    /// handed over later.
    #[arg(long, env = "MCP_JOIN_GRACE", default_value = "30s", value_parser = humantime::parse_duration)]
    pub join_grace: Duration,

    /// At SIGTERM, how long in-flight reconciles may finish before they are
    /// abandoned and the Leases released.
    #[arg(long, env = "MCP_SHUTDOWN_TIMEOUT", default_value = "10s", value_parser = humantime::parse_duration)]
    pub shutdown_timeout: Duration,
}
