//! The fourth stage: the router workload into the cluster. Nothing is
//! applied over an object the server does not control (no adoption), an
//! object already as it would be applied is left alone (drift.rs), and an
//! optional object the spec stopped asking for is deleted.

use std::sync::Arc;

use futures::FutureExt;
use k8s_openapi::api::apps::v1::Deployment;
use kube::ResourceExt;
use kube::api::{Api, DeleteParams, Patch, PatchParams, Preconditions};
use kube::runtime::reflector::{ObjectRef, Store};
use mcp_operator_api::MCPServer;

use crate::context::{Context, FIELD_MANAGER, Object};
use crate::error::Error;
use crate::runtime::telemetry;
use crate::server::drift;
use crate::server::ownership::{self, Conflict};
use crate::server::workload::{self, Workload};

/// What applying a server's workload came to.
pub enum Applied {
    /// Every object is in place: the Deployment as the apiserver has it.
    Workload(Arc<Deployment>),
    /// An object of one of the server's names is someone else's, so
    /// nothing was applied: the Deployment would run as a foreign
    /// ServiceAccount, the Service or PDB would select others' pods.
    Conflict(Conflict),
}

/// Applies every object of the workload and removes the optional ones the
/// spec no longer asks for, unless an object of those names is not
/// controlled by the server (uid `owner`).
pub async fn apply_workload(
    server: &MCPServer,
    ctx: &Context,
    owner: &str,
    workload: Workload,
) -> Result<Applied, Error> {
    let namespace = server.namespace().unwrap_or_default();
    let name = server.name_any();
    let account = workload::service_account_name(server);
    let (ns, name) = (namespace.as_str(), name.as_str());
    let mut checks = vec![
        ownership::check(ctx, ns, &account, &ctx.accounts, owner).boxed(),
        ownership::check(ctx, ns, name, &ctx.deployments, owner).boxed(),
        ownership::check(ctx, ns, name, &ctx.services, owner).boxed(),
    ];
    // An optional object the server does not want may be anyone's.
    if workload.ingress.is_some() {
        checks.push(ownership::check(ctx, ns, name, &ctx.ingresses, owner).boxed());
    }
    if workload.pod_disruption_budget.is_some() {
        checks.push(ownership::check(ctx, ns, name, &ctx.budgets, owner).boxed());
    }
    let conflicts = futures::future::try_join_all(checks).await?;
    if let Some(conflict) = conflicts.into_iter().flatten().next() {
        return Ok(Applied::Conflict(conflict));
    }

    // The account first: the Deployment's pods cannot be created without it.
    ensure(ctx, ns, &account, workload.service_account, &ctx.accounts).await?;
    let deployment = ensure(ctx, ns, name, workload.deployment, &ctx.deployments).await?;
    ensure(ctx, ns, name, workload.service, &ctx.services).await?;
    apply_or_remove(ctx, ns, name, owner, workload.ingress, &ctx.ingresses).await?;
    apply_or_remove(
        ctx,
        ns,
        name,
        owner,
        workload.pod_disruption_budget,
        &ctx.budgets,
    )
    .await?;
    Ok(Applied::Workload(deployment))
}

/// Server-side applies `desired` unless `existing` (the watch's store)
/// shows it already in place (drift.rs); returns the object as the
/// apiserver has it.
async fn ensure<K: Object + Send + Sync + 'static>(
    ctx: &Context,
    namespace: &str,
    name: &str,
    mut desired: K,
    existing: &Store<K>,
) -> Result<Arc<K>, Error> {
    drift::stamp(&mut desired).map_err(|source| Error::Build {
        what: "workload",
        source,
    })?;
    let kind = K::kind(&()).into_owned();
    if let Some(live) = existing.get(&ObjectRef::new(name).within(namespace))
        && drift::in_place(&*live, &desired)
    {
        telemetry::workload_applied(kind, "unchanged");
        return Ok(live);
    }
    let api: Api<K> = Api::namespaced(ctx.client.clone(), namespace);
    let applied = api
        .patch(
            name,
            &PatchParams::apply(FIELD_MANAGER).force(),
            &Patch::Apply(&desired),
        )
        .await?;
    telemetry::workload_applied(kind, "applied");
    Ok(Arc::new(applied))
}

/// Applies `object`, or deletes the one of that name when there should be
/// none and `existing` (the watch's store) has it controlled by the server
/// (uid `owner`).
async fn apply_or_remove<K: Object + Send + Sync + 'static>(
    ctx: &Context,
    namespace: &str,
    name: &str,
    owner: &str,
    object: Option<K>,
    existing: &Store<K>,
) -> Result<(), Error> {
    if let Some(object) = object {
        return ensure(ctx, namespace, name, object, existing)
            .await
            .map(drop);
    }
    // If the store has not seen one yet, its creation event will trigger
    // another reconcile, which removes it.
    let Some(live) = existing.get(&ObjectRef::new(name).within(namespace)) else {
        return Ok(());
    };
    if !ownership::controlled_by(live.meta(), owner) {
        return Ok(());
    }
    let api: Api<K> = Api::namespaced(ctx.client.clone(), namespace);
    // The uid precondition: never the object of that name someone created
    // after the store's copy.
    let params = DeleteParams {
        preconditions: Some(Preconditions {
            uid: live.meta().uid.clone(),
            resource_version: None,
        }),
        ..DeleteParams::default()
    };
    match api.delete(name, &params).await {
        Ok(_) => Ok(()),
        Err(kube::Error::Api(status)) if matches!(status.code, 404 | 409) => Ok(()),
        Err(error) => Err(error.into()),
    }
}
