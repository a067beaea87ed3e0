//! Shards: how work is divided between replicas.
//!
//! An object's shard is `fnv1a64(namespace) % shards`. FNV-1a (64-bit, offset
//! basis 0xcbf29ce484222325, prime 0x100000001b3, over the UTF-8 bytes of the
//! namespace) is fixed by this definition, not by a library whose output
//! could change between versions, platforms or processes; it is five lines,
//! so it is written here rather than taken from a crate. All objects of a
//! namespace, so an MCPServer and every member it can select, share a shard.

use std::fmt;

use serde::{Deserialize, Serialize};

/// A shard number in `0..shards`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct ShardId(pub u32);

impl fmt::Display for ShardId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

/// The shard of every object in `namespace`.
pub fn shard_of(namespace: &str, shards: u32) -> ShardId {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for byte in namespace.bytes() {
        hash ^= u64::from(byte);
        hash = hash.wrapping_mul(0x0000_0100_0000_01b3);
    }
    ShardId((hash % u64::from(shards.max(1))) as u32)
}

/// The right to write for one shard: presented with every Redis write and
/// checked there, so that an ex-holder's writes are refused once a newer
/// holder has written. `token` is the shard Lease's `leaseTransitions` after
/// this holder acquired it, so it grows with every change of holder.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct FencingToken {
    /// The shard count the replica runs with; tokens compare only within
    /// one shard layout.
    pub shards: u32,
    pub shard: ShardId,
    pub token: i64,
    /// The replica identity, recorded next to the catalog for audits.
    pub holder: String,
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The published FNV-1a test vectors, and shard numbers that must never
    /// change: a change would move every namespace to another shard.
    #[test]
    fn the_hash_is_fnv1a_and_stable() {
        assert_eq!(
            shard_of("", u32::MAX),
            ShardId((0xcbf2_9ce4_8422_2325_u64 % u64::from(u32::MAX)) as u32)
        );
        assert_eq!(
            shard_of("a", u32::MAX),
            ShardId((0xaf63_dc4c_8601_ec8c_u64 % u64::from(u32::MAX)) as u32)
        );
        assert_eq!(
            shard_of("foobar", u32::MAX),
            ShardId((0x8594_4171_f739_67e8_u64 % u64::from(u32::MAX)) as u32)
        );
        let fixed: Vec<u32> = ["default", "team-a", "team-b", "kube-system"]
            .iter()
            .map(|ns| shard_of(ns, 16).0)
            .collect();
        assert_eq!(fixed, FIXED_SHARDS);
    }

    const FIXED_SHARDS: [u32; 4] = [14, 6, 3, 14];

    #[test]
    fn every_shard_gets_namespaces() {
        let mut counts = [0; 16];
        for i in 0..1600 {
            counts[shard_of(&format!("ns-{i}"), 16).0 as usize] += 1;
        }
        assert!(counts.iter().all(|c| (50..=150).contains(c)), "{counts:?}");
    }
}
