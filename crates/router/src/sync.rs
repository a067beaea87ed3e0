//! Keeps the served catalog current: a full load at start, a reload when
//! the server's invalidation channel announces a version other than the
//! one served, a full reload after every reconnect of the subscriber (pub/sub
//! drops messages while disconnected), and a periodic read of the version
//! key as a safety net. While Redis is unreachable the last good catalog
//! stays served and is marked stale. A catalog this router may not trust
//! (unsigned, wrongly signed, another server's, a backend outside the
//! namespace: crates/catalog/src/signature.rs) is refused the same way: the
//! last good one stays served.

use std::sync::Mutex;
use std::time::Duration;

use mcp_operator_catalog::signature::{Rejection, TrustedKeys};
use mcp_operator_catalog::{
    Catalog, CatalogVersion, Invalidation, Published, ServerId, ServerInfo, digest, keys,
};
use mcp_operator_store::{RedisArgs, Store, StoreError};
use redis::{AsyncCommands, ProtocolVersion, PushInfo, PushKind};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::catalog::{CatalogState, Compiled};
use crate::metrics;

/// Why a reload happened, as the `reason` label of `mcp_router_resyncs_total`.
#[derive(Clone, Copy, Debug)]
enum Reason {
    Start,
    Reconnect,
    Periodic,
    Invalidation,
}

impl Reason {
    fn label(self) -> &'static str {
        match self {
            Self::Start => "start",
            Self::Reconnect => "reconnect",
            Self::Periodic => "periodic",
            Self::Invalidation => "invalidation",
        }
    }
}

/// The catalog keeper of one server.
pub struct Keeper {
    pub server: ServerId,
    pub store: Store,
    pub redis: RedisArgs,
    pub state: CatalogState,
    /// The operator's public keys.
    pub trusted: TrustedKeys,
    /// The digest of the last document refused, so that one refused
    /// document is logged once, not at every resync.
    pub refused: Mutex<Option<String>>,
    pub interval: Duration,
    /// Ids of sessions ended on any replica, for this one to drop.
    pub ended_sessions: mpsc::UnboundedSender<String>,
}

/// The live subscription; dropping it closes the connection.
struct Subscription {
    /// A cluster connection reconnects and resubscribes by itself; a single
    /// node connection ends with its first disconnection.
    reconnects_itself: bool,
    _connection: Box<dyn std::any::Any + Send>,
}

impl Keeper {
    /// Runs until `shutdown`.
    pub async fn run(self, shutdown: CancellationToken) {
        let mut reason = Reason::Start;
        let mut backoff = Duration::from_millis(100);
        loop {
            let (pushes, received) = mpsc::unbounded_channel();
            let subscription = tokio::select! {
                () = shutdown.cancelled() => return,
                subscribed = self.subscribe(pushes) => subscribed,
            };
            match subscription {
                Ok(subscription) => {
                    backoff = Duration::from_millis(100);
                    // Subscribed first, loaded second: nothing published in
                    // between can be missed.
                    self.reload(reason).await;
                    reason = Reason::Reconnect;
                    tokio::select! {
                        () = shutdown.cancelled() => return,
                        () = self.listen(received, subscription.reconnects_itself) => {}
                    }
                    tracing::warn!(server = %self.server, "lost the invalidation subscription; reconnecting");
                }
                Err(error) => {
                    self.state.set_stale(true);
                    tracing::warn!(
                        server = %self.server,
                        version = ?self.state.version(),
                        %error,
                        "cannot subscribe to invalidations; serving the last good catalog",
                    );
                    // Keep trying the version key meanwhile, so a catalog
                    // is loaded even if only pub/sub fails.
                    self.reload(reason).await;
                    tokio::select! {
                        () = shutdown.cancelled() => return,
                        () = tokio::time::sleep(backoff) => {}
                    }
                    backoff = (backoff * 2).min(Duration::from_secs(5));
                }
            }
        }
    }

    /// Subscribes on a dedicated RESP3 connection whose pushes go to `pushes`.
    async fn subscribe(
        &self,
        pushes: mpsc::UnboundedSender<PushInfo>,
    ) -> Result<Subscription, StoreError> {
        let channels = [
            keys::channel(&self.server),
            keys::sessions_channel(&self.server),
        ];
        let timeout = Some(Duration::from_secs(5));
        if let Some(url) = &self.redis.redis_url {
            let info = self.redis.connection_info(url)?;
            let settings = info
                .redis_settings()
                .clone()
                .set_protocol(ProtocolVersion::RESP3);
            let client = redis::Client::open(info.set_redis_settings(settings))?;
            let config = redis::AsyncConnectionConfig::new()
                .set_connection_timeout(timeout)
                .set_response_timeout(timeout)
                .set_push_sender(pushes);
            let mut connection = client
                .get_multiplexed_async_connection_with_config(&config)
                .await?;
            connection.subscribe(&channels).await?;
            Ok(Subscription {
                reconnects_itself: false,
                _connection: Box::new(connection),
            })
        } else {
            let client = (self.redis.cluster_client_builder()?)
                .use_protocol(ProtocolVersion::RESP3)
                .connection_timeout(Duration::from_secs(5))
                .response_timeout(Duration::from_secs(5))
                .push_sender(pushes)
                .build()?;
            let mut connection = client.get_async_connection().await?;
            connection.subscribe(&channels).await?;
            Ok(Subscription {
                reconnects_itself: true,
                _connection: Box::new(connection),
            })
        }
    }

    /// Handles pushes and the periodic check until the subscription is lost.
    async fn listen(&self, mut pushes: mpsc::UnboundedReceiver<PushInfo>, reconnects_itself: bool) {
        let mut tick = tokio::time::interval(self.interval);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        tick.tick().await;
        // A cluster connection reconnects and resubscribes by itself: a
        // disconnection is followed by a new subscribe confirmation, after
        // which a full reload catches up on what was missed.
        let mut resubscribing = false;
        loop {
            tokio::select! {
                push = pushes.recv() => {
                    let Some(push) = push else { return };
                    match push.kind {
                        PushKind::Message => self.message(&push).await,
                        PushKind::Disconnection => {
                            self.state.set_stale(true);
                            if !reconnects_itself {
                                return;
                            }
                            resubscribing = true;
                        }
                        PushKind::Subscribe if resubscribing => {
                            resubscribing = false;
                            self.reload(Reason::Reconnect).await;
                        }
                        _ => {}
                    }
                }
                _ = tick.tick() => self.check_version().await,
            }
        }
    }

    /// A message on one of the server's channels: `[channel, payload]`.
    async fn message(&self, push: &PushInfo) {
        let text = |index: usize| {
            push.data
                .get(index)
                .and_then(|value| redis::from_redis_value_ref::<String>(value).ok())
        };
        if text(0) == Some(keys::sessions_channel(&self.server)) {
            if let Some(session) = text(1) {
                let _ = self.ended_sessions.send(session);
            }
            return;
        }
        self.invalidated(push).await;
    }

    async fn invalidated(&self, push: &PushInfo) {
        metrics::invalidation();
        let Some(payload) = push.data.get(1) else {
            return;
        };
        let invalidation = redis::from_redis_value_ref::<String>(payload)
            .ok()
            .and_then(|json| serde_json::from_str::<Invalidation>(&json).ok());
        let Some(invalidation) = invalidation else {
            tracing::warn!(server = %self.server, "ignoring a malformed invalidation message");
            return;
        };
        match invalidation.version {
            Some(version) if Some(&version) == self.state.version().as_ref() => {}
            Some(_) => self.reload(Reason::Invalidation).await,
            None => self.tombstone(),
        }
    }

    /// The safety net: reload when the version key names another version.
    async fn check_version(&self) {
        match self.read(keys::version(&self.server)).await {
            Ok(Some(version))
                if self
                    .state
                    .version()
                    .is_some_and(|served| served.0 == version) =>
            {
                self.state.set_stale(false);
            }
            Ok(_) => self.reload(Reason::Periodic).await,
            Err(error) => self.unreachable(&error),
        }
    }

    /// Reads the whole catalog and serves it if its version is new.
    async fn reload(&self, reason: Reason) {
        metrics::resync(reason.label());
        let json = match self.read(keys::catalog(&self.server)).await {
            Ok(Some(json)) => json,
            Ok(None) => {
                self.state.set_stale(false);
                if self.state.is_ready() {
                    self.tombstone();
                } else {
                    tracing::info!(server = %self.server, "no catalog published yet");
                }
                return;
            }
            Err(error) => return self.unreachable(&error),
        };
        self.state.set_stale(false);
        let published = match self.trusted.open(&json, &self.server) {
            Ok(published) => published,
            Err(rejection) => return self.refuse(&json, &rejection),
        };
        if Some(&published.version) == self.state.version().as_ref() {
            return;
        }
        let version = published.version.clone();
        match Compiled::new(published) {
            Ok(compiled) => {
                self.state.replace(compiled);
                tracing::info!(server = %self.server, %version, reason = reason.label(), "serving catalog");
            }
            Err(error) => {
                tracing::error!(server = %self.server, %version, %error, "cannot compile the catalog; keeping the served one");
            }
        }
    }

    /// Counts a refused document and logs it, once per document.
    fn refuse(&self, json: &str, rejection: &Rejection) {
        metrics::catalog_rejected(rejection.reason());
        let refused = Some(digest(json.as_bytes()));
        let mut last = self.refused.lock().unwrap_or_else(|e| e.into_inner());
        if *last != refused {
            *last = refused;
            tracing::error!(
                server = %self.server,
                served = ?self.state.version(),
                reason = rejection.reason(),
                %rejection,
                "refusing the catalog in Redis; keeping the served one",
            );
        }
    }

    /// GET through the pool; errors as text for the staleness log.
    async fn read(&self, key: String) -> Result<Option<String>, String> {
        let mut connection = self.store.get().await.map_err(|e| e.to_string())?;
        connection.get(key).await.map_err(|e| e.to_string())
    }

    /// The server was deleted: serve empty lists until this router stops.
    fn tombstone(&self) {
        let Some(current) = self.state.current() else {
            return;
        };
        if current.version == deleted() {
            return;
        }
        tracing::info!(server = %self.server, "the server was deleted; serving an empty catalog");
        let empty = Published {
            version: deleted(),
            catalog: Catalog {
                server: self.server.clone(),
                server_info: ServerInfo {
                    name: current.catalog.server_info.name.clone(),
                    version: current.catalog.server_info.version.clone(),
                    instructions: None,
                },
                tools: vec![],
                prompts: vec![],
                resources: vec![],
            },
        };
        if let Ok(compiled) = Compiled::new(empty) {
            self.state.replace(compiled);
        }
    }

    fn unreachable(&self, error: &str) {
        self.state.set_stale(true);
        tracing::warn!(
            server = %self.server,
            version = ?self.state.version(),
            %error,
            "Redis is unreachable; serving the last good catalog",
        );
    }
}

/// The version served after a tombstone; no content hash looks like it.
fn deleted() -> CatalogVersion {
    CatalogVersion("deleted".into())
}
