//! `router-bench`: tools/call through `mcp-operator router` against the same
//! request sent straight to the backend, at the same concurrency, in the same
//! run; and the router's memory with a large catalog. Writes the `router`
//! section of docs/benchmarks.md. Run by `make loadtest-router` inside the
//! testenv (it reads MCP_REDIS_URL).

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use axum::Json;
use axum::routing::post;
use clap::Parser;
use mcp_operator_api::HttpMethod;
use mcp_operator_catalog::router::env as router_env;
use mcp_operator_catalog::signature::{PUBLIC_KEYS_ENV, SigningKey};
use mcp_operator_catalog::{Catalog, Endpoint, Published, ServerId, ServerInfo, Source, Tool};
use mcp_operator_chaos::report::{quantile, today, write_section};
use mcp_operator_chaos::traffic;
use mcp_operator_controller::{FencingToken, ShardId};
use mcp_operator_store::env as redis_var;
use mcp_operator_store::{RedisArgs, Store};
use serde_json::{Value, json};

#[derive(Parser)]
struct Args {
    /// The mcp-operator binary (a release build).
    #[arg(long)]
    binary: PathBuf,
    /// Where to write the results (the `router` section).
    #[arg(long)]
    report: Option<String>,
    /// Requests in flight at once, for both targets.
    #[arg(long, default_value_t = 64)]
    concurrency: usize,
    /// How long each target is measured.
    #[arg(long, default_value = "15s", value_parser = humantime::parse_duration)]
    duration: Duration,
    /// Tools in the catalog the router serves.
    #[arg(long, default_value_t = 1000)]
    tools: usize,
    /// Redis of the testenv.
    #[arg(long, env = redis_var::URL)]
    redis_url: String,
}

/// What one target did.
struct Run {
    requests: usize,
    elapsed: Duration,
    latencies: Vec<Duration>,
}

impl Run {
    fn rate(&self) -> f64 {
        self.requests as f64 / self.elapsed.as_secs_f64()
    }

    fn p(&self, q: f64) -> Duration {
        quantile(&self.latencies, q)
    }
}

/// The router, killed when dropped.
struct Router(Child);

impl Drop for Router {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
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

    let port = std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port();
    let router = Router(
        Command::new(&args.binary)
            .arg("router")
            .env(router_env::SERVER, server.to_string())
            .env(router_env::LISTEN, format!("127.0.0.1:{port}"))
            .env(redis_var::URL, &args.redis_url)
            .env_remove(redis_var::CLUSTER_URLS)
            .env(PUBLIC_KEYS_ENV, key.public_key().to_string())
            .env(
                "MCP_RESOLVE",
                format!("{}={}", backend_host(&server), backend.ip()),
            )
            .env("RUST_LOG", "warn")
            .stdout(Stdio::null())
            .spawn()
            .context("starting the router")?,
    );
    let base = format!("http://127.0.0.1:{port}");
    let http = reqwest::Client::builder()
        .pool_max_idle_per_host(args.concurrency * 2)
        .build()?;
    traffic::wait_ready(&http, &base).await?;

    let tool = format!("tool-{:04}", args.tools / 2);
    let arguments = json!({"message": "hello", "count": 3});
    let call = json!({"jsonrpc": "2.0", "id": 1, "method": "tools/call", "params": {"name": tool, "arguments": arguments}});
    let direct_url = format!("http://{backend}/echo");
    let direct_body = arguments.clone();
    let direct = move |http: reqwest::Client, _worker: usize| {
        let (url, body) = (direct_url.clone(), direct_body.clone());
        async move {
            let response = http.post(&url).json(&body).send().await?;
            anyhow::ensure!(
                response.status().is_success(),
                "backend: HTTP {}",
                response.status()
            );
            response.bytes().await?;
            Ok(())
        }
    };
    let sessions = Arc::new(initialize_sessions(&http, &base, args.concurrency).await?);
    let mcp_url = format!("{base}/mcp");
    let through_router = move |http: reqwest::Client, worker: usize| {
        let (url, body, session) = (mcp_url.clone(), call.clone(), sessions[worker].clone());
        let request = http
            .post(url)
            .header("mcp-protocol-version", "2025-11-25")
            .header("mcp-session-id", session);
        call_tool(request, body)
    };

    // The same call as a self-contained 2026-07-28 request: no session,
    // answered as plain JSON.
    let stateless_call = json!({"jsonrpc": "2.0", "id": 1, "method": "tools/call", "params": {
    "name": tool, "arguments": arguments, "_meta": {
        "io.modelcontextprotocol/protocolVersion": "2026-07-28",
        "io.modelcontextprotocol/clientCapabilities": {},
        "io.modelcontextprotocol/clientInfo": {"name": "router-bench", "version": "0"},
    }}});
    let (stateless_url, name) = (format!("{base}/mcp"), tool.clone());
    let stateless = move |http: reqwest::Client, _worker: usize| {
        let (url, body, name) = (stateless_url.clone(), stateless_call.clone(), name.clone());
        let request = http
            .post(url)
            .header("mcp-protocol-version", "2026-07-28")
            .header("mcp-method", "tools/call")
            .header("mcp-name", name);
        call_tool(request, body)
    };

    // Warm every path (connections, caches), then measure each in turn.
    let (direct, through_router, stateless) = (
        Arc::new(direct),
        Arc::new(through_router),
        Arc::new(stateless),
    );
    let warm = Duration::from_secs(2);
    load(&http, args.concurrency, warm, direct.clone()).await?;
    load(&http, args.concurrency, warm, through_router.clone()).await?;
    load(&http, args.concurrency, warm, stateless.clone()).await?;
    let direct_run = load(&http, args.concurrency, args.duration, direct).await?;
    let router_run = load(&http, args.concurrency, args.duration, through_router).await?;
    let stateless_run = load(&http, args.concurrency, args.duration, stateless).await?;
    let (rss, peak) = memory(router.0.id())?;

    let load_average = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
    let load_average = load_average
        .split_whitespace()
        .next()
        .unwrap_or("?")
        .to_owned();
    let section = report(
        &args,
        &[&direct_run, &router_run, &stateless_run],
        rss,
        peak,
        &load_average,
    );
    println!("{section}");
    if let Some(path) = &args.report {
        write_section(path, "router", &section)?;
    }
    Ok(())
}

/// Sends a tools/call through the router; it must succeed.
async fn call_tool(request: reqwest::RequestBuilder, body: Value) -> anyhow::Result<()> {
    let response = request
        .header("accept", "application/json, text/event-stream")
        .json(&body)
        .send()
        .await?;
    anyhow::ensure!(
        response.status().is_success(),
        "router: HTTP {}",
        response.status()
    );
    let text = response.text().await?;
    anyhow::ensure!(text.contains("\"isError\":false"), "router: {text}");
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

/// One MCP session per worker.
async fn initialize_sessions(
    http: &reqwest::Client,
    base: &str,
    count: usize,
) -> anyhow::Result<Vec<String>> {
    let mut sessions = Vec::with_capacity(count);
    for _ in 0..count {
        sessions.push(traffic::initialize(http, base, "router-bench").await?);
    }
    Ok(sessions)
}

/// Runs `concurrency` workers, each sending one request after another,
/// for `duration`; every request must succeed.
async fn load<F, Fut>(
    http: &reqwest::Client,
    concurrency: usize,
    duration: Duration,
    request: Arc<F>,
) -> anyhow::Result<Run>
where
    F: Fn(reqwest::Client, usize) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = anyhow::Result<()>> + Send + 'static,
{
    let started = Instant::now();
    let end = started + duration;
    let mut workers = tokio::task::JoinSet::new();
    for worker in 0..concurrency {
        let (http, request) = (http.clone(), request.clone());
        workers.spawn(async move {
            let mut latencies = Vec::new();
            while Instant::now() < end {
                let sent = Instant::now();
                request(http.clone(), worker).await?;
                latencies.push(sent.elapsed());
            }
            anyhow::Ok(latencies)
        });
    }
    let mut latencies = Vec::new();
    while let Some(done) = workers.join_next().await {
        latencies.extend(done??);
    }
    latencies.sort();
    Ok(Run {
        requests: latencies.len(),
        elapsed: started.elapsed(),
        latencies,
    })
}

/// Resident and peak resident memory of a process, from /proc.
fn memory(pid: u32) -> anyhow::Result<(u64, u64)> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    let field = |name: &str| -> anyhow::Result<u64> {
        let line = status
            .lines()
            .find(|l| l.starts_with(name))
            .with_context(|| format!("no {name} in /proc"))?;
        let kib: u64 = line.split_whitespace().nth(1).context("a value")?.parse()?;
        Ok(kib * 1024)
    };
    Ok((field("VmRSS:")?, field("VmHWM:")?))
}

fn ms(d: Duration) -> String {
    format!("{:.2} ms", d.as_secs_f64() * 1000.0)
}

fn report(args: &Args, runs: &[&Run; 3], rss: u64, peak: u64, load_average: &str) -> String {
    let [direct, session, stateless] = *runs;
    let mib = |b: u64| b as f64 / (1024.0 * 1024.0);
    let row = |name: &str, run: &Run| {
        format!(
            "| {name} | {} | {:.0} | {} | {} | {:.0} % | {} |\n",
            run.requests,
            run.rate(),
            ms(run.p(0.5)),
            ms(run.p(0.99)),
            run.rate() / direct.rate() * 100.0,
            ms(run.p(0.5).saturating_sub(direct.p(0.5))),
        )
    };
    format!(
        "## Router overhead\n\n\
         `make loadtest-router` (loadtest/router): tools/call of one tool of a {tools}-tool catalog through a release \
         `mcp-operator router` (single-node Redis), against the same JSON POST sent straight to the same backend; \
         {concurrency} requests in flight, {secs} s each, one after the other in the same run, on the development \
         machine (2 cores shared with other work; client, router and backend on one host). Through the router \
         twice: 2025-11-25 with one session per worker (the answer is an SSE stream), and 2026-07-28 stateless \
         requests (plain JSON answers). Load average of the machine after the run: {load_average}. Measured {today}.\n\n\
         | target | requests | req/s | p50 | p99 | throughput vs direct | added p50 |\n\
         | --- | --- | --- | --- | --- | --- | --- |\n\
         {direct_row}{session_row}{stateless_row}\n\
         Targets: throughput ≥ 60 % of direct, added p50 ≤ 0.5 ms.\n\n\
         | memory | value | target |\n| --- | --- | --- |\n\
         | router RSS with {tools} tools, after the run | {rss:.1} MiB | < 50 MiB |\n\
         | router peak RSS | {peak:.1} MiB | |\n",
        tools = args.tools,
        concurrency = args.concurrency,
        secs = args.duration.as_secs(),
        today = today(),
        direct_row = row("backend directly", direct),
        session_row = row("router, 2025-11-25 session (SSE)", session),
        stateless_row = row("router, 2026-07-28 stateless (JSON)", stateless),
        rss = mib(rss),
        peak = mib(peak),
    )
}
