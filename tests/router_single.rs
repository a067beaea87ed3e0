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
    for tool in &mut catalog.tools {
        tool.endpoint.url = tool
            .endpoint
            .url
            .replace(&backend.ip().to_string(), "weather-backend.nowhere.svc");
    }
    router::publish(
        &mut support::redis::redis(router::Redis::Single).await,
        &catalog,
    )
    .await;
    let pin = format!("weather-backend.nowhere.svc={}", backend.ip());
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
