//! Churn: a steady rate of spec and label changes to tools while the
//! operator runs, and the time from each change to a published catalog
//! that shows it (seen through the servers' invalidation channels).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures::StreamExt;
use kube::ResourceExt;
use kube::api::{Api, DynamicObject, Patch, PatchParams};
use mcp_operator_catalog::{Invalidation, Published, ServerId, keys};
use mcp_operator_store::Store;
use serde_json::json;

use crate::Redis;
use crate::converge::{Observer, tool_description};
use crate::kinds::Kind;
use crate::population::{Population, SERVER_LABEL};

/// What a churn phase measured.
#[derive(Clone, Debug, Default)]
pub struct Churn {
    /// Change → catalog published, sorted.
    pub published: Vec<Duration>,
    /// Changes never seen published before the phase ended.
    pub missed: usize,
    pub changes: usize,
    /// Changes the apiserver refused or never answered (during a fault).
    pub errors: usize,
}

/// A change waiting to be seen in `server`'s catalog.
struct Pending {
    tool: String,
    revision: usize,
    at: Instant,
}

type PendingByServer = Arc<Mutex<HashMap<ServerId, Vec<Pending>>>>;

/// How long changes may take to show up after the last one was made.
const DRAIN: Duration = Duration::from_secs(15);

/// Changes `rate` tools per second for `duration`: every change sets a new
/// description; every fourth also moves the tool to another server of its
/// namespace, when there is one.
pub async fn run(
    observer: &mut Observer,
    redis: &Redis,
    population: &Population,
    rate: u32,
    duration: Duration,
) -> anyhow::Result<Churn> {
    let tools = observer.list(Kind::Tool, &population.run).await?;
    anyhow::ensure!(!tools.is_empty(), "churn needs tools");
    let mut by_namespace: HashMap<String, Vec<String>> = HashMap::new();
    for server in &population.servers {
        by_namespace
            .entry(server.namespace.clone())
            .or_default()
            .push(server.name.clone());
    }

    // Where each tool is now, as this phase moves them.
    let mut placement: HashMap<(String, String), String> = tools
        .iter()
        .map(|t| {
            let server = t.labels().get(SERVER_LABEL).cloned().unwrap_or_default();
            ((t.namespace().unwrap_or_default(), t.name_any()), server)
        })
        .collect();

    let pending: PendingByServer = Arc::default();
    let (done_tx, mut done_rx) = tokio::sync::mpsc::unbounded_channel::<Duration>();
    // Every node: in a cluster a publish reaches all of them, and one may
    // be the node a fault kills.
    let mut listeners = Vec::new();
    for url in redis.urls() {
        let mut pubsub = redis::Client::open(url.as_str())?
            .get_async_pubsub()
            .await?;
        pubsub.psubscribe("mcp:*:invalidate").await?;
        listeners.push(tokio::spawn(listen(
            pubsub,
            observer.redis.clone(),
            pending.clone(),
            done_tx.clone(),
        )));
    }

    let patch = PatchParams::default();
    let mut ticker = tokio::time::interval(Duration::from_secs(1) / rate.max(1));
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let started = Instant::now();
    let (mut changes, mut errors) = (0, 0);
    while started.elapsed() < duration {
        ticker.tick().await;
        let tool = &tools[(changes + errors) % tools.len()];
        let namespace = tool.namespace().unwrap_or_default();
        let key = (namespace.clone(), tool.name_any());
        let previous = placement.get(&key).cloned().unwrap_or_default();
        let destination = if (changes + errors) % 4 == 3 {
            next_server(&by_namespace, &namespace, &previous)
        } else {
            previous.clone()
        };
        placement.insert(key, destination.clone());
        let revision = changes + errors + 1;
        {
            let mut pending = pending
                .lock()
                .map_err(|_| anyhow::anyhow!("listener panicked"))?;
            pending
                .entry(ServerId {
                    namespace: namespace.clone(),
                    name: destination.clone(),
                })
                .or_default()
                .push(Pending {
                    tool: tool.name_any(),
                    revision,
                    at: Instant::now(),
                });
        }
        let api: Api<DynamicObject> =
            Api::namespaced_with(observer.client.clone(), &namespace, &Kind::Tool.resource());
        let result = api
            .patch(
                &tool.name_any(),
                &patch,
                &Patch::Merge(json!({
                    "metadata": {"labels": {SERVER_LABEL: destination}},
                    "spec": {"description": format!("Load-test tool rev-{revision}")},
                })),
            )
            .await;
        observer.requests += 1;
        match result {
            Ok(_) => changes += 1,
            Err(error) => {
                // Not made: nothing to wait for, and the tool stays put.
                eprintln!("churn: change {revision} failed: {error}");
                errors += 1;
                forget(&pending, &namespace, &destination, revision);
                placement.insert((namespace.clone(), tool.name_any()), previous);
            }
        }
    }

    let deadline = Instant::now() + DRAIN;
    while Instant::now() < deadline && outstanding(&pending) > 0 {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    for listener in listeners {
        listener.abort();
    }
    let mut published = Vec::new();
    while let Ok(latency) = done_rx.try_recv() {
        published.push(latency);
    }
    published.sort();
    Ok(Churn {
        missed: outstanding(&pending),
        published,
        changes,
        errors,
    })
}

/// Drops a pending change that was never made.
fn forget(pending: &PendingByServer, namespace: &str, server: &str, revision: usize) {
    let id = ServerId {
        namespace: namespace.to_owned(),
        name: server.to_owned(),
    };
    if let Ok(mut pending) = pending.lock()
        && let Some(list) = pending.get_mut(&id)
    {
        list.retain(|change| change.revision != revision);
    }
}

/// Matches invalidations from one node's subscription against the
/// pending changes, and reports each change's latency once its catalog
/// shows it.
async fn listen(
    mut pubsub: redis::aio::PubSub,
    store: Store,
    pending: PendingByServer,
    done: tokio::sync::mpsc::UnboundedSender<Duration>,
) {
    let mut messages = pubsub.on_message();
    while let Some(message) = messages.next().await {
        let Ok(payload) = message.get_payload::<String>() else {
            continue;
        };
        let Ok(invalidation) = serde_json::from_str::<Invalidation>(&payload) else {
            continue;
        };
        let seen = Instant::now();
        let waiting = pending
            .lock()
            .map(|p| p.contains_key(&invalidation.server))
            .unwrap_or(false);
        if !waiting {
            continue;
        }
        let Ok(mut connection) = store.get().await else {
            continue;
        };
        let published: Option<String> = redis::cmd("GET")
            .arg(keys::catalog(&invalidation.server))
            .query_async(&mut connection)
            .await
            .ok()
            .flatten();
        let Some(published) = published.and_then(|p| serde_json::from_str::<Published>(&p).ok())
        else {
            continue;
        };
        let Ok(mut pending) = pending.lock() else {
            return;
        };
        if let Some(list) = pending.get_mut(&invalidation.server) {
            list.retain(|change| {
                let shown = tool_description(&published, &change.tool)
                    .and_then(revision_of)
                    .is_some_and(|r| r >= change.revision);
                if shown {
                    let _ = done.send(seen - change.at);
                }
                !shown
            });
        }
    }
}

fn outstanding(pending: &PendingByServer) -> usize {
    pending
        .lock()
        .map(|p| p.values().map(Vec::len).sum())
        .unwrap_or(0)
}

/// The revision in a description this phase wrote (`... rev-<n>`).
fn revision_of(description: &str) -> Option<usize> {
    description.rsplit_once("rev-")?.1.parse().ok()
}

/// The server after `current` among those of `namespace`.
fn next_server(
    by_namespace: &HashMap<String, Vec<String>>,
    namespace: &str,
    current: &str,
) -> String {
    let servers = by_namespace
        .get(namespace)
        .map(Vec::as_slice)
        .unwrap_or(&[]);
    let index = servers.iter().position(|s| s == current).unwrap_or(0);
    servers
        .get((index + 1) % servers.len().max(1))
        .cloned()
        .unwrap_or_else(|| current.to_owned())
}
