//! The router against the 6-node Redis Cluster.

mod router;
mod support;

router_cases!(router::Redis::Cluster);

/// A Redis Cluster over TLS whose certificates a private CA signed: the
/// router gets the CA as PEM text (MCP_REDIS_CA, as the operator passes
/// its own --redis-ca-file), serves what was published, and hears the next
/// publish on its subscription (the resync is an hour away).
#[tokio::test]
async fn tls_cluster_with_a_private_ca() {
    let seeds = support::testenv_var("MCP_REDIS_TLS_CLUSTER_URLS");
    let ca = support::testenv_var("MCP_REDIS_TLS_CA_FILE");
    let mut redis = mcp_operator_store::RedisArgs::from_env_credentials(
        None,
        seeds.split(',').map(str::to_owned).collect(),
    );
    redis.redis_ca_file = Some(ca.clone().into());
    let backend = router::backend().await;
    let server = router::server_id("tls");
    let mut catalog = router::catalog(&server, backend);
    router::publish(&redis, &catalog).await;
    let pem = std::fs::read_to_string(&ca).expect("the testenv's CA");
    let router = router::RouterProcess::start(
        &server,
        ("MCP_REDIS_CLUSTER_URLS", seeds, "MCP_REDIS_URL"),
        &[
            ("MCP_REDIS_CA", pem.as_str()),
            ("MCP_RESYNC_INTERVAL", "1h"),
        ],
    )
    .await;
    let mut client = router.client().await;
    let echo = client
        .call("echo", serde_json::json!({"message": "over TLS"}))
        .await;
    assert_eq!(echo["isError"], false, "{echo}");

    catalog.tools.retain(|tool| tool.name != "echo");
    router::publish(&redis, &catalog).await;
    router::eventually("the router to drop the echo tool", async || {
        let tools = client.result("tools/list", serde_json::json!({})).await;
        tools["tools"]
            .as_array()
            .is_some_and(|tools| tools.iter().all(|tool| tool["name"] != "echo"))
    })
    .await;
}
