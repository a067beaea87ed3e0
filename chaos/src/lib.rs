//! The harness of the chaos scenarios, the failover benchmark, the load
//! test and `tests/sharding.rs`: operator replicas as real processes (this
//! module: start, kill, stop or terminate them, read which replica holds
//! which shard from the Leases and which replica last wrote each server from
//! its Redis fence), populations of MCP resources, the convergence
//! invariants, churn, process costs and the benchmark report.

pub mod churn;
pub mod converge;
pub mod kinds;
pub mod metrics;
pub mod population;
pub mod process;
pub mod report;
pub mod scenario;
pub mod traffic;
pub mod users;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use futures::{StreamExt, TryStreamExt, stream};
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::Namespace;
use kube::api::{Api, ListParams, PostParams};
use kube::{Client, ResourceExt};
use mcp_operator_catalog::{ServerId, keys};
use mcp_operator_controller::shard_of;
use mcp_operator_store::env as redis_var;
use mcp_operator_store::{RedisArgs, Store};

/// Timings of a replica group.
#[derive(Clone, Debug)]
pub struct Timing {
    pub lease_duration: Duration,
    pub renew_interval: Duration,
    pub retry_period: Duration,
    pub join_grace: Duration,
}

impl Timing {
    /// For tests: fail over within seconds, wait briefly for joiners.
    pub fn fast() -> Self {
        Self {
            lease_duration: Duration::from_secs(3),
            renew_interval: Duration::from_millis(500),
            retry_period: Duration::from_millis(250),
            join_grace: Duration::from_secs(5),
        }
    }
}

impl Default for Timing {
    /// The operator's defaults (`mcp-operator controller --help`).
    fn default() -> Self {
        Self {
            lease_duration: Duration::from_secs(5),
            renew_interval: Duration::from_secs(1),
            retry_period: Duration::from_millis(500),
            join_grace: Duration::from_secs(30),
        }
    }
}

/// How to start replicas: the binary, the shard count, where the Leases
/// live, Redis, who they are to the apiserver, and where logs go.
#[derive(Clone, Debug)]
pub struct Group {
    pub binary: PathBuf,
    pub shards: u32,
    pub lease_namespace: String,
    pub redis: Redis,
    pub timing: Timing,
    /// The kubeconfig replicas use; the environment's KUBECONFIG when
    /// `None`. A ServiceAccount's kubeconfig shows its RBAC is enough.
    pub kubeconfig: Option<PathBuf>,
    pub logs: PathBuf,
}

/// The Redis a group of replicas (and whoever checks on them) uses.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Redis {
    Single(String),
    /// Seed URLs of a Redis Cluster.
    Cluster(Vec<String>),
}

impl Redis {
    /// The testenv's single node (`MCP_REDIS_URL`) or cluster
    /// (`MCP_REDIS_CLUSTER_URLS`).
    pub fn from_testenv(cluster: bool) -> anyhow::Result<Self> {
        let var = |name: &str| {
            std::env::var(name).with_context(|| format!("{name}: run inside the testenv"))
        };
        Ok(if cluster {
            Redis::Cluster(
                var(redis_var::CLUSTER_URLS)?
                    .split(',')
                    .map(str::to_owned)
                    .collect(),
            )
        } else {
            Redis::Single(var(redis_var::URL)?)
        })
    }

    /// The operator's command-line flags for this Redis.
    pub fn flags(&self) -> [String; 2] {
        match self {
            Redis::Single(url) => ["--redis-url".into(), url.clone()],
            Redis::Cluster(urls) => ["--redis-cluster-urls".into(), urls.join(",")],
        }
    }

    /// Every node URL given (one for a single node).
    pub fn urls(&self) -> Vec<String> {
        match self {
            Redis::Single(url) => vec![url.clone()],
            Redis::Cluster(urls) => urls.clone(),
        }
    }

    /// A connection pool for checks, through the operator's own store code
    /// (so it follows cluster redirects and failovers), without a
    /// meaningful rate limit.
    pub fn store(&self) -> anyhow::Result<Store> {
        let (redis_url, redis_cluster_urls) = match self {
            Redis::Single(url) => (Some(url.clone()), Vec::new()),
            Redis::Cluster(urls) => (None, urls.clone()),
        };
        Ok(Store::new(
            &RedisArgs::from_env_credentials(redis_url, redis_cluster_urls),
            "mcp_chaos",
        )?)
    }
}

/// One running process of the binary: an operator or a router replica.
pub struct Replica {
    pub name: String,
    pub child: Child,
    pub metrics_port: u16,
}

/// A loopback port free now.
pub fn free_port() -> anyhow::Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port())
}

fn seconds(d: Duration) -> String {
    format!("{}ms", d.as_millis())
}

impl Group {
    pub fn start(&self, name: &str) -> anyhow::Result<Replica> {
        self.start_with::<&str>(name, &[])
    }

    /// Starts a replica with `extra` flags after the group's own.
    pub fn start_with<S: AsRef<str>>(&self, name: &str, extra: &[S]) -> anyhow::Result<Replica> {
        let metrics_port = free_port()?;
        let mut args: Vec<String> = ["controller", "--shards", &self.shards.to_string()]
            .map(str::to_owned)
            .into();
        args.extend(
            [
                "--lease-namespace",
                &self.lease_namespace,
                "--identity",
                name,
                "--metrics-listen",
                &format!("127.0.0.1:{metrics_port}"),
                "--lease-duration",
                &seconds(self.timing.lease_duration),
                "--renew-interval",
                &seconds(self.timing.renew_interval),
                "--retry-period",
                &seconds(self.timing.retry_period),
                "--join-grace",
                &seconds(self.timing.join_grace),
            ]
            .map(str::to_owned),
        );
        args.extend(self.redis.flags());
        args.extend(extra.iter().map(|flag| flag.as_ref().to_owned()));
        Replica::spawn(
            &self.binary,
            &args,
            name,
            &self.logs,
            self.kubeconfig.as_deref(),
            metrics_port,
        )
    }
}

impl Replica {
    /// Starts `binary args…` as `name`, logging to `<logs>/<name>.log`,
    /// with Redis only from `args` (the testenv exports both kinds) and its
    /// /metrics on `metrics_port`.
    pub fn spawn(
        binary: &Path,
        args: &[String],
        name: &str,
        logs: &Path,
        kubeconfig: Option<&Path>,
        metrics_port: u16,
    ) -> anyhow::Result<Self> {
        std::fs::create_dir_all(logs)?;
        let log = std::fs::File::create(logs.join(format!("{name}.log")))?;
        let mut command = Command::new(binary);
        if let Some(kubeconfig) = kubeconfig {
            command.env("KUBECONFIG", kubeconfig);
        }
        let child = command
            .args(args)
            .env_remove(redis_var::URL)
            .env_remove(redis_var::CLUSTER_URLS)
            .env("RUST_LOG", "info")
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .spawn()
            .with_context(|| format!("starting {}", binary.display()))?;
        Ok(Replica {
            name: name.to_owned(),
            child,
            metrics_port,
        })
    }
}

impl Replica {
    /// Sends a signal (`KILL`, `TERM`, `STOP`, `CONT`) to the process.
    pub fn signal(&self, signal: &str) -> anyhow::Result<()> {
        let status = Command::new("kill")
            .args([format!("-{signal}"), self.child.id().to_string()])
            .status()?;
        if !status.success() {
            bail!("kill -{signal} {} failed", self.name);
        }
        Ok(())
    }

    /// The sum of every series of a metric (its only value when it has no
    /// labels), from the replica's /metrics.
    pub fn metric(&self, name: &str) -> anyhow::Result<f64> {
        use std::io::{Read, Write};
        let mut stream = std::net::TcpStream::connect(("127.0.0.1", self.metrics_port))?;
        stream.set_read_timeout(Some(Duration::from_secs(5)))?;
        stream.write_all(b"GET /metrics HTTP/1.0\r\nHost: localhost\r\n\r\n")?;
        let mut body = String::new();
        stream.read_to_string(&mut body)?;
        Ok(metrics::samples(&body, name).map(|(_, value)| value).sum())
    }
}

impl Replica {
    /// Stops the replica as Kubernetes would: SIGTERM, so it releases its
    /// Leases, then SIGKILL if it has not exited within `grace`.
    pub async fn stop(mut self, grace: Duration) -> anyhow::Result<()> {
        self.signal("TERM")?;
        let deadline = Instant::now() + grace;
        while Instant::now() < deadline {
            if self.child.try_wait()?.is_some() {
                return Ok(());
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        Ok(())
    }
}

impl Drop for Replica {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The replica name in a holder identity (`<name>-<8 hex>`).
pub fn replica_of(identity: &str) -> &str {
    identity.rsplit_once('-').map_or(identity, |(name, _)| name)
}

/// Shard → holder replica name, for every shard Lease that has a holder.
pub async fn holders(
    client: &Client,
    lease_namespace: &str,
) -> anyhow::Result<BTreeMap<u32, String>> {
    let api: Api<Lease> = Api::namespaced(client.clone(), lease_namespace);
    let leases = api
        .list(&ListParams::default().labels("kubemcp.io/lease=shard"))
        .await?;
    Ok(leases
        .items
        .iter()
        .filter_map(|lease| {
            let shard = lease
                .name_any()
                .strip_prefix("mcp-operator-shard-")?
                .parse()
                .ok()?;
            let holder = lease
                .spec
                .as_ref()?
                .holder_identity
                .as_deref()
                .filter(|h| !h.is_empty())?;
            Some((shard, replica_of(holder).to_owned()))
        })
        .collect())
}

/// The replica that last wrote `server`'s catalog, from its fence.
pub async fn writer(
    redis: &mut impl redis::aio::ConnectionLike,
    server: &ServerId,
) -> anyhow::Result<Option<String>> {
    let holder: Option<String> = redis::cmd("HGET")
        .arg(keys::fence(server))
        .arg("holder")
        .query_async(redis)
        .await?;
    Ok(holder.map(|h| replica_of(&h).to_owned()))
}

/// The shard of `server` in a layout of `shards`.
pub fn shard(server: &ServerId, shards: u32) -> u32 {
    shard_of(&server.namespace, shards).0
}

/// Deletes the namespaces `names` (their deletion goes on in the
/// background).
pub async fn delete_namespaces(client: &Client, names: &[String]) -> anyhow::Result<()> {
    let api: Api<Namespace> = Api::all(client.clone());
    stream::iter(names)
        .map(|ns| {
            let api = api.clone();
            async move {
                api.delete(ns, &Default::default())
                    .await
                    .with_context(|| format!("deleting namespace {ns}"))
            }
        })
        .buffer_unordered(32)
        .try_collect::<Vec<_>>()
        .await?;
    Ok(())
}

/// Waits until none of the namespaces `names` exists any more, so that
/// what runs next does not hold their objects in its caches.
pub async fn wait_namespaces_gone(
    client: &Client,
    names: &[String],
    limit: Duration,
) -> anyhow::Result<()> {
    let api: Api<Namespace> = Api::all(client.clone());
    poll(limit, "namespaces to be deleted", || {
        let api = api.clone();
        async move {
            let left = api.list_metadata(&ListParams::default()).await?.items;
            let gone = !left.iter().any(|ns| names.contains(&ns.name_any()));
            Ok(gone.then_some(()))
        }
    })
    .await
}

/// Polls `check` every 50 ms until it returns `Some`, for at most `limit`.
pub async fn poll<T, F, Fut>(limit: Duration, what: &str, mut check: F) -> anyhow::Result<T>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = anyhow::Result<Option<T>>>,
{
    let started = Instant::now();
    loop {
        if let Some(value) = check().await? {
            return Ok(value);
        }
        if started.elapsed() > limit {
            bail!("timed out after {limit:?} waiting for {what}");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Where a run keeps replica logs: `<target>/chaos-logs/<name>`.
pub fn logs_dir(name: &str) -> PathBuf {
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map_or_else(|| Path::new("target").to_path_buf(), PathBuf::from);
    target.join("chaos-logs").join(name)
}

/// Creates a namespace named `<prefix>-<random>` and returns its name.
pub async fn namespace(client: &Client, prefix: &str) -> anyhow::Result<String> {
    let api: Api<Namespace> = Api::all(client.clone());
    let mut ns = Namespace::default();
    ns.metadata.generate_name = Some(format!("{prefix}-"));
    Ok(api.create(&PostParams::default(), &ns).await?.name_any())
}
