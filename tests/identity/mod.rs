//! Each MCPServer's Redis identity end to end: the operator (in this
//! process, as in tests/controller) creates a user per server on every
//! Redis node, hands its password to the routers in a Secret, and the
//! routers (real `mcp-operator router` processes, as in tests/router) work
//! with nothing more. The credentials are read from the Secret as a user
//! would; Redis is the testenv's single node (`identity_single.rs`) or
//! cluster (`identity_cluster.rs`).
#![allow(dead_code)] // each test binary uses the cases through its macro

use std::time::Duration;

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{Secret, Service};
use kube::api::{Api, DeleteParams, ListParams};
use kube::runtime::wait::conditions;
use mcp_operator_api::{MCPServer, MCPTool};
use mcp_operator_catalog::signature::PUBLIC_KEYS_ENV;
use mcp_operator_catalog::{ServerId, acl, keys};
use mcp_operator_controller::password_sha256 as template_hash;
use mcp_operator_store::{Password, RedisArgs};
use redis::aio::ConnectionLike;
use serde_json::json;

use crate::controller::{Env, Redis, published_version, server, service, tool};
use crate::router::{RouterProcess, eventually};
use crate::support::{self, testenv_var};

/// A router's credentials, as its Secret holds them.
#[derive(Clone, Debug, PartialEq)]
pub struct Credentials {
    pub username: String,
    pub password: String,
}

/// The server's `<name>-router-redis` Secret, once the operator wrote it.
pub async fn secret_credentials(env: &Env, name: &str) -> Credentials {
    let secrets: Api<Secret> = env.api();
    let secret = support::wait_for(&secrets, &acl::secret_name(name), |s: Option<&Secret>| {
        s.is_some()
    })
    .await
    .expect("the router Secret");
    let labels = secret.metadata.labels.clone().unwrap_or_default();
    assert_eq!(
        labels
            .get("app.kubernetes.io/managed-by")
            .map(String::as_str),
        Some("mcp-operator")
    );
    let owners = secret.metadata.owner_references.clone().unwrap_or_default();
    assert!(
        owners
            .iter()
            .any(|o| o.kind == "MCPServer" && o.name == name),
        "the Secret is owned by its server: {owners:?}"
    );
    let data = secret.data.unwrap_or_default();
    let text = |key: &str| {
        String::from_utf8(data.get(key).expect("a key of the Secret").0.clone())
            .expect("UTF-8 credentials")
    };
    Credentials {
        username: text(acl::SECRET_USERNAME),
        password: text(acl::SECRET_PASSWORD),
    }
}

/// Every node of the testenv's Redis of this kind.
pub fn nodes(redis: Redis) -> Vec<String> {
    match redis {
        Redis::Single => vec![testenv_var("MCP_REDIS_URL")],
        Redis::Cluster => testenv_var("MCP_REDIS_CLUSTER_URLS")
            .split(',')
            .map(str::to_owned)
            .collect(),
    }
}

/// Redis flags with these credentials instead of the testenv's admin.
fn args_as(credentials: &Credentials, redis: Redis) -> RedisArgs {
    let (url, cluster) = match redis {
        Redis::Single => (Some(testenv_var("MCP_REDIS_URL")), vec![]),
        Redis::Cluster => (None, nodes(redis)),
    };
    RedisArgs {
        redis_username: Some(credentials.username.clone()),
        redis_password: Some(Password::new(credentials.password.clone())),
        ..RedisArgs::from_env_credentials(url, cluster)
    }
}

/// A connection to one node as the router user.
async fn node_as(
    credentials: &Credentials,
    url: &str,
) -> redis::RedisResult<redis::aio::MultiplexedConnection> {
    args_as(credentials, Redis::Single)
        .client(url)
        .expect("a client")
        .get_multiplexed_async_connection()
        .await
}

/// A connection that follows the cluster's slots (or the single node), as
/// the router user, through the store a router uses.
async fn keyed_as(credentials: &Credentials, redis: Redis) -> mcp_operator_store::Connection {
    mcp_operator_store::Store::new(&args_as(credentials, redis), "test")
        .expect("a store")
        .get()
        .await
        .expect("AUTH as the router user")
}

async fn query(
    connection: &mut impl ConnectionLike,
    cmd: &redis::Cmd,
) -> redis::RedisResult<redis::Value> {
    cmd.query_async(connection).await
}

fn assert_noperm(result: redis::RedisResult<redis::Value>, what: &str) {
    match result {
        Err(error) if error.code() == Some("NOPERM") => {}
        other => panic!("{what}: expected NOPERM, got {other:?}"),
    }
}

/// `ACL GETUSER` of the server's user on one node, as the admin.
async fn user_on(url: &str, server: &ServerId) -> redis::Value {
    let mut admin = support::redis::node_client(url)
        .get_multiplexed_async_connection()
        .await
        .expect("an admin connection");
    redis::cmd("ACL")
        .arg("GETUSER")
        .arg(acl::username(server))
        .query_async(&mut admin)
        .await
        .expect("ACL GETUSER")
}

/// Waits until the user of `server` exists on every node (`true`) or on
/// none (`false`).
async fn wait_user_everywhere(redis: Redis, server: &ServerId, exists: bool) {
    let what = format!("{} on every node: {exists}", acl::username(server));
    eventually(&what, async || {
        for url in nodes(redis) {
            if (user_on(&url, server).await != redis::Value::Nil) != exists {
                return false;
            }
        }
        true
    })
    .await;
}

/// Waits until these credentials authenticate on every node.
async fn wait_auth_everywhere(redis: Redis, credentials: &Credentials) {
    eventually("the router credentials to work on every node", async || {
        for url in nodes(redis) {
            if node_as(credentials, &url).await.is_err() {
                return false;
            }
        }
        true
    })
    .await;
}

/// A Service, a tool and a server `name` selecting it by team `name`.
async fn one_tool_server(env: &Env, name: &str) {
    env.apply::<Service>(service(&format!("{name}-backend")))
        .await;
    env.apply::<MCPTool>(tool(
        &format!("{name}-tool"),
        json!({"team": name}),
        &format!("{name}-backend"),
    ))
    .await;
    env.apply::<MCPServer>(server(name, name)).await;
    published_version(env, name, 1).await;
}

// ---------------------------------------------------------------- cases

/// With its own credentials a router reads its own catalog, and nothing of
/// another server's, writes none of its catalog keys, and runs none of the
/// commands that reach beyond its keys.
pub async fn router_user_reaches_only_its_own_server(redis: Redis) {
    let env = Env::new(redis, "acl").await;
    one_tool_server(&env, "a").await;
    one_tool_server(&env, "b").await;
    let (a, b) = (env.server_id("a"), env.server_id("b"));
    let credentials = secret_credentials(&env, "a").await;
    assert_eq!(credentials.username, acl::username(&a));
    wait_auth_everywhere(redis, &credentials).await;

    let mut keyed = keyed_as(&credentials, redis).await;
    let keyed = &mut keyed;
    let own = query(keyed, redis::cmd("GET").arg(keys::catalog(&a)))
        .await
        .expect("GET of its own catalog");
    assert!(matches!(own, redis::Value::BulkString(_)), "{own:?}");
    query(keyed, redis::cmd("GET").arg(keys::version(&a)))
        .await
        .expect("GET of its own version");
    let session = keys::session(&a, "acl-test");
    query(
        keyed,
        redis::cmd("SET").arg(&session).arg("{}").arg("EX").arg(60),
    )
    .await
    .expect("SET of its own session");
    query(keyed, redis::cmd("GETEX").arg(&session).arg("EX").arg(60))
        .await
        .expect("GETEX of its own session");
    query(keyed, redis::cmd("DEL").arg(&session))
        .await
        .expect("DEL of its own session");
    query(
        keyed,
        redis::cmd("PUBLISH")
            .arg(keys::sessions_channel(&a))
            .arg("acl-test"),
    )
    .await
    .expect("PUBLISH on its own sessions channel");

    let refused: [(&str, redis::Cmd); 7] = [
        (
            "GET of another server's catalog",
            redis::cmd("GET").arg(keys::catalog(&b)).clone(),
        ),
        (
            "GET of another server's session",
            redis::cmd("GET").arg(keys::session(&b, "x")).clone(),
        ),
        (
            "SET of its own catalog",
            redis::cmd("SET").arg(keys::catalog(&a)).arg("{}").clone(),
        ),
        (
            "SET of its own version",
            redis::cmd("SET").arg(keys::version(&a)).arg("v").clone(),
        ),
        (
            "DEL of its own catalog",
            redis::cmd("DEL").arg(keys::catalog(&a)).clone(),
        ),
        (
            "GET of its own fence",
            redis::cmd("HGETALL").arg(keys::fence(&a)).clone(),
        ),
        (
            "PUBLISH on its own invalidation channel",
            redis::cmd("PUBLISH")
                .arg(keys::channel(&a))
                .arg("{}")
                .clone(),
        ),
    ];
    for (what, cmd) in &refused {
        assert_noperm(query(keyed, cmd).await, what);
    }
    // Commands beyond keys, on a node directly (a cluster client would
    // fan some of them out).
    let mut node = node_as(&credentials, &nodes(redis)[0])
        .await
        .expect("AUTH on a node");
    let node = &mut node;
    let beyond: [(&str, redis::Cmd); 7] = [
        ("KEYS *", redis::cmd("KEYS").arg("*").clone()),
        ("SCAN", redis::cmd("SCAN").arg(0).clone()),
        ("FLUSHALL", redis::cmd("FLUSHALL").clone()),
        ("FLUSHDB", redis::cmd("FLUSHDB").clone()),
        (
            "CONFIG GET",
            redis::cmd("CONFIG").arg("GET").arg("*").clone(),
        ),
        ("ACL LIST", redis::cmd("ACL").arg("LIST").clone()),
        ("EVAL", redis::cmd("EVAL").arg("return 1").arg(0).clone()),
    ];
    for (what, cmd) in &beyond {
        assert_noperm(query(node, cmd).await, what);
    }
    // Another server's password does not open this server's user.
    let wrong = Credentials {
        password: secret_credentials(&env, "b").await.password,
        ..credentials.clone()
    };
    assert!(node_as(&wrong, &nodes(redis)[0]).await.is_err());

    no_deployment_holds_a_redis_credential(&env).await;
}

/// Every Deployment the operator made, in every namespace: no env value
/// holds a Redis password or a URL with credentials; the routers' password
/// comes by secretKeyRef from their server's Secret, and the pod template
/// carries its hash.
pub async fn no_deployment_holds_a_redis_credential(env: &Env) {
    let admin_password = testenv_var("MCP_REDIS_PASSWORD");
    let deployments: Api<Deployment> = Api::all(env.client.clone());
    let owned = deployments
        .list(&ListParams::default().labels("app.kubernetes.io/managed-by=mcp-operator"))
        .await
        .expect("list Deployments");
    assert!(!owned.items.is_empty(), "the operator made Deployments");
    let url_with_credentials = |value: &str| {
        value.split(',').any(|url| {
            url.split_once("://")
                .is_some_and(|(_, rest)| rest.split('/').next().unwrap_or_default().contains('@'))
        })
    };
    for deployment in &owned.items {
        let name = deployment.metadata.name.clone().unwrap_or_default();
        let namespace = deployment.metadata.namespace.clone().unwrap_or_default();
        let pod = deployment
            .spec
            .as_ref()
            .and_then(|s| s.template.spec.clone())
            .expect("a pod template");
        for container in &pod.containers {
            for var in container.env.iter().flatten() {
                let value = var.value.as_deref().unwrap_or_default();
                assert!(
                    !value.contains(&admin_password) && !url_with_credentials(value),
                    "{namespace}/{name}: {} holds a Redis credential",
                    var.name
                );
                if var.name == "MCP_REDIS_PASSWORD" || var.name == "MCP_REDIS_USERNAME" {
                    assert!(
                        var.value.is_none(),
                        "{namespace}/{name}: {} is a literal",
                        var.name
                    );
                    let reference = var
                        .value_from
                        .as_ref()
                        .and_then(|v| v.secret_key_ref.as_ref())
                        .expect("a secretKeyRef");
                    assert_eq!(reference.name, acl::secret_name(&name));
                }
            }
        }
        if namespace == env.ns {
            let stored = secret_credentials(env, &name).await;
            assert!(
                !pod.containers
                    .iter()
                    .flat_map(|c| c.env.iter().flatten())
                    .any(|v| v
                        .value
                        .as_deref()
                        .is_some_and(|x| x.contains(&stored.password))),
                "{namespace}/{name}: a router password as a literal"
            );
            assert_eq!(
                template_hash(deployment),
                Some(acl::password_sha256(&stored.password))
            );
        }
    }
}

/// Two router processes of one server, each with only that server's
/// credentials: a session begun on one continues on the other, a change of
/// the server's members reaches the open stream as list_changed, and
/// DELETE (which publishes on the sessions channel) works.
pub async fn routers_work_with_their_own_user(redis: Redis) {
    let env = Env::new(redis, "acl-routers").await;
    one_tool_server(&env, "s").await;
    let credentials = secret_credentials(&env, "s").await;
    wait_auth_everywhere(redis, &credentials).await;
    // The keys the operator signs with, as the routers' Deployment has them.
    let public_keys = env.router_keys_value("s").await;
    let own = [
        ("MCP_REDIS_USERNAME", credentials.username.as_str()),
        ("MCP_REDIS_PASSWORD", credentials.password.as_str()),
        (PUBLIC_KEYS_ENV, public_keys.as_str()),
    ];
    let id = env.server_id("s");
    // Ready means the catalog was read with these credentials.
    let first = RouterProcess::start(&id, redis.env(), &own).await;
    let second = RouterProcess::start(&id, redis.env(), &own).await;
    let client = first.client().await;
    let session = client.session.clone().expect("a session id");

    let mut moved = crate::router::mcp::Client::new(&second.base);
    moved.session = Some(session.clone());
    let tools = moved.result("tools/list", json!({})).await;
    assert_eq!(tools["tools"].as_array().map(Vec::len), Some(1), "{tools}");
    let mut stream = moved.stream().await;
    second.wait_streams(1.0).await;
    env.apply::<MCPTool>(tool("s-second", json!({"team": "s"}), "s-backend"))
        .await;
    stream
        .notification("notifications/tools/list_changed", Duration::from_secs(20))
        .await
        .expect("list_changed through the router's own subscription");
    client.end_session().await;
}

/// Deleting a server deletes its user on every node.
pub async fn deleting_a_server_deletes_its_user(redis: Redis) {
    let env = Env::new(redis, "acl-delete").await;
    one_tool_server(&env, "gone").await;
    let id = env.server_id("gone");
    wait_user_everywhere(redis, &id, true).await;
    let servers: Api<MCPServer> = env.api();
    let uid = servers
        .get("gone")
        .await
        .expect("the server")
        .metadata
        .uid
        .expect("a uid");
    servers
        .delete("gone", &DeleteParams::default())
        .await
        .expect("delete the server");
    support::wait_for(&servers, "gone", conditions::is_deleted(&uid)).await;
    wait_user_everywhere(redis, &id, false).await;
}

/// Deleting the Secret rotates the password: a new Secret, a new hash on
/// the pod template (the routers roll), the new password set on every
/// node and the old one refused.
pub async fn deleting_the_secret_rotates_the_password(redis: Redis) {
    let env = Env::new(redis, "acl-rotate").await;
    one_tool_server(&env, "r").await;
    let old = secret_credentials(&env, "r").await;
    wait_auth_everywhere(redis, &old).await;
    let deployments: Api<Deployment> = env.api();
    let old_hash = acl::password_sha256(&old.password);
    support::wait_for(&deployments, "r", |d: Option<&Deployment>| {
        d.and_then(template_hash).as_deref() == Some(old_hash.as_str())
    })
    .await;

    let secrets: Api<Secret> = env.api();
    secrets
        .delete(&acl::secret_name("r"), &DeleteParams::default())
        .await
        .expect("delete the router Secret");
    support::wait_for(&deployments, "r", |d: Option<&Deployment>| {
        d.and_then(template_hash)
            .is_some_and(|hash| hash != old_hash)
    })
    .await;
    let new = secret_credentials(&env, "r").await;
    assert_ne!(new.password, old.password);
    let rolled = deployments.get("r").await.expect("the Deployment");
    assert_eq!(
        template_hash(&rolled),
        Some(acl::password_sha256(&new.password))
    );
    wait_auth_everywhere(redis, &new).await;
    for url in nodes(redis) {
        assert!(
            node_as(&old, &url).await.is_err(),
            "the old password still works on {url}"
        );
    }
}

/// A node that lost the users (a restart without persistence) gets them
/// back from the periodic verification.
pub async fn a_lost_user_is_set_again(redis: Redis) {
    let env = Env::new(redis, "acl-lost").await;
    one_tool_server(&env, "l").await;
    let id = env.server_id("l");
    let credentials = secret_credentials(&env, "l").await;
    wait_user_everywhere(redis, &id, true).await;
    for url in nodes(redis) {
        let mut admin = support::redis::node_client(&url)
            .get_multiplexed_async_connection()
            .await
            .expect("an admin connection");
        let _: i64 = redis::cmd("ACL")
            .arg("DELUSER")
            .arg(acl::username(&id))
            .query_async(&mut admin)
            .await
            .expect("ACL DELUSER");
    }
    wait_user_everywhere(redis, &id, true).await;
    wait_auth_everywhere(redis, &credentials).await;
}

#[macro_export]
macro_rules! identity_cases {
    ($redis:expr) => {
        #[tokio::test]
        async fn router_user_reaches_only_its_own_server() {
            identity::router_user_reaches_only_its_own_server($redis).await
        }
        #[tokio::test]
        async fn routers_work_with_their_own_user() {
            identity::routers_work_with_their_own_user($redis).await
        }
        #[tokio::test]
        async fn deleting_a_server_deletes_its_user() {
            identity::deleting_a_server_deletes_its_user($redis).await
        }
        #[tokio::test]
        async fn deleting_the_secret_rotates_the_password() {
            identity::deleting_the_secret_rotates_the_password($redis).await
        }
        #[tokio::test]
        async fn a_lost_user_is_set_again() {
            identity::a_lost_user_is_set_again($redis).await
        }
    };
}
