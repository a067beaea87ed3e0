//! The router against the single Redis node, including a Redis restart
//! while serving.

mod router;
mod support;

router_cases!(router::Redis::Single);

#[tokio::test]
async fn redis_restart_keeps_serving_then_resyncs() {
    router::redis_restart_keeps_serving_then_resyncs().await
}
