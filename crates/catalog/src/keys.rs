//! Where a server's catalog lives in Redis.
//!
//! Every key of one server carries the hash tag `{<namespace>/<name>}`, so in
//! Redis Cluster they sit in one slot and a script can update them together.

use crate::ServerId;

/// The [`Published`](crate::Published) document, as JSON.
pub fn catalog(server: &ServerId) -> String {
    format!("mcp:{{{server}}}:catalog")
}

/// The current [`CatalogVersion`](crate::CatalogVersion) alone, so routers
/// can check for changes without reading the whole catalog.
pub fn version(server: &ServerId) -> String {
    format!("mcp:{{{server}}}:version")
}

/// The fence: a hash (`shards`, `shard`, `token`, `holder`) with the
/// highest fencing token accepted for this server. The controller's write
/// scripts refuse a lower token of the same shard, so a replica that lost
/// its shard cannot overwrite what the new holder wrote.
pub fn fence(server: &ServerId) -> String {
    format!("mcp:{{{server}}}:fence")
}

/// The pub/sub channel that carries [`Invalidation`](crate::Invalidation)s.
pub fn channel(server: &ServerId) -> String {
    format!("mcp:{{{server}}}:invalidate")
}

/// One MCP session of the server's routers (JSON of rmcp's session state,
/// with a TTL), so any router replica can serve any session.
pub fn session(server: &ServerId, session_id: &str) -> String {
    format!("mcp:{{{server}}}:session:{session_id}")
}

/// The pub/sub channel on which a router announces the id of a session a
/// client ended (DELETE), so that every replica drops its copy.
pub fn sessions_channel(server: &ServerId) -> String {
    format!("mcp:{{{server}}}:sessions")
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The part of a key Redis Cluster hashes: the first `{...}`.
    fn hash_tag(key: &str) -> &str {
        let open = key.find('{').expect("a hash tag");
        let close = key[open..].find('}').expect("a closed hash tag") + open;
        &key[open + 1..close]
    }

    #[test]
    fn keys_of_one_server_share_its_hash_tag() {
        let server = ServerId {
            namespace: "team-a".into(),
            name: "weather".into(),
        };
        let keys = [
            catalog(&server),
            version(&server),
            fence(&server),
            channel(&server),
            session(&server, "a-session"),
            sessions_channel(&server),
        ];
        assert!(
            keys.iter().all(|k| hash_tag(k) == "team-a/weather"),
            "{keys:?}"
        );
    }
}
