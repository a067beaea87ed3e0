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

/// After SIGTERM a router with a drain period goes on answering calls for
/// that long while /readyz says 503 (a deleted pod's endpoint lingers in
/// Service proxies), then stops by itself.
#[tokio::test]
async fn sigterm_drains_then_stops() {
    let drain = std::time::Duration::from_secs(3);
    let (mut router, _) = router::fixture(
        router::Redis::Single,
        "drain",
        &[("MCP_DRAIN_PERIOD", "3s")],
    )
    .await;
    let mut client = router.client().await;
    let started = std::time::Instant::now();
    router.terminate();
    router::until_status(
        "/readyz to answer 503",
        &format!("{}/readyz", router.base),
        |status| status == reqwest::StatusCode::SERVICE_UNAVAILABLE,
    )
    .await;
    let echo = client
        .call("echo", serde_json::json!({"message": "draining"}))
        .await;
    assert_eq!(echo["isError"], false, "{echo}");
    assert!(
        started.elapsed() < drain,
        "the call was answered only after the drain; the machine is too slow to tell"
    );
    let status = router
        .exited(drain + std::time::Duration::from_secs(10))
        .await
        .expect("the router stops after its drain");
    assert!(status.success(), "the router exited with {status}");
    assert!(
        started.elapsed() >= drain,
        "the router stopped before its drain was over"
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
