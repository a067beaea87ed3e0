//! Sharded high availability with replicas as separate processes, against
//! the real apiserver and Redis: shards are divided, fail over after a
//! kill, rebalance when a replica joins, are left to a replica still filling
//! its caches (for a bounded time), are handed over at SIGTERM, and a
//! replica paused past its lease cannot overwrite the new holder's writes.
//!
//! One test, run as a sequence, because every replica group reconciles the
//! whole cluster: two groups at once would fight over the same objects.

mod support;

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::time::Duration;

use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::ServiceAccount;
use k8s_openapi::api::rbac::v1::{Role, RoleBinding};
use kube::api::{Api, ListParams};
use mcp_operator_api::MCPTool;
use mcp_operator_catalog::ServerId;
use mcp_operator_chaos::{Group, Redis, Timing, holders, logs_dir, poll, shard, writer};
use serde_json::json;

const SHARDS: u32 = 8;
const LIMIT: Duration = Duration::from_secs(60);

/// A namespace with a Service, a tool and a server selecting it.
async fn workload(client: &kube::Client, description: &str) -> ServerId {
    let spec = json!({"description": description, "inputSchema": {"type": "object"}});
    ServerId {
        namespace: support::one_tool_namespace(client, "shard", spec).await,
        name: "server".into(),
    }
}

/// A kubeconfig of a ServiceAccount that may use the Leases in `lease_ns`,
/// load the signing key there, and nothing else: it can list nothing.
async fn lease_only_kubeconfig(client: &kube::Client, lease_ns: &str, dir: &Path) -> PathBuf {
    support::apply::<ServiceAccount>(
        client,
        lease_ns,
        json!({"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": "leases-only"}}),
    )
    .await;
    support::apply::<Role>(client, lease_ns, json!({
        "apiVersion": "rbac.authorization.k8s.io/v1", "kind": "Role", "metadata": {"name": "leases-only"},
        // A replica loads (or, first, creates) the catalog signing key
        // before anything else, as the operator's own Role allows.
        "rules": [
            {"apiGroups": ["coordination.k8s.io"], "resources": ["leases"], "verbs": ["get", "list", "watch", "create", "update", "delete"]},
            {"apiGroups": [""], "resources": ["secrets"], "resourceNames": ["mcp-operator-catalog-signing"], "verbs": ["get"]},
            {"apiGroups": [""], "resources": ["secrets"], "verbs": ["create"]},
        ],
    }))
    .await;
    support::apply::<RoleBinding>(client, lease_ns, json!({
        "apiVersion": "rbac.authorization.k8s.io/v1", "kind": "RoleBinding", "metadata": {"name": "leases-only"},
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": "leases-only"},
        "subjects": [{"kind": "ServiceAccount", "name": "leases-only", "namespace": lease_ns}],
    }))
    .await;
    support::account_kubeconfig(client, lease_ns, "leases-only", dir).await
}

/// Waits until every shard has a holder among `replicas`, each holding at
/// most its fair share; returns shard → holder.
async fn balanced(
    client: &kube::Client,
    lease_ns: &str,
    replicas: &[&str],
) -> BTreeMap<u32, String> {
    let fair = SHARDS.div_ceil(replicas.len() as u32) as usize;
    poll(
        LIMIT,
        &format!("shards balanced over {replicas:?}"),
        || async {
            let held = holders(client, lease_ns).await?;
            let mut counts: BTreeMap<&str, usize> = BTreeMap::new();
            for holder in held.values() {
                *counts.entry(holder.as_str()).or_default() += 1;
            }
            let ok = held.len() == SHARDS as usize
                && counts.keys().all(|h| replicas.contains(h))
                && counts.len() == replicas.len()
                && counts.values().all(|c| *c <= fair);
            Ok(ok.then_some(held))
        },
    )
    .await
    .expect("balanced shards")
}

/// Waits until every server's fence names the holder of its shard: each
/// was (re)reconciled by that holder and by no one since.
async fn written_by_holders(
    redis: &mut redis::aio::MultiplexedConnection,
    servers: &[ServerId],
    held: &BTreeMap<u32, String>,
) {
    poll(LIMIT, "every server written by its shard's holder", || {
        let mut redis = redis.clone();
        async move {
            for server in servers {
                let expected = &held[&shard(server, SHARDS)];
                if writer(&mut redis, server).await?.as_ref() != Some(expected) {
                    return Ok(None);
                }
            }
            Ok(Some(()))
        }
    })
    .await
    .expect("fences");
}

#[tokio::test]
async fn replicas_divide_fail_over_rebalance_hand_over_and_fence() {
    let client = support::client().await;
    support::install_crds(&client).await;
    let lease_ns = support::namespace(&client, "leases").await;
    let redis_url = support::testenv_var("MCP_REDIS_URL");
    let mut redis = support::redis::node_client(&redis_url)
        .get_multiplexed_async_connection()
        .await
        .expect("Redis");
    let group = Group {
        binary: env!("CARGO_BIN_EXE_mcp-operator").into(),
        shards: SHARDS,
        lease_namespace: lease_ns.clone(),
        redis: Redis::Single(redis_url.clone()),
        timing: Timing::fast(),
        kubeconfig: None,
        logs: logs_dir(&lease_ns),
    };
    let mut servers = Vec::new();
    for i in 0..12 {
        servers.push(workload(&client, &format!("v{i}")).await);
    }
    let used: BTreeSet<u32> = servers.iter().map(|s| shard(s, SHARDS)).collect();
    assert!(
        used.len() >= 5,
        "the namespaces spread over shards: {used:?}"
    );

    // A replica still filling its caches is left its share. `joiner` may
    // write Leases but list nothing, so its caches never fill: the first
    // replica ready takes half the shards while the joiner is within its
    // grace, and all of them after it.
    let joiner = Group {
        kubeconfig: Some(lease_only_kubeconfig(&client, &lease_ns, &group.logs).await),
        ..group.clone()
    }
    .start("joiner")
    .expect("joiner");
    poll(LIMIT, "the joiner's heartbeat", || async {
        let leases = Api::<Lease>::namespaced(client.clone(), &lease_ns)
            .list(&ListParams::default().labels("kubemcp.io/lease=joining"))
            .await?;
        Ok((!leases.items.is_empty()).then_some(()))
    })
    .await
    .expect("the joiner announces itself");
    let a = group.start("a").expect("a");
    let half = (SHARDS / 2) as usize;
    let held_by_a = || async {
        let held = holders(&client, &lease_ns).await?;
        anyhow::Ok(held.values().filter(|h| *h == "a").count())
    };
    poll(LIMIT, "a to hold half the shards", || async {
        Ok((held_by_a().await? >= half).then_some(()))
    })
    .await
    .expect("a takes its share");
    // Several ticks of `a`: it takes nothing more within the grace.
    tokio::time::sleep(group.timing.retry_period * 4).await;
    assert_eq!(held_by_a().await.expect("leases"), half);
    poll(LIMIT, "a to hold every shard after the grace", || async {
        Ok((held_by_a().await? == SHARDS as usize).then_some(()))
    })
    .await
    .expect("a stops waiting for the joiner");
    joiner.signal("KILL").expect("kill the joiner");
    drop(joiner);

    // Three replicas: every shard held by exactly one, fairly; every
    // server reconciled by its shard's holder only.
    let b = group.start("b").expect("b");
    let mut c = group.start("c").expect("c");
    let held = balanced(&client, &lease_ns, &["a", "b", "c"]).await;
    written_by_holders(&mut redis, &servers, &held).await;

    // kill -9: a's shards move, and their servers are reconciled again.
    a.signal("KILL").expect("kill a");
    drop(a);
    let held = balanced(&client, &lease_ns, &["b", "c"]).await;
    written_by_holders(&mut redis, &servers, &held).await;

    // A fourth replica joins: the others hand shards over to it.
    let d = group.start("d").expect("d");
    let held = balanced(&client, &lease_ns, &["b", "c", "d"]).await;
    written_by_holders(&mut redis, &servers, &held).await;

    // SIGTERM: b releases its Leases before it exits, so nothing waits for
    // them to expire.
    let mut b = b;
    b.signal("TERM").expect("term b");
    let status = b.child.wait().expect("b exits");
    assert!(status.success(), "b exits cleanly: {status}");
    let after = holders(&client, &lease_ns).await.expect("leases");
    assert!(
        after.values().all(|h| h != "b"),
        "b released every shard: {after:?}"
    );
    let held = balanced(&client, &lease_ns, &["c", "d"]).await;
    written_by_holders(&mut redis, &servers, &held).await;

    // SIGSTOP c past its lease: d takes every shard. Then change a server of
    // one of c's shards and let c continue: whatever c tries, d's writes
    // stand, and c steps down.
    c.signal("STOP").expect("stop c");
    let held = balanced(&client, &lease_ns, &["d"]).await;
    written_by_holders(&mut redis, &servers, &held).await;
    let c_server = servers
        .iter()
        .find(|s| after.get(&shard(s, SHARDS)).map(String::as_str) == Some("c"))
        .expect("c held a server's shard")
        .clone();
    support::apply::<MCPTool>(&client, &c_server.namespace, json!({
        "apiVersion": "kubemcp.io/v1alpha1", "kind": "MCPTool",
        "metadata": {"name": "tool", "labels": {"app": "x"}},
        "spec": {"description": "changed while c was stopped", "inputSchema": {"type": "object"}, "backend": {"service": {"name": "backend", "port": 8080}}},
    }))
    .await;
    c.signal("CONT").expect("continue c");
    poll(LIMIT, "c to step down", || async {
        Ok((c.metric("mcp_operator_shards_held")? == 0.0).then_some(()))
    })
    .await
    .expect("c steps down");
    // c is alive again and takes its fair share back from d, under a new
    // token; every server ends written by its shard's current holder.
    written_by_holders(
        &mut redis,
        &servers,
        &balanced(&client, &lease_ns, &["c", "d"]).await,
    )
    .await;
    let stepped_down = c
        .metric("mcp_operator_shard_losses_total")
        .expect("metrics");
    let fenced = c
        .metric("mcp_operator_fenced_writes_rejected_total")
        .expect("metrics");
    assert!(
        stepped_down >= 1.0,
        "c lost its shards: losses {stepped_down}, fenced writes {fenced}"
    );
    assert_eq!(
        d.metric("mcp_operator_fenced_writes_rejected_total")
            .expect("metrics"),
        0.0
    );
    c.child.kill().expect("stop c");
}
