//! A server's Redis identity, end to end: the Secret its routers read
//! ([`credentials`]), the password's hash on the router pod template (so
//! the routers roll when it changes), and, in the isolated mode, the ACL
//! user on every node ([`acl`]).
//!
//! The operator never reads the Secret back. What it knows of the password
//! is its SHA-256 (Redis ACLs accept `#<sha256>`), kept in this process
//! and on the Deployment's pod template ([`PASSWORD_ANNOTATION`]), which it
//! watches. Every reconcile, and every check interval, it tries to create
//! the Secret with a new password: a 409 means the Secret is still there;
//! a success means it was gone (someone deleted it to rotate the password,
//! or it is the first time), and the new hash goes to the pod template and
//! the ACL user, so the routers roll onto the new password.

pub mod acl;
pub mod credentials;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference;
use kube::runtime::reflector::ObjectRef;
use kube::{Resource, ResourceExt};
use mcp_operator_api::MCPServer;
use mcp_operator_catalog::ServerId;
use mcp_operator_catalog::acl as user;
use mcp_operator_store::{Password, RedisArgs};
use tokio::sync::mpsc::UnboundedSender;
use tokio_stream::wrappers::UnboundedReceiverStream;

use crate::args::RouterCredentials;
use crate::context::Context;
use crate::publish::audit;
use crate::runtime::conditions::{Desired, REDIS_ISOLATED};
use acl::Acl;

use crate::error::Error;
use crate::server::membership::server_id;

/// The pod template annotation with the SHA-256 of the routers' password.
pub const PASSWORD_ANNOTATION: &str = "kubemcp.io/redis-password-sha256";

/// The password hash a router Deployment's pod template records.
pub fn password_sha256(deployment: &Deployment) -> Option<String> {
    deployment
        .spec
        .as_ref()?
        .template
        .metadata
        .as_ref()?
        .annotations
        .as_ref()?
        .get(PASSWORD_ANNOTATION)
        .cloned()
}

/// What a router Deployment needs of its credentials.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RouterIdentity {
    /// The Secret the routers read MCP_REDIS_USERNAME/PASSWORD from.
    pub secret: String,
    /// The password's SHA-256, for [`PASSWORD_ANNOTATION`].
    pub password_sha256: String,
}

/// How this operator gives routers their credentials.
pub enum Mode {
    /// A user per server, managed on every node (boxed: it holds the
    /// Redis flags).
    Isolated(Box<Acl>),
    /// One user for all, copied into every server's Secret.
    Shared {
        username: String,
        password: Password,
    },
}

/// The identities of the servers this replica reconciles.
pub struct Identities {
    mode: Mode,
    /// Password hashes this process set or saw, by server: newer than the
    /// watch's copy of a Deployment right after a rotation.
    known: Mutex<HashMap<ServerId, String>>,
}

impl Identities {
    /// From the operator's flags. Shared mode without router credentials
    /// of its own hands routers the operator's.
    pub fn new(
        mode: RouterCredentials,
        redis: &RedisArgs,
        shared_username: Option<String>,
        shared_password: Option<Password>,
    ) -> Self {
        let mode = match mode {
            RouterCredentials::Isolated => Mode::Isolated(Box::new(Acl::new(redis.clone()))),
            RouterCredentials::Shared => Mode::Shared {
                username: shared_username
                    .or_else(|| redis.redis_username.clone())
                    .unwrap_or_else(|| "default".to_owned()),
                password: shared_password
                    .or_else(|| redis.redis_password.clone())
                    .unwrap_or_else(|| Password::new("")),
            },
        };
        Self {
            mode,
            known: Mutex::default(),
        }
    }

    /// The condition every server shows about its routers' isolation.
    pub fn condition(&self) -> Desired {
        match &self.mode {
            Mode::Isolated(_) => Desired::new(
                REDIS_ISOLATED,
                true,
                "OwnRedisUser",
                "Routers authenticate to Redis as a user that reaches only this server's keys.",
            ),
            Mode::Shared { .. } => Desired::new(
                REDIS_ISOLATED,
                false,
                "SharedRedisCredentials",
                "Routers share one Redis credential (--router-redis-credentials=shared), which reaches every server's catalog and sessions.",
            ),
        }
    }

    fn known(&self) -> std::sync::MutexGuard<'_, HashMap<ServerId, String>> {
        self.known.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The hash this process knows, else the one on the Deployment.
    fn recorded(&self, ctx: &Context, server: &MCPServer) -> Option<String> {
        if let Some(hash) = self.known().get(&server_id(server)) {
            return Some(hash.clone());
        }
        let deployment = ctx.deployments.get(
            &ObjectRef::new(&server.name_any()).within(&server.namespace().unwrap_or_default()),
        )?;
        password_sha256(&deployment)
    }

    /// The credentials to offer when creating the Secret.
    fn candidate(&self, server: &ServerId) -> (String, String) {
        match &self.mode {
            Mode::Isolated(_) => (user::username(server), credentials::generate()),
            Mode::Shared { username, password } => (username.clone(), password.expose().to_owned()),
        }
    }

    /// Makes sure the server's Secret exists and says which password it
    /// holds; the first step of the identity at every reconcile.
    pub async fn secret(
        &self,
        ctx: &Context,
        server: &MCPServer,
        owner: &OwnerReference,
    ) -> Result<RouterIdentity, Error> {
        let id = server_id(server);
        let (username, password) = self.candidate(&id);
        let offered = user::password_sha256(&password);
        let created = credentials::create(&ctx.client, server, owner, &username, &password).await?;
        let hash = match self.recorded(ctx, server) {
            Some(recorded) if !created && self.holds(&recorded, &offered) => recorded,
            _ if created => {
                metrics::counter!("mcp_operator_router_secrets_created_total").increment(1);
                tracing::info!("created the routers' Redis Secret with a new password");
                offered
            }
            // The Secret exists, but what it holds is unknown (no
            // Deployment records it) or outdated (the shared credential
            // changed): overwrite it.
            _ => {
                credentials::replace(&ctx.client, server, owner, &username, &password).await?;
                tracing::info!("replaced the routers' Redis Secret");
                offered
            }
        };
        self.known().insert(id, hash.clone());
        Ok(RouterIdentity {
            secret: user::secret_name(&server.name_any()),
            password_sha256: hash,
        })
    }

    /// Whether a Secret recorded with `recorded` is still right when
    /// `offered` would be written now: a per-server password stays until
    /// rotated, the shared one must be the current one.
    fn holds(&self, recorded: &str, offered: &str) -> bool {
        match self.mode {
            Mode::Isolated(_) => true,
            Mode::Shared { .. } => recorded == offered,
        }
    }

    /// Sets the server's ACL user (isolated mode), once its Deployment
    /// carries the hash.
    pub async fn user(
        &self,
        ctx: &Context,
        server: &MCPServer,
        identity: &RouterIdentity,
    ) -> Result<(), Error> {
        if let Mode::Isolated(acl) = &self.mode {
            acl.apply(&ctx.redis, &server_id(server), &identity.password_sha256)
                .await?;
        }
        Ok(())
    }

    /// Removes the deleted server's user (its Secret goes with the server,
    /// by owner reference).
    pub async fn remove(&self, ctx: &Context, server: &ServerId) -> Result<(), Error> {
        self.known().remove(server);
        if let Mode::Isolated(acl) = &self.mode {
            acl.remove(&ctx.redis, server).await?;
            tracing::info!("removed the routers' Redis user");
        }
        Ok(())
    }
}

/// The periodic check of every held server's identity, every `interval`:
/// a Secret that was deleted is created anew with a new password and its
/// server reconciled (the routers roll onto it); every user is verified on
/// every node and set again where it is missing or differs. A zero
/// interval never checks.
pub fn checked(
    ctx: &Arc<Context>,
    interval: Duration,
) -> UnboundedReceiverStream<ObjectRef<MCPServer>> {
    audit::every(ctx, interval, |ctx, tx| Box::pin(check(ctx, tx)))
}

/// How often every node is asked which users it has: a node restarted
/// without persistence (a failed primary back as a replica) has none, and
/// routers that connect to it fail until their user is set again.
const NODE_CHECK: Duration = Duration::from_secs(1);

/// The quick check, every [`NODE_CHECK`] (never when `interval` is zero):
/// one `ACL USERS` per node, and the full verification when a node lacks a
/// held server's user.
pub fn nodes_checked(
    ctx: &Arc<Context>,
    interval: Duration,
) -> impl futures::Stream<Item = ObjectRef<MCPServer>> + use<> {
    let interval = if interval.is_zero() {
        interval
    } else {
        NODE_CHECK.min(interval)
    };
    audit::every(ctx, interval, |ctx, _| Box::pin(check_nodes(ctx)))
}

async fn check_nodes(ctx: &Context) {
    let Mode::Isolated(acl) = &ctx.identities.mode else {
        return;
    };
    let held: Vec<(ServerId, String)> = audit::held(ctx)
        .filter_map(|server| Some((server_id(&server), ctx.identities.recorded(ctx, &server)?)))
        .collect();
    match acl.lacking(&ctx.redis, &held).await {
        Ok(false) => {}
        Ok(true) => {
            if let Err(error) = acl.verify(&ctx.redis, &held).await {
                tracing::warn!(%error, "cannot verify the router users in Redis");
            }
        }
        Err(error) => tracing::debug!(%error, "cannot list the users of the Redis nodes"),
    }
}

#[tracing::instrument(skip_all)]
async fn check(ctx: &Context, tx: &UnboundedSender<ObjectRef<MCPServer>>) {
    let identities = &ctx.identities;
    let held: Vec<(Arc<MCPServer>, String)> = audit::held(ctx)
        .filter_map(|server| {
            let hash = identities.recorded(ctx, &server)?;
            Some((server, hash))
        })
        .collect();
    let mut verified = Vec::with_capacity(held.len());
    for (server, hash) in held {
        let Some(owner) = server.controller_owner_ref(&()) else {
            continue;
        };
        let id = server_id(&server);
        let (username, password) = identities.candidate(&id);
        match credentials::create(&ctx.client, &server, &owner, &username, &password).await {
            Ok(false) => verified.push((id, hash)),
            Ok(true) => {
                tracing::info!(server = %id, "the routers' Redis Secret was deleted; rotating the password");
                metrics::counter!("mcp_operator_router_secrets_created_total").increment(1);
                identities
                    .known()
                    .insert(id, user::password_sha256(&password));
                if tx.send(ObjectRef::from_obj(&*server)).is_err() {
                    return;
                }
            }
            Err(error) => {
                tracing::debug!(server = %id, %error, "cannot check the routers' Redis Secret");
                verified.push((id, hash));
            }
        }
    }
    if let Mode::Isolated(acl) = &identities.mode
        && let Err(error) = acl.verify(&ctx.redis, &verified).await
    {
        tracing::warn!(%error, "cannot verify the router users in Redis");
    }
}
