//! What every integration test needs: clients for the real test environment
//! (`make testenv`), the CRDs installed, a namespace of its own, and waits
//! that watch for a condition instead of sleeping.
#![allow(dead_code)] // each test binary uses its own part of this module

pub mod redis;

use std::fmt::Debug;
use std::path::{Path, PathBuf};
use std::time::Duration;

use k8s_openapi::api::authentication::v1::{TokenRequest, TokenRequestSpec};
use k8s_openapi::api::core::v1::{Namespace, ServiceAccount};
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::{Api, Patch, PatchParams, PostParams};
use kube::runtime::wait::{Condition, await_condition, conditions};
use kube::{Client, Resource};
use serde::de::DeserializeOwned;

/// How long a test waits for the cluster to reach a state before failing.
pub const WAIT: Duration = Duration::from_secs(60);

/// The value of an environment variable `make testenv` exports; a clear
/// failure, never a skip, when the test runs outside the environment.
pub fn testenv_var(name: &str) -> String {
    std::env::var(name).unwrap_or_else(|_| {
        panic!("{name} is not set: run the tests with `make test`, or `eval \"$(make -s testenv)\"` first")
    })
}

/// Runs `program` in the repository with `args`: its stdout and stderr
/// (which some callers check for warnings), or a test failure with its
/// stderr.
pub fn run_in_repository(program: &str, args: &[&str]) -> (String, String) {
    let output = std::process::Command::new(program)
        .args(args)
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .unwrap_or_else(|e| panic!("running {program}: {e}"));
    let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
    assert!(
        output.status.success(),
        "{program} {} failed:\n{stderr}",
        args.join(" ")
    );
    let stdout = String::from_utf8(output.stdout)
        .unwrap_or_else(|_| panic!("{program} printed what is not UTF-8"));
    (stdout, stderr)
}

/// The testenv's kubectl, run in the repository; its stdout, or a test
/// failure with its output.
pub fn kubectl(args: &[&str]) -> String {
    run_in_repository(&testenv_var("TESTENV_KUBECTL"), args).0
}

/// A client for the test environment's apiserver.
pub async fn client() -> Client {
    testenv_var("KUBECONFIG");
    Client::try_default()
        .await
        .expect("a client from KUBECONFIG")
}

/// Installs the generated CRDs by server-side apply and waits until each
/// is Established.
pub async fn install_crds(client: &Client) {
    let api: Api<CustomResourceDefinition> = Api::all(client.clone());
    let params = PatchParams::apply("mcp-operator-tests").force();
    for crd in mcp_operator_api::crds() {
        let name = crd.metadata.name.clone().expect("generated CRDs are named");
        api.patch(&name, &params, &Patch::Apply(&crd))
            .await
            .expect("apply CRD");
        wait_for(&api, &name, conditions::is_crd_established()).await;
    }
}

/// Creates a namespace with a unique name that starts with `prefix`.
pub async fn namespace(client: &Client, prefix: &str) -> String {
    let api: Api<Namespace> = Api::all(client.clone());
    let mut ns = Namespace::default();
    ns.metadata.generate_name = Some(format!("{prefix}-"));
    let created = api
        .create(&PostParams::default(), &ns)
        .await
        .expect("create namespace");
    created
        .metadata
        .name
        .expect("the apiserver names the namespace")
}

/// Waits, by watching, until the object `name` meets `condition`.
pub async fn wait_for<K>(api: &Api<K>, name: &str, condition: impl Condition<K>) -> Option<K>
where
    K: Resource + Clone + Debug + DeserializeOwned + Send + 'static,
{
    tokio::time::timeout(WAIT, await_condition(api.clone(), name, condition))
        .await
        .unwrap_or_else(|_| panic!("{name} did not reach the expected state within {WAIT:?}"))
        .expect("watching for the condition")
}

/// A new namespace with a Service `backend`, a tool `tool` of `spec` (its
/// backend added) labelled `app: x`, and a server `server` selecting it.
pub async fn one_tool_namespace(
    client: &Client,
    prefix: &str,
    mut spec: serde_json::Value,
) -> String {
    let ns = namespace(client, prefix).await;
    apply::<k8s_openapi::api::core::v1::Service>(
        client,
        &ns,
        serde_json::json!({
            "apiVersion": "v1", "kind": "Service", "metadata": {"name": "backend"},
            "spec": {"ports": [{"name": "http", "port": 8080}]},
        }),
    )
    .await;
    spec["backend"] = serde_json::json!({"service": {"name": "backend", "port": 8080}});
    // Unparsed: the spec may be one this client cannot read back.
    apply_unparsed::<mcp_operator_api::MCPTool>(
        client,
        &ns,
        serde_json::json!({
            "apiVersion": "kubemcp.io/v1alpha1", "kind": "MCPTool",
            "metadata": {"name": "tool", "labels": {"app": "x"}}, "spec": spec,
        }),
    )
    .await;
    apply::<mcp_operator_api::MCPServer>(
        client,
        &ns,
        serde_json::json!({
            "apiVersion": "kubemcp.io/v1alpha1", "kind": "MCPServer",
            "metadata": {"name": "server"},
            "spec": {"toolSelector": {"matchLabels": {"app": "x"}}},
        }),
    )
    .await;
    ns
}

/// `{"a": {"a": … 1 …}}`, `depth` objects deep, built without a parser
/// (serde_json parses at most 128 levels).
pub fn nested(depth: usize) -> serde_json::Value {
    (0..depth).fold(
        serde_json::json!(1),
        |inner, _| serde_json::json!({"a": inner}),
    )
}

/// Creates or replaces an object by server-side apply without parsing the
/// apiserver's answer: for objects this client could not read back.
pub async fn apply_unparsed<K>(client: &Client, namespace: &str, object: serde_json::Value)
where
    K: Resource<Scope = k8s_openapi::NamespaceResourceScope, DynamicType = ()>,
{
    let name = object["metadata"]["name"].as_str().expect("a named object");
    let request = kube::core::Request::new(K::url_path(&(), Some(namespace)))
        .patch(
            name,
            &PatchParams::apply("mcp-operator-tests").force(),
            &Patch::Apply(&object),
        )
        .expect("a patch request");
    client.request_text(request).await.expect("apply");
}

/// Creates or replaces, by server-side apply, an object given as JSON.
pub async fn apply<K>(client: &Client, namespace: &str, object: serde_json::Value) -> K
where
    K: Resource<Scope = k8s_openapi::NamespaceResourceScope, DynamicType = ()>
        + Clone
        + Debug
        + serde::Serialize
        + DeserializeOwned,
{
    let object: K = serde_json::from_value(object).expect("a valid object");
    let name = object.meta().name.clone().expect("a named object");
    Api::<K>::namespaced(client.clone(), namespace)
        .patch(
            &name,
            &PatchParams::apply("tests").force(),
            &Patch::Apply(&object),
        )
        .await
        .expect("apply")
}

/// Waits until `kind/name` has condition `type_` with `status` and `reason`;
/// returns its message.
pub async fn condition<K>(
    api: &Api<K>,
    name: &str,
    type_: &str,
    status: &str,
    reason: &str,
) -> String
where
    K: kube::Resource
        + Clone
        + std::fmt::Debug
        + serde::Serialize
        + serde::de::DeserializeOwned
        + Send
        + 'static,
{
    let matches = |object: &K| {
        let value = serde_json::to_value(object).expect("serializable");
        value["status"]["conditions"]
            .as_array()
            .into_iter()
            .flatten()
            .find(|c| c["type"] == type_ && c["status"] == status && c["reason"] == reason)
            .map(|c| c["message"].as_str().unwrap_or_default().to_owned())
    };
    let found = wait_for(api, name, |object: Option<&K>| {
        object.and_then(&matches).is_some()
    })
    .await;
    found.as_ref().and_then(matches).expect("the condition")
}

/// Waits, by watching, until an Event of `type_` and `reason` is recorded
/// on the object `name` in `namespace`; returns its note.
pub async fn event(
    client: &Client,
    namespace: &str,
    name: &str,
    type_: &str,
    reason: &str,
) -> String {
    use futures::TryStreamExt;
    use k8s_openapi::api::events::v1::Event;
    use kube::runtime::{WatchStreamExt, watcher};
    let api: Api<Event> = Api::namespaced(client.clone(), namespace);
    let matching = watcher(api, watcher::Config::default())
        .applied_objects()
        .try_filter(|event| {
            std::future::ready(
                event.regarding.as_ref().and_then(|r| r.name.as_deref()) == Some(name)
                    && event.type_.as_deref() == Some(type_)
                    && event.reason.as_deref() == Some(reason),
            )
        });
    let mut matching = std::pin::pin!(matching);
    let event = tokio::time::timeout(WAIT, matching.try_next())
        .await
        .unwrap_or_else(|_| panic!("no {type_} Event {reason} on {name} within {WAIT:?}"))
        .expect("watching Events")
        .expect("the Event watch ended");
    event.note.unwrap_or_default()
}

/// A kubeconfig, written into `dir`, that acts as the ServiceAccount
/// `namespace/name`: the admin kubeconfig's cluster with a token from the
/// TokenRequest API instead of its user.
pub async fn account_kubeconfig(
    client: &Client,
    namespace: &str,
    name: &str,
    dir: &Path,
) -> PathBuf {
    let request = TokenRequest {
        spec: Some(TokenRequestSpec {
            expiration_seconds: Some(3600),
            ..Default::default()
        }),
        ..Default::default()
    };
    let token = Api::<ServiceAccount>::namespaced(client.clone(), namespace)
        .create_token_request(name, &PostParams::default(), &request)
        .await
        .expect("a token for the ServiceAccount")
        .status
        .expect("the apiserver returns the token")
        .token;
    let admin = std::fs::read_to_string(testenv_var("KUBECONFIG")).expect("the admin kubeconfig");
    let mut config: serde_json::Value = serde_yaml_ng::from_str(&admin).expect("a kubeconfig");
    let users = config["users"].as_array_mut().expect("kubeconfig users");
    for user in users {
        user["user"] = serde_json::json!({ "token": token });
    }
    std::fs::create_dir_all(dir).expect("the directory of the kubeconfig");
    let path = dir.join(format!("kubeconfig-{name}"));
    let text = serde_yaml_ng::to_string(&config).expect("serializable");
    std::fs::write(&path, text).expect("write the kubeconfig");
    path
}

/// The operator as a real process, in its own lease namespace, with the
/// testenv's Redis and `extra` flags; its log is under `logs_dir(name)`.
pub async fn operator(client: &Client, name: &str, extra: &[&str]) -> mcp_operator_chaos::Replica {
    let leases = namespace(client, &format!("{name}-leases")).await;
    let logs = mcp_operator_chaos::logs_dir(name);
    let port = mcp_operator_chaos::free_port().expect("a free port");
    let metrics = format!("127.0.0.1:{port}");
    let redis = testenv_var("MCP_REDIS_URL");
    let args: Vec<String> = [
        "controller",
        "--lease-namespace",
        &leases,
        "--identity",
        name,
        "--metrics-listen",
        &metrics,
        "--redis-url",
        &redis,
    ]
    .iter()
    .chain(extra)
    .map(|arg| (*arg).to_owned())
    .collect();
    let operator = mcp_operator_chaos::Replica::spawn(
        std::path::Path::new(env!("CARGO_BIN_EXE_mcp-operator")),
        &args,
        name,
        &logs,
        None,
        port,
    )
    .expect("start the operator");
    eprintln!(
        "operator log: {}",
        logs.join(format!("{name}.log")).display()
    );
    operator
}

/// An MCPServer `name` selecting the tools labelled `team: <team>`.
pub async fn server(client: &Client, namespace: &str, name: &str, team: &str) {
    apply::<mcp_operator_api::MCPServer>(
        client,
        namespace,
        serde_json::json!({
            "apiVersion": "kubemcp.io/v1alpha1", "kind": "MCPServer",
            "metadata": {"name": name},
            "spec": {"toolSelector": {"matchLabels": {"team": team}}},
        }),
    )
    .await;
}
