//! The router against the 6-node Redis Cluster.

mod router;
mod support;

router_cases!(router::Redis::Cluster);
