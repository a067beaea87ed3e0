//! Per-server Redis identities against the 6-node Redis Cluster: every
//! user on every primary and replica.

mod controller;
mod identity;
mod router;
mod support;

identity_cases!(controller::Redis::Cluster);
