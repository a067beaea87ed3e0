//! The app of the in-process tests: a fixture catalog whose tools point at
//! a closed port, sessions in an unreachable Redis (their loss must not
//! break anything), and a bearer token.

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use mcp_operator_catalog::{Catalog, Published, ServerId};
use rmcp::transport::streamable_http_server::session::local::LocalSessionManager;
use serde_json::json;

use crate::args::{AuthArgs, LimitArgs};
use crate::catalog::{CatalogState, Compiled};
use crate::http::Parts;
use crate::mcp::Shared;

pub const TOKEN: &str = "property";

const LIMITS: LimitArgs = LimitArgs {
    max_request_bytes: 4096,
    max_response_bytes: 4096,
    max_concurrent_requests: 64,
    request_timeout: Duration::from_secs(5),
    page_size: 1,
};

fn server() -> ServerId {
    ServerId {
        namespace: "props".into(),
        name: "router".into(),
    }
}

/// What every session of the fixture shares: its catalog loaded.
pub fn shared() -> Arc<Shared> {
    let catalog: Catalog = serde_json::from_value(json!({
        "server": server(),
        "serverInfo": {"name": "props", "version": "0"},
        "tools": [{
            "name": "echo",
            "inputSchema": {"type": "object", "properties": {"message": {"type": "string"}, "count": {"type": "integer"}}, "required": ["message"]},
            "endpoint": {"url": "http://127.0.0.1:9/", "timeoutSeconds": 1, "retries": 1},
            "method": "GET",
            "source": {"kind": "MCPTool", "name": "echo"},
        }],
        "prompts": [{
            "name": "greet",
            "arguments": [{"name": "who", "required": true}],
            "messages": [{"role": "user", "content": "Hello {{ who }} {{ who | upper }}"}],
            "source": {"kind": "MCPPrompt", "name": "greet"},
        }],
        "resources": [{
            "uri": "docs://a", "name": "a", "content": {"text": "A"},
            "source": {"kind": "MCPResource", "name": "a"},
        }],
    }))
    .expect("a fixture catalog");
    let state = CatalogState::default();
    state.replace(Compiled::new(Published::new(catalog)).expect("compiles"));
    Arc::new(Shared {
        state,
        forwarder: crate::forward::Forwarder::new(
            crate::secrets::Secrets::new(std::env::temp_dir()),
            LIMITS.max_response_bytes,
            &[],
        )
        .expect("a client"),
        page_size: LIMITS.page_size,
        request_timeout: LIMITS.request_timeout,
        session_peers: Default::default(),
    })
}

/// The app over `shared` and `local_sessions`; `build` is `http::app` or
/// the app without direct answers.
pub async fn app(
    shared: Arc<Shared>,
    local_sessions: Arc<LocalSessionManager>,
    build: fn(Parts) -> Router,
) -> Router {
    let redis = mcp_operator_store::RedisArgs {
        redis_pool_size: 1,
        ..mcp_operator_store::RedisArgs::from_env_credentials(
            Some("redis://127.0.0.1:9".into()),
            vec![],
        )
    };
    let store = mcp_operator_store::Store::new(&redis, "props").expect("a store");
    let auth = AuthArgs {
        auth_token: Some(TOKEN.into()),
        ..AuthArgs::default()
    };
    build(Parts {
        shared,
        local_sessions,
        sessions: crate::session::RedisSessions {
            store,
            server: server(),
            ttl: Duration::from_secs(60),
        },
        guard: crate::guard::Guard::new(&["localhost".into(), "*.svc".into()], &[]),
        auth: crate::auth::Auth::from_args(&auth).await.expect("auth"),
        limits: LIMITS,
        metrics: metrics_exporter_prometheus::PrometheusBuilder::new()
            .build_recorder()
            .handle(),
        shutdown: tokio_util::sync::CancellationToken::new(),
        draining: tokio_util::sync::CancellationToken::new(),
    })
}
