//! Writing catalogs to Redis. Each write is one Lua script over the
//! server's keys (one hash tag, so one cluster slot): it compares versions,
//! writes and publishes the invalidation atomically, so a reconcile that
//! changes nothing writes and publishes nothing, and routers never see a
//! version without its catalog.

use std::sync::LazyLock;

use mcp_operator_catalog::{Invalidation, Published, ServerId, keys};
use mcp_operator_store::Store;
use redis::Script;

use crate::error::Error;

/// KEYS: catalog, version. ARGV: version, published JSON, channel,
/// invalidation JSON. Returns 1 when written, 0 when already current.
static PUBLISH: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r"
        if redis.call('GET', KEYS[2]) == ARGV[1] and redis.call('EXISTS', KEYS[1]) == 1 then
          return 0
        end
        redis.call('SET', KEYS[1], ARGV[2])
        redis.call('SET', KEYS[2], ARGV[1])
        redis.call('PUBLISH', ARGV[3], ARGV[4])
        return 1
        ",
    )
});

/// KEYS: catalog, version. ARGV: channel, tombstone JSON. Returns the
/// number of keys removed; publishes only when there was something.
static REMOVE: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r"
        local removed = redis.call('DEL', KEYS[1], KEYS[2])
        if removed > 0 then
          redis.call('PUBLISH', ARGV[1], ARGV[2])
        end
        return removed
        ",
    )
});

/// What a publish did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Outcome {
    Written,
    Unchanged,
}

impl Outcome {
    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Written => "written",
            Outcome::Unchanged => "unchanged",
        }
    }
}

fn to_json<T: serde::Serialize>(what: &'static str, value: &T) -> Result<String, Error> {
    serde_json::to_string(value).map_err(|source| Error::Build { what, source })
}

/// Writes `published` unless Redis already holds its version.
pub async fn publish(store: &Store, published: &Published) -> Result<Outcome, Error> {
    let server = &published.catalog.server;
    let invalidation = Invalidation {
        server: server.clone(),
        version: Some(published.version.clone()),
    };
    let mut conn = store.get().await?;
    let written: i64 = PUBLISH
        .key(keys::catalog(server))
        .key(keys::version(server))
        .arg(&published.version.0)
        .arg(to_json("catalog", published)?)
        .arg(keys::channel(server))
        .arg(to_json("invalidation", &invalidation)?)
        .invoke_async(&mut conn)
        .await
        .map_err(mcp_operator_store::StoreError::from)?;
    Ok(if written == 1 {
        Outcome::Written
    } else {
        Outcome::Unchanged
    })
}

/// Removes a deleted server's catalog and publishes its tombstone.
pub async fn remove(store: &Store, server: &ServerId) -> Result<bool, Error> {
    let tombstone = Invalidation {
        server: server.clone(),
        version: None,
    };
    let mut conn = store.get().await?;
    let removed: i64 = REMOVE
        .key(keys::catalog(server))
        .key(keys::version(server))
        .arg(keys::channel(server))
        .arg(to_json("tombstone", &tombstone)?)
        .invoke_async(&mut conn)
        .await
        .map_err(mcp_operator_store::StoreError::from)?;
    Ok(removed > 0)
}
