//! Each MCPServer's own Redis ACL user, on every node.
//!
//! Redis keeps users per node, and a Cluster does not replicate them: the
//! operator sets each user on every primary and replica it finds with
//! `CLUSTER NODES`, through connections of its own to each node. A node
//! restarted without persistence, or one that joins, has none of them: the
//! periodic verification ([`Acl::verify`]) compares every held server's
//! user on every node with what `ACL GETUSER` answered right after the
//! operator set it (its rule words sorted: nodes list commands in their own
//! order), and sets it again where it differs or is missing. A
//! promoted replica already has the users, set on it as a replica.

mod nodes;
mod rules;

pub use rules::canonical;

use std::collections::HashMap;
use std::sync::Mutex;

use mcp_operator_catalog::{ServerId, acl};
use mcp_operator_store::{RedisArgs, Store, StoreError};
use redis::Value;
use redis::aio::MultiplexedConnection;

/// What the operator last set for one server: the password's hash, and
/// the user as `ACL GETUSER` then reported it (the form every node of one
/// Redis version reports it in).
struct Applied {
    password_sha256: String,
    user: Value,
}

/// The operator's view of the router users it manages.
pub struct Acl {
    /// The operator's own Redis flags: its credentials, and the URLs whose
    /// scheme the nodes share.
    redis: RedisArgs,
    connections: Mutex<HashMap<String, MultiplexedConnection>>,
    applied: Mutex<HashMap<ServerId, Applied>>,
}

impl Acl {
    pub fn new(redis: RedisArgs) -> Self {
        Self {
            redis,
            connections: Mutex::default(),
            applied: Mutex::default(),
        }
    }

    /// Sets the server's user on every node unless this process already
    /// did with this password (a node that lost it since is the periodic
    /// verification's to find).
    pub async fn apply(
        &self,
        store: &Store,
        server: &ServerId,
        password_sha256: &str,
    ) -> Result<(), StoreError> {
        let current = self
            .applied()
            .get(server)
            .is_some_and(|a| a.password_sha256 == password_sha256);
        if current {
            return Ok(());
        }
        let mut user = None;
        for node in self.nodes(store).await? {
            user = Some(self.set(&node, server, password_sha256).await?);
        }
        metrics::counter!("mcp_operator_redis_users_set_total", "by" => "reconcile").increment(1);
        if let Some(user) = user {
            self.record(server, password_sha256, user);
        }
        Ok(())
    }

    /// Deletes the server's user from every node.
    pub async fn remove(&self, store: &Store, server: &ServerId) -> Result<(), StoreError> {
        self.applied().remove(server);
        let mut result = Ok(());
        for node in self.nodes(store).await? {
            let deleted: Result<i64, StoreError> = self
                .on(
                    &node,
                    redis::cmd("ACL").arg("DELUSER").arg(acl::username(server)),
                )
                .await;
            if let Err(error) = deleted {
                result = Err(error);
            }
        }
        result
    }

    /// Checks every given server's user (with its password hash) on every
    /// node and sets it again where it is missing or differs; returns how
    /// many users it set. A node that cannot be reached is skipped until
    /// the next pass.
    pub async fn verify(
        &self,
        store: &Store,
        servers: &[(ServerId, String)],
    ) -> Result<usize, StoreError> {
        let mut repaired = 0;
        if servers.is_empty() {
            return Ok(repaired);
        }
        for node in self.nodes(store).await? {
            let mut pipe = redis::pipe();
            for (server, _) in servers {
                pipe.cmd("ACL").arg("GETUSER").arg(acl::username(server));
            }
            let users: Vec<Value> = match self.on_pipe(&node, &pipe).await {
                Ok(users) => users,
                Err(error) => {
                    tracing::warn!(%node, %error, "cannot verify the router users on a Redis node");
                    continue;
                }
            };
            for ((server, password_sha256), user) in servers.iter().zip(users) {
                let expected = self
                    .applied()
                    .get(server)
                    .filter(|a| &a.password_sha256 == password_sha256)
                    .map(|a| a.user == rules::canonical(user.clone()));
                if expected == Some(true) {
                    continue;
                }
                if expected.is_some() {
                    tracing::warn!(%server, %node, "a router's Redis user is missing or was changed on a node; setting it again");
                }
                match self.set(&node, server, password_sha256).await {
                    Ok(user) => {
                        self.record(server, password_sha256, user);
                        repaired += 1;
                    }
                    Err(error) => {
                        tracing::warn!(%server, %node, %error, "cannot set a router's Redis user");
                    }
                }
            }
        }
        metrics::counter!("mcp_operator_redis_users_set_total", "by" => "verification")
            .increment(repaired as u64);
        Ok(repaired)
    }

    /// Whether some node lacks one of these servers' users (`ACL USERS`,
    /// one command per node).
    pub async fn lacking(
        &self,
        store: &Store,
        servers: &[(ServerId, String)],
    ) -> Result<bool, StoreError> {
        if servers.is_empty() {
            return Ok(false);
        }
        for node in self.nodes(store).await? {
            let users: Vec<String> = match self
                .on(&node, &redis::cmd("ACL").arg("USERS").clone())
                .await
            {
                Ok(users) => users,
                // Unreachable: the next pass, or the full verification.
                Err(_) => continue,
            };
            let users: std::collections::HashSet<String> = users.into_iter().collect();
            if servers
                .iter()
                .any(|(server, _)| !users.contains(&acl::username(server)))
            {
                return Ok(true);
            }
        }
        Ok(false)
    }

    /// `ACL SETUSER` on one node; returns the user as that node reports it.
    async fn set(
        &self,
        node: &str,
        server: &ServerId,
        password_sha256: &str,
    ) -> Result<Value, StoreError> {
        let mut pipe = redis::pipe();
        pipe.cmd("ACL")
            .arg("SETUSER")
            .arg(rules::setuser(server, password_sha256))
            .ignore()
            .cmd("ACL")
            .arg("GETUSER")
            .arg(acl::username(server));
        let (user,): (Value,) = self.on_pipe(node, &pipe).await?;
        Ok(rules::canonical(user))
    }

    fn record(&self, server: &ServerId, password_sha256: &str, user: Value) {
        self.applied().insert(
            server.clone(),
            Applied {
                password_sha256: password_sha256.to_owned(),
                user,
            },
        );
    }

    /// The URL of every node: the single node, or every usable node of the
    /// cluster as `CLUSTER NODES` lists it.
    async fn nodes(&self, store: &Store) -> Result<Vec<String>, StoreError> {
        if let Some(url) = &self.redis.redis_url {
            return Ok(vec![url.clone()]);
        }
        let mut connection = store.get().await?;
        let reply: String = redis::cmd("CLUSTER")
            .arg("NODES")
            .query_async(&mut connection)
            .await?;
        let scheme = self
            .redis
            .redis_cluster_urls
            .first()
            .map_or("redis", |url| nodes::scheme(url));
        Ok(nodes::parse(&reply)
            .iter()
            .map(|node| node.url(scheme))
            .collect())
    }

    async fn on<T: redis::FromRedisValue>(
        &self,
        node: &str,
        cmd: &redis::Cmd,
    ) -> Result<T, StoreError> {
        let mut connection = self.connection(node).await?;
        let result = cmd.query_async(&mut connection).await;
        self.forget_on_error(node, result)
    }

    async fn on_pipe<T: redis::FromRedisValue>(
        &self,
        node: &str,
        pipe: &redis::Pipeline,
    ) -> Result<T, StoreError> {
        let mut connection = self.connection(node).await?;
        let result = pipe.query_async(&mut connection).await;
        self.forget_on_error(node, result)
    }

    /// A broken connection is opened anew next time.
    fn forget_on_error<T>(
        &self,
        node: &str,
        result: redis::RedisResult<T>,
    ) -> Result<T, StoreError> {
        if result
            .as_ref()
            .is_err_and(|e| e.is_io_error() || e.is_unrecoverable_error())
        {
            self.connections().remove(node);
        }
        Ok(result?)
    }

    /// A connection of the operator's own to one node (not through the
    /// cluster client, which would route to one node of its choosing).
    async fn connection(&self, node: &str) -> Result<MultiplexedConnection, StoreError> {
        if let Some(connection) = self.connections().get(node) {
            return Ok(connection.clone());
        }
        // Bounded, so that a node that stopped answering delays a reconcile
        // by seconds, not for ever.
        let timeout = Some(std::time::Duration::from_secs(5));
        let config = redis::AsyncConnectionConfig::new()
            .set_connection_timeout(timeout)
            .set_response_timeout(timeout);
        let connection = self
            .redis
            .client(node)?
            .get_multiplexed_async_connection_with_config(&config)
            .await?;
        self.connections()
            .insert(node.to_owned(), connection.clone());
        Ok(connection)
    }

    fn applied(&self) -> std::sync::MutexGuard<'_, HashMap<ServerId, Applied>> {
        self.applied.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn connections(&self) -> std::sync::MutexGuard<'_, HashMap<String, MultiplexedConnection>> {
        self.connections.lock().unwrap_or_else(|e| e.into_inner())
    }
}
