//! Operator replicas as real processes, and what they hold.
//!
//! Used by `tests/sharding.rs` (correctness) and the `failover` benchmark
//! (timing): start replicas of `mcp-operator controller`, kill, stop or
//! terminate them, and read which replica holds which shard from the Leases
//! and which replica last wrote each server from its Redis fence.

pub mod report;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use k8s_openapi::api::coordination::v1::Lease;
use kube::api::{Api, ListParams};
use kube::{Client, ResourceExt};
use mcp_operator_catalog::{ServerId, keys};
use mcp_operator_controller::shard_of;

/// Timings of a replica group.
#[derive(Clone, Debug)]
pub struct Timing {
    pub lease_duration: Duration,
    pub renew_interval: Duration,
    pub retry_period: Duration,
}

/// How to start replicas: the binary, the shard count, where the Leases
/// live, Redis, and where logs go.
#[derive(Clone, Debug)]
pub struct Group {
    pub binary: PathBuf,
    pub shards: u32,
    pub lease_namespace: String,
    pub redis_url: String,
    pub timing: Timing,
    pub logs: PathBuf,
}

/// One running replica.
pub struct Replica {
    pub name: String,
    pub child: Child,
    pub metrics_port: u16,
}

fn free_port() -> anyhow::Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port())
}

fn seconds(d: Duration) -> String {
    format!("{}ms", d.as_millis())
}

impl Group {
    pub fn start(&self, name: &str) -> anyhow::Result<Replica> {
        let metrics_port = free_port()?;
        std::fs::create_dir_all(&self.logs)?;
        let log = std::fs::File::create(self.logs.join(format!("{name}.log")))?;
        let child = Command::new(&self.binary)
            .args(["controller", "--shards", &self.shards.to_string()])
            .args([
                "--lease-namespace",
                &self.lease_namespace,
                "--identity",
                name,
            ])
            .args(["--metrics-listen", &format!("127.0.0.1:{metrics_port}")])
            .args(["--redis-url", &self.redis_url])
            .args(["--lease-duration", &seconds(self.timing.lease_duration)])
            .args(["--renew-interval", &seconds(self.timing.renew_interval)])
            .args(["--retry-period", &seconds(self.timing.retry_period)])
            // The testenv exports both Redis kinds; this group uses one.
            .env_remove("MCP_REDIS_CLUSTER_URLS")
            .env("RUST_LOG", "info")
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .spawn()
            .with_context(|| format!("starting {}", self.binary.display()))?;
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

    /// The value of a metric without labels, from the replica's /metrics.
    pub fn metric(&self, name: &str) -> anyhow::Result<f64> {
        use std::io::{Read, Write};
        let mut stream = std::net::TcpStream::connect(("127.0.0.1", self.metrics_port))?;
        stream.set_read_timeout(Some(Duration::from_secs(5)))?;
        stream.write_all(b"GET /metrics HTTP/1.0\r\nHost: localhost\r\n\r\n")?;
        let mut body = String::new();
        stream.read_to_string(&mut body)?;
        Ok(body
            .lines()
            .find_map(|line| {
                line.strip_prefix(name)?
                    .strip_prefix(' ')?
                    .trim()
                    .parse()
                    .ok()
            })
            .unwrap_or(0.0))
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
    redis: &mut redis::aio::MultiplexedConnection,
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
