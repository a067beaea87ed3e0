//! Load test: a large population of MCP resources, converged by 1, 2 and 4
//! operator replicas in turn, measured against the apiserver's own status
//! write ceiling, then a churn phase. `make loadtest` runs it at the
//! default size and writes docs/benchmarks.md; `tests/loadtest.rs` runs it
//! at a smoke size so the harness cannot rot.

pub mod ceiling;
pub mod requests;

use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::Context;
use clap::ValueEnum;
use kube::Client;
use mcp_operator_chaos::churn::{self, Churn};
use mcp_operator_chaos::converge::Observer;
use mcp_operator_chaos::population::{self, Population, Sizes};
use mcp_operator_chaos::report::{quantile, today};
use mcp_operator_chaos::traffic::{self, Load, Routers, TrafficArgs};
use mcp_operator_chaos::{
    Group, Redis, Replica, Timing, delete_namespaces, logs_dir, namespace, process,
    wait_namespaces_gone,
};
use mcp_operator_controller::RouterCredentials;
use mcp_operator_store::env as redis_var;

use crate::requests::Requests;

/// How long a stopped replica may take to release its Leases and exit.
const GRACE: Duration = Duration::from_secs(15);

/// What to run.
#[derive(Clone, Debug, clap::Args)]
pub struct Config {
    /// The mcp-operator binary (a release build for real numbers).
    #[arg(long)]
    pub binary: PathBuf,
    /// Replica counts to converge the population with, one run each.
    #[arg(long, value_delimiter = ',', default_value = "1,2,4")]
    pub replicas: Vec<usize>,
    /// How routers authenticate to Redis (`--router-redis-credentials`):
    /// every replica count runs with the first; the largest runs again
    /// with each of the others, on a fresh population of the same size,
    /// so the cost of a Redis user per server shows side by side.
    #[arg(
        long,
        value_delimiter = ',',
        value_enum,
        default_value = "isolated,shared"
    )]
    pub credentials: Vec<RouterCredentials>,
    #[command(flatten)]
    pub sizes: Sizes,
    #[arg(long, default_value_t = 16)]
    pub shards: u32,
    /// Status writes in flight for the ceiling client: the operator's
    /// default reconcile concurrency.
    #[arg(long, default_value_t = 16)]
    pub ceiling_concurrency: usize,
    /// Tool changes per second in the churn phase (with the most replicas).
    #[arg(long, default_value_t = 20)]
    pub churn_rate: u32,
    #[arg(long, default_value = "30s", value_parser = humantime::parse_duration)]
    pub churn_duration: Duration,
    /// Routers of the first server, and their clients, during the churn.
    #[command(flatten)]
    pub traffic: TrafficArgs,
    /// Longest a run may take to converge.
    #[arg(long, default_value = "30m", value_parser = humantime::parse_duration)]
    pub limit: Duration,
}

/// What one replica count measured.
#[derive(Clone, Debug)]
pub struct Run {
    pub replicas: usize,
    pub credentials: RouterCredentials,
    pub objects: usize,
    pub converged_in: Duration,
    /// Reconciles of each replica, from its metrics.
    pub reconciles: Vec<f64>,
    /// Apiserver requests during the run, not counting the load test's own.
    pub apiserver_requests: f64,
    /// All requests during the run by verb and resource, the load test's
    /// own included (they cannot be told apart per resource).
    pub requests: Requests,
    pub peak_rss: Vec<u64>,
    pub cpu_seconds: Vec<f64>,
    /// Status writes per second a plain client reached on the same objects.
    pub ceiling: f64,
    pub churn: Option<Churned>,
}

/// The churn phase: the changes, and what the routers' clients saw.
#[derive(Clone, Debug)]
pub struct Churned {
    pub churn: Churn,
    pub load: Load,
}

impl Run {
    /// Objects converged per second.
    pub fn throughput(&self) -> f64 {
        self.objects as f64 / self.converged_in.as_secs_f64().max(0.001)
    }
}

/// Runs every replica count in turn; each gets a fresh population, deleted
/// afterwards.
pub async fn run(config: &Config, client: &Client, redis: &Redis) -> anyhow::Result<Vec<Run>> {
    let mut observer = Observer::new(client.clone(), redis)?;
    let stamp = std::process::id();
    // Leases live outside the populations, which are deleted between runs.
    let leases = namespace(client, "load-leases").await?;
    let (first, others) = config
        .credentials
        .split_first()
        .context("--credentials names none")?;
    let largest = config.replicas.iter().copied().max().unwrap_or(1);
    // The churn runs once, with the most replicas and the first credentials.
    let plan = config
        .replicas
        .iter()
        .enumerate()
        .map(|(index, &replicas)| (replicas, *first, index + 1 == config.replicas.len()))
        .chain(
            others
                .iter()
                .map(|&credentials| (largest, credentials, false)),
        );
    let mut runs = Vec::new();
    for (replicas, credentials, churn) in plan {
        let mode = flag_value(credentials);
        let name = format!("load-{stamp}-r{replicas}-{mode}");
        eprintln!(
            "loadtest: {replicas} replica(s), {mode} router credentials: creating {} objects",
            config.sizes.objects()
        );
        let population = population::create(client, &name, config.sizes).await?;
        let group = Group {
            binary: config.binary.clone(),
            kubeconfig: None,
            shards: config.shards,
            lease_namespace: leases.clone(),
            redis: redis.clone(),
            timing: Timing::default(),
            logs: logs_dir(&name),
        };
        let flags = credential_flags(credentials)?;
        let measured = converge_with(
            config,
            &mut observer,
            &group,
            &population,
            (replicas, credentials, &flags),
            churn,
        )
        .await;
        // Servers carry a finalizer: an operator must run while they go.
        let cleaner = group.start_with("cleanup", &flags)?;
        delete_namespaces(client, &population.namespaces).await?;
        wait_namespaces_gone(client, &population.namespaces, config.limit).await?;
        cleaner.stop(GRACE).await?;
        let measured = measured?;
        eprintln!(
            "loadtest: {replicas} replica(s), {mode}: converged {} objects in {:.1} s",
            measured.objects,
            measured.converged_in.as_secs_f64()
        );
        runs.push(measured);
    }
    delete_namespaces(client, std::slice::from_ref(&leases)).await?;
    Ok(runs)
}

/// `--router-redis-credentials`'s value for `credentials`.
fn flag_value(credentials: RouterCredentials) -> String {
    credentials
        .to_possible_value()
        .map_or_else(|| format!("{credentials:?}"), |v| v.get_name().to_owned())
}

/// The operator's flags for `credentials`. Shared routers use the
/// testenv's admin user: what a Redis without ACL SETUSER would hand out.
fn credential_flags(credentials: RouterCredentials) -> anyhow::Result<Vec<String>> {
    let mut flags = vec![
        "--router-redis-credentials".to_owned(),
        flag_value(credentials),
    ];
    if credentials == RouterCredentials::Shared {
        let var = |name: &str| {
            std::env::var(name).with_context(|| format!("{name}: run inside the testenv"))
        };
        flags.extend([
            "--router-redis-username".to_owned(),
            var(redis_var::USERNAME)?,
            "--router-redis-password".to_owned(),
            var(redis_var::PASSWORD)?,
        ]);
    }
    Ok(flags)
}

async fn converge_with(
    config: &Config,
    observer: &mut Observer,
    group: &Group,
    population: &Population,
    (replicas, credentials, flags): (usize, RouterCredentials, &[String]),
    churn: bool,
) -> anyhow::Result<Run> {
    let before = Requests::scrape(&observer.client).await?;
    let own_before = observer.requests;
    let started = Instant::now();
    let group_replicas: Vec<Replica> = (0..replicas)
        .map(|i| group.start_with(&format!("r{i}"), flags))
        .collect::<Result<_, _>>()?;
    let last = observer
        .wait_converged(population, started, config.limit)
        .await
        .with_context(|| format!("logs in {}", group.logs.display()))?;
    let converged_in = started.elapsed();
    let requests = Requests::scrape(&observer.client).await?.since(&before);
    let own = (observer.requests - own_before) as f64;

    let churn = if churn {
        Some(churn_with_routers(config, observer, group, population).await?)
    } else {
        None
    };
    let mut reconciles = Vec::new();
    let mut peak_rss = Vec::new();
    let mut cpu_seconds = Vec::new();
    for replica in &group_replicas {
        reconciles.push(replica.metric("mcp_operator_reconciles_total")?);
        peak_rss.push(process::peak_rss(replica.child.id())?);
        cpu_seconds.push(process::cpu_seconds(replica.child.id())?);
    }
    for replica in group_replicas {
        replica.stop(GRACE).await?;
    }
    let ceiling =
        ceiling::status_writes(observer, &population.run, config.ceiling_concurrency).await?;
    Ok(Run {
        replicas,
        credentials,
        objects: last.objects,
        converged_in,
        reconciles,
        apiserver_requests: (requests.total() - own).max(0.0),
        requests,
        peak_rss,
        cpu_seconds,
        ceiling,
        churn,
    })
}

/// Churns while clients call the routers of the first server, which half
/// of the changes are to (change → router serving).
async fn churn_with_routers(
    config: &Config,
    observer: &mut Observer,
    group: &Group,
    population: &Population,
) -> anyhow::Result<Churned> {
    let (routers, serving) =
        Routers::of_first_server(&observer.client, group, population, config.traffic.routers)
            .await?;
    let churning = churn::run(
        observer,
        &group.redis,
        population,
        config.churn_rate,
        config.churn_duration,
        Some(&serving),
    );
    let (churn, load) =
        traffic::during(&routers.endpoints, &serving, &config.traffic, churning).await?;
    Ok(Churned {
        churn: churn?,
        load,
    })
}

/// How many request kinds the report lists per run.
const REQUEST_KINDS: usize = 8;

/// The report section of a load test.
pub fn markdown(config: &Config, runs: &[Run]) -> String {
    let s = config.sizes;
    let mut out = format!(
        "## Convergence at scale\n\n\
         `make loadtest` (loadtest/): {} MCPTools, {} MCPPrompts, {} MCPResources and {} MCPServers (one router replica each) \
         over {} namespaces, {} shards; each replica count converges a fresh population from a cold start, with a Redis ACL user \
         per server (`isolated`, the default); the most replicas also converge one with the routers sharing one credential \
         (`shared`), for the cost of the users side by side. Converged means every \
         object Ready with `observedGeneration == generation` and every server's catalog in Redis holding exactly its members. \
         The ceiling is a plain client writing one status to each of the same objects, {} at a time, on the same apiserver in \
         the same run. Measured {}.\n\n\
         | replicas | router credentials | converged in | objects/s | ceiling (writes/s) | ratio | reconciles/s | reconciles per replica (max) | apiserver requests/object | peak RSS (max) | CPU s (sum) |\n\
         | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |\n",
        s.tools,
        s.prompts,
        s.resources,
        s.servers,
        s.namespaces,
        config.shards,
        config.ceiling_concurrency,
        today()
    );
    let max = |v: &[f64]| v.iter().copied().fold(0.0, f64::max);
    for run in runs {
        let seconds = run.converged_in.as_secs_f64();
        let reconciles: f64 = run.reconciles.iter().sum();
        out.push_str(&format!(
            "| {} | {} | {:.1} s | {:.0} | {:.0} | {:.0}% | {:.0} | {:.0} | {:.1} | {:.0} MiB | {:.1} |\n",
            run.replicas,
            flag_value(run.credentials),
            seconds,
            run.throughput(),
            run.ceiling,
            100.0 * run.throughput() / run.ceiling.max(0.001),
            reconciles / seconds.max(0.001),
            max(&run.reconciles),
            run.apiserver_requests / run.objects.max(1) as f64,
            run.peak_rss.iter().copied().max().unwrap_or(0) as f64 / (1024.0 * 1024.0),
            run.cpu_seconds.iter().sum::<f64>(),
        ));
    }
    out.push_str(
        "\nWhere the apiserver's requests went (the load test's own included), largest first:\n\n",
    );
    for run in runs {
        let objects = run.objects.max(1) as f64;
        let top: Vec<String> = run
            .requests
            .top(REQUEST_KINDS)
            .iter()
            .map(|(key, n)| format!("{key} {:.2}", n / objects))
            .collect();
        out.push_str(&format!(
            "- {} replica(s), {}, per object: {}\n",
            run.replicas,
            flag_value(run.credentials),
            top.join(", ")
        ));
    }
    if let Some((run, churned)) = runs.iter().find_map(|r| r.churn.as_ref().map(|c| (r, c))) {
        let Churned { churn, load } = churned;
        let ms = |latencies: &[Duration], q| quantile(latencies, q).as_secs_f64() * 1000.0;
        let max = |latencies: &[Duration]| {
            latencies.last().copied().unwrap_or_default().as_secs_f64() * 1000.0
        };
        out.push_str(&format!(
            "\nChurn with {} replica(s): {} tool changes at {}/s over {:?} (descriptions; every fourth also moves the tool \
             to another server; every other change is to a tool of the first server, whose {} routers {} MCP clients call \
             with {} tools/list requests per second).\n\n\
             | from a change to | samples | p50 | p99 | max | never |\n\
             | --- | --- | --- | --- | --- | --- |\n\
             | its catalog published in Redis | {} | {:.0} ms | {:.0} ms | {:.0} ms | {} |\n\
             | every router serving it | {} | {:.0} ms | {:.0} ms | {:.0} ms | {} |\n\n\
             Router requests: {}, failed: {} ({:.2}%).\n",
            run.replicas,
            churn.changes,
            config.churn_rate,
            config.churn_duration,
            config.traffic.routers,
            config.traffic.clients,
            config.traffic.client_rate,
            churn.published.len(),
            ms(&churn.published, 0.5),
            ms(&churn.published, 0.99),
            max(&churn.published),
            churn.missed,
            churn.served.len(),
            ms(&churn.served, 0.5),
            ms(&churn.served, 0.99),
            max(&churn.served),
            churn.unserved,
            load.requests,
            load.errors,
            100.0 * load.error_rate(),
        ));
    }
    out
}
