//! How to reach Redis, as command-line flags (or environment variables, as
//! the MCPServer Deployment passes them).

use std::num::NonZeroU32;
use std::path::PathBuf;
use std::str::FromStr;

use clap::Args;
use deadpool_redis::redis::cluster::ClusterClientBuilder;
use deadpool_redis::redis::{self, ConnectionInfo, IntoConnectionInfo};

use crate::StoreError;

/// The environment variables of the Redis flags, which the operator also
/// sets on its routers.
pub mod env {
    pub const URL: &str = "MCP_REDIS_URL";
    pub const CLUSTER_URLS: &str = "MCP_REDIS_CLUSTER_URLS";
    pub const USERNAME: &str = "MCP_REDIS_USERNAME";
    pub const PASSWORD: &str = "MCP_REDIS_PASSWORD";
    pub const CA: &str = "MCP_REDIS_CA";
}

/// Redis settings shared by `mcp-operator controller` and `router`.
#[derive(Args, Clone, Debug)]
pub struct RedisArgs {
    /// URL of a single Redis node, e.g. redis://redis:6379.
    #[arg(long, env = env::URL, conflicts_with = "redis_cluster_urls")]
    pub redis_url: Option<String>,

    /// Comma-separated seed URLs of a Redis Cluster; any reachable subset
    /// of the nodes will do.
    #[arg(long, env = env::CLUSTER_URLS, value_delimiter = ',')]
    pub redis_cluster_urls: Vec<String>,

    /// Redis ACL user to authenticate as (AUTH / HELLO); without it the
    /// password alone authenticates the `default` user.
    #[arg(long, env = env::USERNAME, requires = "redis_password")]
    pub redis_username: Option<String>,

    /// Password of --redis-username. Routers get theirs by secretKeyRef;
    /// never put it in a URL or a literal env value.
    #[arg(long, env = env::PASSWORD, hide_env_values = true)]
    pub redis_password: Option<Password>,

    /// PEM file of the CA that signed the Redis nodes' TLS certificates
    /// (`rediss://`, a single node or every node of a Cluster), instead of
    /// the system roots.
    #[arg(long, env = "MCP_REDIS_CA_FILE")]
    pub redis_ca_file: Option<PathBuf>,

    /// The same CA as PEM text, as the operator passes its own
    /// --redis-ca-file to routers (a CA certificate is public).
    #[arg(long, env = env::CA, conflicts_with = "redis_ca_file")]
    pub redis_ca: Option<String>,

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

/// A Redis password: printed as `<redacted>`, so that logging the flags
/// cannot leak it.
#[derive(Clone, PartialEq, Eq)]
pub struct Password(String);

impl Password {
    pub fn new(password: impl Into<String>) -> Self {
        Self(password.into())
    }

    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for Password {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("<redacted>")
    }
}

impl FromStr for Password {
    type Err = std::convert::Infallible;

    fn from_str(password: &str) -> Result<Self, Self::Err> {
        Ok(Self(password.to_owned()))
    }
}

impl RedisArgs {
    /// These flags for `url` or `cluster_urls`, with the credentials the
    /// environment gives (MCP_REDIS_USERNAME, MCP_REDIS_PASSWORD), for the
    /// tests and harnesses, which build flags by hand: clap would also read
    /// both kinds of URL from their environment.
    pub fn from_env_credentials(url: Option<String>, cluster_urls: Vec<String>) -> Self {
        Self {
            redis_url: url,
            redis_cluster_urls: cluster_urls,
            redis_username: std::env::var(env::USERNAME).ok(),
            redis_password: std::env::var(env::PASSWORD).ok().map(Password),
            redis_ca_file: None,
            redis_ca: None,
            redis_pool_size: 8,
            redis_qps: NonZeroU32::MAX,
            redis_burst: NonZeroU32::MAX,
        }
    }

    /// How to connect to the node at `url`, with this process's
    /// credentials. A URL that carries credentials is refused: they belong
    /// in --redis-username/--redis-password, which reach routers by
    /// secretKeyRef, never in a value someone can read off a Deployment.
    pub fn connection_info(&self, url: &str) -> Result<ConnectionInfo, StoreError> {
        let info = self.authenticated(url)?;
        match self.tls_certificates(info.addr())? {
            // The client carries the CA in its connection info.
            Some(certificates) => Ok(redis::Client::build_with_tls(info, certificates)?
                .get_connection_info()
                .clone()),
            None => Ok(info),
        }
    }

    /// The node at `url` with this process's credentials (and no CA).
    fn authenticated(&self, url: &str) -> Result<ConnectionInfo, StoreError> {
        let info = url
            .into_connection_info()
            .map_err(|e| StoreError::Config(format!("invalid Redis URL: {e}")))?;
        let settings = info.redis_settings();
        if settings.username().is_some() || settings.password().is_some() {
            return Err(StoreError::Config(
                "a Redis URL must not carry credentials: use --redis-username and --redis-password"
                    .into(),
            ));
        }
        let mut settings = settings.clone();
        if let Some(username) = &self.redis_username {
            settings = settings.set_username(username);
        }
        if let Some(password) = &self.redis_password {
            settings = settings.set_password(password.expose());
        }
        Ok(info.set_redis_settings(settings))
    }

    /// The CA to verify a TLS node with, from --redis-ca-file or
    /// --redis-ca (None for a plain node or without either flag: the system
    /// roots then).
    fn tls_certificates(
        &self,
        addr: &redis::ConnectionAddr,
    ) -> Result<Option<redis::TlsCertificates>, StoreError> {
        if !matches!(addr, redis::ConnectionAddr::TcpTls { .. }) {
            return Ok(None);
        }
        crate::install_tls_provider();
        Ok(self.ca_pem()?.map(|root_cert| redis::TlsCertificates {
            client_tls: None,
            root_cert: Some(root_cert),
        }))
    }

    /// The CA of --redis-ca-file or --redis-ca, as PEM.
    pub fn ca_pem(&self) -> Result<Option<Vec<u8>>, StoreError> {
        match (&self.redis_ca_file, &self.redis_ca) {
            (Some(path), _) => std::fs::read(path).map(Some).map_err(|e| {
                StoreError::Config(format!(
                    "cannot read --redis-ca-file {}: {e}",
                    path.display()
                ))
            }),
            (None, Some(pem)) => Ok(Some(pem.clone().into_bytes())),
            (None, None) => Ok(None),
        }
    }

    /// A client of the one node at `url` (a cluster node by itself, for
    /// per-node commands such as ACL SETUSER), with these credentials.
    pub fn client(&self, url: &str) -> Result<redis::Client, StoreError> {
        Ok(redis::Client::open(self.connection_info(url)?)?)
    }

    /// A client builder for the cluster's seed nodes, with these
    /// credentials and, for `rediss://` seeds, the CA of [`Self::ca_pem`]:
    /// a cluster client verifies every node it discovers with the CA it is
    /// built with, not with the seeds' connection infos.
    pub fn cluster_client_builder(&self) -> Result<ClusterClientBuilder, StoreError> {
        let seeds = self
            .redis_cluster_urls
            .iter()
            .map(|url| self.authenticated(url))
            .collect::<Result<Vec<_>, _>>()?;
        let certificates = match seeds.first() {
            Some(seed) => self.tls_certificates(seed.addr())?,
            None => None,
        };
        let builder = ClusterClientBuilder::new(seeds);
        Ok(match certificates {
            Some(certificates) => builder.certs(certificates),
            None => builder,
        })
    }
}
