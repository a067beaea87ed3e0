//! The testenv's Redis, single node or cluster, for tests that publish
//! catalogs or start processes that read them.

use std::num::NonZeroU32;

use mcp_operator_store::{RedisArgs, env};

use super::testenv_var;

/// Which of the testenv's Redis deployments a test binary uses.
#[derive(Clone, Copy, Debug)]
pub enum Redis {
    Single,
    Cluster,
}

impl Redis {
    /// The environment variable a child process reads this Redis from, its
    /// value, and the variable of the other kind, which the child must not
    /// see (clap refuses both at once).
    pub fn env(self) -> (&'static str, String, &'static str) {
        match self {
            Self::Single => (env::URL, testenv_var(env::URL), env::CLUSTER_URLS),
            Self::Cluster => (env::CLUSTER_URLS, testenv_var(env::CLUSTER_URLS), env::URL),
        }
    }
}

/// Redis flags for one kind, built directly: clap would also read the
/// testenv's MCP_REDIS_* variables and see both kinds at once.
pub fn redis_args(redis: Redis) -> RedisArgs {
    let (url, cluster) = match redis {
        Redis::Single => (Some(testenv_var("MCP_REDIS_URL")), vec![]),
        Redis::Cluster => (
            None,
            testenv_var("MCP_REDIS_CLUSTER_URLS")
                .split(',')
                .map(str::to_owned)
                .collect(),
        ),
    };
    RedisArgs {
        redis_qps: NonZeroU32::new(1000).expect("non-zero"),
        redis_burst: NonZeroU32::new(200).expect("non-zero"),
        ..RedisArgs::from_env_credentials(url, cluster)
    }
}

/// A client of the one node at `url`, as the testenv's admin user.
pub fn node_client(url: &str) -> redis::Client {
    RedisArgs::from_env_credentials(None, vec![])
        .client(url)
        .expect("a Redis client")
}

/// A Redis connection of the given kind.
pub async fn redis(redis: Redis) -> mcp_operator_store::Connection {
    mcp_operator_store::Store::new(&redis_args(redis), "test")
        .expect("a store")
        .get()
        .await
        .expect("a Redis connection")
}
