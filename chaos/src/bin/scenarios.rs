//! Chaos scenarios (`make chaos`): each fault, over repeated runs, with
//! operator replicas converging a population while a client churns tools.
//! Needs the testenv and a release build; writes docs/chaos.md.

use std::path::PathBuf;
use std::time::Duration;

use clap::Parser;
use mcp_operator_chaos::converge::Observer;
use mcp_operator_chaos::population::Sizes;
use mcp_operator_chaos::report::{quantile, today, write_section};
use mcp_operator_chaos::scenario::{self, Fault, Outcome, Plan, Testenv};
use mcp_operator_chaos::traffic::TrafficArgs;
use mcp_operator_chaos::{Group, Redis, Timing, logs_dir};

#[derive(Parser)]
#[command(name = "scenarios", about)]
struct Cli {
    /// The mcp-operator binary.
    #[arg(long)]
    binary: PathBuf,
    #[arg(
        long,
        value_delimiter = ',',
        default_value = "kill,rolling,apiserver,redis-primary,router"
    )]
    faults: Vec<Fault>,
    /// Runs of each fault.
    #[arg(long, default_value_t = 3)]
    runs: usize,
    #[command(flatten)]
    sizes: Sizes,
    #[arg(long, default_value_t = 3)]
    replicas: usize,
    #[arg(long, default_value = "30s", value_parser = humantime::parse_duration)]
    duration: Duration,
    #[arg(long, default_value = "6s", value_parser = humantime::parse_duration)]
    interval: Duration,
    #[arg(long, default_value_t = 10)]
    churn_rate: u32,
    #[arg(long, default_value = "5m", value_parser = humantime::parse_duration)]
    limit: Duration,
    #[command(flatten)]
    traffic: TrafficArgs,
    /// Rewrite the scenarios section of this report.
    #[arg(long)]
    report: Option<String>,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let client = kube::Client::try_default().await?;
    let lease_namespace = mcp_operator_chaos::namespace(&client, "chaos-leases").await?;
    let group = |redis: Redis| Group {
        binary: cli.binary.clone(),
        kubeconfig: None,
        shards: 16,
        lease_namespace: lease_namespace.clone(),
        redis,
        timing: Timing::default(),
        logs: logs_dir("scenarios"),
    };
    let testenv = Testenv::of(&PathBuf::from(env!("CARGO_MANIFEST_DIR")).join(".."));
    let plan = Plan {
        sizes: cli.sizes,
        replicas: cli.replicas,
        duration: cli.duration,
        interval: cli.interval,
        churn_rate: cli.churn_rate,
        limit: cli.limit,
        traffic: cli.traffic,
    };
    let mut rows = Vec::new();
    for &fault in &cli.faults {
        let redis = Redis::from_testenv(fault.needs_cluster())?;
        let mut observer = Observer::new(client.clone(), &redis)?;
        let group = group(redis);
        let mut outcomes = Vec::new();
        for run in 0..cli.runs {
            eprintln!("scenarios: {fault:?}, run {}/{}", run + 1, cli.runs);
            let outcome = scenario::run(fault, &plan, &group, &mut observer, &testenv).await?;
            for sample in &outcome.load.samples {
                eprintln!("scenarios: a router request failed: {sample}");
            }
            outcomes.push(outcome);
        }
        rows.push(outcomes);
    }
    let section = markdown(&cli, &rows);
    println!("{section}");
    if let Some(path) = &cli.report {
        write_section(path, "scenarios", &section)?;
    }
    let stale: usize = rows.iter().flatten().map(|o| o.stale_writers).sum();
    anyhow::ensure!(stale == 0, "{stale} servers ended written by a non-holder");
    let wrong: usize = rows.iter().flatten().map(|o| o.wrong_users).sum();
    anyhow::ensure!(
        wrong == 0,
        "{wrong} Redis users ended missing or wrong on a node"
    );
    Ok(())
}

fn markdown(cli: &Cli, rows: &[Vec<Outcome>]) -> String {
    let s = cli.sizes;
    let t = cli.traffic;
    let mut out = format!(
        "## Scenarios\n\n\
         `make chaos` (chaos/src/bin/scenarios.rs): {} replicas, 16 shards, {} MCPTools, {} MCPPrompts, {} MCPResources and \
         {} MCPServers over {} namespaces. Each run converges a fresh population, then for {:?} injects the fault every {:?} \
         while a client changes {} tools per second (a new description; every fourth change also moves the tool to another \
         server; every other change is to a tool of the first server) and {} MCP clients call {} routers of the first \
         server with {} tools/list requests per second in all, round robin, each over its own session (a killed router \
         stays among the endpoints for {:?}, as a dead pod does until its endpoint is removed). Then it waits until every \
         object is Ready for its generation, every catalog in Redis equals the one computed from the API, and every server \
         was last written by its shard's holder, and every server's Redis user is right on every node. {} runs per fault; latencies are pooled over the runs. Measured {}.\n\n\
         | fault | runs | faults | changes made | changes the apiserver refused | change → published p50 / p99 | never published | recovered after the last fault (median / max) | stale writers | fenced writes refused |\n\
         | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |\n",
        cli.replicas,
        s.tools,
        s.prompts,
        s.resources,
        s.servers,
        s.namespaces,
        cli.duration,
        cli.interval,
        cli.churn_rate,
        t.clients,
        t.routers,
        t.client_rate,
        t.endpoint_lag,
        cli.runs,
        today()
    );
    let mut routers = String::from(
        "\nThe routers' clients during the same runs:\n\n\
         | fault | router requests | failed | change → every router serving it p50 / p99 | changes never served |\n\
         | --- | --- | --- | --- | --- |\n",
    );
    for outcomes in rows {
        let Some(first) = outcomes.first() else {
            continue;
        };
        let sum = |f: fn(&Outcome) -> usize| outcomes.iter().map(f).sum::<usize>();
        let pooled = |f: fn(&Outcome) -> &[Duration]| {
            let mut all: Vec<Duration> =
                outcomes.iter().flat_map(|o| f(o).iter().copied()).collect();
            all.sort();
            let ms = |q| quantile(&all, q).as_secs_f64() * 1000.0;
            format!("{:.0} ms / {:.0} ms", ms(0.5), ms(0.99))
        };
        let changes = sum(|o| o.churn.changes);
        let errors = sum(|o| o.churn.errors);
        let mut recovered: Vec<Duration> = outcomes.iter().map(|o| o.recovered_in).collect();
        recovered.sort();
        out.push_str(&format!(
            "| {} | {} | {} | {} | {} ({:.1}%) | {} | {} | {:.1} s / {:.1} s | {} | {:.0} |\n",
            first.fault.describe(),
            outcomes.len(),
            sum(|o| o.faults),
            changes,
            errors,
            100.0 * errors as f64 / (changes + errors).max(1) as f64,
            pooled(|o| &o.churn.published),
            sum(|o| o.churn.missed),
            quantile(&recovered, 0.5).as_secs_f64(),
            recovered.last().copied().unwrap_or_default().as_secs_f64(),
            sum(|o| o.stale_writers),
            outcomes.iter().map(|o| o.fenced_rejections).sum::<f64>(),
        ));
        let requests = sum(|o| o.load.requests);
        let failed = sum(|o| o.load.errors);
        routers.push_str(&format!(
            "| {} | {} | {} ({:.2}%) | {} | {} |\n",
            first.fault.describe(),
            requests,
            failed,
            100.0 * failed as f64 / requests.max(1) as f64,
            pooled(|o| &o.churn.served),
            sum(|o| o.churn.unserved),
        ));
    }
    out + &routers
}
