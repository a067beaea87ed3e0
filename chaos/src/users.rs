//! The identity invariant: every server's Redis ACL user exists on every
//! node (primaries and replicas), with the password whose hash its router
//! Deployment's pod template names, and the same rules everywhere. A
//! restarted node comes back without users; the operator's periodic
//! verification sets them again.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use k8s_openapi::api::apps::v1::Deployment;
use kube::{Api, Client};
use mcp_operator_catalog::{ServerId, acl};
use mcp_operator_controller::{canonical_acl_user, password_sha256};
use mcp_operator_store::RedisArgs;

use crate::Redis;

/// Waits up to `limit` until every server's user is right on every node;
/// returns how many (server, node) pairs were still wrong then.
pub async fn wrong_users(
    client: &Client,
    redis: &Redis,
    servers: &[ServerId],
    limit: Duration,
) -> anyhow::Result<usize> {
    let started = Instant::now();
    loop {
        let wrong = count_wrong(client, redis, servers).await?;
        if wrong == 0 || started.elapsed() > limit {
            return Ok(wrong);
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

async fn count_wrong(
    client: &Client,
    redis: &Redis,
    servers: &[ServerId],
) -> anyhow::Result<usize> {
    let admin = RedisArgs::from_env_credentials(None, vec![]);
    let mut nodes = Vec::new();
    for url in redis.urls() {
        nodes.push(
            admin
                .client(&url)?
                .get_multiplexed_async_connection()
                .await?,
        );
    }
    let mut wrong = 0;
    for server in servers {
        let deployment = Api::<Deployment>::namespaced(client.clone(), &server.namespace)
            .get_opt(&server.name)
            .await?;
        let hash = deployment.as_ref().and_then(password_sha256);
        let mut seen = None;
        for node in &mut nodes {
            let reply: redis::Value = redis::cmd("ACL")
                .arg("GETUSER")
                .arg(acl::username(server))
                .query_async(node)
                .await?;
            // Each node orders a user's commands its own way.
            let user: Option<HashMap<String, redis::Value>> =
                redis::from_redis_value(canonical_acl_user(reply))?;
            let right = user.as_ref().is_some_and(|user| {
                let passwords: Vec<String> = user
                    .get("passwords")
                    .and_then(|p| redis::from_redis_value_ref(p).ok())
                    .unwrap_or_default();
                hash.as_ref()
                    .is_some_and(|hash| passwords == [hash.clone()])
                    && seen.as_ref().is_none_or(|seen| seen == user)
            });
            if !right {
                wrong += 1;
            }
            if seen.is_none() {
                seen = user;
            }
        }
    }
    Ok(wrong)
}
