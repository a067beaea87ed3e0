//! The MCPServer reconciler: validate → assemble the catalog → publish it
//! to Redis → apply the router workload → write status. A finalizer removes
//! the catalog and publishes a tombstone when the server is deleted.

pub mod assemble;
pub mod deferral;
pub mod drift;
pub mod image;
pub mod membership;
pub mod ownership;
pub mod workload;

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use futures::FutureExt;
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::jiff::Timestamp;
use kube::api::{Api, DeleteParams, Patch, PatchParams, Preconditions};
use kube::core::Selector;
use kube::runtime::controller::Action;
use kube::runtime::finalizer::{Event as Finalizer, finalizer};
use kube::runtime::reflector::{ObjectRef, Store};
use kube::{Resource, ResourceExt};
use mcp_operator_api::{MCPServer, MCPServerStatus};
use mcp_operator_catalog::{HeaderValue, Published, ResourceContent};

use crate::context::{Context, FIELD_MANAGER, Object};
use crate::error::Error;
use crate::member::Member;
use crate::member::validate::Problem;
use crate::publish::{self, Outcome};
use crate::runtime::conditions::{self, CATALOG_PUBLISHED, DEPLOYMENT_AVAILABLE, Desired, READY};
use crate::runtime::{status, telemetry};
use crate::server::assemble::{Selection, assemble};
use crate::server::membership::{MemberKey, selected, server_id};
use crate::sharding::shard::FencingToken;
use ownership::Conflict;
use workload::Workload;

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
    let image = invalid(server)
        .map(|message| Problem::new("InvalidSpec", message))
        .map_or_else(
            || ctx.router.images.image(server.spec.image.as_deref()),
            Err,
        );
    let image = match image {
        Ok(image) => image,
        Err(problem) => {
            let desired = [
                Desired::new(CATALOG_PUBLISHED, false, problem.reason, &problem.message),
                Desired::new(READY, false, problem.reason, &problem.message),
            ];
            write_status(server, ctx, &desired, MCPServerStatus::default()).await?;
            return Ok(Action::await_change());
        }
    };

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
        write_status(server, ctx, &desired, status).await?;
        return Ok(Action::await_change());
    }
    let receipt = publish::publish(&ctx.redis, &published, &ctx.signing, token).await?;
    ctx.expected.record(&id, &receipt.stored);
    telemetry::catalog_published(receipt.outcome.as_str());
    if receipt.outcome == Outcome::Written {
        tracing::info!(version = %published.version, "published the catalog");
    }

    let owner = server
        .controller_owner_ref(&())
        .ok_or(Error::Incomplete("uid"))?;
    let identity = ctx.identities.secret(ctx, server, &owner).await?;
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
    })?;
    let applied = apply_workload(server, ctx, &owner.uid, workload).await?;
    if matches!(applied, Applied::Workload(_)) {
        // After the Deployment records the password's hash, so that a
        // failure here is retried with the same password.
        ctx.identities.user(ctx, server, &identity).await?;
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
    write_status(server, ctx, &desired, status).await?;
    Ok(next)
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
    ctx.expected.forget(&id);
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

/// How many bytes `value` takes as JSON, without building the JSON.
fn json_size<T: serde::Serialize>(value: &T) -> usize {
    struct Count(usize);
    impl std::io::Write for Count {
        fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
            self.0 += bytes.len();
            Ok(bytes.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }
    let mut count = Count(0);
    match serde_json::to_writer(&mut count, value) {
        Ok(()) => count.0,
        Err(_) => usize::MAX,
    }
}

/// The Secrets read by backend headers in the catalog, with the keys read.
fn secrets(published: &Published) -> BTreeMap<String, BTreeSet<String>> {
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
    let mut secrets: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for header in endpoints.flat_map(|e| &e.headers) {
        if let HeaderValue::Secret { name, key } = &header.value {
            secrets.entry(name.clone()).or_default().insert(key.clone());
        }
    }
    secrets
}

/// What applying a server's workload came to.
enum Applied {
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
async fn apply_workload(
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
