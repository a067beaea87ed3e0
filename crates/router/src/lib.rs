//! `mcp-operator router`: serves one MCPServer's catalog over MCP
//! Streamable HTTP. The catalog comes from Redis, as the controller
//! publishes it (crates/catalog); tool calls and resource reads are
//! forwarded to their HTTP backends. See docs/router.md.

pub mod args;
mod auth;
mod catalog;
mod direct;
#[cfg(test)]
mod fixture;
mod forward;
mod guard;
mod http;
mod mcp;
mod metrics;
mod notify;
mod page;
#[cfg(test)]
mod props;
mod render;
mod secrets;
mod session;
mod sync;
mod trace;

use std::sync::Arc;

use anyhow::Context;
use mcp_operator_store::Store;
use metrics_exporter_prometheus::PrometheusHandle;
use rmcp::transport::streamable_http_server::SessionManager;
use rmcp::transport::streamable_http_server::session::local::LocalSessionManager;
use tokio_util::sync::CancellationToken;

pub use args::RouterArgs;

/// Runs the router until SIGTERM or Ctrl-C, and for the drain period
/// (--drain-period) after it.
pub async fn run(args: RouterArgs, prometheus: PrometheusHandle) -> anyhow::Result<()> {
    let store = Store::new(&args.redis, "mcp_router").context("configuring Redis")?;
    let state = catalog::CatalogState::default();
    let shutdown = CancellationToken::new();
    let draining = CancellationToken::new();

    let (ended_sessions, mut ended) = tokio::sync::mpsc::unbounded_channel::<String>();
    let local_sessions = Arc::new(LocalSessionManager::default());
    let closing = local_sessions.clone();
    // A session ended on another replica (DELETE) ends here too.
    tokio::spawn(async move {
        while let Some(id) = ended.recv().await {
            if let Err(error) = closing.close_session(&id.into()).await {
                tracing::debug!(%error, "closing a session ended elsewhere");
            }
        }
    });
    let keeper = sync::Keeper {
        server: args.server.clone(),
        store: store.clone(),
        redis: args.redis.clone(),
        state: state.clone(),
        trusted: args.catalog_public_keys.clone(),
        refused: std::sync::Mutex::default(),
        interval: args.sync.resync_interval,
        ended_sessions,
    };
    let keeping = tokio::spawn(keeper.run(shutdown.clone()));

    let auth = auth::Auth::from_args(&args.auth).await?;
    let forwarder = forward::Forwarder::new(
        secrets::Secrets::new(args.secrets_dir.clone()),
        args.limits.max_response_bytes,
        &args.resolve,
    )
    .context("building the backend HTTP client")?;
    let shared = Arc::new(mcp::Shared {
        state,
        forwarder,
        page_size: args.limits.page_size,
        request_timeout: args.limits.request_timeout,
        session_peers: Default::default(),
    });
    let app = http::app(http::Parts {
        shared,
        local_sessions,
        sessions: session::RedisSessions {
            store,
            server: args.server.clone(),
            ttl: args.http.session_ttl,
        },
        guard: guard::Guard::new(&args.http.allowed_hosts, &args.http.allowed_origins),
        auth,
        limits: args.limits.clone(),
        metrics: prometheus,
        shutdown: shutdown.clone(),
        draining: draining.clone(),
    });

    let listener = tokio::net::TcpListener::bind(args.listen)
        .await
        .with_context(|| format!("listening on {}", args.listen))?;
    tracing::info!(listen = %listener.local_addr()?, server = %args.server, "router listening");
    // Without TCP_NODELAY the small writes of an SSE answer (priming event,
    // then the response) wait for the client's delayed ACK: ~40 ms a call.
    let listener = axum::serve::ListenerExt::tap_io(listener, |stream| {
        if let Err(error) = stream.set_nodelay(true) {
            tracing::debug!(%error, "cannot set TCP_NODELAY");
        }
    });
    let stopping = shutdown.clone();
    let drain = args.http.drain_period;
    axum::serve(listener, app)
        .with_graceful_shutdown(async move {
            terminated().await;
            if !drain.is_zero() {
                // The pod is deleted but still someone's endpoint for a
                // moment: keep answering, not ready, then stop.
                tracing::info!(?drain, "draining: not ready, still serving");
                draining.cancel();
                tokio::select! {
                    () = tokio::time::sleep(drain) => {}
                    () = terminated() => tracing::info!("a second signal: not draining any longer"),
                }
            }
            tracing::info!("stopping");
            stopping.cancel();
        })
        .await
        .context("serving HTTP")?;
    shutdown.cancel();
    keeping.await.context("the catalog keeper")?;
    Ok(())
}

async fn terminated() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = ctrl_c => {}
                    _ = term.recv() => {}
                }
            }
            Err(_) => {
                let _ = ctrl_c.await;
            }
        }
    }
    #[cfg(not(unix))]
    let _ = ctrl_c.await;
}
