//! What every controller runs on: the apiserver client and its nesting
//! cap, the shared watches and the batching of their events, per-object
//! backoff, status and condition writing, Events, metrics and the HTTP
//! endpoints.

pub mod backoff;
pub mod batch;
pub mod client;
pub mod conditions;
pub mod events;
pub mod http;
pub mod nesting;
pub mod status;
pub mod telemetry;
pub mod watch;
pub mod watches;
