//! The controllers against the real apiserver, publishing to the
//! 6-node Redis Cluster.

mod controller;
mod support;

controller_cases!(controller::Redis::Cluster);
