//! The deployable product against the real apiserver: every Kustomize
//! overlay builds and passes a server-side dry run, and the examples,
//! applied for real, reach Ready with the operator running as a process
//! authenticated as its own ServiceAccount with the RBAC of
//! manifests/base: the least privilege it claims is also enough.
//!
//! The examples' HTTP backend answers every endpoint their MCPTools and
//! MCPResource name.
//!
//! kubectl is the testenv's (TESTENV_KUBECTL, `tests/testenv/kubectl.sh`):
//! the machine needs none of its own.

mod support;

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::process::Command;
use std::time::Duration;

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{Namespace, Service, ServiceAccount};
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use kube::api::{Api, DeleteParams};
use kube::runtime::wait::conditions;
use mcp_operator_api::{MCPPrompt, MCPResource, MCPServer, MCPTool};
use mcp_operator_catalog::{Published, ServerId, keys};
use mcp_operator_chaos::{Group, Redis, Timing, logs_dir, poll};
use redis::AsyncCommands;
use serde::Deserialize;
use serde_json::Value;

use support::{condition, testenv_var};

/// The operator's namespace, as manifests/base names it.
const SYSTEM: &str = "mcp-operator-system";
/// How the apiserver words an RBAC denial of the operator's account (other
/// 403s, such as writes into a terminating namespace, are not about RBAC).
const RBAC_DENIAL: &str =
    r#"forbidden: User "system:serviceaccount:mcp-operator-system:mcp-operator" cannot"#;

/// Runs the testenv's kubectl in the repository; fails the test with its
/// output when it fails or warns (a Pod Security warning, a deprecated
/// field), and returns what it printed.
fn kubectl(args: &[&str]) -> String {
    let output = kubectl_output(args);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success(),
        "kubectl {} failed:\n{stderr}",
        args.join(" ")
    );
    assert!(
        !stderr.contains("Warning:"),
        "kubectl {} warned:\n{stderr}",
        args.join(" ")
    );
    String::from_utf8(output.stdout).expect("kubectl prints UTF-8")
}

/// Runs the testenv's kubectl in the repository, whatever its outcome.
fn kubectl_output(args: &[&str]) -> std::process::Output {
    Command::new(testenv_var("TESTENV_KUBECTL"))
        .args(args)
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .expect("running the testenv's kubectl")
}

/// Waits until the apiserver's RBAC cache has the roles just applied, so
/// that the operator's first calls are not refused by a stale cache.
fn wait_until_rbac_applies() {
    let account = format!("--as=system:serviceaccount:{SYSTEM}:mcp-operator");
    let checks = [
        ["list", "mcpservers.kubemcp.io", "--all-namespaces"],
        [
            "update",
            "leases.coordination.k8s.io",
            "--namespace=mcp-operator-system",
        ],
    ];
    let started = std::time::Instant::now();
    for [verb, resource, scope] in checks {
        while kubectl_output(&["auth", "can-i", verb, resource, scope, &account]).stdout != b"yes\n"
        {
            assert!(
                started.elapsed() < Duration::from_secs(30),
                "the operator's account still cannot {verb} {resource} after 30s"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

/// The documents of a YAML stream, as JSON values.
fn documents(yaml: &str) -> Vec<Value> {
    serde_yaml_ng::Deserializer::from_str(yaml)
        .map(|document| Value::deserialize(document).expect("a YAML document"))
        .collect()
}

fn find<'a>(documents: &'a [Value], kind: &str, name: &str) -> Option<&'a Value> {
    documents
        .iter()
        .find(|d| d["kind"] == kind && d["metadata"]["name"] == name)
}

/// The operator container's environment variable `name`, as written.
fn operator_env<'a>(documents: &'a [Value], name: &str) -> Option<&'a Value> {
    let deployment = find(documents, "Deployment", "mcp-operator")?;
    deployment["spec"]["template"]["spec"]["containers"][0]["env"]
        .as_array()?
        .iter()
        .find(|e| e["name"] == name)
}

/// What each overlay must contain beyond the base, and must not.
fn check_overlay(overlay: &str, built: &[Value]) {
    for crd in ["mcptools", "mcpprompts", "mcpresources", "mcpservers"] {
        let name = format!("{crd}.kubemcp.io");
        assert!(
            find(built, "CustomResourceDefinition", &name).is_some(),
            "{overlay}: no CRD {name}"
        );
    }
    for (kind, name) in [
        ("Namespace", SYSTEM),
        ("ServiceAccount", "mcp-operator"),
        ("ClusterRole", "mcp-operator"),
        ("ClusterRoleBinding", "mcp-operator"),
        ("Role", "mcp-operator-leases"),
        ("RoleBinding", "mcp-operator-leases"),
    ] {
        assert!(
            find(built, kind, name).is_some(),
            "{overlay}: no {kind} {name}"
        );
    }
    let operator = find(built, "Deployment", "mcp-operator");
    let redis = find(built, "Deployment", "mcp-redis");
    match overlay {
        "dev" => {
            assert!(operator.is_none(), "dev runs the operator locally");
            assert!(redis.is_some(), "dev bundles Redis");
        }
        "k3d" => {
            let image = operator.expect("k3d deploys the operator")["spec"]["template"]["spec"]
                ["containers"][0]["image"]
                .clone();
            assert_eq!(image, "k3d-registry.localhost:5000/mcp-operator:dev");
            assert_eq!(
                operator_env(built, "MCP_ROUTER_IMAGE").map(|e| &e["value"]),
                Some(&image),
                "routers run the operator's image"
            );
            assert!(operator_env(built, "MCP_REDIS_URL").is_some());
            assert!(redis.is_some(), "k3d bundles Redis");
        }
        "production" => {
            let operator = operator.expect("production deploys the operator");
            assert_eq!(operator["spec"]["replicas"], 3);
            let resources = &operator["spec"]["template"]["spec"]["containers"][0]["resources"];
            assert!(
                resources["requests"]["cpu"].is_string()
                    && resources["limits"]["memory"].is_string()
            );
            let cluster = operator_env(built, "MCP_REDIS_CLUSTER_URLS").expect("cluster URLs");
            assert_eq!(
                cluster["valueFrom"]["secretKeyRef"]["name"],
                "mcp-operator-redis"
            );
            assert!(operator_env(built, "MCP_REDIS_URL").is_none());
            assert!(redis.is_none(), "production brings its own Redis Cluster");
            assert!(find(built, "ServiceMonitor", "mcp-operator").is_some());
            assert!(find(built, "PodDisruptionBudget", "mcp-operator").is_some());
        }
        "testenv" => {
            let container = &operator.expect("testenv deploys the operator")["spec"]["template"]["spec"]
                ["containers"][0];
            assert_eq!(
                container["imagePullPolicy"], "Never",
                "the image is imported"
            );
            assert_eq!(
                container["envFrom"][0]["secretRef"]["name"], "mcp-operator-redis",
                "every Redis setting comes from the Secret"
            );
            assert!(operator_env(built, "MCP_REDIS_URL").is_none());
            assert!(redis.is_none(), "testenv uses the testenv's Redis");
            let namespace = find(built, "Namespace", SYSTEM).expect("the namespace");
            assert_eq!(
                namespace["metadata"]["annotations"]["scheduler.alpha.kubernetes.io/node-selector"],
                "kubemcp.io/testenv-node=real",
                "the operator runs on the real node"
            );
        }
        other => panic!("no expectations for overlay {other}"),
    }
}

/// Every overlay under manifests/overlays.
const OVERLAYS: [&str; 4] = ["dev", "k3d", "production", "testenv"];

/// Platform teams apply the overlays with the kubectl they have: each
/// overlay (and the examples) builds, with what it must contain, under the
/// kustomize of every kubectl still in support (TESTENV_KUSTOMIZE,
/// tests/testenv/kustomize.sh; the newest is the testenv's kubectl, above).
#[test]
fn every_overlay_builds_with_the_kustomize_of_each_supported_kubectl() {
    let binaries = testenv_var("TESTENV_KUSTOMIZE");
    assert!(!binaries.trim().is_empty(), "TESTENV_KUSTOMIZE lists none");
    for kustomize in binaries.split_whitespace() {
        let build = |path: &str| {
            let output = Command::new(kustomize)
                .args(["build", path])
                .current_dir(env!("CARGO_MANIFEST_DIR"))
                .output()
                .expect("running kustomize");
            assert!(
                output.status.success(),
                "{kustomize} build {path} failed:\n{}",
                String::from_utf8_lossy(&output.stderr)
            );
            documents(&String::from_utf8(output.stdout).expect("kustomize prints UTF-8"))
        };
        for overlay in OVERLAYS {
            check_overlay(overlay, &build(&format!("manifests/overlays/{overlay}")));
        }
        assert!(
            !build("manifests/examples").is_empty(),
            "{kustomize}: the examples build to nothing"
        );
    }
}

#[test]
fn every_overlay_builds_and_passes_a_server_dry_run() {
    // ServiceMonitor is the Prometheus Operator's kind: a minimal CRD
    // stands in for it, so the production overlay can be dry-run.
    kubectl(&[
        "apply",
        "--server-side",
        "-f",
        "tests/fixtures/servicemonitor-crd.yaml",
    ]);
    kubectl(&[
        "wait",
        "--for=condition=Established",
        "--timeout=60s",
        "crd/servicemonitors.monitoring.coreos.com",
    ]);
    // A server dry run creates nothing, not even the namespace the other
    // objects go into.
    kubectl(&[
        "apply",
        "--server-side",
        "-f",
        "manifests/base/namespace.yaml",
    ]);
    for overlay in OVERLAYS {
        let path = format!("manifests/overlays/{overlay}");
        check_overlay(overlay, &documents(&kubectl(&["kustomize", &path])));
        // Schema, field validation (strict) and admission, Pod Security
        // (as warnings) included.
        kubectl(&["apply", "--server-side", "--dry-run=server", "-k", &path]);
    }
}

#[tokio::test]
async fn examples_reach_ready_under_the_operators_own_rbac() {
    let client = support::client().await;
    // What a developer applies before running the operator locally:
    // namespace, CRDs, RBAC and the bundled Redis, for real.
    kubectl(&["apply", "--server-side", "-k", "manifests/overlays/dev"]);
    wait_until_rbac_applies();

    let logs = logs_dir("manifests-rbac");
    let group = Group {
        binary: env!("CARGO_BIN_EXE_mcp-operator").into(),
        shards: 16,
        lease_namespace: SYSTEM.into(),
        redis: Redis::Single(testenv_var("MCP_REDIS_URL")),
        timing: Timing::default(),
        kubeconfig: Some(support::account_kubeconfig(&client, SYSTEM, "mcp-operator", &logs).await),
        logs: logs.clone(),
    };
    let mut operator = group.start("rbac").expect("start the operator");
    // Shown when the test fails: a refused call is logged there.
    eprintln!("operator log: {}", logs.join("rbac.log").display());

    // The examples as `kubectl apply -k manifests/examples` would create
    // them, in a namespace of this run's own: every status below is new.
    let ns = support::namespace(&client, "examples").await;
    let examples: Vec<Value> = documents(&kubectl(&["kustomize", "manifests/examples"]))
        .into_iter()
        .filter(|d| d["kind"] != "Namespace")
        .map(|mut d| {
            d["metadata"]["namespace"] = Value::from(ns.as_str());
            d
        })
        .collect();
    let examples_file = logs.join("examples.yaml");
    let stream = examples
        .iter()
        .map(|d| serde_yaml_ng::to_string(d).expect("serializable"))
        .collect::<Vec<_>>()
        .join("---\n");
    std::fs::write(&examples_file, stream).expect("write the examples");
    let examples_path = examples_file.to_str().expect("a UTF-8 path");
    kubectl(&["apply", "--server-side", "-f", examples_path]);
    let tools = Api::<MCPTool>::namespaced(client.clone(), &ns);
    for tool in ["forecast", "convert-temperature", "current-time"] {
        condition(&tools, tool, "Ready", "True", "Ready").await;
    }
    let prompts = Api::<MCPPrompt>::namespaced(client.clone(), &ns);
    condition(&prompts, "plan-trip", "Ready", "True", "Ready").await;
    let resources = Api::<MCPResource>::namespaced(client.clone(), &ns);
    for resource in ["guide", "stations"] {
        condition(&resources, resource, "Ready", "True", "Ready").await;
    }
    let servers = Api::<MCPServer>::namespaced(client.clone(), &ns);
    condition(&servers, "weather", "Ready", "True", "Ready").await;

    // The router workload, under the router's own powerless account.
    let account = Api::<ServiceAccount>::namespaced(client.clone(), &ns)
        .get("weather-router")
        .await
        .expect("the router ServiceAccount");
    assert_eq!(account.automount_service_account_token, Some(false));
    let deployment = Api::<Deployment>::namespaced(client.clone(), &ns)
        .get("weather")
        .await
        .expect("the router Deployment");
    let pod = deployment
        .spec
        .and_then(|s| s.template.spec)
        .expect("a pod template");
    assert_eq!(pod.service_account_name.as_deref(), Some("weather-router"));
    Api::<Service>::namespaced(client.clone(), &ns)
        .get("weather")
        .await
        .expect("the router Service");
    Api::<PodDisruptionBudget>::namespaced(client.clone(), &ns)
        .get("weather")
        .await
        .expect("a disruption budget for two routers");

    // The catalog the routers will serve.
    let server = ServerId {
        namespace: ns.clone(),
        name: "weather".into(),
    };
    let mut redis = redis::Client::open(testenv_var("MCP_REDIS_URL"))
        .expect("a Redis URL")
        .get_multiplexed_async_connection()
        .await
        .expect("a Redis connection");
    let raw: String = redis
        .get(keys::catalog(&server))
        .await
        .expect("the published catalog");
    let published: Published = serde_json::from_str(&raw).expect("a Published document");
    let catalog = &published.catalog;
    let names = |names: Vec<&str>| names.join(",");
    assert_eq!(
        names(catalog.tools.iter().map(|t| t.name.as_str()).collect()),
        "convert-temperature,current-time,forecast"
    );
    assert_eq!(
        names(catalog.prompts.iter().map(|p| p.name.as_str()).collect()),
        "plan-trip"
    );
    assert_eq!(
        names(catalog.resources.iter().map(|r| r.uri.as_str()).collect()),
        "docs://weather/guide,weather://stations"
    );
    let forecast = catalog
        .tools
        .iter()
        .find(|t| t.name == "forecast")
        .expect("forecast");
    assert_eq!(
        forecast.endpoint.url,
        format!("http://weather-backend.{ns}.svc:8080/forecast")
    );
    let status = servers
        .get("weather")
        .await
        .expect("the server")
        .status
        .expect("a status");
    assert_eq!(
        status.catalog_version.as_deref(),
        Some(published.version.0.as_str())
    );

    // Deletion: the finalizer is the operator's to remove, after it has
    // taken the catalog out of Redis.
    let uid = servers
        .get("weather")
        .await
        .expect("the server")
        .metadata
        .uid
        .expect("a uid");
    servers
        .delete("weather", &DeleteParams::default())
        .await
        .expect("delete the server");
    support::wait_for(&servers, "weather", conditions::is_deleted(&uid)).await;
    let left: Option<String> = redis
        .get(keys::catalog(&server))
        .await
        .expect("GET the catalog");
    assert!(left.is_none(), "the catalog outlived its server");

    // SIGTERM releases the Leases (a delete the Role must allow too).
    operator.signal("TERM").expect("SIGTERM the operator");
    let exited = poll(Duration::from_secs(30), "the operator to exit", || {
        let status = operator.child.try_wait();
        async move { Ok(status?) }
    })
    .await
    .expect("the operator stops at SIGTERM");
    let log = std::fs::read_to_string(logs.join("rbac.log")).expect("the operator's log");
    assert!(exited.success(), "the operator failed:\n{log}");
    assert!(
        !log.contains(RBAC_DENIAL),
        "the operator was refused something its RBAC should allow:\n{log}"
    );
    assert!(log.contains("acquired shard"), "no shard was taken:\n{log}");
    assert!(
        log.contains("controllers stopped; shards released"),
        "{log}"
    );

    Api::<Namespace>::all(client)
        .delete(&ns, &DeleteParams::default())
        .await
        .expect("delete the examples' namespace");
}

/// One HTTP/1.0 request to the local backend: the status and the JSON body.
fn request(port: u16, method: &str, target: &str, body: &str) -> (u16, Value) {
    let mut stream = TcpStream::connect(("127.0.0.1", port)).expect("connect to the backend");
    stream
        .set_read_timeout(Some(Duration::from_secs(5)))
        .expect("a read timeout");
    write!(
        stream,
        "{method} {target} HTTP/1.0\r\nHost: localhost\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    )
    .expect("send the request");
    let mut response = String::new();
    stream
        .read_to_string(&mut response)
        .expect("read the response");
    let (head, body) = response
        .split_once("\r\n\r\n")
        .unwrap_or_else(|| panic!("an HTTP response: {response}"));
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("a status line: {head}"));
    let body = serde_json::from_str(body).unwrap_or_else(|e| panic!("a JSON body ({e}): {body}"));
    (status, body)
}

/// The backend process, stopped when dropped.
struct Backend(std::process::Child);

impl Drop for Backend {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
fn the_example_backend_answers_every_endpoint_the_examples_name() {
    let port = TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port();
    let logs = logs_dir("manifests-backend");
    std::fs::create_dir_all(&logs).expect("the log directory");
    let log = std::fs::File::create(logs.join("backend.log")).expect("the backend's log");
    let _backend = Backend(
        Command::new("python3")
            .args([
                "manifests/examples/backend/server.py",
                "--host",
                "127.0.0.1",
            ])
            .args(["--port", &port.to_string()])
            .current_dir(env!("CARGO_MANIFEST_DIR"))
            .stdout(log.try_clone().expect("the log, twice"))
            .stderr(log)
            .spawn()
            .expect("python3 runs the example backend"),
    );
    let started = std::time::Instant::now();
    while TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "the backend did not listen on {port}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }

    // Each tool called as the router calls it: the method and path of its
    // MCPTool, the arguments as the body, or as the query string for GET.
    let examples = documents(&kubectl(&["kustomize", "manifests/examples"]));
    let call = |tool: &str, arguments: Value| {
        let spec = &find(&examples, "MCPTool", tool).unwrap_or_else(|| panic!("an MCPTool {tool}"))
            ["spec"]["backend"];
        let method = spec["method"].as_str().unwrap_or("POST");
        let path = spec["path"].as_str().expect("a path");
        if method == "GET" {
            let query: Vec<String> = arguments
                .as_object()
                .expect("arguments are an object")
                .iter()
                .map(|(k, v)| format!("{k}={}", v.to_string().trim_matches('"')))
                .collect();
            request(port, method, &format!("{path}?{}", query.join("&")), "")
        } else {
            request(port, method, path, &arguments.to_string())
        }
    };
    let (status, forecast) = call("forecast", serde_json::json!({"city": "Oslo", "days": 2}));
    assert_eq!(status, 200, "{forecast}");
    assert_eq!(forecast["city"], "Oslo");
    assert_eq!(forecast["days"].as_array().map(Vec::len), Some(2));
    let (status, converted) = call("convert-temperature", serde_json::json!({"celsius": 100}));
    assert_eq!(
        (status, &converted["fahrenheit"]),
        (200, &Value::from(212.0))
    );
    let (status, time) = call("current-time", serde_json::json!({"utcOffsetHours": 2}));
    assert_eq!(status, 200, "{time}");
    assert!(
        time["time"].as_str().is_some_and(|t| t.ends_with("+02:00")),
        "{time}"
    );
    // Bad arguments get a 400 with the reason, not a crash.
    let (status, refused) = call("convert-temperature", serde_json::json!({"celsius": "hot"}));
    assert_eq!(status, 400);
    assert_eq!(refused["error"], "'celsius' must be a number");

    // The resource read from the backend, with a GET.
    let stations = find(&examples, "MCPResource", "stations").expect("the stations resource");
    let path = stations["spec"]["backend"]["path"]
        .as_str()
        .expect("a path");
    let (status, body) = request(port, "GET", path, "");
    assert_eq!(status, 200, "{body}");
    assert!(body["stations"].as_array().is_some_and(|s| !s.is_empty()));
}
