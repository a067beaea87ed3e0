//! The chaos scenarios at smoke size, against the real apiserver and Redis:
//! replicas killed, replicas restarted one by one, the apiserver killed and
//! restarted, a Redis Cluster primary killed and a router killed, each
//! while a client churns tools and MCP clients call a server's routers;
//! afterwards everything has converged and no server was left
//! written by a replica that lost its shard. `make chaos` runs them at full
//! size and repeats them.

use std::path::Path;
use std::time::Duration;

use mcp_operator_chaos::converge::Observer;
use mcp_operator_chaos::population::Sizes;
use mcp_operator_chaos::scenario::{self, Fault, Plan, Testenv};
use mcp_operator_chaos::traffic::TrafficArgs;
use mcp_operator_chaos::{Group, Redis, Timing, logs_dir};

mod support;

#[tokio::test]
async fn faults_during_churn_leave_everything_converged_and_fenced() {
    let client = support::client().await;
    support::install_crds(&client).await;
    let lease_namespace = support::namespace(&client, "chaos-leases").await;
    let group = |redis: Redis| Group {
        binary: env!("CARGO_BIN_EXE_mcp-operator").into(),
        kubeconfig: None,
        shards: 4,
        lease_namespace: lease_namespace.clone(),
        redis,
        timing: Timing::fast(),
        logs: logs_dir("chaos-smoke"),
    };
    let plan = Plan {
        sizes: Sizes {
            tools: 8,
            prompts: 2,
            resources: 2,
            servers: 2,
            namespaces: 2,
        },
        replicas: 2,
        duration: Duration::from_secs(8),
        interval: Duration::from_secs(3),
        churn_rate: 4,
        limit: Duration::from_secs(120),
        traffic: TrafficArgs {
            routers: 2,
            clients: 2,
            client_rate: 20,
            endpoint_lag: Duration::from_millis(500),
        },
    };
    let testenv = Testenv::of(Path::new(env!("CARGO_MANIFEST_DIR")));
    for fault in [
        Fault::Kill,
        Fault::Rolling,
        Fault::Apiserver,
        Fault::RedisPrimary,
        Fault::Router,
    ] {
        let redis = Redis::from_testenv(fault.needs_cluster()).expect("the testenv's Redis");
        let mut observer = Observer::new(client.clone(), &redis).expect("a Redis pool");
        let outcome = scenario::run(fault, &plan, &group(redis), &mut observer, &testenv)
            .await
            .unwrap_or_else(|e| panic!("{fault:?}: {e:#}"));
        // How many faults fit in the run depends on how fast the machine
        // restarts things; at least one did.
        assert!(outcome.faults >= 1, "{outcome:?}");
        assert!(outcome.churn.changes > 0, "{outcome:?}");
        assert_eq!(outcome.stale_writers, 0, "{outcome:?}");
        assert_eq!(outcome.wrong_users, 0, "{outcome:?}");
        if fault != Fault::Apiserver {
            // Only an unreachable apiserver may refuse the client's changes.
            assert_eq!(outcome.churn.errors, 0, "{outcome:?}");
        }
        // Every change to the routed server reached every router.
        assert!(!outcome.churn.served.is_empty(), "{outcome:?}");
        assert_eq!(outcome.churn.unserved, 0, "{outcome:?}");
        assert!(outcome.load.requests > 0, "{outcome:?}");
        if matches!(fault, Fault::Kill | Fault::Rolling) {
            // Routers serve from memory: operator faults do not reach them.
            assert_eq!(outcome.load.errors, 0, "{outcome:?}");
        }
    }
}
