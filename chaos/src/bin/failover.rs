//! Failover benchmark: how long a killed or terminated shard holder's
//! shards go unreconciled. Needs the testenv (`eval "$(make -s testenv)"`)
//! and a release build of mcp-operator; `make chaos` runs it and rewrites
//! the failover section of docs/benchmarks.md.
//!
//! Three replicas with the default timings serve servers in 24 namespaces.
//! Each round stops the holder of some shard (`kill -9`, or SIGTERM) and
//! measures the time until every server of its shards has been written by
//! another replica (read from the servers' Redis fences), then starts a
//! replacement. After every round all servers must be written by the
//! current holder of their shard: anything else is an unreconciled object
//! or a stale write.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use anyhow::Context;
use kube::Client;
use kube::api::{Api, Patch, PatchParams};
use mcp_operator_catalog::ServerId;
use mcp_operator_chaos::report::{quantile, today, write_section};
use mcp_operator_chaos::{
    Group, Redis, Replica, Timing, delete_namespaces, holders, logs_dir, namespace, poll, shard,
    wait_namespaces_gone, writer,
};
use serde_json::json;

const SHARDS: u32 = 16;
const NAMESPACES: usize = 24;
const ROUNDS: usize = 20;
const LIMIT: Duration = Duration::from_secs(60);

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let binary = std::env::args()
        .nth(1)
        .context("usage: failover <path to mcp-operator> [benchmarks.md]")?;
    let report = std::env::args().nth(2);
    let client = Client::try_default().await?;
    let redis_url =
        std::env::var("MCP_REDIS_URL").context("MCP_REDIS_URL: run inside the testenv")?;
    let mut redis = mcp_operator_store::RedisArgs::from_env_credentials(None, vec![])
        .client(&redis_url)?
        .get_multiplexed_async_connection()
        .await?;
    let lease_namespace = namespace(&client, "failover-leases").await?;
    let timing = Timing::default();
    let group = Group {
        binary: binary.into(),
        shards: SHARDS,
        lease_namespace: lease_namespace.clone(),
        redis: Redis::Single(redis_url.clone()),
        timing: timing.clone(),
        kubeconfig: None,
        logs: logs_dir(&lease_namespace),
    };
    let mut servers = Vec::new();
    for _ in 0..NAMESPACES {
        servers.push(server(&client).await?);
    }
    let mut replicas: Vec<Replica> = (0..3)
        .map(|i| group.start(&format!("r{i}")))
        .collect::<Result<_, _>>()?;
    let mut next = replicas.len();
    settle(&client, &mut redis, &lease_namespace, &servers, &replicas).await?;

    let mut results = BTreeMap::new();
    let mut violations = 0;
    for signal in ["KILL", "TERM"] {
        let mut times = Vec::new();
        for round in 0..ROUNDS {
            let held = holders(&client, &lease_namespace).await?;
            let victim_index = round % replicas.len();
            let victim = replicas[victim_index].name.clone();
            let orphans: Vec<&ServerId> = servers
                .iter()
                .filter(|s| held.get(&shard(s, SHARDS)) == Some(&victim))
                .collect();
            let started = Instant::now();
            replicas[victim_index].signal(signal)?;
            poll(LIMIT, "the victim's servers reconciled elsewhere", || {
                let mut redis = redis.clone();
                let orphans = &orphans;
                let victim = &victim;
                async move {
                    for server in orphans.iter() {
                        match writer(&mut redis, server).await? {
                            Some(w) if &w != victim => {}
                            _ => return Ok(None),
                        }
                    }
                    Ok(Some(()))
                }
            })
            .await?;
            times.push(started.elapsed());
            let mut gone = replicas.remove(victim_index);
            let _ = gone.child.wait();
            replicas.insert(victim_index, group.start(&format!("r{next}"))?);
            next += 1;
            if settle(&client, &mut redis, &lease_namespace, &servers, &replicas)
                .await
                .is_err()
            {
                violations += 1;
            }
        }
        times.sort();
        results.insert(signal, times);
    }
    // The servers carry a finalizer: they are deleted while replicas run,
    // so that what runs next in this testenv does not reconcile them.
    let namespaces: Vec<String> = servers.iter().map(|s| s.namespace.clone()).collect();
    delete_namespaces(&client, &namespaces).await?;
    wait_namespaces_gone(&client, &namespaces, LIMIT).await?;
    for replica in replicas {
        replica.stop(LIMIT).await?;
    }
    delete_namespaces(&client, &[lease_namespace]).await?;

    let mut section = format!(
        "## Shard failover\n\n\
         `make chaos` (chaos/src/bin/failover.rs): 3 replicas, {SHARDS} shards, {NAMESPACES} namespaces each with an MCPServer, \
         lease duration {:?}, renew interval {:?}, retry period {:?} (the defaults). Each round stops the holder of some shard \
         and measures the time until every server in its shards has been written by another replica (read from the Redis \
         fences). Measured {}.\n\n\
         | signal | rounds | p50 | p99 | max | target |\n| --- | --- | --- | --- | --- | --- |\n",
        timing.lease_duration,
        timing.renew_interval,
        timing.retry_period,
        today(),
    );
    for (signal, times) in &results {
        let p = |q: f64| quantile(times, q);
        let target = if *signal == "KILL" {
            "lease + 1 s = 6 s"
        } else {
            "1 s"
        };
        section.push_str(&format!(
            "| `{}` | {} | {:.2} s | {:.2} s | {:.2} s | {target} |\n",
            if *signal == "KILL" {
                "kill -9"
            } else {
                "SIGTERM"
            },
            times.len(),
            p(0.5).as_secs_f64(),
            p(0.99).as_secs_f64(),
            times.last().copied().unwrap_or_default().as_secs_f64(),
        ));
    }
    section.push_str(&format!(
        "\nObjects left unreconciled or written by a non-holder after a round: {violations}.\n"
    ));
    println!("{section}");
    if let Some(path) = report {
        write_section(&path, "failover", &section)?;
    }
    anyhow::ensure!(
        violations == 0,
        "{violations} rounds ended with a server not written by its shard's holder"
    );
    Ok(())
}

/// Waits until every shard has a live holder and every server was written
/// by its shard's holder.
async fn settle(
    client: &Client,
    redis: &mut redis::aio::MultiplexedConnection,
    lease_namespace: &str,
    servers: &[ServerId],
    replicas: &[Replica],
) -> anyhow::Result<()> {
    let names: Vec<&str> = replicas.iter().map(|r| r.name.as_str()).collect();
    poll(LIMIT, "every server written by its shard's holder", || {
        let mut redis = redis.clone();
        let names = &names;
        async move {
            let held = holders(client, lease_namespace).await?;
            if held.len() != SHARDS as usize || !held.values().all(|h| names.contains(&h.as_str()))
            {
                return Ok(None);
            }
            for server in servers {
                if writer(&mut redis, server).await?.as_ref() != held.get(&shard(server, SHARDS)) {
                    return Ok(None);
                }
            }
            Ok(Some(()))
        }
    })
    .await
}

async fn server(client: &Client) -> anyhow::Result<ServerId> {
    let ns = namespace(client, "failover").await?;
    let params = PatchParams::apply("failover").force();
    let api = |kind: &str| -> Api<kube::api::DynamicObject> {
        let (group, version, plural) = match kind {
            "Service" => ("", "v1", "services"),
            "MCPTool" => ("kubemcp.io", "v1alpha1", "mcptools"),
            _ => ("kubemcp.io", "v1alpha1", "mcpservers"),
        };
        let resource = kube::api::ApiResource {
            group: group.into(),
            version: version.into(),
            api_version: if group.is_empty() {
                version.into()
            } else {
                format!("{group}/{version}")
            },
            kind: kind.into(),
            plural: plural.into(),
        };
        Api::namespaced_with(client.clone(), &ns, &resource)
    };
    let objects = [
        (
            "Service",
            json!({"apiVersion": "v1", "kind": "Service", "metadata": {"name": "backend"},
            "spec": {"ports": [{"name": "http", "port": 8080}]}}),
        ),
        (
            "MCPTool",
            json!({"apiVersion": "kubemcp.io/v1alpha1", "kind": "MCPTool", "metadata": {"name": "tool", "labels": {"app": "x"}},
            "spec": {"inputSchema": {"type": "object"}, "backend": {"service": {"name": "backend", "port": 8080}}}}),
        ),
        (
            "MCPServer",
            json!({"apiVersion": "kubemcp.io/v1alpha1", "kind": "MCPServer", "metadata": {"name": "server"},
            "spec": {"toolSelector": {"matchLabels": {"app": "x"}}}}),
        ),
    ];
    for (kind, object) in objects {
        let name = object["metadata"]["name"]
            .as_str()
            .unwrap_or_default()
            .to_owned();
        api(kind)
            .patch(&name, &params, &Patch::Apply(&object))
            .await?;
    }
    Ok(ServerId {
        namespace: ns,
        name: "server".into(),
    })
}
