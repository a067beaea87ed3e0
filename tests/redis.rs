//! Real Redis: a single node and a 6-node cluster whose three slot ranges
//! each hold a key we wrote through the cluster client.

mod support;

use redis::AsyncCommands;
use support::redis::{Redis, node_client, redis_args};

#[tokio::test]
async fn single_node_round_trip() {
    let client = node_client(&support::testenv_var("MCP_REDIS_URL"));
    let mut conn = client
        .get_multiplexed_async_connection()
        .await
        .expect("connect");
    let _: () = conn
        .set_ex("testenv:single", "hello", 60)
        .await
        .expect("SET");
    let value: String = conn.get("testenv:single").await.expect("GET");
    assert_eq!(value, "hello");
}

/// A primary's slot range and address, from CLUSTER SLOTS.
struct SlotRange {
    first: u16,
    last: u16,
    primary: String,
}

#[tokio::test]
async fn cluster_round_trip_on_every_slot_range() {
    let seeds: Vec<String> = support::testenv_var("MCP_REDIS_CLUSTER_URLS")
        .split(',')
        .map(str::to_owned)
        .collect();
    assert_eq!(seeds.len(), 6, "the test cluster has six nodes");

    let seed = node_client(&seeds[0]);
    let mut direct = seed
        .get_multiplexed_async_connection()
        .await
        .expect("connect to a seed");
    // Each entry is [first, last, [host, port, id, ..] of the primary, replicas..].
    let slots: Vec<Vec<redis::Value>> = redis::cmd("CLUSTER")
        .arg("SLOTS")
        .query_async(&mut direct)
        .await
        .expect("CLUSTER SLOTS");
    let ranges: Vec<SlotRange> = slots
        .into_iter()
        .map(|entry| {
            let mut fields = entry.into_iter();
            let mut next = || fields.next().expect("a CLUSTER SLOTS field");
            let first: u16 = redis::from_redis_value(next()).expect("first slot");
            let last: u16 = redis::from_redis_value(next()).expect("last slot");
            let primary: Vec<redis::Value> = redis::from_redis_value(next()).expect("primary");
            let mut primary = primary.into_iter();
            let host: String =
                redis::from_redis_value(primary.next().expect("host")).expect("host");
            let port: u16 = redis::from_redis_value(primary.next().expect("port")).expect("port");
            SlotRange {
                first,
                last,
                primary: format!("redis://{host}:{port}"),
            }
        })
        .collect();
    assert_eq!(ranges.len(), 3, "three primaries");
    assert_eq!(
        ranges
            .iter()
            .map(|r| u32::from(r.last - r.first) + 1)
            .sum::<u32>(),
        16384,
        "every slot is served"
    );

    let cluster = redis_args(Redis::Cluster)
        .cluster_client_builder()
        .expect("seed URLs")
        .build()
        .expect("a cluster client");
    let mut conn = cluster
        .get_async_connection()
        .await
        .expect("connect to the cluster");
    for range in &ranges {
        // Find a key that hashes into this range, write it through the
        // cluster client, then read it from the range's primary directly.
        let mut key = None;
        for i in 0..10_000 {
            let candidate = format!("testenv:cluster:{i}");
            let slot: u16 = redis::cmd("CLUSTER")
                .arg("KEYSLOT")
                .arg(&candidate)
                .query_async(&mut direct)
                .await
                .expect("KEYSLOT");
            if (range.first..=range.last).contains(&slot) {
                key = Some(candidate);
                break;
            }
        }
        let key = key.expect("some key hashes into every range");
        let _: () = conn
            .set_ex(&key, range.primary.as_str(), 60)
            .await
            .expect("SET through the cluster");
        let through_cluster: String = conn.get(&key).await.expect("GET through the cluster");
        assert_eq!(through_cluster, range.primary);

        let owner = node_client(&range.primary);
        let mut owner = owner
            .get_multiplexed_async_connection()
            .await
            .expect("connect to the primary");
        let stored: String = owner.get(&key).await.expect("GET on the owning primary");
        assert_eq!(stored, range.primary);
    }
}
