//! Churn: a steady rate of spec and label changes to tools while the
//! operator runs, and the time from each change to a published catalog
//! that shows it (seen through the servers' invalidation channels) and,
//! when routers serve one of the servers, to every router serving it.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures::StreamExt;
use kube::ResourceExt;
use kube::api::{Api, DynamicObject, Patch, PatchParams};
use mcp_operator_catalog::signature;
use mcp_operator_catalog::{Invalidation, ServerId, keys};
use mcp_operator_store::{RedisArgs, Store};
use serde_json::json;

use crate::Redis;
use crate::converge::{Observer, tool_description};
use crate::kinds::Kind;
use crate::population::{Population, SERVER_LABEL};
use crate::traffic::Serving;

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
    /// Change → every live router serving it, sorted (changes to the
    /// served server's tools only).
    pub served: Vec<Duration>,
    /// Changes to the served server that no router set showed in time.
    pub unserved: usize,
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
/// Changes slower than this (a lease and then some) are listed, to be
/// matched with the replicas' logs.
const LATE: Duration = Duration::from_secs(8);

/// Changes `rate` tools per second for `duration`: every change sets a new
/// description; every fourth also moves the tool to another server of its
/// namespace, when there is one. With `serving`, every other change is to
/// a tool of the served server (never a move), and its routers' answers
/// time it.
pub async fn run(
    observer: &mut Observer,
    redis: &Redis,
    population: &Population,
    rate: u32,
    duration: Duration,
    serving: Option<&Serving>,
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
        let mut pubsub = RedisArgs::from_env_credentials(None, vec![])
            .client(&url)?
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
    // Tools whose change failed: the apiserver may have made it anyway (a
    // reply lost in a fault), so where they are is unknown until it answers
    // a read of one; left alone until then.
    let mut uncertain: HashSet<(String, String)> = HashSet::new();
    while started.elapsed() < duration {
        ticker.tick().await;
        if let Some(key) = uncertain.iter().next().cloned() {
            let api: Api<DynamicObject> =
                Api::namespaced_with(observer.client.clone(), &key.0, &Kind::Tool.resource());
            observer.requests += 1;
            if let Ok(tool) = api.get(&key.1).await {
                let server = tool.labels().get(SERVER_LABEL).cloned().unwrap_or_default();
                placement.insert(key.clone(), server);
                uncertain.remove(&key);
            }
        }
        let index = changes + errors;
        let served_first = serving.filter(|_| index % 2 == 0).map(|s| &s.server);
        let Some(tool) = pick(&tools, &placement, &uncertain, served_first, index) else {
            // Every tool is uncertain: wait for the apiserver to answer.
            continue;
        };
        let name = tool.name_any();
        let namespace = tool.namespace().unwrap_or_default();
        let key = (namespace.clone(), name.clone());
        let previous = placement.get(&key).cloned().unwrap_or_default();
        let destination = if index % 4 == 3 {
            next_server(&by_namespace, &namespace, &previous)
        } else {
            previous.clone()
        };
        placement.insert(key.clone(), destination.clone());
        let revision = index + 1;
        let served_by = |server: &str| serving.filter(|s| s.serves(&namespace, server));
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
                    tool: name.clone(),
                    revision,
                    at: Instant::now(),
                });
        }
        if let Some(serving) = served_by(&destination) {
            serving.expect(name.clone(), revision, Instant::now());
        }
        let api: Api<DynamicObject> =
            Api::namespaced_with(observer.client.clone(), &namespace, &Kind::Tool.resource());
        let result = api
            .patch(
                &name,
                &patch,
                &Patch::Merge(json!({
                    "metadata": {"labels": {SERVER_LABEL: destination}},
                    "spec": {"description": format!("Load-test tool rev-{revision}")},
                })),
            )
            .await;
        observer.requests += 1;
        let moved = destination != previous;
        match &result {
            Ok(_) => changes += 1,
            Err(error) => {
                eprintln!("churn: change {revision} failed: {error}");
                errors += 1;
                uncertain.insert(key);
            }
        }
        // What can no longer be expected: after a move, the tool's changes
        // at its old server (the move may be published first); after a
        // failure, every change to the tool.
        let mut stale = vec![];
        if moved || result.is_err() {
            stale.push(&previous);
        }
        if result.is_err() {
            stale.push(&destination);
        }
        for server in stale {
            forget(&pending, &namespace, server, |c| c.tool == name);
            if let Some(serving) = served_by(server) {
                serving.forget(|tool| tool == name);
            }
        }
    }

    let deadline = Instant::now() + DRAIN;
    let serving_outstanding = || serving.map_or(0, Serving::outstanding);
    while Instant::now() < deadline && outstanding(&pending) + serving_outstanding() > 0 {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    for listener in listeners {
        listener.abort();
    }
    if let Ok(pending) = pending.lock() {
        for (server, changes) in pending.iter() {
            for change in changes {
                eprintln!(
                    "churn: {server} never showed {} rev-{} (changed {:.1} s ago)",
                    change.tool,
                    change.revision,
                    change.at.elapsed().as_secs_f64()
                );
            }
        }
    }
    let mut published = Vec::new();
    while let Ok(latency) = done_rx.try_recv() {
        published.push(latency);
    }
    published.sort();
    let (served, unserved) = serving.map(Serving::finish).unwrap_or_default();
    Ok(Churn {
        missed: outstanding(&pending),
        published,
        changes,
        errors,
        served,
        unserved,
    })
}

/// The tool the `index`th change goes to, round robin among the tools
/// placed in `served` now (when given and it has any), else among all;
/// never an uncertain one.
fn pick<'a>(
    tools: &'a [DynamicObject],
    placement: &HashMap<(String, String), String>,
    uncertain: &HashSet<(String, String)>,
    served: Option<&ServerId>,
    index: usize,
) -> Option<&'a DynamicObject> {
    let key = |t: &DynamicObject| (t.namespace().unwrap_or_default(), t.name_any());
    let certain: Vec<&DynamicObject> = tools
        .iter()
        .filter(|t| !uncertain.contains(&key(t)))
        .collect();
    let placed: Vec<&DynamicObject> = served
        .map(|server| {
            certain
                .iter()
                .copied()
                .filter(|t| {
                    let key = key(t);
                    key.0 == server.namespace && placement.get(&key) == Some(&server.name)
                })
                .collect()
        })
        .unwrap_or_default();
    let from = if placed.is_empty() { &certain } else { &placed };
    from.get(index % from.len().max(1)).copied()
}

/// Drops the pending changes of `server` that `gone` picks.
fn forget(
    pending: &PendingByServer,
    namespace: &str,
    server: &str,
    gone: impl Fn(&Pending) -> bool,
) {
    let id = ServerId {
        namespace: namespace.to_owned(),
        name: server.to_owned(),
    };
    if let Ok(mut pending) = pending.lock()
        && let Some(list) = pending.get_mut(&id)
    {
        list.retain(|change| !gone(change));
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
        let Some(published) = published.and_then(|p| signature::unverified(&p).ok()) else {
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
                    let latency = seen - change.at;
                    if latency > LATE {
                        eprintln!(
                            "churn: {} showed {} rev-{} late, after {:.1} s",
                            invalidation.server,
                            change.tool,
                            change.revision,
                            latency.as_secs_f64()
                        );
                    }
                    let _ = done.send(latency);
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
pub fn revision_of(description: &str) -> Option<usize> {
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
