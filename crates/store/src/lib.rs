//! Rate-limited Redis for the controller and the router.
//!
//! A [`Store`] is a deadpool-redis pool over a single node or a Redis
//! Cluster, behind one governor rate limiter: every command sent through a
//! [`Connection`] first waits for the limiter. The waits, the pool's size and
//! the time spent waiting for a pooled connection are metrics, named with the
//! caller's prefix (`mcp_operator` or `mcp_router`).

mod args;
mod cluster;

use std::sync::Arc;
use std::time::Instant;

use deadpool_redis::redis;
use governor::{DefaultDirectRateLimiter, Quota, RateLimiter};
use redis::aio::ConnectionLike;
use redis::{Cmd, Pipeline, RedisFuture, Value};

pub use args::{Password, RedisArgs, env};

/// Installs ring, the provider kube builds with, as the process's rustls
/// provider: redis and reqwest are built without one of their own. Every
/// TLS client calls this before it connects; a second install is a no-op.
pub fn install_tls_provider() {
    let _ = rustls::crypto::ring::default_provider().install_default();
}

/// Why Redis could not be used.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("no Redis configured: set --redis-url or --redis-cluster-urls")]
    NotConfigured,
    #[error("invalid Redis configuration: {0}")]
    Config(String),
    #[error("no Redis connection available: {0}")]
    Pool(String),
    #[error("Redis command failed: {0}")]
    Redis(#[from] redis::RedisError),
}

enum Pool {
    Single(deadpool_redis::Pool),
    Cluster(cluster::Pool),
}

/// A pool of Redis connections with one rate limiter in front of it. Cheap
/// to clone; clones share the pool and the limiter.
#[derive(Clone)]
pub struct Store {
    pool: Arc<Pool>,
    limiter: Arc<DefaultDirectRateLimiter>,
    metrics: Arc<Metrics>,
}

/// Metric names, built once from the caller's prefix.
struct Metrics {
    commands: String,
    limiter_wait: String,
    pool_wait: String,
    pool_size: String,
    pool_available: String,
}

impl Metrics {
    fn new(prefix: &str) -> Self {
        Self {
            commands: format!("{prefix}_redis_commands_total"),
            limiter_wait: format!("{prefix}_redis_rate_limiter_wait_seconds"),
            pool_wait: format!("{prefix}_redis_pool_wait_seconds"),
            pool_size: format!("{prefix}_redis_pool_connections"),
            pool_available: format!("{prefix}_redis_pool_available_connections"),
        }
    }
}

impl Store {
    /// Builds the pool; connections are opened lazily, so this succeeds
    /// while Redis is still starting.
    pub fn new(args: &RedisArgs, metrics_prefix: &str) -> Result<Self, StoreError> {
        let size = args.redis_pool_size.max(1);
        let runtime = deadpool_redis::Runtime::Tokio1;
        let build_error = |e: &dyn std::fmt::Display| StoreError::Config(e.to_string());
        let pool = match (&args.redis_url, args.redis_cluster_urls.as_slice()) {
            (Some(url), []) => {
                let manager = deadpool_redis::Manager::new(args.connection_info(url)?)?;
                Pool::Single(
                    deadpool_redis::Pool::builder(manager)
                        .max_size(size)
                        .runtime(runtime)
                        .build()
                        .map_err(|e| build_error(&e))?,
                )
            }
            (None, []) => return Err(StoreError::NotConfigured),
            (None, _) => {
                let manager = cluster::Manager::new(args.cluster_client_builder()?.build()?);
                Pool::Cluster(
                    cluster::Pool::builder(manager)
                        .max_size(size)
                        .runtime(runtime)
                        .build()
                        .map_err(|e| build_error(&e))?,
                )
            }
            (Some(_), _) => {
                return Err(StoreError::Config(
                    "give either --redis-url or --redis-cluster-urls, not both".into(),
                ));
            }
        };
        let quota = Quota::per_second(args.redis_qps).allow_burst(args.redis_burst);
        Ok(Self {
            pool: Arc::new(pool),
            limiter: Arc::new(RateLimiter::direct(quota)),
            metrics: Arc::new(Metrics::new(metrics_prefix)),
        })
    }

    /// Whether this store talks to a Redis Cluster.
    pub fn is_cluster(&self) -> bool {
        matches!(*self.pool, Pool::Cluster(_))
    }

    /// A pooled connection; every command sent on it waits for the rate
    /// limiter first.
    pub async fn get(&self) -> Result<Connection, StoreError> {
        let started = Instant::now();
        let (inner, status) = match &*self.pool {
            Pool::Single(pool) => (
                pool.get()
                    .await
                    .map(Inner::Single)
                    .map_err(|e| StoreError::Pool(e.to_string()))?,
                pool.status(),
            ),
            Pool::Cluster(pool) => (
                pool.get()
                    .await
                    .map(Inner::Cluster)
                    .map_err(|e| StoreError::Pool(e.to_string()))?,
                pool.status(),
            ),
        };
        metrics::histogram!(self.metrics.pool_wait.clone()).record(started.elapsed());
        metrics::gauge!(self.metrics.pool_size.clone()).set(status.size as f64);
        metrics::gauge!(self.metrics.pool_available.clone()).set(status.available as f64);
        Ok(Connection {
            inner,
            store: self.clone(),
        })
    }

    async fn admit(&self, commands: usize) {
        let started = Instant::now();
        for _ in 0..commands.max(1) {
            self.limiter.until_ready().await;
        }
        metrics::histogram!(self.metrics.limiter_wait.clone()).record(started.elapsed());
        metrics::counter!(self.metrics.commands.clone()).increment(commands.max(1) as u64);
    }
}

enum Inner {
    Single(deadpool_redis::Connection),
    Cluster(cluster::Connection),
}

/// A pooled connection, returned to the pool on drop. Use it like any
/// `redis` async connection (`query_async`, `Script::invoke_async`).
pub struct Connection {
    inner: Inner,
    store: Store,
}

impl ConnectionLike for Connection {
    fn req_packed_command<'a>(&'a mut self, cmd: &'a Cmd) -> RedisFuture<'a, Value> {
        Box::pin(async move {
            self.store.admit(1).await;
            match &mut self.inner {
                Inner::Single(conn) => conn.req_packed_command(cmd).await,
                Inner::Cluster(conn) => conn.req_packed_command(cmd).await,
            }
        })
    }

    fn req_packed_commands<'a>(
        &'a mut self,
        pipeline: &'a Pipeline,
        offset: usize,
        count: usize,
    ) -> RedisFuture<'a, Vec<Value>> {
        Box::pin(async move {
            self.store.admit(pipeline.len()).await;
            match &mut self.inner {
                Inner::Single(conn) => conn.req_packed_commands(pipeline, offset, count).await,
                Inner::Cluster(conn) => conn.req_packed_commands(pipeline, offset, count).await,
            }
        })
    }

    fn get_db(&self) -> i64 {
        match &self.inner {
            Inner::Single(conn) => conn.get_db(),
            Inner::Cluster(conn) => conn.get_db(),
        }
    }
}
