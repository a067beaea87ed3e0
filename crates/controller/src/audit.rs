//! The catalog audit. Redis can lose writes it acknowledged: a Cluster
//! failover promotes a replica the last writes had not reached yet, and a
//! node restarted without persistence comes back empty. The operator
//! publishes a server's catalog only when something about the server
//! changes, so nothing else would notice. Every interval, the audit
//! compares each held server's version key with the version its status
//! records and reconciles the servers whose catalog is missing or differs;
//! the reconcile publishes it again (the publish script compares against
//! what Redis holds, not against status).

use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use futures::future::BoxFuture;
use kube::runtime::reflector::ObjectRef;
use kube::{Resource, ResourceExt};
use mcp_operator_api::MCPServer;
use mcp_operator_catalog::keys;
use mcp_operator_store::{Store, StoreError};
use redis::AsyncCommands;
use tokio::sync::mpsc::UnboundedSender;
use tokio_stream::wrappers::UnboundedReceiverStream;

use crate::context::Context;
use crate::lease::Ownership;
use crate::membership::server_id;

/// Version keys read at once by one audit pass.
const CONCURRENCY: usize = 8;

/// Why an audited server is reconciled again.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Drift {
    /// Redis has no version for the server.
    Missing,
    /// Redis holds another version than the server's status.
    Differs,
}

impl Drift {
    fn as_str(self) -> &'static str {
        match self {
            Drift::Missing => "missing",
            Drift::Differs => "differs",
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
            server
                .namespace()
                .is_some_and(|ns| matches!(ctx.shards.ownership(&ns), Ownership::Held(_)))
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
            let drift = drift(&ctx.redis, &server, &version).await;
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
    server: &MCPServer,
    recorded: &str,
) -> Result<Option<Drift>, StoreError> {
    let mut conn = store.get().await?;
    let current: Option<String> = conn.get(keys::version(&server_id(server))).await?;
    Ok(match current {
        None => Some(Drift::Missing),
        Some(current) if current != recorded => Some(Drift::Differs),
        Some(_) => None,
    })
}
