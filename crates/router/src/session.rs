//! MCP sessions in Redis, so the Service needs no stickiness: rmcp keeps
//! each session's state (the client's initialize parameters) in this store,
//! and a replica that receives a request for a session it does not know
//! restores it from here. Every read renews the TTL; DELETE removes it and
//! announces the id on the server's sessions channel, so that the replicas
//! that restored the session drop it too (crate::sync listens).
//!
//! While Redis is unreachable a session unknown to this replica is treated
//! as unknown (404), so the client starts a new one here instead of failing
//! with 500; sessions this replica holds go on unaffected.

use std::time::Duration;

use mcp_operator_catalog::{ServerId, keys};
use mcp_operator_store::Store;
use rmcp::transport::streamable_http_server::session::{
    SessionState, SessionStore, SessionStoreError,
};

/// The session store of one server's routers.
pub struct RedisSessions {
    pub store: Store,
    pub server: ServerId,
    pub ttl: Duration,
}

impl RedisSessions {
    fn ttl_seconds(&self) -> u64 {
        self.ttl.as_secs().max(1)
    }

    /// The session's state, renewing its TTL.
    async fn read(&self, session_id: &str) -> Result<Option<SessionState>, SessionStoreError> {
        let mut connection = self.store.get().await?;
        let json: Option<String> = redis::cmd("GETEX")
            .arg(keys::session(&self.server, session_id))
            .arg("EX")
            .arg(self.ttl_seconds())
            .query_async(&mut connection)
            .await?;
        Ok(json.map(|json| serde_json::from_str(&json)).transpose()?)
    }
}

#[async_trait::async_trait]
impl SessionStore for RedisSessions {
    async fn load(&self, session_id: &str) -> Result<Option<SessionState>, SessionStoreError> {
        match self.read(session_id).await {
            Ok(state) => Ok(state),
            Err(error) => {
                tracing::warn!(%error, "cannot read the session from Redis; treating it as unknown");
                Ok(None)
            }
        }
    }

    async fn store(&self, session_id: &str, state: &SessionState) -> Result<(), SessionStoreError> {
        let mut connection = self.store.get().await?;
        let () = redis::cmd("SET")
            .arg(keys::session(&self.server, session_id))
            .arg(serde_json::to_string(state)?)
            .arg("EX")
            .arg(self.ttl_seconds())
            .query_async(&mut connection)
            .await?;
        Ok(())
    }

    async fn delete(&self, session_id: &str) -> Result<(), SessionStoreError> {
        let mut connection = self.store.get().await?;
        let () = redis::pipe()
            .del(keys::session(&self.server, session_id))
            .ignore()
            .publish(keys::sessions_channel(&self.server), session_id)
            .ignore()
            .query_async(&mut connection)
            .await?;
        Ok(())
    }
}
