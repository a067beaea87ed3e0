//! The router against the single Redis node, including a Redis restart
//! while serving.

mod router;
mod support;

router_cases!(router::Redis::Single);

#[tokio::test]
async fn redis_restart_keeps_serving_then_resyncs() {
    router::redis_restart_keeps_serving_then_resyncs().await
}

/// `--resolve` sends a Service name that does not resolve here to the
/// address given, keeping the URL's port (what `make demo` relies on).
#[tokio::test]
async fn resolve_pins_backend_hosts() {
    let backend = router::backend().await;
    let server = router::server_id("resolve");
    let mut catalog = router::catalog(&server, backend);
    let host = format!("weather-backend.{}.svc", server.namespace);
    for tool in &mut catalog.tools {
        tool.endpoint.url = tool
            .endpoint
            .url
            .replace(&router::backend_host(&server), &host);
    }
    router::publish(&support::redis::redis_args(router::Redis::Single), &catalog).await;
    let pin = format!("{host}={}", backend.ip());
    let router = router::RouterProcess::start(
        &server,
        router::Redis::Single.env(),
        &[("MCP_RESOLVE", pin.as_str())],
    )
    .await;
    let mut client = router.client().await;
    let echo = client
        .call("echo", serde_json::json!({"message": "pinned"}))
        .await;
    assert_eq!(echo["isError"], false, "{echo}");
    assert_eq!(
        echo["structuredContent"]["echo"]["message"], "pinned",
        "{echo}"
    );
}

/// A router that is given no key to verify catalogs with does not start,
/// and says why.
#[test]
fn a_router_without_public_keys_does_not_start() {
    for keys in [None, Some("")] {
        let mut command = std::process::Command::new(env!("CARGO_BIN_EXE_mcp-operator"));
        command
            .args(["router", "--server", "team-a/weather"])
            .env("MCP_REDIS_URL", "redis://127.0.0.1:1")
            .env_remove("MCP_REDIS_CLUSTER_URLS")
            .env_remove("MCP_CATALOG_PUBLIC_KEYS");
        if let Some(keys) = keys {
            command.env("MCP_CATALOG_PUBLIC_KEYS", keys);
        }
        let output = command.output().expect("run mcp-operator router");
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(!output.status.success(), "{keys:?}: started anyway");
        assert!(stderr.contains("catalog-public-keys"), "{keys:?}: {stderr}");
    }
}
