//! `--router-redis-credentials=shared`, for a Redis that forbids
//! `ACL SETUSER`: the operator (a real process) creates no users, copies
//! the shared credential into each server's Secret, passes it to the
//! routers only by `secretKeyRef`, and every server says it is not
//! isolated.

mod support;

use std::time::Duration;

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{Secret, Service};
use kube::api::Api;
use mcp_operator_api::{MCPServer, MCPTool};
use mcp_operator_catalog::{ServerId, acl};
use serde_json::json;

use support::{condition, testenv_var};

#[tokio::test]
async fn shared_credentials_travel_by_reference_and_are_announced() {
    let client = support::client().await;
    support::install_crds(&client).await;
    let operator = support::operator(
        &client,
        "shared",
        &[
            "--router-redis-credentials",
            "shared",
            "--router-redis-username",
            "shared-router",
            "--router-redis-password",
            "shared-router-password",
        ],
    )
    .await;

    let ns = support::namespace(&client, "shared").await;
    support::apply::<Service>(
        &client,
        &ns,
        json!({
            "apiVersion": "v1", "kind": "Service", "metadata": {"name": "backend"},
            "spec": {"ports": [{"name": "http", "port": 8080}]},
        }),
    )
    .await;
    support::apply::<MCPTool>(
        &client,
        &ns,
        json!({
            "apiVersion": "kubemcp.io/v1alpha1", "kind": "MCPTool",
            "metadata": {"name": "tool", "labels": {"team": "t"}},
            "spec": {
                "description": "A tool.",
                "inputSchema": {"type": "object"},
                "backend": {"service": {"name": "backend", "port": "http"}, "path": "/call"},
            },
        }),
    )
    .await;
    support::server(&client, &ns, "s", "t").await;
    let servers: Api<MCPServer> = Api::namespaced(client.clone(), &ns);
    let message = condition(
        &servers,
        "s",
        "RedisIsolated",
        "False",
        "SharedRedisCredentials",
    )
    .await;
    assert!(message.contains("shared"), "{message}");

    let secrets: Api<Secret> = Api::namespaced(client.clone(), &ns);
    let secret = support::wait_for(&secrets, &acl::secret_name("s"), |s: Option<&Secret>| {
        s.is_some()
    })
    .await
    .expect("the router Secret");
    let data = secret.data.unwrap_or_default();
    let text = |key: &str| String::from_utf8(data[key].0.clone()).expect("UTF-8");
    assert_eq!(text(acl::SECRET_USERNAME), "shared-router");
    assert_eq!(text(acl::SECRET_PASSWORD), "shared-router-password");

    let deployments: Api<Deployment> = Api::namespaced(client.clone(), &ns);
    let deployment = support::wait_for(&deployments, "s", |d: Option<&Deployment>| d.is_some())
        .await
        .expect("the router Deployment");
    let env = deployment
        .spec
        .and_then(|s| s.template.spec)
        .map(|p| p.containers[0].env.clone().unwrap_or_default())
        .expect("a container");
    for var in &env {
        assert!(
            !var.value
                .as_deref()
                .unwrap_or_default()
                .contains("shared-router-password"),
            "{} holds the password",
            var.name
        );
    }
    let password = env
        .iter()
        .find(|v| v.name == "MCP_REDIS_PASSWORD")
        .and_then(|v| v.value_from.as_ref()?.secret_key_ref.as_ref())
        .expect("the password by secretKeyRef");
    assert_eq!(password.name, acl::secret_name("s"));

    // No per-server user in shared mode.
    let server = ServerId {
        namespace: ns.clone(),
        name: "s".into(),
    };
    let mut admin = support::redis::node_client(&testenv_var("MCP_REDIS_URL"))
        .get_multiplexed_async_connection()
        .await
        .expect("an admin connection");
    let user: redis::Value = redis::cmd("ACL")
        .arg("GETUSER")
        .arg(acl::username(&server))
        .query_async(&mut admin)
        .await
        .expect("ACL GETUSER");
    assert_eq!(user, redis::Value::Nil);

    operator
        .stop(Duration::from_secs(15))
        .await
        .expect("stop the operator");
}
