//! Router traffic: router processes serving one server of a population,
//! and MCP clients calling them at a steady rate the way a Service spreads
//! requests: each request goes to the next router in the live set. Every
//! client keeps one session (2025-11-25, so sessions live in Redis and any
//! router serves any of them). The clients count the requests that failed,
//! and the tools/list answers tell when each router serves a change the
//! churn made (change → router serving).

use std::collections::{BTreeSet, HashMap};
use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use anyhow::Context;
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::Secret;
use kube::Api;
use mcp_operator_catalog::signature::PUBLIC_KEYS_ENV;
use mcp_operator_catalog::{ServerId, acl};
use serde_json::{Value, json};

use crate::population::Population;
use crate::{Group, Redis, Replica, free_port, poll};

const PROTOCOL: &str = "2025-11-25";

/// How many routers and clients, and how fast the clients call.
#[derive(Clone, Copy, Debug, clap::Args)]
pub struct TrafficArgs {
    /// Router replicas serving the first server of the population.
    #[arg(long, default_value_t = 2)]
    pub routers: usize,
    /// MCP clients, one session each.
    #[arg(long, default_value_t = 8)]
    pub clients: usize,
    /// tools/list requests per second, all clients together.
    #[arg(long, default_value_t = 100)]
    pub client_rate: u32,
    /// How long a killed router stays in the endpoints clients pick from,
    /// as a Service keeps a dead pod until its endpoint is removed.
    #[arg(long, default_value = "1s", value_parser = humantime::parse_duration)]
    pub endpoint_lag: Duration,
}

/// How to start the routers of one server.
#[derive(Clone, Debug)]
pub struct Fleet {
    pub binary: PathBuf,
    pub server: ServerId,
    pub redis: Redis,
    /// The server's own Redis user and password, from its Secret.
    pub credentials: (String, String),
    pub logs: PathBuf,
    /// The operator's public keys (`--catalog-public-keys`).
    pub public_keys: String,
}

/// The public keys the operator gave `server`'s routers, read from their
/// Deployment as a router pod gets them.
pub async fn public_keys(client: &kube::Client, server: &ServerId) -> anyhow::Result<String> {
    let api: kube::Api<Deployment> = kube::Api::namespaced(client.clone(), &server.namespace);
    poll(Duration::from_secs(30), "the router Deployment", || async {
        let deployment = api.get_opt(&server.name).await?;
        Ok(deployment
            .and_then(|d| d.spec?.template.spec)
            .and_then(|pod| pod.containers.into_iter().next()?.env)
            .and_then(|env| env.into_iter().find(|e| e.name == PUBLIC_KEYS_ENV)?.value))
    })
    .await
}

impl Fleet {
    /// Starts a router named `name` and waits until it serves the catalog.
    pub async fn start(&self, name: &str) -> anyhow::Result<Replica> {
        let port = free_port()?;
        let base = format!("http://127.0.0.1:{port}");
        let mut args = vec![
            "router".to_owned(),
            "--server".to_owned(),
            self.server.to_string(),
            "--listen".to_owned(),
            format!("127.0.0.1:{port}"),
            "--catalog-public-keys".to_owned(),
            self.public_keys.clone(),
        ];
        args.extend(self.redis.flags());
        args.extend([
            "--redis-username".to_owned(),
            self.credentials.0.clone(),
            "--redis-password".to_owned(),
            self.credentials.1.clone(),
        ]);
        let router = Replica::spawn(&self.binary, &args, name, &self.logs, None, port)?;
        wait_ready(&http()?, &base).await?;
        Ok(router)
    }
}

/// A server's router credentials, read from its `<server>-router-redis`
/// Secret as the kubelet would.
async fn router_credentials(server: &ServerId) -> anyhow::Result<(String, String)> {
    let secrets: Api<Secret> =
        Api::namespaced(kube::Client::try_default().await?, &server.namespace);
    let secret = secrets.get(&acl::secret_name(&server.name)).await?;
    let data = secret.data.unwrap_or_default();
    let field = |key: &str| -> anyhow::Result<String> {
        let bytes = data
            .get(key)
            .with_context(|| format!("no {key} in the router Secret"))?;
        Ok(String::from_utf8(bytes.0.clone())?)
    };
    Ok((field(acl::SECRET_USERNAME)?, field(acl::SECRET_PASSWORD)?))
}

/// Waits (at most 30 s) until the router at `base` reports ready.
pub async fn wait_ready(http: &reqwest::Client, base: &str) -> anyhow::Result<()> {
    let ready = format!("{base}/readyz");
    poll(Duration::from_secs(30), "a router to be ready", || async {
        let response = http.get(&ready).send().await;
        Ok(response
            .is_ok_and(|r| r.status().is_success())
            .then_some(()))
    })
    .await
}

/// Opens an MCP session (2025-11-25) on the router at `base` as
/// `client_name`: initialize, then the initialized notification; returns
/// the session id.
pub async fn initialize(
    http: &reqwest::Client,
    base: &str,
    client_name: &str,
) -> anyhow::Result<String> {
    let request = json!({"jsonrpc": "2.0", "id": 0, "method": "initialize", "params": {
        "protocolVersion": PROTOCOL, "capabilities": {},
        "clientInfo": {"name": client_name, "version": "0"}}});
    let response = http
        .post(format!("{base}/mcp"))
        .header("accept", "application/json, text/event-stream")
        .json(&request)
        .send()
        .await?;
    let session = response
        .headers()
        .get("mcp-session-id")
        .context("initialize: no session id")?
        .to_str()?
        .to_owned();
    anyhow::ensure!(
        response.status().is_success(),
        "initialize: HTTP {}",
        response.status()
    );
    response.bytes().await?;
    let initialized = json!({"jsonrpc": "2.0", "method": "notifications/initialized"});
    let (status, _) = post(http, base, Some(&session), &initialized).await?;
    anyhow::ensure!(status.is_success(), "initialized: HTTP {status}");
    Ok(session)
}

/// POSTs `body` to the router's /mcp, in `session` if given; returns the
/// status and the body.
async fn post(
    http: &reqwest::Client,
    base: &str,
    session: Option<&str>,
    body: &Value,
) -> anyhow::Result<(reqwest::StatusCode, String)> {
    let mut request = http
        .post(format!("{base}/mcp"))
        .header("accept", "application/json, text/event-stream")
        .header("mcp-protocol-version", PROTOCOL)
        .json(body);
    if let Some(session) = session {
        request = request.header("mcp-session-id", session);
    }
    let response = request.send().await?;
    let status = response.status();
    Ok((status, response.text().await?))
}

/// The routers of one server, as running processes and as the endpoints
/// clients pick from.
pub struct Routers {
    fleet: Fleet,
    pub endpoints: Endpoints,
    running: Vec<Replica>,
    started: usize,
}

impl Routers {
    /// `count` routers of `population`'s first server, run from `group`'s
    /// binary on its Redis, and the changes to that server their clients
    /// will time.
    pub async fn of_first_server(
        client: &kube::Client,
        group: &Group,
        population: &Population,
        count: usize,
    ) -> anyhow::Result<(Self, Serving)> {
        let served = population
            .servers
            .first()
            .context("a population without servers")?;
        let fleet = Fleet {
            binary: group.binary.clone(),
            server: served.clone(),
            redis: group.redis.clone(),
            credentials: router_credentials(served).await?,
            logs: group.logs.clone(),
            public_keys: public_keys(client, served).await?,
        };
        Ok((
            Self::start(fleet, count).await?,
            Serving::new(served.clone()),
        ))
    }

    /// Starts `count` routers, each ready before it joins the endpoints.
    pub async fn start(fleet: Fleet, count: usize) -> anyhow::Result<Self> {
        let mut routers = Self {
            fleet,
            endpoints: Endpoints::default(),
            running: Vec::new(),
            started: 0,
        };
        for _ in 0..count {
            routers.add().await?;
        }
        Ok(routers)
    }

    async fn add(&mut self) -> anyhow::Result<()> {
        let name = format!("{}-router-{}", self.fleet.server.namespace, self.started);
        self.started += 1;
        let router = self.fleet.start(&name).await?;
        self.endpoints.add(&router);
        self.running.push(router);
        Ok(())
    }

    /// `kill -9` of a random router; clients keep picking it for `lag`,
    /// then a replacement joins once it is ready (as a Deployment replaces
    /// a pod).
    pub async fn kill_one(&mut self, lag: Duration) -> anyhow::Result<()> {
        anyhow::ensure!(!self.running.is_empty(), "no router to kill");
        let index = rand::random_range(0..self.running.len());
        let victim = self.running.remove(index);
        victim.signal("KILL")?;
        tokio::time::sleep(lag).await;
        self.endpoints.remove(&victim.name);
        drop(victim);
        self.add().await
    }
}

/// The routers requests go to now, as a Service's endpoints would list
/// them. Cheap to clone; clones share the list.
#[derive(Clone, Default)]
pub struct Endpoints {
    routers: Arc<RwLock<Vec<(String, String)>>>,
    next: Arc<AtomicUsize>,
}

impl Endpoints {
    pub fn add(&self, router: &Replica) {
        let base = format!("http://127.0.0.1:{}", router.metrics_port);
        self.write().push((router.name.clone(), base));
    }

    pub fn remove(&self, name: &str) {
        self.write().retain(|(n, _)| n != name);
    }

    /// The next router, round robin: its name and base URL.
    fn pick(&self) -> Option<(String, String)> {
        let routers = self.routers.read().unwrap_or_else(|e| e.into_inner());
        let index = self.next.fetch_add(1, Ordering::Relaxed);
        routers.get(index % routers.len().max(1)).cloned()
    }

    fn names(&self) -> BTreeSet<String> {
        let routers = self.routers.read().unwrap_or_else(|e| e.into_inner());
        routers.iter().map(|(name, _)| name.clone()).collect()
    }

    fn write(&self) -> std::sync::RwLockWriteGuard<'_, Vec<(String, String)>> {
        self.routers.write().unwrap_or_else(|e| e.into_inner())
    }
}

/// What the clients saw.
#[derive(Clone, Debug, Default)]
pub struct Load {
    pub requests: usize,
    pub errors: usize,
    /// A few of the errors, to tell what failed.
    pub samples: Vec<String>,
}

impl Load {
    pub fn error_rate(&self) -> f64 {
        self.errors as f64 / self.requests.max(1) as f64
    }
}

/// Changes to the served server waiting to be served by every live
/// router, and how long the served ones took. Shared by the churn (which
/// adds changes) and the clients (whose tools/list answers show them).
#[derive(Clone)]
pub struct Serving {
    pub server: ServerId,
    state: Arc<Mutex<ServingState>>,
}

#[derive(Default)]
struct ServingState {
    waiting: Vec<Waiting>,
    served: Vec<Duration>,
}

struct Waiting {
    tool: String,
    revision: usize,
    at: Instant,
    seen_by: BTreeSet<String>,
}

impl Serving {
    pub fn new(server: ServerId) -> Self {
        Self {
            server,
            state: Arc::default(),
        }
    }

    /// Whether `namespace/server` is the served server.
    pub fn serves(&self, namespace: &str, server: &str) -> bool {
        self.server.namespace == namespace && self.server.name == server
    }

    /// A change made at `at`: `tool` now has description revision
    /// `revision` in the served server.
    pub fn expect(&self, tool: String, revision: usize, at: Instant) {
        self.lock().waiting.push(Waiting {
            tool,
            revision,
            at,
            seen_by: BTreeSet::new(),
        });
    }

    /// Forgets the changes to the tools `gone` picks (no longer expected
    /// in the served server).
    pub fn forget(&self, gone: impl Fn(&str) -> bool) {
        self.lock().waiting.retain(|w| !gone(&w.tool));
    }

    /// `router` answered tools/list with these revisions, by tool.
    fn saw(&self, router: &str, revisions: &HashMap<String, usize>, live: &BTreeSet<String>) {
        let now = Instant::now();
        let mut state = self.lock();
        let ServingState { waiting, served } = &mut *state;
        waiting.retain_mut(|w| {
            if revisions.get(&w.tool).is_some_and(|&r| r >= w.revision) {
                w.seen_by.insert(router.to_owned());
            }
            let done = live.iter().all(|name| w.seen_by.contains(name));
            if done {
                served.push(now - w.at);
            }
            !done
        });
    }

    /// Change → every live router serving it, sorted; and the changes no
    /// router set served.
    pub fn finish(&self) -> (Vec<Duration>, usize) {
        let mut state = self.lock();
        let mut served = std::mem::take(&mut state.served);
        served.sort();
        (served, std::mem::take(&mut state.waiting).len())
    }

    pub fn outstanding(&self) -> usize {
        self.lock().waiting.len()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, ServingState> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// Runs `work` while `args.clients` call the routers at `endpoints`;
/// returns what `work` returned and what the clients saw.
pub async fn during<T>(
    endpoints: &Endpoints,
    serving: &Serving,
    args: &TrafficArgs,
    work: impl std::future::Future<Output = T>,
) -> anyhow::Result<(T, Load)> {
    let (stop, stopped) = tokio::sync::watch::channel(false);
    let clients = tokio::spawn(run(
        endpoints.clone(),
        serving.clone(),
        args.clients,
        args.client_rate,
        stopped,
    ));
    let output = work.await;
    let _ = stop.send(true);
    Ok((output, clients.await??))
}

/// Clients sending `rate` tools/list requests per second in all, over
/// `clients` sessions, until `stop` turns true.
async fn run(
    endpoints: Endpoints,
    serving: Serving,
    clients: usize,
    rate: u32,
    stop: tokio::sync::watch::Receiver<bool>,
) -> anyhow::Result<Load> {
    let http = http()?;
    let per_client = (f64::from(rate) / clients.max(1) as f64).max(0.1);
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..clients {
        let client = Client {
            http: http.clone(),
            endpoints: endpoints.clone(),
            serving: serving.clone(),
            session: None,
        };
        tasks.spawn(client.run(Duration::from_secs_f64(1.0 / per_client), stop.clone()));
    }
    let mut load = Load::default();
    while let Some(done) = tasks.join_next().await {
        if let Ok(one) = done {
            load.requests += one.requests;
            load.errors += one.errors;
            load.samples.extend(one.samples);
        }
    }
    load.samples.truncate(5);
    Ok(load)
}

/// One MCP client and its session.
struct Client {
    http: reqwest::Client,
    endpoints: Endpoints,
    serving: Serving,
    session: Option<String>,
}

impl Client {
    async fn run(mut self, period: Duration, mut stop: tokio::sync::watch::Receiver<bool>) -> Load {
        let mut load = Load::default();
        let mut ticks = tokio::time::interval(period);
        ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        while !*stop.borrow() {
            tokio::select! {
                _ = ticks.tick() => {}
                _ = stop.changed() => break,
            }
            let Some((router, base)) = self.endpoints.pick() else {
                continue;
            };
            load.requests += 1;
            if let Err(error) = self.list_tools(&router, &base).await {
                load.errors += 1;
                if load.samples.len() < 5 {
                    load.samples.push(format!("{router}: {error:#}"));
                }
            }
        }
        load
    }

    /// One tools/list through `base` (after initializing a session there,
    /// if this client has none).
    async fn list_tools(&mut self, router: &str, base: &str) -> anyhow::Result<()> {
        let session = match &self.session {
            Some(session) => session.clone(),
            None => {
                let session = initialize(&self.http, base, "chaos-traffic").await?;
                self.session = Some(session.clone());
                session
            }
        };
        let request = json!({"jsonrpc": "2.0", "id": 1, "method": "tools/list"});
        let (status, body) = post(&self.http, base, Some(&session), &request).await?;
        if status == reqwest::StatusCode::NOT_FOUND {
            // The session is gone (as a client must, start a new one).
            self.session = None;
        }
        anyhow::ensure!(status.is_success(), "tools/list: HTTP {status}");
        let answer = rpc_answer(&body).context("tools/list: no JSON-RPC answer")?;
        let tools = answer["result"]["tools"]
            .as_array()
            .with_context(|| format!("tools/list: {answer}"))?;
        let revisions = tools
            .iter()
            .filter_map(|tool| {
                let name = tool["name"].as_str()?;
                let revision = crate::churn::revision_of(tool["description"].as_str()?)?;
                Some((name.to_owned(), revision))
            })
            .collect();
        self.serving
            .saw(router, &revisions, &self.endpoints.names());
        Ok(())
    }
}

/// An HTTP client for the routers (plain HTTP, but reqwest's rustls needs
/// a crypto provider to build).
fn http() -> anyhow::Result<reqwest::Client> {
    mcp_operator_store::install_tls_provider();
    Ok(reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .build()?)
}

/// The JSON-RPC answer in a response body: plain JSON, or the first SSE
/// `data:` event that carries an id.
fn rpc_answer(body: &str) -> Option<Value> {
    if let Ok(value) = serde_json::from_str::<Value>(body) {
        return Some(value);
    }
    body.lines()
        .filter_map(|line| line.strip_prefix("data:"))
        .filter_map(|data| serde_json::from_str::<Value>(data.trim()).ok())
        .find(|value| value.get("id").is_some())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn answers_come_as_json_or_as_an_sse_event() {
        let answer = json!({"jsonrpc": "2.0", "id": 1, "result": {"tools": []}});
        assert_eq!(rpc_answer(&answer.to_string()), Some(answer.clone()));
        let sse = format!("id: 0\ndata: \n\nevent: message\ndata: {answer}\n\n");
        assert_eq!(rpc_answer(&sse), Some(answer));
        assert_eq!(rpc_answer("data: {\"jsonrpc\": \"2.0\"}\n"), None);
    }

    #[test]
    fn a_change_is_served_once_every_live_router_showed_it() {
        let serving = Serving::new(ServerId {
            namespace: "n".into(),
            name: "s".into(),
        });
        serving.expect("t".into(), 3, Instant::now());
        let live: BTreeSet<String> = ["a".into(), "b".into()].into();
        let older = HashMap::from([("t".to_owned(), 2)]);
        let newer = HashMap::from([("t".to_owned(), 3)]);
        serving.saw("a", &older, &live);
        serving.saw("a", &newer, &live);
        assert_eq!(serving.outstanding(), 1, "b has not shown it yet");
        serving.saw("b", &newer, &live);
        let (served, unserved) = serving.finish();
        assert_eq!((served.len(), unserved), (1, 0));
    }
}
