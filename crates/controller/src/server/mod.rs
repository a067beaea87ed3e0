//! The MCPServer reconciler, in stages, each a module: [`validate`] the
//! spec → [`select`] the members → build the catalog ([`assemble`]) and
//! publish it to Redis → build the router [`workload`] (pure) → [`apply`]
//! it → write [`status`]. A finalizer removes the catalog and publishes a
//! tombstone when the server is deleted.

pub mod apply;
pub mod assemble;
pub mod deferral;
pub mod drift;
pub mod image;
pub mod membership;
pub mod ownership;
pub mod select;
pub mod status;
pub mod validate;
pub mod workload;

use std::sync::Arc;

use kube::api::Api;
use kube::runtime::controller::Action;
use kube::runtime::finalizer::{Event as Finalizer, finalizer};
use kube::{Resource, ResourceExt};
use mcp_operator_api::{MCPServer, MCPServerStatus};
use mcp_operator_catalog::Published;

use crate::context::Context;
use crate::error::{AtStage, Error, Stage};
use crate::publish::{self, Outcome};
use crate::runtime::conditions::{CATALOG_PUBLISHED, DEPLOYMENT_AVAILABLE, Desired, READY};
use crate::runtime::{events, telemetry};
use crate::server::membership::server_id;
use crate::sharding::shard::FencingToken;
use apply::{Applied, apply_workload};
use assemble::{assemble, json_size, secrets};
use select::{member_keys, select};
use status::{deployment_available, write_status};
use validate::validate;

/// Held by every MCPServer until its catalog is gone from Redis.
pub const FINALIZER: &str = "kubemcp.io/catalog";

/// At most this many excluded members are listed in status.
const MAX_EXCLUDED: usize = 100;

/// The reason of a server whose workload name is taken by another object.
const NAME_CONFLICT: &str = "NameConflict";

/// How often a server with a [`NAME_CONFLICT`] looks whether the object in
/// its way is gone.
const CONFLICT_RECHECK: std::time::Duration = std::time::Duration::from_secs(10);

#[tracing::instrument(skip_all, fields(kind = "MCPServer", namespace = server.namespace(), name = %server.name_any()))]
pub async fn reconcile(server: Arc<MCPServer>, ctx: Arc<Context>) -> Result<Action, Error> {
    let namespace = server.namespace().ok_or(Error::Incomplete("namespace"))?;
    // Outside --namespace-selector nothing is written, but a server the
    // operator took on before its namespace left the selection still has
    // its catalog removed and its finalizer released when it is deleted:
    // else its deletion (and its namespace's) would wait for ever.
    let releasing = server.meta().deletion_timestamp.is_some()
        && server.finalizers().iter().any(|f| f == FINALIZER);
    if !ctx.scope.includes(&namespace) && !releasing {
        return Ok(Action::await_change());
    }
    // Another replica's shard: not this replica's reconcile, nor counted.
    let token = match ctx.shards.ownership(&namespace).token() {
        Ok(token) => token,
        Err(wait) => return Ok(wait),
    };
    let mut timer = telemetry::ReconcileTimer::start("MCPServer");
    let result = reconcile_with_finalizer(server.clone(), &namespace, token, &ctx).await;
    if let Err(error) = &result {
        timer.failed(error);
        events::reconcile_failed(&ctx.recorder, &server.object_ref(&()), error).await;
    }
    result
}

async fn reconcile_with_finalizer(
    server: Arc<MCPServer>,
    namespace: &str,
    token: FencingToken,
    ctx: &Context,
) -> Result<Action, Error> {
    let api: Api<MCPServer> = Api::namespaced(ctx.client.clone(), namespace);
    let token = &token;
    finalizer(&api, FINALIZER, server, |event| async move {
        let result = match event {
            Finalizer::Apply(server) => apply(&server, ctx, token).await,
            Finalizer::Cleanup(server) => cleanup(&server, ctx, token).await,
        };
        if let Some(shard) = result.as_ref().err().and_then(Error::fenced_shard) {
            ctx.shards
                .lose(shard, "Redis refused a write with its fencing token");
        }
        result
    })
    .await
    .map_err(|e| Error::Finalizer(Box::new(e)))
}

async fn apply(server: &MCPServer, ctx: &Context, token: &FencingToken) -> Result<Action, Error> {
    let image = match validate(server, &ctx.router.images) {
        Ok(image) => image,
        Err(problem) => {
            let desired = [
                Desired::new(CATALOG_PUBLISHED, false, problem.reason, &problem.message),
                Desired::new(READY, false, problem.reason, &problem.message),
            ];
            write_status(server, ctx, &desired, MCPServerStatus::default())
                .await
                .at(Stage::Status)?;
            return Ok(Action::await_change());
        }
    };

    let selection = select(server, ctx);
    let id = server_id(server);
    ctx.membership().record(&id, member_keys(&selection));
    let unchecked = selection.unchecked();
    if unchecked > 0 && ctx.deferrals.defer(&id, std::time::Instant::now()) {
        // Their checks trigger this server again; the requeue is the bound.
        tracing::debug!(
            unchecked,
            "members not checked since their last change; publishing after them"
        );
        return Ok(Action::requeue(deferral::MAX));
    }
    ctx.deferrals.clear(&id);
    let assembly = assemble(server, &selection);
    let published = Published::new(assembly.catalog);
    let size = json_size(&published);
    if size > ctx.router.max_catalog_bytes {
        // Routers keep what they serve; the server says why nothing newer.
        let message = format!(
            "The catalog is {size} bytes as JSON, over the operator's --max-catalog-bytes of {}; routers keep serving the last catalog published. Select fewer or smaller members.",
            ctx.router.max_catalog_bytes
        );
        let desired = [
            Desired::new(CATALOG_PUBLISHED, false, "CatalogTooLarge", &message),
            Desired::new(READY, false, "CatalogTooLarge", &message),
        ];
        let mut excluded = assembly.excluded;
        excluded.truncate(MAX_EXCLUDED);
        let status = MCPServerStatus {
            excluded,
            ..server.status.clone().unwrap_or_default()
        };
        write_status(server, ctx, &desired, status)
            .await
            .at(Stage::Status)?;
        return Ok(Action::await_change());
    }
    let receipt = publish::publish(&ctx.redis, &published, &ctx.signing, token)
        .await
        .at(Stage::Publish)?;
    ctx.expected.record(&id, &receipt.stored);
    telemetry::catalog_published(receipt.outcome.as_str());
    if receipt.outcome == Outcome::Written {
        tracing::info!(version = %published.version, "published the catalog");
    }

    let owner = server
        .controller_owner_ref(&())
        .ok_or(Error::Incomplete("uid"))?;
    let identity = ctx
        .identities
        .secret(ctx, server, &owner)
        .await
        .at(Stage::Identity)?;
    let workload = workload::build(
        server,
        &owner,
        &ctx.router,
        &image,
        &identity,
        &secrets(&published),
    )
    .map_err(|source| Error::Build {
        what: "workload",
        source,
    })
    .at(Stage::Build)?;
    let applied = apply_workload(server, ctx, &owner.uid, workload)
        .await
        .at(Stage::Apply)?;
    if matches!(applied, Applied::Workload(_)) {
        // After the Deployment records the password's hash, so that a
        // failure here is retried with the same password.
        ctx.identities
            .user(ctx, server, &identity)
            .await
            .at(Stage::Identity)?;
    }

    let catalog = &published.catalog;
    let (tools, prompts, resources) = (
        catalog.tools.len(),
        catalog.prompts.len(),
        catalog.resources.len(),
    );
    let mut summary = format!(
        "Catalog {} serves {tools} tools, {prompts} prompts and {resources} resources.",
        published.version
    );
    if !assembly.excluded.is_empty() {
        summary = format!(
            "{} {} selected members are not served (see status.excluded).",
            summary.trim_end_matches('.').to_owned() + ";",
            assembly.excluded.len()
        );
    }
    let published_condition = Desired::new(CATALOG_PUBLISHED, true, "Published", summary);
    let (desired, ready_replicas, next) = match &applied {
        Applied::Workload(deployment) => {
            let available = deployment_available(deployment);
            let ready_replicas = deployment
                .status
                .as_ref()
                .and_then(|s| s.ready_replicas)
                .unwrap_or(0);
            let desired = [
                published_condition,
                match &available {
                    Ok(message) => Desired::new(DEPLOYMENT_AVAILABLE, true, "Available", message),
                    Err(message) => {
                        Desired::new(DEPLOYMENT_AVAILABLE, false, "Unavailable", message)
                    }
                },
                match &available {
                    Ok(_) => Desired::new(
                        READY,
                        true,
                        "Ready",
                        "The catalog is published and routers are available.",
                    ),
                    Err(message) => Desired::new(READY, false, "DeploymentUnavailable", message),
                },
                ctx.identities.condition(),
            ];
            (desired, Some(ready_replicas), Action::await_change())
        }
        Applied::Conflict(conflict) => {
            let message = conflict.message();
            tracing::info!(kind = %conflict.kind, object = %conflict.name, "an object of the server's name is not its own; nothing applied");
            let desired = [
                published_condition,
                Desired::new(DEPLOYMENT_AVAILABLE, false, NAME_CONFLICT, &message),
                Desired::new(READY, false, NAME_CONFLICT, &message),
                ctx.identities.condition(),
            ];
            // Most foreign objects are in no watch (they lack the
            // operator's label), so their removal triggers nothing: look
            // again now and then.
            (desired, None, Action::requeue(CONFLICT_RECHECK))
        }
    };
    let count = |n: usize| Some(i32::try_from(n).unwrap_or(i32::MAX));
    let mut excluded = assembly.excluded;
    excluded.truncate(MAX_EXCLUDED);
    let status = MCPServerStatus {
        ready_replicas,
        // Not the foreign Service's address.
        url: matches!(applied, Applied::Workload(_)).then(|| workload::url(server)),
        tool_count: count(tools),
        prompt_count: count(prompts),
        resource_count: count(resources),
        catalog_version: Some(published.version.0.clone()),
        excluded,
        ..MCPServerStatus::default()
    };
    write_status(server, ctx, &desired, status)
        .await
        .at(Stage::Status)?;
    Ok(next)
}

async fn cleanup(server: &MCPServer, ctx: &Context, token: &FencingToken) -> Result<Action, Error> {
    let id = server_id(server);
    let removed = publish::remove(&ctx.redis, &id, token)
        .await
        .at(Stage::Cleanup)?;
    if removed {
        telemetry::catalog_published("removed");
        tracing::info!("removed the catalog and published a tombstone");
    }
    ctx.identities.remove(ctx, &id).await.at(Stage::Cleanup)?;
    ctx.membership().forget(&id);
    ctx.deferrals.clear(&id);
    ctx.expected.forget(&id);
    Ok(Action::await_change())
}
