//! `router-bench`: tools/call through `mcp-operator router` against the same
//! backend reached directly and through nginx, in the same run, interleaved,
//! at several connection counts, with wrk as the load generator; then the
//! same router binary with glibc's, jemalloc's and mimalloc's allocators.
//! Writes the `router` section of docs/benchmarks.md. Run by `make
//! loadtest-router` inside the testenv (it reads MCP_REDIS_URL), after
//! loadtest/router/install.sh has installed nginx, wrk and the allocators.

mod nginx;
mod report;
mod wrk;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use anyhow::Context;
use axum::Json;
use axum::routing::post;
use clap::Parser;
use mcp_operator_api::HttpMethod;
use mcp_operator_catalog::router::env as router_env;
use mcp_operator_catalog::signature::{PUBLIC_KEYS_ENV, SigningKey};
use mcp_operator_catalog::{Catalog, Endpoint, Published, ServerId, ServerInfo, Source, Tool};
use mcp_operator_chaos::report::write_section;
use mcp_operator_chaos::traffic;
use mcp_operator_controller::{FencingToken, ShardId};
use mcp_operator_store::env as redis_var;
use mcp_operator_store::{RedisArgs, Store};
use serde_json::{Value, json};

use crate::report::{AllocatorRun, Memory, Round, Summary};
use crate::wrk::{Request, Sample};

#[derive(Parser)]
struct Args {
    /// The mcp-operator binary (a release build).
    #[arg(long)]
    binary: PathBuf,
    /// Where to write the results (the `router` section).
    #[arg(long)]
    report: Option<String>,
    /// Connections wrk keeps busy; every target is measured at each count.
    #[arg(long, value_delimiter = ',', default_values_t = [16, 64])]
    connections: Vec<usize>,
    /// Measurements of each target at each count; the report shows medians.
    #[arg(long, default_value_t = 3)]
    repetitions: usize,
    /// How long one measurement lasts (whole seconds).
    #[arg(long, default_value = "10s", value_parser = humantime::parse_duration)]
    duration: Duration,
    /// Load on each target before its measurements at each count, not
    /// reported.
    #[arg(long, default_value = "1s", value_parser = humantime::parse_duration)]
    warmup: Duration,
    /// Tools in the catalog the router serves.
    #[arg(long, default_value_t = 1000)]
    tools: usize,
    /// Then compare allocators: the same router binary with glibc's malloc,
    /// jemalloc and mimalloc (LD_PRELOAD), stateless calls at the largest
    /// connection count.
    #[arg(long, default_value_t = true, action = clap::ArgAction::Set)]
    allocators: bool,
    /// jemalloc's shared object (Debian's libjemalloc2).
    #[arg(long, default_value = "/usr/lib/x86_64-linux-gnu/libjemalloc.so.2")]
    jemalloc: PathBuf,
    /// mimalloc's shared object (Debian's libmimalloc2.0).
    #[arg(long, default_value = "/usr/lib/x86_64-linux-gnu/libmimalloc.so.2")]
    mimalloc: PathBuf,
    /// Redis of the testenv.
    #[arg(long, env = redis_var::URL)]
    redis_url: String,
}

/// What the load is sent to.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Target {
    Direct,
    Nginx,
    RouterSession,
    RouterStateless,
}

impl Target {
    /// In the order each round measures them.
    pub const ALL: [Target; 4] = [
        Target::Direct,
        Target::Nginx,
        Target::RouterSession,
        Target::RouterStateless,
    ];

    pub fn label(self) -> &'static str {
        match self {
            Target::Direct => "backend directly",
            Target::Nginx => "nginx",
            Target::RouterSession => "router, 2025-11-25 session",
            Target::RouterStateless => "router, 2026-07-28 stateless (JSON)",
        }
    }

    fn script_name(self) -> &'static str {
        match self {
            Target::Direct => "direct",
            Target::Nginx => "nginx",
            Target::RouterSession => "router-session",
            Target::RouterStateless => "router-stateless",
        }
    }
}

/// The router's allocator, chosen at start without rebuilding it.
#[derive(Clone, Copy)]
pub enum Allocator {
    Glibc,
    Jemalloc,
    Mimalloc,
}

impl Allocator {
    pub const ALL: [Allocator; 3] = [Allocator::Glibc, Allocator::Jemalloc, Allocator::Mimalloc];

    pub fn label(self) -> &'static str {
        match self {
            Allocator::Glibc => "glibc malloc (the default)",
            Allocator::Jemalloc => "jemalloc, `LD_PRELOAD`",
            Allocator::Mimalloc => "mimalloc, `LD_PRELOAD`, `MIMALLOC_DECOMMIT_DELAY=0`",
        }
    }

    fn preload(self, args: &Args) -> Option<&Path> {
        match self {
            Allocator::Glibc => None,
            Allocator::Jemalloc => Some(&args.jemalloc),
            Allocator::Mimalloc => Some(&args.mimalloc),
        }
    }

    /// mimalloc 2.0 returns freed pages after `decommit_delay` (25 ms by
    /// default); 0 purges at once, like `MIMALLOC_PURGE_DELAY=0` of 2.1,
    /// which 2.0.9 ignores (its legacy name `MIMALLOC_RESET_DELAY` works
    /// with a deprecation warning).
    fn env(self) -> &'static [(&'static str, &'static str)] {
        match self {
            Allocator::Mimalloc => &[("MIMALLOC_DECOMMIT_DELAY", "0")],
            Allocator::Glibc | Allocator::Jemalloc => &[],
        }
    }
}

/// A router process, killed when dropped.
struct Router {
    child: Child,
    base: String,
}

impl Drop for Router {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A directory of the run's files (nginx's prefix, wrk's scripts),
/// removed when dropped.
struct Scratch(PathBuf);

impl Scratch {
    fn new() -> anyhow::Result<Self> {
        let dir = std::env::temp_dir().join(format!("router-bench-{}", std::process::id()));
        std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
        Ok(Scratch(dir))
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// What every router of the run is started with.
struct Setup {
    args: Args,
    server: ServerId,
    key: SigningKey,
    backend: SocketAddr,
    http: reqwest::Client,
    tool: String,
}

/// The tool's arguments, sent as the backend's body directly.
fn arguments() -> Value {
    json!({"message": "hello", "count": 3})
}

const ROUTER_OK: &str = "\"isError\":false";
const BACKEND_OK: &str = "\"echo\"";

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    anyhow::ensure!(
        !args.connections.is_empty() && args.repetitions > 0,
        "nothing to measure: give --connections and --repetitions"
    );
    mcp_operator_store::install_tls_provider();

    let backend = backend().await?;
    let server = ServerId {
        namespace: "bench".into(),
        name: format!("router-{}", std::process::id()),
    };
    let key = SigningKey::from_pkcs8(&SigningKey::generate()?)?;
    publish(
        &args.redis_url,
        &catalog(&server, backend, args.tools),
        &key,
    )
    .await?;
    let setup = Setup {
        tool: format!("tool-{:04}", args.tools / 2),
        args,
        server,
        key,
        backend,
        http: reqwest::Client::new(),
    };
    let scratch = Scratch::new()?;
    let nginx = nginx::Nginx::start(scratch.0.join("nginx"), backend, &setup.http, "/echo").await?;
    let router = setup.start_router(Allocator::Glibc).await?;
    let session = traffic::initialize(&setup.http, &router.base, "router-bench").await?;

    let mut loads = Vec::new();
    for target in Target::ALL {
        let request = match target {
            Target::Direct => backend_request(format!("http://{backend}/echo")),
            Target::Nginx => backend_request(format!("http://127.0.0.1:{}/echo", nginx.port)),
            Target::RouterSession => session_request(&router.base, &session, &setup.tool),
            Target::RouterStateless => stateless_request(&router.base, &setup.tool),
        };
        let load = Load::new(
            &setup,
            &scratch,
            target.script_name(),
            target.label(),
            request,
        );
        loads.push(load.await?);
    }

    let args = &setup.args;
    let mut rounds = Vec::new();
    for &connections in &args.connections {
        rounds.push(Round {
            connections,
            summaries: measure(&loads, connections, args).await?,
        });
    }
    let memory = Memory::of(router.child.id())?;
    drop(router);

    let allocator_runs = if args.allocators {
        let widest = args.connections.iter().copied().max().unwrap_or(64);
        Some(compare_allocators(&setup, &scratch, widest).await?)
    } else {
        None
    };

    let load_average = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
    let load_average = load_average.split_whitespace().next().unwrap_or("?");
    let section = report::render(
        &report::Run {
            tools: args.tools,
            repetitions: args.repetitions,
            duration: args.duration,
            load_average,
        },
        &rounds,
        memory,
        allocator_runs.as_deref(),
    );
    println!("{section}");
    if let Some(path) = &args.report {
        write_section(path, "router", &section)?;
    }
    Ok(())
}

/// The same router binary with each allocator, all started together and
/// measured in turn, stateless calls at `connections`.
async fn compare_allocators(
    setup: &Setup,
    scratch: &Scratch,
    connections: usize,
) -> anyhow::Result<Vec<AllocatorRun>> {
    let (mut routers, mut loads) = (Vec::new(), Vec::new());
    for allocator in Allocator::ALL {
        let router = setup.start_router(allocator).await?;
        let request = stateless_request(&router.base, &setup.tool);
        let file = format!("allocator-{}", routers.len());
        loads.push(Load::new(setup, scratch, &file, allocator.label(), request).await?);
        routers.push((allocator, router));
    }
    let summaries = measure(&loads, connections, &setup.args).await?;
    let mut runs = Vec::new();
    for ((allocator, router), summary) in routers.iter().zip(summaries) {
        runs.push(AllocatorRun {
            allocator: *allocator,
            connections,
            summary,
            memory: Memory::of(router.child.id())?,
        });
    }
    Ok(runs)
}

/// Every load once for `--warmup`, then `--repetitions` rounds that
/// measure each load in turn, so that a slow spell of the shared machine
/// falls on all of them alike; the medians, in the order of `loads`.
async fn measure(loads: &[Load], connections: usize, args: &Args) -> anyhow::Result<Vec<Summary>> {
    for load in loads {
        load.run(connections, args.warmup).await?;
    }
    let mut samples: Vec<Vec<Sample>> = vec![Vec::new(); loads.len()];
    for repetition in 1..=args.repetitions {
        for (load, samples) in loads.iter().zip(&mut samples) {
            let sample = load.run(connections, args.duration).await?;
            eprintln!(
                "{connections} connections, #{repetition}, {}: {:.0} req/s, p50 {:?}",
                load.label, sample.rate, sample.p50
            );
            samples.push(sample);
        }
    }
    Ok(samples.iter().map(|s| Summary::median_of(s)).collect())
}

/// One target's wrk script, written once its request has been answered
/// correctly.
struct Load {
    label: &'static str,
    script: PathBuf,
    url: String,
}

impl Load {
    async fn new(
        setup: &Setup,
        scratch: &Scratch,
        file: &str,
        label: &'static str,
        request: Request,
    ) -> anyhow::Result<Self> {
        check(&setup.http, &request).await?;
        Ok(Load {
            label,
            script: wrk::write_script(&scratch.0, file, &request)?,
            url: request.url,
        })
    }

    async fn run(&self, connections: usize, duration: Duration) -> anyhow::Result<Sample> {
        wrk::run(self.script.clone(), self.url.clone(), connections, duration).await
    }
}

/// Sends `request` once: it must be answered with 2xx and what it expects
/// (for the router, a tool result that is not an error).
async fn check(http: &reqwest::Client, request: &Request) -> anyhow::Result<()> {
    let mut builder = http
        .post(&request.url)
        .header("content-type", "application/json")
        .body(request.body_text());
    for (name, value) in &request.headers {
        builder = builder.header(*name, value);
    }
    let response = builder.send().await?;
    let status = response.status();
    let text = response.text().await?;
    anyhow::ensure!(
        status.is_success() && text.contains(request.expect),
        "{}: HTTP {status}, expected {} in {text}",
        request.url,
        request.expect
    );
    Ok(())
}

/// The tool's arguments POSTed to the backend, directly or through nginx.
fn backend_request(url: String) -> Request {
    Request {
        url,
        headers: vec![],
        body: arguments(),
        expect: BACKEND_OK,
    }
}

/// tools/call in a 2025-11-25 session initialized before: every
/// connection shares it.
fn session_request(base: &str, session: &str, tool: &str) -> Request {
    Request::json_rpc(
        format!("{base}/mcp"),
        vec![
            ("accept", "application/json, text/event-stream".into()),
            ("mcp-protocol-version", "2025-11-25".into()),
            ("mcp-session-id", session.into()),
        ],
        json!({"jsonrpc": "2.0", "method": "tools/call", "params": {"name": tool, "arguments": arguments()}}),
        ROUTER_OK,
    )
}

/// The same call as a self-contained 2026-07-28 request: no session,
/// answered as plain JSON.
fn stateless_request(base: &str, tool: &str) -> Request {
    Request::json_rpc(
        format!("{base}/mcp"),
        vec![
            ("accept", "application/json, text/event-stream".into()),
            ("mcp-protocol-version", "2026-07-28".into()),
            ("mcp-method", "tools/call".into()),
            ("mcp-name", tool.into()),
        ],
        json!({"jsonrpc": "2.0", "method": "tools/call", "params": {
            "name": tool, "arguments": arguments(), "_meta": {
                "io.modelcontextprotocol/protocolVersion": "2026-07-28",
                "io.modelcontextprotocol/clientCapabilities": {},
                "io.modelcontextprotocol/clientInfo": {"name": "router-bench", "version": "0"},
        }}}),
        ROUTER_OK,
    )
}

impl Setup {
    /// Starts a router serving the published catalog with `allocator`;
    /// returns once it is ready and the allocator is really mapped.
    async fn start_router(&self, allocator: Allocator) -> anyhow::Result<Router> {
        let port = mcp_operator_chaos::free_port()?;
        let mut command = Command::new(&self.args.binary);
        command
            .arg("router")
            .env(router_env::SERVER, self.server.to_string())
            .env(router_env::LISTEN, format!("127.0.0.1:{port}"))
            .env(redis_var::URL, &self.args.redis_url)
            .env_remove(redis_var::CLUSTER_URLS)
            .env(PUBLIC_KEYS_ENV, self.key.public_key().to_string())
            .env(
                "MCP_RESOLVE",
                format!("{}={}", backend_host(&self.server), self.backend.ip()),
            )
            .env("RUST_LOG", "warn")
            .envs(allocator.env().iter().copied())
            .stdout(Stdio::null());
        let preload = allocator.preload(&self.args);
        if let Some(library) = preload {
            anyhow::ensure!(
                library.exists(),
                "{} is missing (loadtest/router/install.sh installs it)",
                library.display()
            );
            command.env("LD_PRELOAD", library);
        }
        let router = Router {
            child: command.spawn().context("starting the router")?,
            base: format!("http://127.0.0.1:{port}"),
        };
        traffic::wait_ready(&self.http, &router.base).await?;
        if let Some(library) = preload {
            ensure_mapped(router.child.id(), library)?;
        }
        Ok(router)
    }
}

/// An `LD_PRELOAD` that did not take (a wrong path, a setuid binary) would
/// silently measure glibc again.
fn ensure_mapped(pid: u32, library: &Path) -> anyhow::Result<()> {
    let real = std::fs::canonicalize(library)?;
    let maps = std::fs::read_to_string(format!("/proc/{pid}/maps"))?;
    anyhow::ensure!(
        maps.lines().any(|l| l.ends_with(&*real.to_string_lossy())),
        "{} is not mapped into the router (pid {pid})",
        real.display()
    );
    Ok(())
}

/// The fixture backend: echoes the JSON body.
async fn backend() -> anyhow::Result<SocketAddr> {
    let app = axum::Router::new().route(
        "/echo",
        post(|Json(body): Json<Value>| async move { Json(json!({"echo": body})) }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    tokio::spawn(async move { axum::serve(listener, app).await });
    Ok(addr)
}

fn catalog(server: &ServerId, backend: SocketAddr, tools: usize) -> Catalog {
    let schema = json!({
        "type": "object",
        "properties": {"message": {"type": "string"}, "count": {"type": "integer", "minimum": 1}},
        "required": ["message"],
    });
    let tools = (0..tools)
        .map(|i| Tool {
            name: format!("tool-{i:04}"),
            title: None,
            description: Some(format!("Echo number {i}, a tool of the router benchmark")),
            input_schema: schema.clone(),
            output_schema: None,
            annotations: None,
            endpoint: Endpoint {
                url: format!("http://{}:{}/echo", backend_host(server), backend.port()),
                timeout_seconds: 10,
                retries: 0,
                headers: vec![],
            },
            method: HttpMethod::Post,
            source: Source {
                kind: "MCPTool".into(),
                name: format!("tool-{i:04}"),
            },
        })
        .collect();
    let mut catalog = Catalog {
        server: server.clone(),
        server_info: ServerInfo {
            name: "bench".into(),
            version: "1".into(),
            instructions: None,
        },
        tools,
        prompts: vec![],
        resources: vec![],
    };
    catalog.normalize();
    catalog
}

/// The backend's Service name in the server's namespace, the only kind
/// of backend a router accepts; the router is pointed at the loopback
/// backend with `--resolve`.
fn backend_host(server: &ServerId) -> String {
    format!("echo.{}.svc", server.namespace)
}

/// Publishes the catalog, signed with `key`, through the controller's own
/// publish script.
async fn publish(redis_url: &str, catalog: &Catalog, key: &SigningKey) -> anyhow::Result<()> {
    let args = RedisArgs {
        redis_pool_size: 1,
        ..RedisArgs::from_env_credentials(Some(redis_url.to_owned()), vec![])
    };
    let store = Store::new(&args, "router_bench")?;
    let published = Published::new(catalog.clone());
    let token = FencingToken {
        shards: 1,
        shard: ShardId(0),
        token: 1,
        holder: "router-bench".into(),
    };
    mcp_operator_controller::publish(&store, &published, key, &token)
        .await
        .map_err(|e| anyhow::anyhow!("publishing the catalog: {e}"))?;
    Ok(())
}
