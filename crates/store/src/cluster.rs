//! Pooled Redis Cluster connections. deadpool-redis's own cluster manager
//! builds its client from URLs alone, so it cannot verify the nodes with a
//! private CA (deadpool-rs/deadpool#404); this one pools connections of a
//! client built here, with the CA when there is one.

use deadpool::managed::{self, Metrics, RecycleResult};
use deadpool_redis::redis::cluster::ClusterClient;
use deadpool_redis::redis::cluster_async::ClusterConnection;
use deadpool_redis::redis::{self, RedisError};

pub type Pool = managed::Pool<Manager>;
pub type Connection = managed::Object<Manager>;

/// Opens cluster connections of one client; a pooled connection is
/// checked with PING before it is handed out again (the connection itself
/// follows slot moves and reconnects to nodes).
pub struct Manager {
    client: ClusterClient,
}

impl Manager {
    pub fn new(client: ClusterClient) -> Self {
        Self { client }
    }
}

impl managed::Manager for Manager {
    type Type = ClusterConnection;
    type Error = RedisError;

    async fn create(&self) -> Result<ClusterConnection, RedisError> {
        self.client.get_async_connection().await
    }

    async fn recycle(
        &self,
        conn: &mut ClusterConnection,
        _: &Metrics,
    ) -> RecycleResult<RedisError> {
        redis::cmd("PING").query_async::<()>(conn).await?;
        Ok(())
    }
}
