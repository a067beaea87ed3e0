//! The store against real Redis (`make testenv`): a single node and a
//! 6-node cluster, through the same pooled, rate-limited connections.

use std::num::NonZeroU32;

use mcp_operator_store::{RedisArgs, Store, StoreError};
use redis::AsyncCommands;

fn env(name: &str) -> String {
    std::env::var(name).unwrap_or_else(|_| {
        panic!("{name} is not set: run the tests with `make test`, or `eval \"$(make -s testenv)\"` first")
    })
}

fn args(url: Option<String>, cluster: Vec<String>) -> RedisArgs {
    RedisArgs {
        redis_pool_size: 4,
        redis_qps: NonZeroU32::new(1000).expect("non-zero"),
        redis_burst: NonZeroU32::new(100).expect("non-zero"),
        ..RedisArgs::from_env_credentials(url, cluster)
    }
}

fn single() -> Store {
    Store::new(&args(Some(env("MCP_REDIS_URL")), vec![]), "test").expect("a single-node store")
}

fn cluster() -> Store {
    let urls = env("MCP_REDIS_CLUSTER_URLS")
        .split(',')
        .map(str::to_owned)
        .collect();
    Store::new(&args(None, urls), "test").expect("a cluster store")
}

/// Commands, a pipeline and a script on keys that share a hash tag, as the
/// catalog's keys do.
async fn round_trip(store: &Store, tag: &str) {
    let mut conn = store.get().await.expect("a pooled connection");
    let (a, b) = (
        format!("store-test:{{{tag}}}:a"),
        format!("store-test:{{{tag}}}:b"),
    );
    let _: () = conn.set(&a, "1").await.expect("SET");
    let value: String = conn.get(&a).await.expect("GET");
    assert_eq!(value, "1");

    let (x, y): (String, String) = redis::pipe()
        .set(&b, "2")
        .ignore()
        .get(&a)
        .get(&b)
        .query_async(&mut conn)
        .await
        .expect("pipeline");
    assert_eq!((x.as_str(), y.as_str()), ("1", "2"));

    let swapped: i64 = redis::Script::new(
        "redis.call('SET', KEYS[1], redis.call('GET', KEYS[2])); return redis.call('DEL', KEYS[2])",
    )
    .key(&a)
    .key(&b)
    .invoke_async(&mut conn)
    .await
    .expect("script");
    assert_eq!(swapped, 1);
    let value: String = conn.get(&a).await.expect("GET");
    assert_eq!(value, "2");
    let _: () = conn.del(&a).await.expect("DEL");
}

#[tokio::test]
async fn single_node_round_trip() {
    let store = single();
    assert!(!store.is_cluster());
    round_trip(&store, "single").await;
}

#[tokio::test]
async fn cluster_round_trip_on_many_slots() {
    let store = cluster();
    assert!(store.is_cluster());
    // Tags spread over the slot ranges of all three primaries.
    for tag in ["a", "b", "c", "team-a/weather", "team-b/search", "x/y"] {
        round_trip(&store, tag).await;
    }
}

/// Authentication is required: the flags' credentials work, none or a
/// wrong password are refused, and a URL may not carry credentials.
#[tokio::test]
async fn credentials_come_from_the_flags_only() {
    single()
        .get()
        .await
        .expect("the testenv's admin authenticates");
    for password in [None, Some("wrong")] {
        let mut anonymous = args(Some(env("MCP_REDIS_URL")), vec![]);
        anonymous.redis_password = password.map(mcp_operator_store::Password::new);
        let store = Store::new(&anonymous, "test").expect("a store");
        let refused = match store.get().await {
            Err(_) => true,
            Ok(mut conn) => redis::cmd("PING")
                .query_async::<String>(&mut conn)
                .await
                .is_err(),
        };
        assert!(
            refused,
            "Redis answered without the password ({password:?})"
        );
    }
    let url = env("MCP_REDIS_URL").replace("redis://", "redis://someone:secret@");
    let in_url = Store::new(&args(Some(url), vec![]), "test");
    assert!(
        matches!(&in_url, Err(StoreError::Config(m)) if m.contains("must not carry credentials")),
        "{:?}",
        in_url.err()
    );
}

/// `rediss://` against the testenv's TLS node, whose certificate a CA of
/// the testenv's own signed: verified with --redis-ca-file, refused
/// without it.
#[tokio::test]
async fn tls_with_the_nodes_ca() {
    let mut tls = args(Some(env("MCP_REDIS_TLS_URL")), vec![]);
    tls.redis_ca_file = Some(env("MCP_REDIS_TLS_CA_FILE").into());
    let store = Store::new(&tls, "test").expect("a TLS store");
    round_trip(&store, "tls").await;

    let unverified =
        Store::new(&args(Some(env("MCP_REDIS_TLS_URL")), vec![]), "test").expect("a store");
    assert!(
        unverified.get().await.is_err(),
        "a certificate of an unknown CA was accepted"
    );
}

/// A Redis Cluster over TLS whose nodes' certificates a private CA signed
/// (the testenv's TLS cluster): every node the client discovers from the
/// seeds is verified with --redis-ca-file, and refused without it.
#[tokio::test]
async fn tls_cluster_with_the_nodes_ca() {
    let seeds: Vec<String> = env("MCP_REDIS_TLS_CLUSTER_URLS")
        .split(',')
        .map(str::to_owned)
        .collect();
    let mut tls = args(None, seeds.clone());
    tls.redis_ca_file = Some(env("MCP_REDIS_TLS_CA_FILE").into());
    let store = Store::new(&tls, "test").expect("a TLS cluster store");
    assert!(store.is_cluster());
    // Tags spread over the slot ranges of all three primaries.
    for tag in ["a", "b", "c", "team-a/weather", "team-b/search", "x/y"] {
        round_trip(&store, tag).await;
    }

    // As routers get it: the PEM text itself.
    let mut pem = args(None, seeds.clone());
    pem.redis_ca = Some(std::fs::read_to_string(env("MCP_REDIS_TLS_CA_FILE")).expect("the CA"));
    round_trip(&Store::new(&pem, "test").expect("a store"), "pem").await;

    let unverified = Store::new(&args(None, seeds), "test").expect("a store");
    assert!(
        unverified.get().await.is_err(),
        "a certificate of an unknown CA was accepted"
    );
}

#[test]
fn configuration_errors_are_clear() {
    let none = Store::new(&args(None, vec![]), "test");
    assert!(matches!(none, Err(StoreError::NotConfigured)));
    let both = Store::new(
        &args(Some("redis://a".into()), vec!["redis://b".into()]),
        "test",
    );
    assert!(matches!(both, Err(StoreError::Config(_))));
}

/// The limiter holds commands back: at 4 commands a second with a burst
/// of 1, five commands cannot finish in under a second. (A lower bound,
/// so a slow machine cannot make it fail.)
#[tokio::test]
async fn every_command_waits_for_the_rate_limiter() {
    let mut limited = args(Some(env("MCP_REDIS_URL")), vec![]);
    limited.redis_qps = NonZeroU32::new(4).expect("non-zero");
    limited.redis_burst = NonZeroU32::new(1).expect("non-zero");
    let store = Store::new(&limited, "test").expect("a store");
    let mut conn = store.get().await.expect("a pooled connection");
    let started = std::time::Instant::now();
    for _ in 0..5 {
        let _: () = redis::cmd("PING")
            .query_async(&mut conn)
            .await
            .expect("PING");
    }
    assert!(
        started.elapsed() >= std::time::Duration::from_millis(900),
        "5 commands at 4/s took {:?}",
        started.elapsed()
    );
}
