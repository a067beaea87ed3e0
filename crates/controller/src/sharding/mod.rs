//! How replicas divide the work: namespaces hash to shards ([`shard`]),
//! one Lease and holder per shard ([`lease`]), and which namespaces are
//! reconciled at all ([`scope`]).

pub mod lease;
pub mod scope;
pub mod shard;
