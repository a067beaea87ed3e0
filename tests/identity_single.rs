//! Per-server Redis identities against the single Redis node.

mod controller;
mod identity;
mod router;
mod support;

identity_cases!(controller::Redis::Single);
