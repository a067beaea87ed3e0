//! Chaos scenarios: operator replicas converge a population, then a fault
//! is injected repeatedly while a client changes tools at a steady rate and
//! MCP clients call the routers of one server. Each ends by checking the
//! invariants: every object converged, every catalog equal to the
//! expectation computed from the API, every server last written by the
//! holder of its shard (a stale, fenced-off writer would show up as any
//! other writer), and every server's Redis user right on every node; the
//! routers' client error rate is reported. Bounded in
//! time, loopback only.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::Context;
use kube::Client;
use rand::Rng;

use crate::churn::{self, Churn};
use crate::converge::Observer;
use crate::population::{self, Population, Sizes};
use crate::traffic::{self, Load, Routers, TrafficArgs};
use crate::users;
use crate::{Group, Replica, delete_namespaces, holders, shard, wait_namespaces_gone, writer};

/// The faults a scenario injects.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Fault {
    /// `kill -9` of a random operator replica, replaced at once.
    Kill,
    /// SIGTERM of each replica in turn, each replaced before the next.
    Rolling,
    /// `kill -9` of the apiserver, restarted by the testenv script.
    Apiserver,
    /// `kill -9` of a Redis Cluster primary (its replica takes over; the
    /// node comes back as a replica), with the replicas on the cluster.
    RedisPrimary,
    /// `kill -9` of a router replica under client load, replaced at once.
    Router,
}

impl Fault {
    pub fn describe(self) -> &'static str {
        match self {
            Fault::Kill => "`kill -9` of a random operator replica",
            Fault::Rolling => "rolling SIGTERM restart of the operator replicas",
            Fault::Apiserver => "`kill -9` and restart of the kube-apiserver",
            Fault::RedisPrimary => "`kill -9` of a Redis Cluster primary",
            Fault::Router => "`kill -9` of a router replica",
        }
    }

    /// Whether the replicas must use the Redis Cluster for this fault.
    pub fn needs_cluster(self) -> bool {
        self == Fault::RedisPrimary
    }
}

/// How big and how long.
#[derive(Clone, Debug)]
pub struct Plan {
    pub sizes: Sizes,
    pub replicas: usize,
    /// How long faults are injected (and the client churns).
    pub duration: Duration,
    /// Time between faults.
    pub interval: Duration,
    pub churn_rate: u32,
    /// Longest the population may take to converge, before and after.
    pub limit: Duration,
    pub traffic: TrafficArgs,
}

/// What one scenario run saw.
#[derive(Clone, Debug)]
pub struct Outcome {
    pub fault: Fault,
    pub faults: usize,
    pub churn: Churn,
    /// What the routers' clients saw during the faults.
    pub load: Load,
    /// From the end of the fault phase until every invariant held.
    pub recovered_in: Duration,
    /// Servers last written by a replica that does not hold their shard.
    pub stale_writers: usize,
    /// Writes the Redis fence refused, summed over the live replicas.
    pub fenced_rejections: f64,
    /// (server, Redis node) pairs whose ACL user was missing or wrong at
    /// the end (users.rs).
    pub wrong_users: usize,
}

/// The testenv's scripts, which inject the apiserver and Redis faults
/// (they read the same `TESTENV_*` variables as the environment that
/// started them).
#[derive(Clone, Debug)]
pub struct Testenv {
    pub dir: PathBuf,
}

impl Testenv {
    /// The testenv of the repository at `root`.
    pub fn of(root: &Path) -> Self {
        Self {
            dir: root.join("tests/testenv"),
        }
    }

    /// Runs `script command` to completion off the async runtime.
    async fn script(&self, script: &str, command: &'static str) -> anyhow::Result<()> {
        let path = self.dir.join(script);
        let status = tokio::task::spawn_blocking(move || {
            Command::new(path)
                .arg(command)
                .stdout(std::process::Stdio::null())
                .status()
        })
        .await??;
        anyhow::ensure!(status.success(), "{} {command} failed", script);
        Ok(())
    }
}

/// Runs one scenario on a fresh population, which it deletes afterwards.
pub async fn run(
    fault: Fault,
    plan: &Plan,
    group: &Group,
    observer: &mut Observer,
    testenv: &Testenv,
) -> anyhow::Result<Outcome> {
    let name = format!(
        "chaos-{}-{}",
        std::process::id(),
        rand::rng().random::<u16>()
    );
    let population = population::create(&observer.client, &name, plan.sizes).await?;
    let mut replicas: Vec<Replica> = (0..plan.replicas)
        .map(|i| group.start(&format!("{name}-r{i}")))
        .collect::<Result<_, _>>()?;
    let outcome = exercise(
        fault,
        plan,
        group,
        observer,
        testenv,
        &population,
        &mut replicas,
    )
    .await;
    for replica in replicas {
        replica.stop(Duration::from_secs(15)).await?;
    }
    // Servers carry a finalizer: an operator must run while they go.
    let cleaner = group.start(&format!("{name}-cleanup"))?;
    delete_namespaces(&observer.client, &population.namespaces).await?;
    wait_namespaces_gone(&observer.client, &population.namespaces, plan.limit).await?;
    cleaner.stop(Duration::from_secs(15)).await?;
    outcome.with_context(|| format!("scenario {fault:?}; logs in {}", group.logs.display()))
}

async fn exercise(
    fault: Fault,
    plan: &Plan,
    group: &Group,
    observer: &mut Observer,
    testenv: &Testenv,
    population: &Population,
    replicas: &mut Vec<Replica>,
) -> anyhow::Result<Outcome> {
    observer
        .wait_converged(population, Instant::now(), plan.limit)
        .await?;
    let client = observer.client.clone();
    let (mut routers, serving) =
        Routers::of_first_server(&client, group, population, plan.traffic.routers).await?;
    let endpoints = routers.endpoints.clone();
    let faulted = async {
        tokio::join!(
            churn::run(
                observer,
                &group.redis,
                population,
                plan.churn_rate,
                plan.duration,
                Some(&serving)
            ),
            inject(fault, plan, group, testenv, replicas, &mut routers),
        )
    };
    let ((churned, faults), load) =
        traffic::during(&endpoints, &serving, &plan.traffic, faulted).await?;
    let (churn, faults) = (churned?, faults?);
    let started = Instant::now();
    observer
        .wait_converged(population, started, plan.limit)
        .await?;
    let stale_writers = stale_writers(&client, observer, group, population, plan.limit).await?;
    let wrong_users =
        users::wrong_users(&client, &group.redis, &population.servers, plan.limit).await?;
    let recovered_in = started.elapsed();
    let mut fenced_rejections = 0.0;
    for replica in replicas.iter() {
        fenced_rejections += replica.metric("mcp_operator_fenced_writes_rejected_total")?;
    }
    Ok(Outcome {
        fault,
        faults,
        churn,
        load,
        recovered_in,
        stale_writers,
        fenced_rejections,
        wrong_users,
    })
}

/// Injects `fault` every `plan.interval` for `plan.duration`.
async fn inject(
    fault: Fault,
    plan: &Plan,
    group: &Group,
    testenv: &Testenv,
    replicas: &mut Vec<Replica>,
    routers: &mut Routers,
) -> anyhow::Result<usize> {
    let started = Instant::now();
    let mut faults = 0;
    while started.elapsed() + plan.interval <= plan.duration {
        tokio::time::sleep(plan.interval).await;
        let stamp = format!("{}-{faults}", replicas.len());
        match fault {
            Fault::Kill => {
                let index = rand::rng().random_range(0..replicas.len());
                let victim = replicas.remove(index);
                victim.signal("KILL")?;
                let name = format!("{}-k{stamp}", victim.name);
                drop(victim);
                replicas.push(group.start(&name)?);
            }
            Fault::Rolling => {
                let victim = replicas.remove(0);
                let name = format!("{}-t{stamp}", victim.name);
                victim.stop(Duration::from_secs(15)).await?;
                replicas.push(group.start(&name)?);
            }
            Fault::Apiserver => {
                testenv
                    .script("controlplane.sh", "restart-apiserver")
                    .await?
            }
            Fault::RedisPrimary => testenv.script("redis.sh", "kill-primary").await?,
            Fault::Router => routers.kill_one(plan.traffic.endpoint_lag).await?,
        }
        faults += 1;
    }
    Ok(faults)
}

/// Servers whose last writer is not the holder of their shard, once every
/// shard has a holder again (a replacement may still be taking over).
async fn stale_writers(
    client: &Client,
    observer: &mut Observer,
    group: &Group,
    population: &Population,
    limit: Duration,
) -> anyhow::Result<usize> {
    let started = Instant::now();
    loop {
        let held = holders(client, &group.lease_namespace).await?;
        let mut redis = observer.redis.get().await?;
        let mut stale = 0;
        for server in &population.servers {
            let holder = held.get(&shard(server, group.shards));
            if writer(&mut redis, server).await?.as_ref() != holder {
                stale += 1;
            }
        }
        if stale == 0 || started.elapsed() > limit {
            return Ok(stale);
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}
