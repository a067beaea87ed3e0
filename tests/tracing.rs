//! Trace export against a real collector: Jaeger's all-in-one (built once
//! by tests/testenv/jaeger.sh) receives the router's spans over OTLP/HTTP,
//! and its query API must show one trace from the caller's span through
//! the router's to the backend call; the operator's reconciles arrive
//! there too. The test backend exports nothing of
//! its own: it records the `traceparent` it received, which must name the
//! router's backend span in the same trace. The spans arrive through the
//! flush at shutdown (SIGTERM), before the batch delay would send them.

mod router;
mod support;

use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};

use axum::Json;
use axum::http::HeaderMap;
use axum::routing::post;
use serde_json::{Value, json};

/// The caller's span: trace id, then span id, as in `traceparent`.
const HEADER_TRACE: (&str, &str) = ("4bf92f3577b34da6a3ce929d0e0e4736", "00f067aa0ba902b7");
const META_TRACE: (&str, &str) = ("0af7651916cd43dd8448eb211c80319c", "b7ad6b7169203331");

fn traceparent((trace, span): (&str, &str)) -> String {
    format!("00-{trace}-{span}-01")
}

/// A running Jaeger on ports of its own, killed when dropped.
struct Jaeger {
    child: Child,
    /// Base URL of the OTLP/HTTP receiver.
    otlp: String,
    /// Base URL of the query API.
    query: String,
}

impl Drop for Jaeger {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Jaeger {
    async fn start() -> Self {
        let (binary, _) = support::run_in_repository("tests/testenv/jaeger.sh", &["binary"]);
        let [otlp, query, query_grpc] = [(); 3].map(|()| router::closed_port());
        // Only the receiver, the in-memory store and the query service:
        // the all-in-one default also listens on fixed ports (metrics,
        // sampling, health) that other runs on this machine may hold.
        let config = format!(
            r#"
service:
  extensions: [jaeger_storage, jaeger_query]
  pipelines:
    traces:
      receivers: [otlp]
      exporters: [jaeger_storage_exporter]
  telemetry:
    metrics:
      level: none
extensions:
  jaeger_storage:
    backends:
      memory:
        memory:
          max_traces: 1000
  jaeger_query:
    storage:
      traces: memory
    http:
      endpoint: 127.0.0.1:{query}
    grpc:
      endpoint: 127.0.0.1:{query_grpc}
receivers:
  otlp:
    protocols:
      http:
        endpoint: 127.0.0.1:{otlp}
exporters:
  jaeger_storage_exporter:
    trace_storage: memory
"#
        );
        let path = std::env::temp_dir().join(format!("jaeger-{}-{otlp}.yaml", std::process::id()));
        std::fs::write(&path, config).expect("write the Jaeger config");
        let child = Command::new(binary.trim())
            .arg("--config")
            .arg(&path)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start jaeger");
        let jaeger = Self {
            child,
            otlp: format!("http://127.0.0.1:{otlp}"),
            query: format!("http://127.0.0.1:{query}"),
        };
        router::until_status(
            "Jaeger's query API to answer",
            &format!("{}/api/services", jaeger.query),
            |status| status.is_success(),
        )
        .await;
        jaeger
    }

    /// The first trace of `service` that `wanted` accepts, once Jaeger's
    /// query API shows one.
    async fn find(&self, service: &str, what: &str, wanted: impl Fn(&Value) -> bool) -> Value {
        let url = format!("{}/api/traces?service={service}&limit=1000", self.query);
        let mut found = Value::Null;
        router::eventually(&format!("Jaeger to hold {what}"), async || {
            let Ok(response) = router::mcp::http().get(&url).send().await else {
                return false;
            };
            let Ok(body) = response.json::<Value>().await else {
                return false;
            };
            let trace = body["data"]
                .as_array()
                .into_iter()
                .flatten()
                .find(|trace| wanted(trace));
            match trace {
                Some(trace) => {
                    found = trace.clone();
                    true
                }
                None => false,
            }
        })
        .await;
        found
    }

    /// The trace `trace_id` of `service` once it holds a span named
    /// `operation`.
    async fn trace(&self, service: &str, trace_id: &str, operation: &str) -> Value {
        let what = format!("trace {trace_id} with a {operation} span");
        self.find(service, &what, |trace| {
            trace["traceID"] == trace_id && span(trace, operation).is_some()
        })
        .await
    }
}

/// The first span of `trace` named `operation`.
fn span<'a>(trace: &'a Value, operation: &str) -> Option<&'a Value> {
    trace["spans"]
        .as_array()?
        .iter()
        .find(|span| span["operationName"] == operation)
}

/// The value of a span's tag (a field of the tracing span).
fn tag<'a>(span: &'a Value, key: &str) -> Option<&'a str> {
    span["tags"]
        .as_array()?
        .iter()
        .find(|tag| tag["key"] == key)?["value"]
        .as_str()
}

fn parent(span: &Value) -> Option<&str> {
    span["references"]
        .as_array()?
        .iter()
        .find(|reference| reference["refType"] == "CHILD_OF")?["spanID"]
        .as_str()
}

fn service<'a>(trace: &'a Value, span: &Value) -> Option<&'a str> {
    let process = span["processID"].as_str()?;
    trace["processes"][process]["serviceName"].as_str()
}

/// A backend for the fixture's echo tool that answers with the
/// `traceparent` header it received.
async fn recording_backend() -> (std::net::SocketAddr, Arc<Mutex<Vec<String>>>) {
    let received = Arc::new(Mutex::new(Vec::new()));
    let record = received.clone();
    let app = axum::Router::new().route(
        "/echo",
        post(move |headers: HeaderMap| {
            let record = record.clone();
            async move {
                let traceparent = headers
                    .get("traceparent")
                    .and_then(|v| v.to_str().ok())
                    .unwrap_or_default()
                    .to_owned();
                record
                    .lock()
                    .expect("the record lock")
                    .push(traceparent.clone());
                Json(json!({"traceparent": traceparent}))
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind the backend");
    let addr = listener.local_addr().expect("an address");
    tokio::spawn(async move { axum::serve(listener, app).await.expect("the backend") });
    (addr, received)
}

/// Checks one call's trace: the router's request span is the caller's
/// child, and the backend got a `traceparent` naming the router's backend
/// span in the same trace.
async fn assert_one_trace(jaeger: &Jaeger, (trace_id, caller_span): (&str, &str), sent: &str) {
    let trace = jaeger
        .trace("mcp-operator-router", trace_id, "backend")
        .await;
    let mcp = span(&trace, "mcp").expect("the router's mcp span");
    assert_eq!(parent(mcp), Some(caller_span), "{trace}");
    assert_eq!(service(&trace, mcp), Some("mcp-operator-router"), "{trace}");
    let backend = span(&trace, "backend").expect("the router's backend span");
    let fields: Vec<&str> = sent.split('-').collect();
    assert_eq!(fields.get(1), Some(&trace_id), "backend got {sent}");
    assert_eq!(
        fields.get(2).copied(),
        backend["spanID"].as_str(),
        "the backend's parent is the router's backend span: {trace}"
    );
}

#[tokio::test]
async fn one_trace_spans_caller_router_and_backend() {
    let jaeger = Jaeger::start().await;
    let (backend, received) = recording_backend().await;
    let server = router::server_id("tracing");
    let catalog = router::catalog(&server, backend);
    let redis = router::Redis::Single;
    router::publish(&support::redis::redis_args(redis), &catalog).await;
    let mut router = router::RouterProcess::start(
        &server,
        redis.env(),
        // The batch's default delay (5 s) outlasts the test: the spans
        // reach Jaeger through the flush at shutdown.
        &[("OTEL_EXPORTER_OTLP_ENDPOINT", jaeger.otlp.as_str())],
    )
    .await;
    let mut client = router.client().await;

    let call = json!({"jsonrpc": "2.0", "id": 100, "method": "tools/call",
        "params": {"name": "echo", "arguments": {"message": "traced"}}});
    let response = client
        .post(&call)
        .header("traceparent", traceparent(HEADER_TRACE))
        .send()
        .await
        .expect("POST /mcp");
    assert!(response.status().is_success(), "{}", response.status());
    let answer = response.text().await.expect("the tools/call answer");
    let sent = received
        .lock()
        .expect("the record lock")
        .last()
        .cloned()
        .unwrap_or_else(|| panic!("the backend was not called: {answer}"));

    // `_meta.traceparent` names the request's own trace, over the header.
    let params = json!({"name": "echo", "arguments": {"message": "traced"},
        "_meta": {"traceparent": traceparent(META_TRACE)}});
    let echo = client.result("tools/call", params).await;
    let sent_from_meta = echo["structuredContent"]["traceparent"]
        .as_str()
        .expect("the traceparent the backend got")
        .to_owned();

    router.terminate();
    let exit = router.exited(std::time::Duration::from_secs(10)).await;
    assert!(exit.is_some_and(|s| s.success()), "router exit: {exit:?}");
    assert_one_trace(&jaeger, HEADER_TRACE, &sent).await;
    assert_one_trace(&jaeger, META_TRACE, &sent_from_meta).await;
}

/// The operator exports its reconciles: a `reconcile` span for the server,
/// naming its kind, namespace and name, from `mcp-operator-controller`.
#[tokio::test]
async fn controller_exports_its_reconciles() {
    let jaeger = Jaeger::start().await;
    let client = support::client().await;
    support::install_crds(&client).await;
    let operator = support::operator(&client, "traced", &["--otlp-endpoint", &jaeger.otlp]).await;
    let ns = support::namespace(&client, "traced").await;
    support::server(&client, &ns, "s", "t").await;
    let servers = kube::Api::<mcp_operator_api::MCPServer>::namespaced(client.clone(), &ns);
    support::condition(&servers, "s", "CatalogPublished", "True", "Published").await;
    // The spans leave through the flush at shutdown.
    operator
        .stop(std::time::Duration::from_secs(15))
        .await
        .expect("stop the operator");

    let service_name = "mcp-operator-controller";
    let of_this_server = |span: &&Value| {
        span["operationName"] == "reconcile"
            && tag(span, "kind") == Some("MCPServer")
            && tag(span, "namespace") == Some(ns.as_str())
            && tag(span, "name") == Some("s")
    };
    let trace = jaeger
        .find(service_name, "a reconcile span of the server", |trace| {
            trace["spans"]
                .as_array()
                .is_some_and(|spans| spans.iter().any(|span| of_this_server(&span)))
        })
        .await;
    let reconcile = trace["spans"]
        .as_array()
        .and_then(|spans| spans.iter().find(of_this_server))
        .expect("the reconcile span");
    assert_eq!(service(&trace, reconcile), Some(service_name), "{trace}");
}
