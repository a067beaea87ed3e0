//! End to end on the testenv's real node (tests/testenv/node.sh): the
//! operator installed from manifests/overlays/testenv as a real 3-replica
//! Deployment of the image `make image` builds, and an MCPServer whose
//! routers run as real pods of that image, with their real command, env,
//! probes, Secret mounts, user and read-only root filesystem.
//!
//! Clients reach the routers through their Service by the apiserver's
//! service proxy (which picks one of the Service's ready endpoints per
//! request); routers reach the backend through its Service by the name the
//! node's DNS answers with the Service's ready endpoints.

#[path = "router/mcp.rs"]
#[allow(dead_code)] // the router tests' client; this test uses part of it
mod mcp;
mod support;

use std::collections::BTreeSet;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use k8s_openapi::ByteString;
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::{Namespace, Pod, Secret};
use kube::Client;
use kube::api::{Api, DeleteParams, ListParams, Patch, PatchParams, PostParams};
use mcp_operator_api::MCPServer;
use mcp_operator_catalog::router::SECRETS_DIR;
use mcp_operator_chaos::poll;
use serde_json::{Value, json};

use support::{WAIT, apply, condition, kubectl, testenv_var};

/// The operator's namespace, as manifests/base names it.
const SYSTEM: &str = "mcp-operator-system";
/// Shards the operator's replicas divide (its default MCP_SHARDS).
const SHARDS: u32 = 16;
/// The overlay that installs the operator on the real node.
const OVERLAY: &str = "manifests/overlays/testenv";
/// The operator's pods, as manifests/base labels them.
const OPERATOR_PODS: &str =
    "app.kubernetes.io/name=mcp-operator,app.kubernetes.io/component=controller";
/// What starting real pods may take on a loaded machine.
const POD_WAIT: Duration = Duration::from_secs(180);

/// The annotations that steer a namespace's pods onto the real node: the
/// overlay's own, so there is one place that says how.
fn steering_annotations() -> Value {
    let path = format!(
        "{}/{OVERLAY}/node/namespace.yaml",
        env!("CARGO_MANIFEST_DIR")
    );
    let namespace: Value =
        serde_yaml_ng::from_str(&std::fs::read_to_string(path).expect("the overlay's namespace"))
            .expect("YAML");
    namespace["metadata"]["annotations"].clone()
}

/// The operator's Redis settings, as the Secret `mcp-operator-redis` the
/// overlay reads them from: the URL of the testenv's single Redis, which
/// the node forwards to its IP's port 6379 for pods, and the testenv's
/// admin user (which may run ACL SETUSER for each server's routers).
fn redis_settings() -> Value {
    let mut url = url::Url::parse(&testenv_var("MCP_REDIS_URL")).expect("MCP_REDIS_URL is a URL");
    url.set_host(Some(&testenv_var("TESTENV_NODE_IP")))
        .expect("the node IP is a host");
    url.set_port(Some(6379)).expect("a Redis URL has a port");
    json!({
        "url": url.as_str(),
        "username": testenv_var("MCP_REDIS_USERNAME"),
        "password": testenv_var("MCP_REDIS_PASSWORD"),
    })
}

/// What enables a namespace for the overlay's confined operator
/// (manifests/components/confined sets MCP_NAMESPACE_SELECTOR to it).
const ENABLED: (&str, &str) = ("kubemcp.io/enabled", "true");

/// An MCP client for the router Service `namespace/name`, through the
/// apiserver's service proxy, as the admin of the testenv kubeconfig.
fn router_client(namespace: &str, name: &str) -> mcp::Client {
    // The admin token and CA `testenv apiserver` writes beside the
    // kubeconfig.
    let kubeconfig = std::path::PathBuf::from(testenv_var("KUBECONFIG"));
    let dir = kubeconfig.parent().expect("the kubeconfig's directory");
    let read = |file: &str| std::fs::read(dir.join(file)).expect("the testenv's PKI");
    let config: Value =
        serde_yaml_ng::from_slice(&std::fs::read(&kubeconfig).expect("the kubeconfig"))
            .expect("a kubeconfig");
    let server = config["clusters"][0]["cluster"]["server"]
        .as_str()
        .expect("the apiserver's URL");
    let mut headers = reqwest::header::HeaderMap::new();
    let token = String::from_utf8(read("admin.token")).expect("a text token");
    headers.insert(
        reqwest::header::AUTHORIZATION,
        format!("Bearer {}", token.trim())
            .parse()
            .expect("a header value"),
    );
    let mut client = mcp::Client::new(&format!(
        "{server}/api/v1/namespaces/{namespace}/services/{name}:http/proxy"
    ));
    mcp_operator_store::install_tls_provider();
    client.http = reqwest::Client::builder()
        .add_root_certificate(reqwest::Certificate::from_pem(&read("ca.crt")).expect("a PEM CA"))
        .default_headers(headers)
        .build()
        .expect("an HTTP client");
    client
}

/// The text the echo backend answered a call with, parsed: what the
/// router sent it.
async fn echoed(client: &mut mcp::Client) -> Value {
    let result = client.call("whoami", json!({"caller": "e2e"})).await;
    assert_eq!(result["isError"], json!(false), "whoami failed: {result}");
    let text = result["content"][0]["text"]
        .as_str()
        .expect("a text result");
    serde_json::from_str(text).expect("the echo backend answers JSON")
}

/// Retries of one call while a router goes away. Until its endpoint is
/// gone the proxy still sends it half the calls, which it answers during
/// its drain (MCP_DRAIN_PERIOD, set by the operator); calls that reach it
/// as the drain ends can still fail, and a client retries them. Without
/// the drain 20 of 340 attempts failed here; with it 9 of 506 (on a
/// loaded machine, streams ended unanswered), so 10 retries leave a margin.
const RETRIES: u32 = 10;

/// One `whoami` call that may fail (a broken stream, a 503 from the
/// proxy): what the backend received, or why there is no answer.
async fn try_echo(client: &mcp::Client, id: u64) -> Result<Value, String> {
    let body = json!({
        "jsonrpc": "2.0", "id": id, "method": "tools/call",
        "params": {"name": "whoami", "arguments": {"caller": "e2e"}},
    });
    let response = client.post(&body).send().await.map_err(|e| e.to_string())?;
    if !response.status().is_success() {
        return Err(format!("HTTP {}", response.status()));
    }
    let event = mcp::answer(response, id)
        .await
        .ok_or("the stream ended without a response")?;
    let text = event["result"]["content"][0]["text"]
        .as_str()
        .ok_or_else(|| format!("not a text result: {event}"))?;
    serde_json::from_str(text).map_err(|e| e.to_string())
}

/// Names of the pods of a Deployment that are Ready and not terminating.
async fn ready_pods(pods: &Api<Pod>, selector: &str) -> BTreeSet<String> {
    let list = pods
        .list(&ListParams::default().labels(selector))
        .await
        .expect("list pods");
    list.items
        .into_iter()
        .filter(|pod| pod.metadata.deletion_timestamp.is_none())
        .filter(|pod| {
            pod.status
                .as_ref()
                .and_then(|s| s.conditions.as_ref())
                .is_some_and(|c| c.iter().any(|c| c.type_ == "Ready" && c.status == "True"))
        })
        .filter_map(|pod| pod.metadata.name)
        .collect()
}

/// Waits until `count` pods of the selector are Ready on the real node.
async fn wait_ready_on_node(pods: &Api<Pod>, selector: &str, count: usize) -> BTreeSet<String> {
    let node = testenv_var("TESTENV_NODE");
    poll(
        POD_WAIT,
        &format!("{count} Ready pods {selector}"),
        || async {
            let ready = ready_pods(pods, selector).await;
            if ready.len() != count {
                return Ok(None);
            }
            for name in &ready {
                let pod = pods.get(name).await?;
                let on = pod.spec.and_then(|s| s.node_name).unwrap_or_default();
                anyhow::ensure!(
                    on == node,
                    "pod {name} runs on {on}, not the real node {node}"
                );
            }
            Ok(Some(ready))
        },
    )
    .await
    .expect("the pods became Ready")
}

/// The host's view of the container's main process: the pid whose cgroup
/// path names the container (cgroupfs puts each container in its own).
fn container_pid(pod: &Pod) -> u32 {
    let id = pod
        .status
        .as_ref()
        .and_then(|s| s.container_statuses.as_ref())
        .and_then(|c| c.first())
        .and_then(|c| c.container_id.clone())
        .expect("a running container");
    let id = id.rsplit("://").next().expect("runtime://id").to_owned();
    let mut pids = std::fs::read_dir("/proc")
        .expect("/proc")
        .filter_map(|entry| entry.ok()?.file_name().to_str()?.parse::<u32>().ok())
        .filter(|pid| {
            std::fs::read_to_string(format!("/proc/{pid}/cgroup"))
                .is_ok_and(|cgroups| cgroups.contains(&id))
        })
        .collect::<Vec<_>>();
    pids.sort_unstable();
    *pids.first().expect("the container's process on this host")
}

/// Inside the container: the process runs as 65532 and its root
/// filesystem refuses writes, while the volume at `scratch` (a router's
/// /tmp) takes them.
fn assert_non_root_read_only(pod: &Pod, scratch: Option<&str>) {
    let pid = container_pid(pod);
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("process status");
    for field in ["Uid:", "Gid:"] {
        let line = status
            .lines()
            .find(|l| l.starts_with(field))
            .expect("an id line");
        assert!(
            line.split_whitespace().skip(1).all(|id| id == "65532"),
            "{}: {line}",
            pod.metadata.name.clone().unwrap_or_default()
        );
    }
    let root = format!("/proc/{pid}/root");
    let error = std::fs::write(format!("{root}/e2e-probe"), b"x")
        .expect_err("the root filesystem is read-only");
    assert_eq!(
        error.raw_os_error(),
        Some(30),
        "writing to / failed, but not as read-only: {error}"
    );
    if let Some(dir) = scratch {
        let probe = format!("{root}{dir}/e2e-probe");
        std::fs::write(&probe, b"x").unwrap_or_else(|e| panic!("{dir} is not writable: {e}"));
        std::fs::remove_file(probe).expect("remove the probe");
    }
}

/// Creates or replaces the Secret `name` with `values` (strings) as its
/// data: server-side apply of `data`, which a later apply replaces key by
/// key (`stringData` is write-only, so an apply cannot own it).
async fn apply_secret(client: &Client, namespace: &str, name: &str, values: &Value) {
    let data = values
        .as_object()
        .expect("an object of strings")
        .iter()
        .map(|(key, value)| {
            let value = value.as_str().expect("a string value");
            (key.clone(), ByteString(value.as_bytes().to_vec()))
        })
        .collect();
    let mut secret = Secret {
        data: Some(data),
        ..Secret::default()
    };
    secret.metadata.name = Some(name.to_owned());
    secret.metadata.namespace = Some(namespace.to_owned());
    Api::<Secret>::namespaced(client.clone(), namespace)
        .patch(
            name,
            &PatchParams::apply("node-e2e").force(),
            &Patch::Apply(&secret),
        )
        .await
        .unwrap_or_else(|e| panic!("apply the Secret {namespace}/{name}: {e}"));
}

/// The operator's Deployment and Secrets go when the test ends, pass or
/// fail, so no real replica keeps holding shards for later tests, and the
/// next run installs from nothing (its first replica makes a new signing
/// key).
struct Installed;
impl Drop for Installed {
    fn drop(&mut self) {
        let _ = std::process::Command::new(testenv_var("TESTENV_KUBECTL"))
            .args(["delete", "-n", SYSTEM, "--ignore-not-found", "--wait=true"])
            .args([
                "deployment/mcp-operator",
                "secret/mcp-operator-redis",
                "secret/mcp-operator-catalog-signing",
            ])
            .status();
        // Until its pods are gone they still reconcile every namespace,
        // which the next test binaries' own operators must not meet.
        let _ = std::process::Command::new(testenv_var("TESTENV_KUBECTL"))
            .args([
                "wait",
                "--for=delete",
                "pod",
                "-n",
                SYSTEM,
                "--timeout=120s",
            ])
            .args(["-l", OPERATOR_PODS])
            .status();
    }
}

async fn install_operator(client: &Client) -> Installed {
    let installed = Installed;
    kubectl(&[
        "apply",
        "--server-side",
        "-f",
        "manifests/base/namespace.yaml",
    ]);
    apply_secret(client, SYSTEM, "mcp-operator-redis", &redis_settings()).await;
    kubectl(&["apply", "--server-side", "--force-conflicts", "-k", OVERLAY]);
    installed
}

/// Waits until every shard Lease is held by one of `replicas`, and each of
/// them holds at least one.
async fn wait_shards_held(client: &Client, replicas: &BTreeSet<String>) {
    let leases = Api::<Lease>::namespaced(client.clone(), SYSTEM);
    poll(POD_WAIT, "the replicas to hold every shard", || async {
        let mut holders = BTreeSet::new();
        for shard in 0..SHARDS {
            let lease = leases
                .get_opt(&format!("mcp-operator-shard-{shard}"))
                .await?;
            let holder = lease
                .and_then(|l| l.spec)
                .and_then(|s| s.holder_identity)
                .unwrap_or_default();
            // The identity is the pod name and a suffix of the start.
            match replicas.iter().find(|pod| holder.starts_with(pod.as_str())) {
                Some(pod) => holders.insert(pod.clone()),
                None => return Ok(None),
            };
        }
        Ok((holders == *replicas).then_some(()))
    })
    .await
    .expect("the operator's replicas hold the shards");
}

#[tokio::test]
async fn routers_on_a_real_node_serve_from_an_operator_installed_by_its_manifests() {
    let client = support::client().await;
    let _installed = install_operator(&client).await;
    let system_pods = Api::<Pod>::namespaced(client.clone(), SYSTEM);
    let operator_selector =
        "app.kubernetes.io/name=mcp-operator,app.kubernetes.io/component=controller";
    let replicas = wait_ready_on_node(&system_pods, operator_selector, 3).await;
    wait_shards_held(&client, &replicas).await;

    // A tenant namespace whose pods run on the real node, enabled for the
    // confined operator as docs/operations.md says: the RoleBinding to
    // its workload rights, and the label.
    let namespaces = Api::<Namespace>::all(client.clone());
    let namespace: Namespace = serde_json::from_value(json!({
        "metadata": {"generateName": "node-e2e-", "annotations": steering_annotations()},
    }))
    .expect("a namespace");
    let ns = namespaces
        .create(&PostParams::default(), &namespace)
        .await
        .expect("create the namespace")
        .metadata
        .name
        .expect("a generated name");
    kubectl(&[
        "apply",
        "--server-side",
        "-n",
        &ns,
        "-k",
        "manifests/components/confined/namespace",
    ]);
    let label = format!("{}={}", ENABLED.0, ENABLED.1);
    kubectl(&["label", "namespace", &ns, &label]);

    // The backend, its Service and the Secret the tool's header reads.
    apply_secret(&client, &ns, "backend-token", &json!({"token": "first"})).await;
    apply::<Deployment>(&client, &ns, json!({
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": "echo"},
        "spec": {
            "selector": {"matchLabels": {"app": "echo"}},
            "template": {
                "metadata": {"labels": {"app": "echo"}},
                "spec": {
                    "automountServiceAccountToken": false,
                    "containers": [{
                        "name": "echo",
                        "image": testenv_var("TESTENV_NODE_ECHO_IMAGE"),
                        "imagePullPolicy": "Never",
                        "ports": [{"name": "http", "containerPort": 8080}],
                        "readinessProbe": {"httpGet": {"path": "/healthz", "port": "http"}, "periodSeconds": 1},
                    }],
                },
            },
        },
    }))
    .await;
    apply::<k8s_openapi::api::core::v1::Service>(&client, &ns, json!({
        "apiVersion": "v1", "kind": "Service", "metadata": {"name": "echo"},
        "spec": {"selector": {"app": "echo"}, "ports": [{"name": "http", "port": 8080, "targetPort": "http"}]},
    }))
    .await;
    apply::<mcp_operator_api::MCPTool>(&client, &ns, json!({
        "apiVersion": "kubemcp.io/v1alpha1", "kind": "MCPTool",
        "metadata": {"name": "whoami", "labels": {"team": "e2e"}},
        "spec": {
            "description": "What the backend received.",
            "inputSchema": {"type": "object", "properties": {"caller": {"type": "string"}}},
            "backend": {
                "service": {"name": "echo", "port": "http"},
                "path": "/whoami",
                "method": "POST",
                "timeoutSeconds": 5,
                "headers": [{"name": "X-Backend-Token", "valueFrom": {"secretKeyRef": {"name": "backend-token", "key": "token"}}}],
            },
        },
    }))
    .await;
    apply::<MCPServer>(
        &client,
        &ns,
        json!({
            "apiVersion": "kubemcp.io/v1alpha1", "kind": "MCPServer",
            "metadata": {"name": "e2e"},
            // The header's Secret is one the server's routers may read.
            "spec": {
                "replicas": 2,
                "toolSelector": {"matchLabels": {"team": "e2e"}},
                "backendSecrets": ["backend-token"],
            },
        }),
    )
    .await;
    let servers = Api::<MCPServer>::namespaced(client.clone(), &ns);
    condition(&servers, "e2e", "Ready", "True", "Ready").await;
    let pods = Api::<Pod>::namespaced(client.clone(), &ns);
    wait_ready_on_node(&pods, "app=echo", 1).await;
    let router_selector = "app.kubernetes.io/name=mcp-router,app.kubernetes.io/instance=e2e";
    let routers = wait_ready_on_node(&pods, router_selector, 2).await;

    // Non-root, read-only root: the operator's and the routers' containers.
    for name in &replicas {
        assert_non_root_read_only(&system_pods.get(name).await.expect("an operator pod"), None);
    }
    for name in &routers {
        assert_non_root_read_only(&pods.get(name).await.expect("a router pod"), Some("/tmp"));
    }

    // A call through the router's Service reaches the backend through its
    // Service, with the header from the mounted Secret.
    let mut session = router_client(&ns, "e2e");
    session.initialize().await;
    let sent = echoed(&mut session).await;
    assert_eq!(sent["path"], "/whoami");
    assert_eq!(sent["headers"]["X-Backend-Token"], "first", "sent: {sent}");

    // A rotated Secret reaches the routers' mounts and the next calls,
    // without a restart.
    apply_secret(&client, &ns, "backend-token", &json!({"token": "second"})).await;
    // Each router's mount follows on the kubelet's next sync of its pod;
    // read inside the containers, then through a call.
    poll(
        POD_WAIT,
        "the rotated token in every router's mount",
        || async {
            for name in &routers {
                let pid = container_pid(&pods.get(name).await?);
                let path = format!("/proc/{pid}/root{SECRETS_DIR}/backend-token/token");
                if std::fs::read_to_string(&path)? != "second" {
                    return Ok(None);
                }
            }
            Ok(Some(()))
        },
    )
    .await
    .expect("the kubelet updated the mounted Secret");
    let sent = echoed(&mut session).await;
    assert_eq!(sent["headers"]["X-Backend-Token"], "second", "sent: {sent}");
    assert_eq!(
        ready_pods(&pods, router_selector).await,
        routers,
        "a router restarted"
    );
    for name in &routers {
        let pod = pods.get(name).await.expect("a router pod");
        let restarts = pod
            .status
            .and_then(|s| s.container_statuses)
            .map(|c| c[0].restart_count);
        assert_eq!(restarts, Some(0), "{name} restarted");
    }

    // One router deleted under a client's traffic: the session goes on
    // on the other replica and its successor. A call in flight on the
    // deleted pod, or sent to it before its endpoint is gone, may fail;
    // the client retries it, as MCP clients do, and it must get through.
    let stop = Arc::new(AtomicBool::new(false));
    let calls = Arc::new(AtomicU64::new(0));
    let traffic = tokio::spawn({
        let (stop, calls, ns) = (stop.clone(), calls.clone(), ns.clone());
        let session_id = session.session.clone();
        async move {
            let mut client = router_client(&ns, "e2e");
            client.session = session_id;
            let mut failed = Vec::new();
            let mut id = 1000;
            while !stop.load(Ordering::Relaxed) {
                let mut attempt = 0;
                let sent = loop {
                    id += 1;
                    match try_echo(&client, id).await {
                        Ok(sent) => break sent,
                        Err(error) if attempt < RETRIES => failed.push(error),
                        Err(error) => panic!("{RETRIES} retries of one call failed, last: {error}"),
                    }
                    attempt += 1;
                };
                assert_eq!(sent["headers"]["X-Backend-Token"], "second");
                calls.fetch_add(1, Ordering::Relaxed);
            }
            failed
        }
    });
    let victim = routers.first().expect("two routers").clone();
    pods.delete(&victim, &DeleteParams::default())
        .await
        .expect("delete a router pod");
    let before = calls.load(Ordering::Relaxed);
    let after = poll(POD_WAIT, "a successor router", || async {
        let ready = ready_pods(&pods, router_selector).await;
        Ok((ready.len() == 2 && !ready.contains(&victim)).then_some(ready))
    })
    .await
    .expect("the Deployment replaced the deleted router");
    poll(WAIT, "calls after the deletion", || async {
        Ok((calls.load(Ordering::Relaxed) > before).then_some(()))
    })
    .await
    .expect("calls went on");
    // The calls go on until the deleted router's drain is over and its
    // pod is gone, so that they also meet its end.
    poll(POD_WAIT, "the deleted router gone", || async {
        Ok(pods.get_opt(&victim).await?.is_none().then_some(()))
    })
    .await
    .expect("the deleted router stopped");
    stop.store(true, Ordering::Relaxed);
    let failed = traffic.await.expect("every call got through");
    let reasons: BTreeSet<&String> = failed.iter().collect();
    eprintln!(
        "{} calls during the deletion, {} attempts retried ({reasons:?})",
        calls.load(Ordering::Relaxed),
        failed.len()
    );
    let sent = echoed(&mut session).await;
    assert_eq!(sent["headers"]["X-Backend-Token"], "second");
    for name in after.difference(&routers) {
        assert_non_root_read_only(
            &pods.get(name).await.expect("the new router pod"),
            Some("/tmp"),
        );
    }

    namespaces
        .delete(&ns, &DeleteParams::default())
        .await
        .expect("delete the namespace");
}
