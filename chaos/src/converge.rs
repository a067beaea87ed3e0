//! Whether a run has converged: every object Ready for its current
//! generation, and every server's catalog in Redis holding exactly the
//! members its selectors match in the API (computed here, independently of
//! the operator, from the members' labels).

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use futures::StreamExt;
use kube::api::{Api, DynamicObject, ListParams};
use kube::runtime::{WatchStreamExt, reflector, watcher};
use kube::{Client, ResourceExt};
use mcp_operator_catalog::signature;
use mcp_operator_catalog::{Published, ServerId, keys};
use mcp_operator_store::Store;

use crate::Redis;
use crate::kinds::Kind;
use crate::population::{Population, RUN_LABEL, SERVER_LABEL};

/// What a server's catalog holds: tool and prompt names, resource URIs.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Expected {
    pub tools: BTreeSet<String>,
    pub prompts: BTreeSet<String>,
    pub resources: BTreeSet<String>,
}

/// Objects listed per request.
const PAGE: u32 = 500;

/// Reads the API and Redis, and counts its own apiserver requests so they
/// can be told apart from the operator's.
pub struct Observer {
    pub client: Client,
    pub redis: Store,
    pub requests: u64,
}

/// How far a run is.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Progress {
    pub objects: usize,
    pub converged: usize,
    pub catalogs: usize,
    pub catalogs_matching: usize,
    /// A few objects that have not converged, with their Ready condition,
    /// or servers whose catalog differs: what a failure message shows.
    pub lagging: Vec<String>,
}

/// How many lagging objects a progress report names.
const LAGGING: usize = 5;

impl Progress {
    pub fn done(&self) -> bool {
        self.converged == self.objects && self.catalogs_matching == self.catalogs
    }
}

impl Observer {
    pub fn new(client: Client, redis: &Redis) -> anyhow::Result<Self> {
        Ok(Self {
            client,
            redis: redis.store()?,
            requests: 0,
        })
    }

    /// Every object of `kind` in the run.
    pub async fn list(&mut self, kind: Kind, run: &str) -> anyhow::Result<Vec<DynamicObject>> {
        let api: Api<DynamicObject> = Api::all_with(self.client.clone(), &kind.resource());
        let mut params = ListParams::default()
            .labels(&format!("{RUN_LABEL}={run}"))
            .limit(PAGE);
        let mut objects = Vec::new();
        loop {
            let page = api.list(&params).await?;
            self.requests += 1;
            objects.extend(page.items);
            match page.metadata.continue_ {
                Some(token) if !token.is_empty() => params = params.continue_token(&token),
                _ => return Ok(objects),
            }
        }
    }

    /// Where `population` stands, from the objects `watched` holds.
    /// Catalogs are read only once every object has converged: before that
    /// they cannot all match.
    async fn progress(
        &mut self,
        population: &Population,
        watched: &Watched,
    ) -> anyhow::Result<Progress> {
        let mut progress = Progress {
            catalogs: population.servers.len(),
            ..Progress::default()
        };
        let mut expected: BTreeMap<ServerId, Expected> = population
            .servers
            .iter()
            .map(|server| (server.clone(), Expected::default()))
            .collect();
        for (kind, store) in &watched.stores {
            let objects = store.state();
            progress.objects += objects.len();
            for object in &objects {
                if is_converged(object) {
                    progress.converged += 1;
                } else if progress.lagging.len() < LAGGING {
                    progress.lagging.push(format!(
                        "{} {}/{} (generation {:?}): {}",
                        kind.resource().kind,
                        object.namespace().unwrap_or_default(),
                        object.name_any(),
                        object.metadata.generation,
                        object.data["status"],
                    ));
                }
                let server = ServerId {
                    namespace: object.namespace().unwrap_or_default(),
                    name: object
                        .labels()
                        .get(SERVER_LABEL)
                        .cloned()
                        .unwrap_or_default(),
                };
                let Some(members) = expected.get_mut(&server) else {
                    continue;
                };
                match kind {
                    Kind::Tool => members.tools.insert(member_name(object)),
                    Kind::Prompt => members.prompts.insert(member_name(object)),
                    Kind::Resource => members.resources.insert(
                        object.data["spec"]["uri"]
                            .as_str()
                            .unwrap_or_default()
                            .to_owned(),
                    ),
                    _ => false,
                };
            }
        }
        if progress.converged == progress.objects {
            let mut redis = self.redis.get().await?;
            for (server, expected) in &expected {
                let published: Option<String> = redis::cmd("GET")
                    .arg(keys::catalog(server))
                    .query_async(&mut redis)
                    .await?;
                let published: Option<Published> =
                    published.map(|p| signature::unverified(&p)).transpose()?;
                match published.map(|p| contents(&p)) {
                    Some(actual) if &actual == expected => progress.catalogs_matching += 1,
                    actual if progress.lagging.len() < LAGGING => progress.lagging.push(format!(
                        "catalog of {server}: {actual:?}, expected {expected:?}"
                    )),
                    _ => {}
                }
            }
        }
        Ok(progress)
    }

    /// Watches the run's objects of every reconciled kind, once each has
    /// been listed.
    async fn watch(&mut self, run: &str) -> anyhow::Result<Watched> {
        let mut watched = Watched {
            stores: Vec::new(),
            tasks: Vec::new(),
        };
        for kind in Kind::RECONCILED {
            let resource = kind.resource();
            let api: Api<DynamicObject> = Api::all_with(self.client.clone(), &resource);
            let writer = reflector::store::Writer::new(resource);
            let store = writer.as_reader();
            let config = watcher::Config::default().labels(&format!("{RUN_LABEL}={run}"));
            let events = reflector(writer, watcher(api, config).default_backoff());
            watched
                .tasks
                .push(tokio::spawn(events.for_each(|_| std::future::ready(()))));
            store.wait_until_ready().await?;
            self.requests += 1;
            watched.stores.push((kind, store));
        }
        Ok(watched)
    }
}

/// The run's objects as watches keep them. Reading progress from them
/// costs the apiserver nothing; listing every object every second would
/// load the apiserver whose throughput the load test measures.
struct Watched {
    stores: Vec<(Kind, reflector::Store<DynamicObject>)>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl Drop for Watched {
    fn drop(&mut self) {
        for task in &self.tasks {
            task.abort();
        }
    }
}

impl Observer {
    /// Looks every 250 ms until `population` has converged or `limit` has
    /// passed since `started`, logging progress as it changes.
    pub async fn wait_converged(
        &mut self,
        population: &Population,
        started: Instant,
        limit: Duration,
    ) -> anyhow::Result<Progress> {
        let watched = self.watch(&population.run).await?;
        let mut last = None;
        loop {
            let progress = self.progress(population, &watched).await?;
            if last.as_ref() != Some(&progress) {
                eprintln!(
                    "  {:>6.1} s: {}/{} objects converged, {}/{} catalogs match",
                    started.elapsed().as_secs_f64(),
                    progress.converged,
                    progress.objects,
                    progress.catalogs_matching,
                    progress.catalogs
                );
                last = Some(progress.clone());
            }
            if progress.done() {
                return Ok(progress);
            }
            anyhow::ensure!(
                started.elapsed() < limit,
                "not converged within {limit:?}: {progress:?}"
            );
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
    }
}

/// A member's MCP name: `spec.name`, defaulting to the object's name.
fn member_name(object: &DynamicObject) -> String {
    object.data["spec"]["name"]
        .as_str()
        .map_or_else(|| object.name_any(), str::to_owned)
}

/// Ready, with both the status and the Ready condition describing the
/// object's current generation.
pub fn is_converged(object: &DynamicObject) -> bool {
    let Some(generation) = object.metadata.generation else {
        return false;
    };
    let status = &object.data["status"];
    let ready = status["conditions"].as_array().is_some_and(|conditions| {
        conditions.iter().any(|c| {
            c["type"] == "Ready"
                && c["status"] == "True"
                && c["observedGeneration"].as_i64() == Some(generation)
        })
    });
    ready && status["observedGeneration"].as_i64() == Some(generation)
}

/// The member names a published catalog holds.
pub fn contents(published: &Published) -> Expected {
    let names = |items: Vec<&String>| items.into_iter().cloned().collect::<BTreeSet<_>>();
    let catalog = &published.catalog;
    Expected {
        tools: names(catalog.tools.iter().map(|t| &t.name).collect()),
        prompts: names(catalog.prompts.iter().map(|p| &p.name).collect()),
        resources: names(catalog.resources.iter().map(|r| &r.uri).collect()),
    }
}

/// The description a tool has in a published catalog.
pub fn tool_description<'a>(published: &'a Published, tool: &str) -> Option<&'a str> {
    published
        .catalog
        .tools
        .iter()
        .find(|t| t.name == tool)
        .and_then(|t| t.description.as_deref())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::{Value, json};

    fn object(generation: i64, status: Value) -> DynamicObject {
        serde_json::from_value(json!({
            "apiVersion": "kubemcp.io/v1alpha1", "kind": "MCPTool",
            "metadata": {"name": "t", "generation": generation},
            "status": status,
        }))
        .expect("an object")
    }

    #[test]
    fn converged_needs_ready_for_the_current_generation() {
        let ready = |g| json!([{"type": "Ready", "status": "True", "observedGeneration": g}]);
        assert!(is_converged(&object(
            2,
            json!({"observedGeneration": 2, "conditions": ready(2)})
        )));
        assert!(!is_converged(&object(
            3,
            json!({"observedGeneration": 2, "conditions": ready(2)})
        )));
        assert!(!is_converged(&object(
            2,
            json!({"observedGeneration": 2, "conditions": ready(1)})
        )));
        assert!(!is_converged(&object(
            2,
            json!({"observedGeneration": 2, "conditions": [
            {"type": "Ready", "status": "False", "observedGeneration": 2}]})
        )));
        assert!(!is_converged(&object(1, json!({}))));
    }
}
