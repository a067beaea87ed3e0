//! The load test at smoke size, against the real apiserver and Redis: one
//! and two operator replicas each converge a small population, the ceiling
//! client writes, and a short churn phase sees every change published and
//! served by every router of the routed server; the largest replica count
//! converges once more with shared router credentials. Keeps the harness working;
//! `make loadtest` runs it at full size.

use std::time::Duration;

use mcp_operator_chaos::Redis;
use mcp_operator_chaos::population::Sizes;
use mcp_operator_chaos::traffic::TrafficArgs;
use mcp_operator_controller::RouterCredentials;
use mcp_operator_loadtest::{Config, markdown, run};

mod support;

#[tokio::test]
async fn smoke_population_converges_and_churn_is_published() {
    let client = support::client().await;
    support::install_crds(&client).await;
    let redis = Redis::from_testenv(false).expect("the testenv's Redis");
    let config = Config {
        binary: env!("CARGO_BIN_EXE_mcp-operator").into(),
        replicas: vec![1, 2],
        credentials: vec![RouterCredentials::Isolated, RouterCredentials::Shared],
        sizes: Sizes {
            tools: 12,
            prompts: 4,
            resources: 4,
            servers: 4,
            namespaces: 2,
        },
        shards: 4,
        ceiling_concurrency: 4,
        churn_rate: 5,
        churn_duration: Duration::from_secs(2),
        traffic: TrafficArgs {
            routers: 2,
            clients: 2,
            client_rate: 20,
            endpoint_lag: Duration::from_secs(1),
        },
        limit: Duration::from_secs(120),
    };
    let runs = run(&config, &client, &redis).await.expect("load test");

    // 1 and 2 replicas isolated, then 2 again with shared credentials.
    let modes: Vec<_> = runs.iter().map(|r| (r.replicas, r.credentials)).collect();
    assert_eq!(
        modes,
        [
            (1, RouterCredentials::Isolated),
            (2, RouterCredentials::Isolated),
            (2, RouterCredentials::Shared)
        ]
    );
    assert!(runs[0].churn.is_none() && runs[2].churn.is_none());
    for r in &runs {
        assert_eq!(r.objects, config.sizes.objects(), "{r:?}");
        assert_eq!(r.reconciles.len(), r.replicas);
        assert!(
            r.reconciles.iter().sum::<f64>() >= r.objects as f64,
            "{r:?}"
        );
        assert!(
            r.ceiling > 0.0 && r.peak_rss.iter().all(|&rss| rss > 0),
            "{r:?}"
        );
    }
    let churned = runs[1]
        .churn
        .as_ref()
        .expect("churn with the last replica count");
    let churn = &churned.churn;
    assert!(churn.changes > 0);
    assert_eq!(churn.missed, 0, "changes never published: {churn:?}");
    // Changes to a tool that then moved to another server are not timed.
    assert!(
        !churn.published.is_empty() && churn.published.len() <= churn.changes,
        "{churn:?}"
    );
    // Half the changes go to the routed server, and every router serves
    // each of them; no client request fails.
    assert!(!churn.served.is_empty(), "{churn:?}");
    assert_eq!(churn.unserved, 0, "{churn:?}");
    assert!(churned.load.requests > 0, "{:?}", churned.load);
    assert_eq!(churned.load.errors, 0, "{:?}", churned.load);
    let report = markdown(&config, &runs);
    assert!(report.contains("| 2 | isolated |"), "{report}");
    assert!(report.contains("| 2 | shared |"), "{report}");
}
