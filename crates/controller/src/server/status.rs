//! The last stage: the server's status and conditions, written only when
//! they change, with an Event for each condition that flips; and what of
//! the Deployment the status reports.

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::jiff::Timestamp;
use kube::Resource;
use mcp_operator_api::{MCPServer, MCPServerStatus};

use crate::context::Context;
use crate::error::Error;
use crate::runtime::conditions::{self, Desired};
use crate::runtime::{events, status};

/// What a server reconcile reads of its Deployment, digested. kube's
/// predicate filter passes only events that change it, so the controller
/// manager's progress updates (four or so per rollout) do not each cost a
/// reconcile. `present` is whether the watch's store still has the
/// Deployment: its deletion must pass although its content did not change.
pub fn deployment_digest(deployment: &Deployment, present: bool) -> u64 {
    use std::hash::{DefaultHasher, Hash, Hasher};
    let mut hasher = DefaultHasher::new();
    let meta = deployment.meta();
    (
        present,
        // What drift.rs compares (a spec edit bumps the generation).
        meta.generation,
        &meta.labels,
        &meta.annotations,
        meta.owner_references
            .iter()
            .flatten()
            .map(|o| &o.uid)
            .collect::<Vec<_>>(),
        // What the server's status reports.
        deployment_available(deployment),
        deployment.status.as_ref().and_then(|s| s.ready_replicas),
    )
        .hash(&mut hasher);
    hasher.finish()
}

/// Ok with a message when the Deployment reports Available, else why not.
pub fn deployment_available(deployment: &Deployment) -> Result<String, String> {
    let status = deployment.status.as_ref();
    let ready = status.and_then(|s| s.ready_replicas).unwrap_or(0);
    let wanted = deployment
        .spec
        .as_ref()
        .and_then(|s| s.replicas)
        .unwrap_or(1);
    let available = status
        .and_then(|s| s.conditions.as_ref())
        .and_then(|c| c.iter().find(|c| c.type_ == "Available"));
    match available {
        Some(c) if c.status == "True" => {
            Ok(format!("{ready} of {wanted} router replicas are ready."))
        }
        Some(c) => Err(format!(
            "{ready} of {wanted} router replicas are ready: {}",
            c.message
                .as_deref()
                .unwrap_or("the Deployment is not available.")
        )),
        None => Err(format!(
            "{ready} of {wanted} router replicas are ready; the Deployment has not reported yet."
        )),
    }
}

/// Writes status when it differs from what the server has.
pub async fn write_status(
    server: &MCPServer,
    ctx: &Context,
    desired: &[Desired],
    mut next: MCPServerStatus,
) -> Result<(), Error> {
    let current = server.status.clone().unwrap_or_default();
    let generation = server.meta().generation;
    next.observed_generation = generation;
    next.conditions = conditions::merge(&current.conditions, desired, generation, Timestamp::now());
    if next == current {
        return Ok(());
    }
    let body = serde_json::to_value(&next).map_err(|source| Error::Build {
        what: "status",
        source,
    })?;
    status::apply(ctx, server, body).await?;
    let object = server.object_ref(&());
    events::conditions_changed(
        &ctx.recorder,
        &object,
        &current.conditions,
        &next.conditions,
        "Reconcile",
    )
    .await;
    Ok(())
}
