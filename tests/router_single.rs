//! The router against the single Redis node, including a Redis restart
//! while serving.

mod router;
mod support;

router_cases!(router::Redis::Single);
