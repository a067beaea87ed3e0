//! The catalog audit. Redis can lose writes it acknowledged: a Cluster
//! failover promotes a replica the last writes had not reached yet, and a
//! node restarted without persistence comes back empty. The operator
//! publishes a server's catalog only when something about the server
//! changes, so nothing else would notice. And anyone who can write to
//! Redis can rewrite a document while keeping its version; routers refuse
//! it (its signature fails), but new router pods would then have nothing to
//! serve. Every interval, the audit compares each held server's version key
//! with the version its status records, and a SHA-1 of the stored document
//! (computed by Redis, so the document does not cross the network) with
//! that of the document this replica last published for it; it reconciles
//! the servers whose catalog is missing or differs, and the reconcile
//! publishes it again (the publish script compares against what Redis
//! holds, not against status). Signatures are deterministic, so an
//! unchanged catalog is always the same document.

use std::collections::HashMap;
use std::sync::{Arc, LazyLock, Mutex};
use std::time::Duration;

use futures::StreamExt;
use futures::future::BoxFuture;
use kube::runtime::reflector::ObjectRef;
use kube::{Resource, ResourceExt};
use mcp_operator_api::MCPServer;
use mcp_operator_catalog::{ServerId, keys};
use mcp_operator_store::{Store, StoreError};
use redis::Script;
use tokio::sync::mpsc::UnboundedSender;
use tokio_stream::wrappers::UnboundedReceiverStream;

use crate::context::Context;
use crate::server::membership::server_id;
use crate::sharding::lease::Ownership;

/// Servers read at once by one audit pass.
const CONCURRENCY: usize = 8;

/// KEYS: catalog, version. Returns the version and the SHA-1 (hex) of the
/// stored document, each nil when missing.
static READ: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        "local stored = redis.call('GET', KEYS[1])
        return {redis.call('GET', KEYS[2]), stored and redis.sha1hex(stored)}",
    )
});

/// The SHA-1 of each document this replica last published (or found
/// already current), by server: what the audit expects Redis to hold.
#[derive(Default)]
pub struct Expected(Mutex<HashMap<ServerId, String>>);

impl Expected {
    pub fn record(&self, server: &ServerId, stored: &str) {
        self.lock().insert(server.clone(), sha1_hex(stored));
    }

    pub fn forget(&self, server: &ServerId) {
        self.lock().remove(server);
    }

    fn get(&self, server: &ServerId) -> Option<String> {
        self.lock().get(server).cloned()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<ServerId, String>> {
        self.0.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// What Redis's `redis.sha1hex` returns for `value`.
fn sha1_hex(value: &str) -> String {
    ring::digest::digest(&ring::digest::SHA1_FOR_LEGACY_USE_ONLY, value.as_bytes())
        .as_ref()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// Why an audited server is reconciled again.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Drift {
    /// Redis has no version for the server.
    Missing,
    /// Redis holds another version than the server's status.
    Differs,
    /// Redis holds the right version, but not the document this replica
    /// published: it was rewritten behind the operator's back.
    Content,
}

impl Drift {
    fn as_str(self) -> &'static str {
        match self {
            Drift::Missing => "missing",
            Drift::Differs => "differs",
            Drift::Content => "content",
        }
    }
}

/// Servers whose catalog in Redis drifted from their status, every
/// `interval`, for the server controller to reconcile. A zero interval
/// never audits.
pub fn drifted(
    ctx: &Arc<Context>,
    interval: Duration,
) -> UnboundedReceiverStream<ObjectRef<MCPServer>> {
    every(ctx, interval, |ctx, tx| Box::pin(audit(ctx, tx)))
}

/// A periodic pass: `pass` runs every `interval` (never for a zero one)
/// and sends the servers it wants reconciled.
pub fn every<F>(
    ctx: &Arc<Context>,
    interval: Duration,
    pass: F,
) -> UnboundedReceiverStream<ObjectRef<MCPServer>>
where
    F: for<'a> Fn(&'a Context, &'a UnboundedSender<ObjectRef<MCPServer>>) -> BoxFuture<'a, ()>
        + Send
        + 'static,
{
    let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
    if !interval.is_zero() {
        let ctx = ctx.clone();
        tokio::spawn(async move {
            let mut ticks = tokio::time::interval(interval);
            ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            // The first tick is immediate; a starting replica has just
            // reconciled everything it holds.
            ticks.tick().await;
            loop {
                tokio::select! {
                    _ = ticks.tick() => pass(&ctx, &tx).await,
                    () = tx.closed() => return,
                }
            }
        });
    }
    UnboundedReceiverStream::new(rx)
}

/// The servers of the shards this replica holds, but those being deleted.
pub fn held(ctx: &Context) -> impl Iterator<Item = Arc<MCPServer>> + '_ {
    ctx.servers
        .state()
        .into_iter()
        .filter(|server| server.meta().deletion_timestamp.is_none())
        .filter(|server| {
            server.namespace().is_some_and(|ns| {
                matches!(ctx.shards.ownership(&ns), Ownership::Held(_)) && ctx.scope.includes(&ns)
            })
        })
}

/// One pass over the servers this replica holds.
#[tracing::instrument(skip_all)]
async fn audit(ctx: &Context, tx: &UnboundedSender<ObjectRef<MCPServer>>) {
    let audited: Vec<(Arc<MCPServer>, String)> = held(ctx)
        .filter_map(|server| {
            let version = server.status.as_ref()?.catalog_version.clone()?;
            Some((server, version))
        })
        .collect();
    let checked = audited.len();
    let drifts: Vec<_> = futures::stream::iter(audited)
        .map(|(server, version)| async move {
            let id = server_id(&server);
            let expected = ctx.expected.get(&id);
            let drift = drift(&ctx.redis, &id, &version, expected.as_deref()).await;
            (server, drift)
        })
        .buffer_unordered(CONCURRENCY)
        .collect()
        .await;
    metrics::counter!("mcp_operator_catalog_audits_total").increment(checked as u64);
    for (server, drift) in drifts {
        let object = ObjectRef::from_obj(&*server);
        match drift {
            Ok(None) => {}
            Ok(Some(drift)) => {
                tracing::warn!(server = %object, drift = drift.as_str(), "the catalog in Redis drifted from status; publishing it again");
                metrics::counter!("mcp_operator_catalog_repairs_total", "drift" => drift.as_str())
                    .increment(1);
                if tx.send(object).is_err() {
                    return;
                }
            }
            // Redis is unreachable: the next pass looks again.
            Err(error) => tracing::debug!(server = %object, %error, "cannot audit the catalog"),
        }
    }
}

async fn drift(
    store: &Store,
    server: &ServerId,
    recorded: &str,
    expected: Option<&str>,
) -> Result<Option<Drift>, StoreError> {
    let mut conn = store.get().await?;
    let mut invocation = READ.prepare_invoke();
    invocation
        .key(keys::catalog(server))
        .key(keys::version(server));
    let (version, digest): (Option<String>, Option<String>) =
        invocation.invoke_async(&mut conn).await?;
    Ok(classify(
        version.as_deref(),
        digest.as_deref(),
        recorded,
        expected,
    ))
}

/// `expected` is unknown when this replica has not published the server
/// since it started: then only the version is compared.
fn classify(
    version: Option<&str>,
    digest: Option<&str>,
    recorded: &str,
    expected: Option<&str>,
) -> Option<Drift> {
    match (version, digest) {
        (None, _) | (_, None) => Some(Drift::Missing),
        (Some(version), _) if version != recorded => Some(Drift::Differs),
        (_, Some(digest)) if expected.is_some_and(|e| e != digest) => Some(Drift::Content),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn drift_is_told_by_version_then_content() {
        let stored = "{\"kid\":\"k\"}";
        let digest = sha1_hex(stored);
        let d = Some(digest.as_str());
        assert_eq!(classify(None, d, "v1", d), Some(Drift::Missing));
        assert_eq!(classify(Some("v1"), None, "v1", d), Some(Drift::Missing));
        assert_eq!(classify(Some("v0"), d, "v1", d), Some(Drift::Differs));
        assert_eq!(
            classify(Some("v1"), Some("other"), "v1", d),
            Some(Drift::Content)
        );
        assert_eq!(classify(Some("v1"), d, "v1", d), None);
        assert_eq!(classify(Some("v1"), Some("other"), "v1", None), None);
    }

    #[test]
    fn the_digest_is_redis_sha1hex() {
        // redis-cli EVAL "return redis.sha1hex('')" 0
        assert_eq!(sha1_hex(""), "da39a3ee5e6b4b0d3255bfef95601890afd80709");
    }
}
