//! The MCPServer reconciler: validate → assemble the catalog → publish it
//! to Redis → apply the router workload → write status. A finalizer removes
//! the catalog and publishes a tombstone when the server is deleted.

use std::collections::BTreeSet;
use std::sync::Arc;

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::jiff::Timestamp;
use kube::api::{Api, DeleteParams, Patch, PatchParams};
use kube::core::Selector;
use kube::runtime::controller::Action;
use kube::runtime::finalizer::{Event as Finalizer, finalizer};
use kube::runtime::reflector::{ObjectRef, Store};
use kube::{Resource, ResourceExt};
use mcp_operator_api::{MCPServer, MCPServerStatus};
use mcp_operator_catalog::{HeaderValue, Published, ResourceContent};

use crate::assemble::{Selection, assemble};
use crate::conditions::{self, CATALOG_PUBLISHED, DEPLOYMENT_AVAILABLE, Desired, READY};
use crate::context::{Context, FIELD_MANAGER, Object};
use crate::deferral;
use crate::drift;
use crate::error::Error;
use crate::member::Member;
use crate::membership::{MemberKey, selected, server_id};
use crate::publish::{self, Outcome};
use crate::shard::FencingToken;
use crate::workload::{self, Workload};
use crate::{status, telemetry};

/// Held by every MCPServer until its catalog is gone from Redis.
pub const FINALIZER: &str = "kubemcp.io/catalog";

/// At most this many excluded members are listed in status.
const MAX_EXCLUDED: usize = 100;

#[tracing::instrument(skip_all, fields(kind = "MCPServer", namespace = server.namespace(), name = %server.name_any()))]
pub async fn reconcile(server: Arc<MCPServer>, ctx: Arc<Context>) -> Result<Action, Error> {
    let namespace = server.namespace().ok_or(Error::Incomplete("namespace"))?;
    // Another replica's shard: not this replica's reconcile, nor counted.
    let token = match ctx.shards.ownership(&namespace).token() {
        Ok(token) => token,
        Err(wait) => return Ok(wait),
    };
    let timer = telemetry::ReconcileTimer::start("MCPServer");
    let result = reconcile_with_finalizer(server, &namespace, token, &ctx).await;
    timer.finish(result.as_ref().err().map(Error::metric_label));
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
        if let Err(Error::Fenced(shard)) = &result {
            ctx.shards
                .lose(*shard, "Redis refused a write with its fencing token");
        }
        result
    })
    .await
    .map_err(|e| Error::Finalizer(Box::new(e)))
}

async fn apply(server: &MCPServer, ctx: &Context, token: &FencingToken) -> Result<Action, Error> {
    if let Some(problem) = invalid(server) {
        let desired = [
            Desired::new(CATALOG_PUBLISHED, false, "InvalidSpec", &problem),
            Desired::new(READY, false, "InvalidSpec", &problem),
        ];
        write_status(server, ctx, &desired, MCPServerStatus::default()).await?;
        return Ok(Action::await_change());
    }

    let selection = Selection {
        tools: selected(server, &ctx.tools.state()),
        prompts: selected(server, &ctx.prompts.state()),
        resources: selected(server, &ctx.resources.state()),
    };
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
    let published = Published {
        version: assembly.catalog.version(),
        catalog: assembly.catalog,
    };
    let outcome = publish::publish(&ctx.redis, &published, token).await?;
    telemetry::catalog_published(outcome.as_str());
    if outcome == Outcome::Written {
        tracing::info!(version = %published.version, "published the catalog");
    }

    let owner = server
        .controller_owner_ref(&())
        .ok_or(Error::Incomplete("uid"))?;
    let identity = ctx.identities.secret(ctx, server, &owner).await?;
    let workload = workload::build(server, &owner, &ctx.router, &identity, &secrets(&published))
        .map_err(|source| Error::Build {
            what: "workload",
            source,
        })?;
    let deployment = apply_workload(server, ctx, workload).await?;
    // After the Deployment records the password's hash, so that a failure
    // here is retried with the same password.
    ctx.identities.user(ctx, server, &identity).await?;

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
    let available = deployment_available(&deployment);
    let ready_replicas = deployment
        .status
        .as_ref()
        .and_then(|s| s.ready_replicas)
        .unwrap_or(0);
    let desired = [
        Desired::new(CATALOG_PUBLISHED, true, "Published", summary),
        match &available {
            Ok(message) => Desired::new(DEPLOYMENT_AVAILABLE, true, "Available", message),
            Err(message) => Desired::new(DEPLOYMENT_AVAILABLE, false, "Unavailable", message),
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
    let count = |n: usize| Some(i32::try_from(n).unwrap_or(i32::MAX));
    let mut excluded = assembly.excluded;
    excluded.truncate(MAX_EXCLUDED);
    let status = MCPServerStatus {
        ready_replicas: Some(ready_replicas),
        url: Some(workload::url(server)),
        tool_count: count(tools),
        prompt_count: count(prompts),
        resource_count: count(resources),
        catalog_version: Some(published.version.0.clone()),
        excluded,
        ..MCPServerStatus::default()
    };
    write_status(server, ctx, &desired, status).await?;
    Ok(Action::await_change())
}

async fn cleanup(server: &MCPServer, ctx: &Context, token: &FencingToken) -> Result<Action, Error> {
    let id = server_id(server);
    let removed = publish::remove(&ctx.redis, &id, token).await?;
    if removed {
        telemetry::catalog_published("removed");
        tracing::info!("removed the catalog and published a tombstone");
    }
    ctx.identities.remove(ctx, &id).await?;
    ctx.membership().forget(&id);
    ctx.deferrals.clear(&id);
    Ok(Action::await_change())
}

/// Spec problems the schema cannot catch, as one sentence.
fn invalid(server: &MCPServer) -> Option<String> {
    let name = server.name_any();
    let dns_label = name.len() <= 63
        && name.starts_with(|c: char| c.is_ascii_lowercase())
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && !name.ends_with('-');
    if !dns_label {
        return Some(format!(
            "The name '{name}' cannot name its Service: use at most 63 lowercase letters, digits or '-', starting with a letter."
        ));
    }
    let selectors = [
        ("toolSelector", &server.spec.tool_selector),
        ("promptSelector", &server.spec.prompt_selector),
        ("resourceSelector", &server.spec.resource_selector),
    ];
    selectors.into_iter().find_map(|(field, selector)| {
        let error = Selector::try_from(selector.clone()?).err()?;
        Some(format!(
            "spec.{field} is not a valid label selector: {error}."
        ))
    })
}

fn member_keys(selection: &Selection) -> BTreeSet<MemberKey> {
    fn keys<M: Member>(members: &[Arc<M>]) -> impl Iterator<Item = MemberKey> + '_ {
        members.iter().map(|m| MemberKey::of(&**m))
    }
    keys(&selection.tools)
        .chain(keys(&selection.prompts))
        .chain(keys(&selection.resources))
        .collect()
}

/// The Secrets named by backend headers in the catalog.
fn secrets(published: &Published) -> BTreeSet<String> {
    let catalog = &published.catalog;
    let endpoints =
        catalog
            .tools
            .iter()
            .map(|t| &t.endpoint)
            .chain(catalog.resources.iter().filter_map(|r| match &r.content {
                ResourceContent::Backend(endpoint) => Some(endpoint),
                _ => None,
            }));
    endpoints
        .flat_map(|e| &e.headers)
        .filter_map(|h| match &h.value {
            HeaderValue::Secret { name, .. } => Some(name.clone()),
            HeaderValue::Value(_) => None,
        })
        .collect()
}

/// Applies every object of the workload and removes the optional ones the
/// spec no longer asks for; returns the Deployment as the apiserver has it.
async fn apply_workload(
    server: &MCPServer,
    ctx: &Context,
    workload: Workload,
) -> Result<Arc<Deployment>, Error> {
    let namespace = server.namespace().unwrap_or_default();
    let name = server.name_any();
    // The account first: the Deployment's pods cannot be created without it.
    ensure(
        ctx,
        &namespace,
        &workload::service_account_name(server),
        workload.service_account,
        &ctx.accounts,
    )
    .await?;
    let deployment = ensure(
        ctx,
        &namespace,
        &name,
        workload.deployment,
        &ctx.deployments,
    )
    .await?;
    ensure(ctx, &namespace, &name, workload.service, &ctx.services).await?;
    apply_or_remove(ctx, &namespace, &name, workload.ingress, &ctx.ingresses).await?;
    apply_or_remove(
        ctx,
        &namespace,
        &name,
        workload.pod_disruption_budget,
        &ctx.budgets,
    )
    .await?;
    Ok(deployment)
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
/// none and `existing` (the watch's store) has it.
async fn apply_or_remove<K: Object + Send + Sync + 'static>(
    ctx: &Context,
    namespace: &str,
    name: &str,
    object: Option<K>,
    existing: &Store<K>,
) -> Result<(), Error> {
    match object {
        Some(object) => ensure(ctx, namespace, name, object, existing)
            .await
            .map(drop),
        // If the store has not seen one yet, its creation event will
        // trigger another reconcile, which removes it.
        None if existing
            .get(&ObjectRef::new(name).within(namespace))
            .is_none() =>
        {
            Ok(())
        }
        None => {
            let api: Api<K> = Api::namespaced(ctx.client.clone(), namespace);
            match api.delete(name, &DeleteParams::default()).await {
                Ok(_) => Ok(()),
                Err(kube::Error::Api(status)) if status.code == 404 => Ok(()),
                Err(error) => Err(error.into()),
            }
        }
    }
}

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
fn deployment_available(deployment: &Deployment) -> Result<String, String> {
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
async fn write_status(
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
    status::apply(ctx, server, body).await
}
