//! Writing catalogs to Redis. Each write is one Lua script over the
//! server's keys (one hash tag, so one cluster slot). The script first
//! checks the fence: a write whose fencing token is lower than the highest
//! accepted for the server's shard is refused, so an ex-holder of the shard
//! can never overwrite newer state. It then compares the stored document
//! (signed, crates/catalog/src/signature.rs) and version with the new ones,
//! and writes and publishes the invalidation atomically, so a reconcile
//! that changes nothing writes and publishes nothing, a document someone
//! else rewrote is put back, and routers never see a version without its
//! catalog.
//!
//! The load test and the router tests publish through [`publish`] too.

pub mod audit;
pub mod signing;

use std::sync::LazyLock;

use mcp_operator_catalog::signature::SigningKey;
use mcp_operator_catalog::{Invalidation, Published, ServerId, keys};
use mcp_operator_store::Store;
use redis::{Script, ScriptInvocation};

use crate::error::Error;
use crate::sharding::shard::FencingToken;

/// Shared by both scripts: KEYS[3] is the fence, ARGV[1..4] the token.
/// Refuses a lower token of the same shard layout and shard (returns -1);
/// records a new token or holder.
const FENCE: &str = r"
local fence = redis.call('HMGET', KEYS[3], 'shards', 'shard', 'token', 'holder')
if fence[1] == ARGV[1] and fence[2] == ARGV[2] and tonumber(ARGV[3]) < tonumber(fence[3]) then
  return -1
end
if fence[1] ~= ARGV[1] or fence[2] ~= ARGV[2] or fence[3] ~= ARGV[3] or fence[4] ~= ARGV[4] then
  redis.call('HSET', KEYS[3], 'shards', ARGV[1], 'shard', ARGV[2], 'token', ARGV[3], 'holder', ARGV[4])
end
";

/// KEYS: catalog, version, fence. ARGV: token (4), version, signed
/// document, channel, invalidation JSON. Returns 1 written, 0 already
/// current, -1 fenced.
static PUBLISH: LazyLock<Script> = LazyLock::new(|| {
    Script::new(&format!(
        "{FENCE}
        redis.call('PERSIST', KEYS[3])
        if redis.call('GET', KEYS[2]) == ARGV[5] and redis.call('GET', KEYS[1]) == ARGV[6] then
          return 0
        end
        redis.call('SET', KEYS[1], ARGV[6])
        redis.call('SET', KEYS[2], ARGV[5])
        redis.call('PUBLISH', ARGV[7], ARGV[8])
        return 1"
    ))
});

/// KEYS: catalog, version, fence. ARGV: token (4), channel, tombstone JSON.
/// Returns the number of keys removed (publishing only when there was
/// something), or -1 fenced. The fence stays a day, so a fenced-out replica
/// cannot resurrect the catalog of a deleted server.
static REMOVE: LazyLock<Script> = LazyLock::new(|| {
    Script::new(&format!(
        "{FENCE}
        redis.call('EXPIRE', KEYS[3], 86400)
        local removed = redis.call('DEL', KEYS[1], KEYS[2])
        if removed > 0 then
          redis.call('PUBLISH', ARGV[5], ARGV[6])
        end
        return removed"
    ))
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

/// Prepares a fenced invocation of `script` on `server`'s keys.
fn fenced<'a>(script: &'a Script, server: &ServerId, token: &FencingToken) -> ScriptInvocation<'a> {
    let mut invocation = script.prepare_invoke();
    invocation
        .key(keys::catalog(server))
        .key(keys::version(server))
        .key(keys::fence(server))
        .arg(token.shards)
        .arg(token.shard.0)
        .arg(token.token)
        .arg(&token.holder);
    invocation
}

async fn invoke(
    store: &Store,
    invocation: &ScriptInvocation<'_>,
    token: &FencingToken,
) -> Result<i64, Error> {
    let mut conn = store.get().await?;
    let result: i64 = invocation
        .invoke_async(&mut conn)
        .await
        .map_err(mcp_operator_store::StoreError::from)?;
    if result < 0 {
        metrics::counter!("mcp_operator_fenced_writes_rejected_total").increment(1);
        return Err(Error::Fenced(token.shard));
    }
    Ok(result)
}

/// What a publish did, and the document Redis holds after it.
#[derive(Debug)]
pub struct Receipt {
    pub outcome: Outcome,
    pub stored: String,
}

/// Signs `published` with `key` and writes it unless Redis already holds
/// exactly that document.
pub async fn publish(
    store: &Store,
    published: &Published,
    key: &SigningKey,
    token: &FencingToken,
) -> Result<Receipt, Error> {
    let stored = key.sign(published).map_err(|source| Error::Build {
        what: "catalog",
        source,
    })?;
    let server = &published.catalog.server;
    let invalidation = Invalidation {
        server: server.clone(),
        version: Some(published.version.clone()),
    };
    let mut invocation = fenced(&PUBLISH, server, token);
    invocation
        .arg(&published.version.0)
        .arg(&stored)
        .arg(keys::channel(server))
        .arg(to_json("invalidation", &invalidation)?);
    let written = invoke(store, &invocation, token).await?;
    let outcome = if written == 1 {
        Outcome::Written
    } else {
        Outcome::Unchanged
    };
    Ok(Receipt { outcome, stored })
}

/// Removes a deleted server's catalog and publishes its tombstone.
pub async fn remove(store: &Store, server: &ServerId, token: &FencingToken) -> Result<bool, Error> {
    let tombstone = Invalidation {
        server: server.clone(),
        version: None,
    };
    let mut invocation = fenced(&REMOVE, server, token);
    invocation
        .arg(keys::channel(server))
        .arg(to_json("tombstone", &tombstone)?);
    Ok(invoke(store, &invocation, token).await? > 0)
}
