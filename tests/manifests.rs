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
use k8s_openapi::api::core::v1::{Namespace, Secret, Service, ServiceAccount};
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use kube::api::{Api, DeleteParams};
use kube::runtime::wait::conditions;
use mcp_operator_api::{MCPPrompt, MCPResource, MCPServer, MCPTool};
use mcp_operator_catalog::signature::{PUBLIC_KEYS_ENV, TrustedKeys};
use mcp_operator_catalog::{ServerId, keys};
use mcp_operator_chaos::{Group, Redis, Timing, logs_dir, poll};
use redis::AsyncCommands;
use serde::Deserialize;
use serde_json::Value;

use support::{condition, run_in_repository, testenv_var};

/// The operator's namespace, as manifests/base names it.
const SYSTEM: &str = "mcp-operator-system";
/// What a platform admin applies into a namespace to let the confined
/// operator write there.
const ENABLE_NAMESPACE: &str = "manifests/components/confined/namespace";
/// The label that enables a namespace in the confined install.
const ENABLED: &str = "kubemcp.io/enabled";

/// The tests that run an operator take turns: an operator reconciles every
/// namespace it may, so another's would spoil what the confined one must
/// leave alone.
static OPERATOR: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());
/// How the apiserver words an RBAC denial of the operator's account (other
/// 403s, such as writes into a terminating namespace, are not about RBAC).
const RBAC_DENIAL: &str =
    r#"forbidden: User "system:serviceaccount:mcp-operator-system:mcp-operator" cannot"#;

/// Runs the testenv's kubectl in the repository; fails the test with its
/// output when it fails or warns (a Pod Security warning, a deprecated
/// field), and returns what it printed.
fn kubectl(args: &[&str]) -> String {
    let (stdout, stderr) = run_in_repository(&testenv_var("TESTENV_KUBECTL"), args);
    assert!(
        !stderr.contains("Warning:"),
        "kubectl {} warned:\n{stderr}",
        args.join(" ")
    );
    stdout
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
    wait_until_allowed(
        SYSTEM,
        &[
            ["list", "mcpservers.kubemcp.io", "--all-namespaces"],
            [
                "update",
                "leases.coordination.k8s.io",
                "--namespace=mcp-operator-system",
            ],
            [
                "get",
                "secrets/mcp-operator-catalog-signing",
                "--namespace=mcp-operator-system",
            ],
        ],
    );
}

/// Whether the operator's account in `namespace` may, as `kubectl auth
/// can-i` answers: `[verb, resource, scope]`.
fn allowed(namespace: &str, [verb, resource, scope]: [&str; 3]) -> bool {
    let account = format!("--as=system:serviceaccount:{namespace}:mcp-operator");
    kubectl_output(&["auth", "can-i", verb, resource, scope, &account]).stdout == b"yes\n"
}

/// Waits until the operator's account in `namespace` may do each of
/// `checks`.
fn wait_until_allowed(namespace: &str, checks: &[[&str; 3]]) {
    let started = std::time::Instant::now();
    for &[verb, resource, scope] in checks {
        while !allowed(namespace, [verb, resource, scope]) {
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
        ("Role", "mcp-operator-catalog-signing"),
        ("RoleBinding", "mcp-operator-catalog-signing"),
        ("ValidatingAdmissionPolicy", "mcp-operator-owned-secrets"),
        (
            "ValidatingAdmissionPolicyBinding",
            "mcp-operator-owned-secrets",
        ),
    ] {
        assert!(
            find(built, kind, name).is_some(),
            "{overlay}: no {kind} {name}"
        );
    }
    let operator = find(built, "Deployment", "mcp-operator");
    let redis = find(built, "Deployment", "mcp-redis");
    if operator.is_some() {
        for (name, key) in [
            ("MCP_REDIS_USERNAME", "username"),
            ("MCP_REDIS_PASSWORD", "password"),
        ] {
            let reference = &operator_env(built, name).expect("the operator's Redis user")["valueFrom"]
                ["secretKeyRef"];
            assert_eq!(reference["name"], "mcp-operator-redis", "{overlay}: {name}");
            assert_eq!(reference["key"], key, "{overlay}: {name}");
        }
    }
    if let Some(redis) = redis {
        let args = redis["spec"]["template"]["spec"]["containers"][0]["args"].to_string();
        assert!(
            args.contains(r#""--user","default","off""#),
            "{overlay}: the bundled Redis lets anyone in: {args}"
        );
    }
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
        "production-confined" => {
            // Production's, but no cluster-wide write of workloads.
            assert!(operator.is_some() && redis.is_none());
            assert_eq!(
                operator_env(built, "MCP_NAMESPACE_SELECTOR").map(|e| &e["value"]),
                Some(&Value::from("kubemcp.io/enabled=true"))
            );
            assert!(find(built, "ClusterRole", "mcp-operator-workload").is_some());
            assert!(find(built, "ClusterRoleBinding", "mcp-operator-workload").is_none());
            assert!(find(built, "ClusterRoleBinding", "mcp-operator-namespaces").is_some());
        }
        "testenv" => {
            let container = &operator.expect("testenv deploys the operator")["spec"]["template"]["spec"]
                ["containers"][0];
            assert_eq!(
                container["imagePullPolicy"], "Never",
                "the image is imported"
            );
            let url = operator_env(built, "MCP_REDIS_URL").expect("the Redis URL");
            assert_eq!(
                url["valueFrom"]["secretKeyRef"]["name"], "mcp-operator-redis",
                "the node IP's Redis URL comes from the Secret"
            );
            assert!(redis.is_none(), "testenv uses the testenv's Redis");
            // Confined, so the real replicas touch only the namespaces
            // enabled for them.
            assert_eq!(
                operator_env(built, "MCP_NAMESPACE_SELECTOR").map(|e| &e["value"]),
                Some(&Value::from("kubemcp.io/enabled=true"))
            );
            assert!(find(built, "ClusterRoleBinding", "mcp-operator-workload").is_none());
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
const OVERLAYS: [&str; 5] = ["dev", "k3d", "production", "production-confined", "testenv"];

/// Platform teams apply the overlays with the kubectl they have: each
/// overlay (and the examples) builds, with what it must contain, under the
/// kustomize of every kubectl still in support (TESTENV_KUSTOMIZE,
/// tests/testenv/kustomize.sh; the newest is the testenv's kubectl, above).
#[test]
fn every_overlay_builds_with_the_kustomize_of_each_supported_kubectl() {
    let binaries = testenv_var("TESTENV_KUSTOMIZE");
    assert!(!binaries.trim().is_empty(), "TESTENV_KUSTOMIZE lists none");
    for kustomize in binaries.split_whitespace() {
        let build = |path: &str| documents(&run_in_repository(kustomize, &["build", path]).0);
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
    // What enables a namespace for the confined operator.
    let binding = documents(&kubectl(&["kustomize", ENABLE_NAMESPACE]));
    assert!(find(&binding, "RoleBinding", "mcp-operator").is_some());
    kubectl(&[
        "apply",
        "--server-side",
        "--dry-run=server",
        "-n",
        SYSTEM,
        "-k",
        ENABLE_NAMESPACE,
    ]);
}

#[tokio::test]
async fn examples_reach_ready_under_the_operators_own_rbac() {
    let _turn = OPERATOR.lock().await;
    let client = support::client().await;
    // What a developer applies before running the operator locally:
    // namespace, CRDs, RBAC and the bundled Redis, for real.
    kubectl(&["apply", "--server-side", "-k", "manifests/overlays/dev"]);
    wait_until_rbac_applies();

    let logs = logs_dir("manifests-rbac");
    let kubeconfig = support::account_kubeconfig(&client, SYSTEM, "mcp-operator", &logs).await;
    let group = Group {
        binary: env!("CARGO_BIN_EXE_mcp-operator").into(),
        shards: 16,
        lease_namespace: SYSTEM.into(),
        redis: Redis::Single(testenv_var("MCP_REDIS_URL")),
        timing: Timing::default(),
        kubeconfig: Some(kubeconfig.clone()),
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
    apply_documents(&examples, &logs, "examples.yaml", &ns);
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
    let public_keys = pod
        .containers
        .first()
        .and_then(|c| c.env.as_ref())
        .and_then(|env| env.iter().find(|e| e.name == PUBLIC_KEYS_ENV))
        .and_then(|e| e.value.clone())
        .expect("the routers' public keys");
    Api::<Service>::namespaced(client.clone(), &ns)
        .get("weather")
        .await
        .expect("the router Service");
    Api::<PodDisruptionBudget>::namespaced(client.clone(), &ns)
        .get("weather")
        .await
        .expect("a disruption budget for two routers");
    let router_secret = Api::<Secret>::namespaced(client.clone(), &ns)
        .get("weather-router-redis")
        .await
        .expect("the routers' Redis Secret, which the operator may create");
    assert!(
        router_secret
            .data
            .is_some_and(|d| d.contains_key("password"))
    );
    secrets_are_write_only_and_labelled(&kubeconfig, &client, &ns).await;

    // The catalog the routers will serve.
    let server = ServerId {
        namespace: ns.clone(),
        name: "weather".into(),
    };
    let mut redis = support::redis::node_client(&testenv_var("MCP_REDIS_URL"))
        .get_multiplexed_async_connection()
        .await
        .expect("a Redis connection");
    let raw: String = redis
        .get(keys::catalog(&server))
        .await
        .expect("the published catalog");
    let trusted: TrustedKeys = public_keys.parse().expect("the routers' public keys");
    let published = trusted
        .open(&raw, &server)
        .expect("a catalog the routers trust");
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

/// The RBAC objects of `documents` as this run's own: the account and its
/// Role in `home` instead of the operator's namespace, and cluster-wide
/// names suffixed with `home`, so that the grants of other tests (the
/// examples apply the base's cluster-wide ones for real) do not count.
fn own_rbac(documents: &[Value], home: &str) -> Vec<Value> {
    let rename = |object: &mut Value| {
        if object["kind"] == "ClusterRole" || object["kind"] == "ClusterRoleBinding" {
            let name = object["metadata"]["name"].as_str().expect("a name");
            object["metadata"]["name"] = Value::from(format!("{name}-{home}"));
        }
    };
    documents
        .iter()
        .filter(|d| {
            ["ServiceAccount", "ClusterRole", "ClusterRoleBinding", "Role", "RoleBinding"]
                .iter()
                .any(|kind| d["kind"] == *kind)
        })
        .cloned()
        .map(|mut d| {
            rename(&mut d);
            if d["metadata"]["namespace"] == SYSTEM {
                d["metadata"]["namespace"] = Value::from(home);
            }
            if d["roleRef"]["kind"] == "ClusterRole" {
                let mut role = serde_json::json!({"kind": "ClusterRole", "metadata": {"name": d["roleRef"]["name"]}});
                rename(&mut role);
                d["roleRef"]["name"] = role["metadata"]["name"].clone();
            }
            let subjects = d.get_mut("subjects").and_then(Value::as_array_mut);
            for subject in subjects.into_iter().flatten() {
                subject["namespace"] = Value::from(home);
            }
            d
        })
        .collect()
}

/// Applies `documents` for real by server-side apply, from a file in
/// `logs`, into `namespace` where they name none.
fn apply_documents(documents: &[Value], logs: &std::path::Path, file: &str, namespace: &str) {
    let path = logs.join(file);
    let stream = documents
        .iter()
        .map(|d| serde_yaml_ng::to_string(d).expect("serializable"))
        .collect::<Vec<_>>()
        .join("---\n");
    std::fs::write(&path, stream).expect("write the documents");
    let path = path.to_str().expect("a UTF-8 path");
    kubectl(&["apply", "--server-side", "-n", namespace, "-f", path]);
}

/// A Service, a tool behind it and a server selecting it, in `namespace`.
async fn one_tool_server(client: &kube::Client, namespace: &str) {
    let objects = [
        serde_json::json!({
            "apiVersion": "v1", "kind": "Service",
            "metadata": {"name": "backend"},
            "spec": {"ports": [{"name": "http", "port": 8080}]},
        }),
        serde_json::json!({
            "apiVersion": "kubemcp.io/v1alpha1", "kind": "MCPTool",
            "metadata": {"name": "tool", "labels": {"team": "t"}},
            "spec": {
                "description": "A tool.",
                "inputSchema": {"type": "object"},
                "backend": {"service": {"name": "backend", "port": "http"}, "path": "/call"},
            },
        }),
    ];
    support::apply::<Service>(client, namespace, objects[0].clone()).await;
    support::apply::<MCPTool>(client, namespace, objects[1].clone()).await;
    support::apply::<MCPServer>(
        client,
        namespace,
        serde_json::json!({
            "apiVersion": "kubemcp.io/v1alpha1", "kind": "MCPServer",
            "metadata": {"name": "s"},
            "spec": {"toolSelector": {"matchLabels": {"team": "t"}}},
        }),
    )
    .await;
}

/// Sets (or with `None` removes) a label of a namespace.
async fn label_namespace(client: &kube::Client, namespace: &str, key: &str, value: Option<&str>) {
    let patch = serde_json::json!({"metadata": {"labels": {key: value}}});
    Api::<Namespace>::all(client.clone())
        .patch(
            namespace,
            &kube::api::PatchParams::default(),
            &kube::api::Patch::Merge(&patch),
        )
        .await
        .expect("label the namespace");
}

/// The confined install: the operator, as a process with a token of its
/// own ServiceAccount and the RBAC of the production-confined overlay,
/// writes only in namespaces enabled as documented (the RoleBinding, then
/// the label), and reconciles nothing elsewhere; a namespace enabled later
/// is picked up, one whose label is removed is dropped, without a restart.
#[tokio::test]
async fn the_confined_operator_writes_only_in_enabled_namespaces() {
    let _turn = OPERATOR.lock().await;
    let client = support::client().await;
    support::install_crds(&client).await;
    let logs = logs_dir("manifests-confined");
    std::fs::create_dir_all(&logs).expect("the log directory");
    let home = support::namespace(&client, "confined-operator").await;
    let built = documents(&kubectl(&[
        "kustomize",
        "manifests/overlays/production-confined",
    ]));
    let selector = operator_env(&built, "MCP_NAMESPACE_SELECTOR").expect("the selector")["value"]
        .as_str()
        .expect("a selector")
        .to_owned();
    let rbac = own_rbac(&built, &home);
    apply_documents(&rbac, &logs, "rbac.yaml", &home);
    let binding = own_rbac(
        &documents(&kubectl(&["kustomize", ENABLE_NAMESPACE])),
        &home,
    );

    // Namespaces of this run, told apart from other runs' by a label the
    // operator's selector also requires.
    let run = ("mcp-test/run", home.as_str());
    let enabled = support::namespace(&client, "confined-on").await;
    let later = support::namespace(&client, "confined-later").await;
    for namespace in [&enabled, &later] {
        label_namespace(&client, namespace, run.0, Some(run.1)).await;
        one_tool_server(&client, namespace).await;
    }
    apply_documents(&binding, &logs, "binding-enabled.yaml", &enabled);
    label_namespace(&client, &enabled, ENABLED, Some("true")).await;
    let (in_enabled, in_later) = (
        format!("--namespace={enabled}"),
        format!("--namespace={later}"),
    );
    let leases = format!("--namespace={home}");
    wait_until_allowed(
        &home,
        &[
            ["list", "mcpservers.kubemcp.io", "--all-namespaces"],
            ["list", "namespaces", "--all-namespaces"],
            ["update", "leases.coordination.k8s.io", &leases],
            ["create", "deployments.apps", &in_enabled],
        ],
    );
    assert!(
        !allowed(&home, ["create", "deployments.apps", &in_later]),
        "no write outside enabled namespaces"
    );

    let group = Group {
        binary: env!("CARGO_BIN_EXE_mcp-operator").into(),
        shards: 16,
        lease_namespace: home.clone(),
        redis: Redis::Single(testenv_var("MCP_REDIS_URL")),
        timing: Timing::default(),
        kubeconfig: Some(support::account_kubeconfig(&client, &home, "mcp-operator", &logs).await),
        logs: logs.clone(),
    };
    let narrowed = format!("{selector},{}={}", run.0, run.1);
    let operator = group
        .start_with("confined", &["--namespace-selector", &narrowed])
        .expect("start the operator");
    eprintln!("operator log: {}", logs.join("confined.log").display());

    let servers = |namespace: &str| Api::<MCPServer>::namespaced(client.clone(), namespace);
    condition(&servers(&enabled), "s", "Ready", "True", "Ready").await;
    // By now the operator has reconciled every namespace it would: the
    // other one's objects are as they were created.
    let untouched = |namespace: String| {
        let client = client.clone();
        async move {
            let server = Api::<MCPServer>::namespaced(client.clone(), &namespace)
                .get("s")
                .await
                .expect("the server");
            assert_eq!(server.status, None, "{namespace}: server status");
            assert_eq!(server.metadata.finalizers, None, "{namespace}: finalizer");
            let tool = Api::<MCPTool>::namespaced(client.clone(), &namespace)
                .get("tool")
                .await
                .expect("the tool");
            assert_eq!(tool.status, None, "{namespace}: tool status");
            let deployment = Api::<Deployment>::namespaced(client, &namespace)
                .get_opt("s")
                .await
                .expect("GET");
            assert!(deployment.is_none(), "{namespace}: a router Deployment");
        }
    };
    untouched(later.clone()).await;

    // Enabled later, as documented: the binding first, then the label.
    apply_documents(&binding, &logs, "binding-later.yaml", &later);
    wait_until_allowed(&home, &[["create", "deployments.apps", &in_later]]);
    label_namespace(&client, &later, ENABLED, Some("true")).await;
    condition(&servers(&later), "s", "Ready", "True", "Ready").await;

    // Dropped: once the operator no longer selects the namespace, a change
    // there is not reconciled, although its RoleBinding is still in place.
    label_namespace(&client, &enabled, ENABLED, None).await;
    poll(support::WAIT, "the operator to drop the namespace", || {
        let selected = operator.metric("mcp_operator_namespaces_selected");
        async move { Ok((selected? == 1.0).then_some(())) }
    })
    .await
    .expect("one namespace selected");
    let replicas = serde_json::json!({"spec": {"replicas": 2}});
    let params = kube::api::PatchParams::default();
    for namespace in [&enabled, &later] {
        servers(namespace)
            .patch("s", &params, &kube::api::Patch::Merge(&replicas))
            .await
            .expect("two replicas");
    }
    support::wait_for(&servers(&later), "s", |s: Option<&MCPServer>| {
        s.and_then(|s| s.status.as_ref()?.observed_generation) == Some(2)
    })
    .await;
    let dropped = servers(&enabled).get("s").await.expect("the server");
    assert_eq!(dropped.status.and_then(|s| s.observed_generation), Some(1));
    let budget = Api::<PodDisruptionBudget>::namespaced(client.clone(), &enabled)
        .get_opt("s")
        .await
        .expect("GET");
    assert!(
        budget.is_none(),
        "a dropped namespace got a PodDisruptionBudget"
    );
    // Its server can still be deleted: the operator removes the catalog and
    // releases the finalizer it added.
    let uid = dropped.metadata.uid.expect("a uid");
    servers(&enabled)
        .delete("s", &DeleteParams::default())
        .await
        .expect("delete the dropped server");
    support::wait_for(&servers(&enabled), "s", conditions::is_deleted(&uid)).await;

    operator
        .stop(Duration::from_secs(30))
        .await
        .expect("the operator stops at SIGTERM");
    let log = std::fs::read_to_string(logs.join("confined.log")).expect("the operator's log");
    let denial = format!(r#"forbidden: User "system:serviceaccount:{home}:mcp-operator" cannot"#);
    assert!(
        !log.contains(&denial),
        "the operator was refused something:\n{log}"
    );
    assert!(
        log.contains("controllers stopped; shards released"),
        "{log}"
    );

    for document in rbac.iter().filter(|d| d["metadata"]["namespace"].is_null()) {
        let object = format!(
            "{}.rbac.authorization.k8s.io/{}",
            document["kind"].as_str().expect("a kind").to_lowercase(),
            document["metadata"]["name"].as_str().expect("a name")
        );
        kubectl(&["delete", &object]);
    }
    mcp_operator_chaos::delete_namespaces(&client, &[home, enabled, later])
        .await
        .expect("delete the namespaces");
}

/// A malformed --namespace-selector stops the operator at start, with the
/// apiserver's reason, rather than leaving a watch that retries for ever.
#[test]
fn a_malformed_namespace_selector_stops_the_operator() {
    let output = Command::new(env!("CARGO_BIN_EXE_mcp-operator"))
        .args(["controller", "--metrics-listen", "127.0.0.1:0"])
        .args(["--redis-url", &testenv_var("MCP_REDIS_URL")])
        .args(["--namespace-selector", "kubemcp.io/enabled in true"])
        .env_remove("MCP_REDIS_URL")
        .env_remove("MCP_REDIS_CLUSTER_URLS")
        .output()
        .expect("run the operator");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success(), "{stderr}");
    assert!(
        stderr.contains("--namespace-selector 'kubemcp.io/enabled in true'"),
        "{stderr}"
    );
}

/// With the operator's own token: no Secret can be read or listed, and
/// only Secrets with the operator's managed-by label can be created,
/// updated or deleted (the ValidatingAdmissionPolicy of manifests/base,
/// which the dev overlay installed).
async fn secrets_are_write_only_and_labelled(
    kubeconfig: &std::path::Path,
    admin: &kube::Client,
    ns: &str,
) {
    let config = kube::Config::from_custom_kubeconfig(
        kube::config::Kubeconfig::read_from(kubeconfig).expect("the operator's kubeconfig"),
        &kube::config::KubeConfigOptions::default(),
    )
    .await
    .expect("a client config");
    let operator = kube::Client::try_from(config).expect("a client as the operator");
    let as_operator = Api::<Secret>::namespaced(operator, ns);
    let status = |result: Result<Secret, kube::Error>| match result {
        Err(kube::Error::Api(status)) => (status.code, status.message),
        other => panic!("expected a refusal, got {other:?}"),
    };
    assert_eq!(status(as_operator.get("weather-router-redis").await).0, 403);
    match as_operator.list(&Default::default()).await {
        Err(kube::Error::Api(status)) => assert_eq!(status.code, 403),
        other => panic!("the operator listed Secrets: {other:?}"),
    }
    let secret = |name: &str, labelled: bool| -> Secret {
        let labels = if labelled {
            serde_json::json!({"app.kubernetes.io/managed-by": "mcp-operator"})
        } else {
            serde_json::json!({})
        };
        serde_json::from_value(serde_json::json!({
            "apiVersion": "v1", "kind": "Secret",
            "metadata": {"name": name, "labels": labels},
            "stringData": {"k": "v"},
        }))
        .expect("a Secret")
    };
    // The policy takes effect a moment after it is created: wait until an
    // unlabelled create (a dry run) is refused by it.
    let dry_run = kube::api::PostParams {
        dry_run: true,
        ..Default::default()
    };
    let refused = |message: &str| message.contains("mcp-operator-owned-secrets");
    let mut last = None;
    let waited = tokio::time::timeout(support::WAIT, async {
        loop {
            match as_operator
                .create(&dry_run, &secret("unlabelled", false))
                .await
            {
                // The policy answers 422 Invalid.
                Err(kube::Error::Api(status)) if refused(&status.message) => {
                    return;
                }
                other => last = Some(format!("{other:?}")),
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    })
    .await;
    assert!(
        waited.is_ok(),
        "the admission policy did not refuse an unlabelled Secret: {last:?}"
    );
    as_operator
        .create(&dry_run, &secret("labelled", true))
        .await
        .expect("a labelled Secret may be created");
    // A tenant's own Secret: not even relabelled by the operator, nor deleted.
    let tenants = Api::<Secret>::namespaced(admin.clone(), ns);
    tenants
        .create(&Default::default(), &secret("tenant-owned", false))
        .await
        .expect("the tenant's Secret");
    let (code, message) = status(
        as_operator
            .replace(
                "tenant-owned",
                &Default::default(),
                &secret("tenant-owned", true),
            )
            .await,
    );
    assert!(refused(&message), "{code}: {message}");
    match as_operator
        .delete("tenant-owned", &DeleteParams::default())
        .await
    {
        Err(kube::Error::Api(status)) => {
            // RBAC already: the garbage collector deletes the operator's.
            assert_eq!(status.code, 403, "{status:?}")
        }
        other => panic!("the operator deleted a tenant's Secret: {other:?}"),
    }
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
