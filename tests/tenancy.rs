//! One tenant's bad input stalls no one, across operator restarts, against
//! the real apiserver and Redis. An MCPTool whose `inputSchema` nests past
//! serde_json's limit of 128 is stored by the apiserver; before the
//! operator cut such values on read, every replica's LIST of MCPTools
//! failed on it and no replica ever filled its caches. Replicas run as
//! processes, so that each one starts with the tool already stored.

mod support;

use kube::api::Api;
use mcp_operator_api::MCPServer;
use mcp_operator_chaos::{Group, Redis, Timing, logs_dir};
use serde_json::json;

/// A namespace whose one tool has `input_schema`, and a server selecting it.
async fn tenant(client: &kube::Client, prefix: &str, input_schema: serde_json::Value) -> String {
    support::one_tool_namespace(client, prefix, json!({"inputSchema": input_schema})).await
}

/// The server of `ns` once it has published with `tools` tools.
async fn published(client: &kube::Client, ns: &str, tools: i32) -> MCPServer {
    let api: Api<MCPServer> = Api::namespaced(client.clone(), ns);
    support::wait_for(&api, "server", |s: Option<&MCPServer>| {
        s.and_then(|s| s.status.as_ref())
            .is_some_and(|st| st.tool_count == Some(tools))
    })
    .await
    .expect("the server")
}

#[tokio::test]
async fn a_tool_nested_past_the_parsers_limit_stalls_no_replica() {
    let client = support::client().await;
    support::install_crds(&client).await;
    let lease_ns = support::namespace(&client, "leases").await;
    let group = Group {
        binary: env!("CARGO_BIN_EXE_mcp-operator").into(),
        shards: 4,
        lease_namespace: lease_ns.clone(),
        redis: Redis::from_testenv(false).expect("the testenv's Redis"),
        timing: Timing::fast(),
        kubeconfig: None,
        logs: logs_dir(&lease_ns),
    };
    let deep = tenant(
        &client,
        "deep",
        json!({"type": "object", "properties": {"a": support::nested(200)}}),
    )
    .await;
    let plain = json!({"type": "object", "properties": {"city": {"type": "string"}}});
    let good = tenant(&client, "good", plain.clone()).await;

    let mut replica = None;
    for round in ["first", "restarted"] {
        if let Some(running) = replica.take() {
            kill(running);
        }
        // Work created while no replica runs is done by the next one.
        let later = tenant(&client, round, plain.clone()).await;
        replica = Some(group.start(round).expect("a replica"));
        for ns in [&good, &later] {
            published(&client, ns, 1).await;
        }
        let api: Api<MCPServer> = Api::namespaced(client.clone(), &deep);
        support::wait_for(&api, "server", |s: Option<&MCPServer>| {
            s.and_then(|s| s.status.as_ref()).is_some_and(|st| {
                st.tool_count == Some(0)
                    && st
                        .excluded
                        .iter()
                        .any(|e| e.name == "tool" && e.message.contains("SchemaTooDeep"))
            })
        })
        .await;
    }
    // Leave no trap for later test binaries' own clients; the replica
    // still runs, to release the server's finalizer.
    let deep = [deep];
    mcp_operator_chaos::delete_namespaces(&client, &deep)
        .await
        .expect("delete the namespace");
    mcp_operator_chaos::wait_namespaces_gone(&client, &deep, support::WAIT)
        .await
        .expect("the namespace gone");
    if let Some(running) = replica {
        kill(running);
    }
}

fn kill(replica: mcp_operator_chaos::Replica) {
    replica.signal("KILL").expect("kill -9");
}
