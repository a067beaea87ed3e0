//! The operator: four kube-runtime controllers over shared watches.
//!
//! - [`member`]: MCPTool, MCPPrompt, MCPResource, one reconciler for all
//!   three ([`check`]): validate the spec, resolve the backend, write
//!   conditions.
//! - [`server`]: MCPServer. Assemble the catalog from the Ready members its
//!   selectors pick, publish it, apply the router workload, write status.
//!   A member event reaches the servers that select it now or did before
//!   (`server::membership`).
//! - [`publish`]: catalogs to Redis under the shard's fencing token, their
//!   signing key, and the audit that puts back what Redis lost.
//! - [`identity`]: each server's Redis user and the Secret its routers read.
//! - [`sharding`]: namespaces hash to shards, one Lease and holder each.
//! - [`runtime`]: the client, watches, batching, backoff, status writes,
//!   metrics and probes every controller runs on.
//!
//! Reconcilers read in-memory stores, never LIST; transient errors retry
//! with per-object backoff; invalid specs wait for a change.

mod args;
mod context;
mod error;
mod identity;
mod member;
mod publish;
mod runtime;
mod server;
mod sharding;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use futures::StreamExt;
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{EnvVar, Service};
use kube::runtime::controller::{self, Action, Controller};
use kube::runtime::reflector::ObjectRef;
use kube::runtime::utils::PredicateConfig;
use kube::runtime::{WatchStreamExt, predicates, watcher};
use mcp_operator_api::{MCPPrompt, MCPResource, MCPServer, MCPTool};
use mcp_operator_store::Store;
use mcp_operator_store::env as redis_var;
use metrics_exporter_prometheus::PrometheusHandle;

pub use args::{ControllerArgs, RouterCredentials, ShardingArgs};
pub use error::Error;
pub use identity::acl::canonical as canonical_acl_user;
pub use identity::{PASSWORD_ANNOTATION, password_sha256};
pub use member::validate::MAX_INLINE_BYTES;
pub use publish::signing::{CatalogKeys, load_or_create as load_signing_keys};
pub use publish::{Outcome, Receipt, publish, remove as remove_catalog};
pub use sharding::shard::{FencingToken, ShardId, shard_of};

use context::{Context, Trust};
use member::Member;
use member::check;
use publish::{audit, signing};
use runtime::watches::Watches;
use runtime::{batch, client, http, telemetry, watch};
use server::image::ImagePolicy;
use server::workload::RouterSettings;
use sharding::lease;
use sharding::lease::{ElectionConfig, Shards};
use sharding::scope::Scope;

/// Runs the controllers until SIGTERM or Ctrl-C, then hands the shards over.
pub async fn run(args: ControllerArgs, metrics: PrometheusHandle) -> anyhow::Result<()> {
    let sharding = &args.sharding;
    anyhow::ensure!(
        sharding.renew_interval < sharding.lease_duration,
        "--renew-interval ({:?}) must be shorter than --lease-duration ({:?})",
        sharding.renew_interval,
        sharding.lease_duration
    );
    // Routers get this URL as a literal value: it must not carry credentials.
    if let Some(url) = &args.router_redis_url {
        args.redis.connection_info(url)?;
    }
    let client = client::infer().await?;
    let redis = Store::new(&args.redis, telemetry::PREFIX)?;
    let keys = signing::load_or_create(
        client.clone(),
        &sharding.lease_namespace,
        &args.catalog_signing_secret,
    )
    .await?;
    let router = router_settings(&args, &keys)?;
    let shards = Arc::new(Shards::new(ElectionConfig {
        shards: sharding.shards,
        namespace: sharding.lease_namespace.clone(),
        identity: format!("{}-{:08x}", sharding.identity, rand::random::<u32>()),
        lease_duration: sharding.lease_duration,
        renew_interval: sharding.renew_interval,
        retry_period: sharding.retry_period,
        join_grace: sharding.join_grace,
    }));
    tracing::info!(
        identity = shards.identity(),
        shards = shards.shard_count(),
        "starting"
    );

    // One watch per kind, shared by the controllers that need its events
    // (runtime/watches.rs).
    let mut filled = Vec::new();
    let scope = match &args.namespace_selector {
        Some(selector) => {
            let (scope, scope_filled) = Scope::selected(&client, selector).await?;
            filled.push(scope_filled);
            scope
        }
        None => Scope::all(),
    };
    let Watches {
        stores,
        events,
        filled: watches_filled,
    } = Watches::start(&client);
    filled.extend(watches_filled);

    // A server's own status writes do not trigger it again: its spec,
    // annotations (a manual nudge), finalizers and deletion do.
    let server_events = events
        .servers
        .predicate_filter(server_changed, PredicateConfig::default());
    let owned_deployments = events.owned_deployments.predicate_filter(
        {
            let deployments = stores.deployments.clone();
            move |d: &Deployment| {
                let present = deployments.get(&ObjectRef::from_obj(d)).is_some();
                Some(server::status::deployment_digest(d, present))
            }
        },
        PredicateConfig::default(),
    );
    let servers = Controller::for_stream(server_events, stores.servers.clone())
        .owns_stream(owned_deployments)
        .owns_stream(events.owned_accounts)
        .owns_stream(events.owned_ingresses)
        .owns_stream(events.owned_budgets)
        .owns_stream(events.owned_services);
    let (tools, prompts, resources) = (
        stores.tools.clone(),
        stores.prompts.clone(),
        stores.resources.clone(),
    );
    let ctx = Arc::new(Context::new(
        client,
        redis,
        stores,
        router,
        Trust {
            signing: keys.signing,
            identities: identity::Identities::new(
                args.router_redis_credentials,
                &args.redis,
                args.router_redis_username.clone(),
                args.router_redis_password.clone(),
            ),
        },
        shards.clone(),
        scope,
    ));

    let ready = Arc::new(AtomicBool::new(false));
    let ready_flag = ready.clone();
    tokio::spawn(async move {
        if let Err(error) = http::serve(args.metrics_listen, metrics, ready_flag).await {
            tracing::error!(%error, "the metrics endpoint stopped");
        }
    });

    // SIGTERM or Ctrl-C: controllers stop taking work, in-flight
    // reconciles get a bounded time, then the Leases are released.
    let (stop_tx, stop) = tokio::sync::watch::channel(false);
    tokio::spawn(async move {
        shutdown_signal().await;
        tracing::info!("shutting down");
        let _ = stop_tx.send(true);
    });
    let (election_stop_tx, election_stop) = tokio::sync::watch::channel(false);
    // A replica announces itself at once but takes shards only once its
    // caches are filled (lease.rs).
    let election = tokio::spawn({
        let ctx = ctx.clone();
        let filled = async move {
            let filled = caches_filled(filled).await;
            if filled {
                ready.store(true, Ordering::Relaxed);
                tracing::info!("caches filled; ready to hold shards");
            }
            filled
        };
        lease::run(
            ctx.client.clone(),
            ctx.shards.clone(),
            filled,
            stopped(election_stop),
        )
    });

    let config = controller::Config::default().concurrency(args.concurrency);
    // Member events reach their servers coalesced (batch.rs).
    let member_triggers = futures::stream::select_all([
        servers_of::<MCPTool>(&ctx, events.tool_servers),
        servers_of::<MCPPrompt>(&ctx, events.prompt_servers),
        servers_of::<MCPResource>(&ctx, events.resource_servers),
    ]);
    let window = batch::Window {
        quiet: args.server_debounce,
        max: args.server_debounce_max,
    };
    let servers = servers
        .reconcile_on(batch::coalesce(member_triggers, window))
        .reconcile_on(on_shard_gained(&ctx, |c| c.servers.state()))
        .reconcile_on(on_namespace_entered(&ctx, |c| c.servers.state()))
        .reconcile_on(audit::drifted(&ctx, args.catalog_audit_interval))
        .reconcile_on(identity::checked(&ctx, args.catalog_audit_interval))
        .reconcile_on(identity::nodes_checked(&ctx, args.catalog_audit_interval))
        .with_config(config.clone())
        .graceful_shutdown_on(stopped(stop.clone()))
        .run(server::reconcile, error_policy, ctx.clone());
    let tools = member_controller(
        events.tool_checks,
        tools,
        Some(events.tool_backends),
        |c| c.tools.state(),
        &ctx,
        &config,
        &stop,
    );
    let prompts = member_controller(
        events.prompt_checks,
        prompts,
        None,
        |c| c.prompts.state(),
        &ctx,
        &config,
        &stop,
    );
    let resources = member_controller(
        events.resource_checks,
        resources,
        Some(events.resource_backends),
        |c| c.resources.state(),
        &ctx,
        &config,
        &stop,
    );

    tracing::info!("controllers started");
    let controllers = async {
        futures::join!(
            drain(servers, &ctx),
            drain(tools, &ctx),
            drain(prompts, &ctx),
            drain(resources, &ctx),
        )
    };
    let mut stopping = stop.clone();
    let deadline = async {
        let _ = stopping.wait_for(|stop| *stop).await;
        tokio::time::sleep(args.sharding.shutdown_timeout).await;
    };
    tokio::select! {
        _ = controllers => {}
        () = deadline => tracing::warn!("abandoning reconciles still running after the shutdown timeout"),
    }
    let _ = election_stop_tx.send(true);
    if let Err(error) = election.await {
        tracing::error!(%error, "the shard election failed");
    }
    tracing::info!("controllers stopped; shards released");
    Ok(())
}

async fn shutdown_signal() {
    use tokio::signal::unix::{SignalKind, signal};
    match signal(SignalKind::terminate()) {
        Ok(mut terminate) => {
            tokio::select! {
                _ = tokio::signal::ctrl_c() => {}
                _ = terminate.recv() => {}
            }
        }
        Err(error) => {
            tracing::error!(%error, "cannot listen for SIGTERM; only Ctrl-C stops the controller");
            let _ = tokio::signal::ctrl_c().await;
        }
    }
}

/// Resolves once `stop` turns true (or its sender is gone). A oneshot
/// receiver, because kube-runtime wants a `Sync` shutdown future.
fn stopped(
    mut stop: tokio::sync::watch::Receiver<bool>,
) -> impl std::future::Future<Output = ()> + Send + Sync + 'static {
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    tokio::spawn(async move {
        let _ = stop.wait_for(|stop| *stop).await;
        let _ = tx.send(());
    });
    async move {
        let _ = rx.await;
    }
}

/// What of a server, when it changes, calls for a reconcile: everything but
/// status (deletion bumps the generation).
fn server_changed(server: &MCPServer) -> Option<u64> {
    use std::hash::{DefaultHasher, Hash, Hasher};
    let mut hasher = DefaultHasher::new();
    (
        predicates::generation(server),
        predicates::annotations(server),
        predicates::finalizers(server),
    )
        .hash(&mut hasher);
    Some(hasher.finish())
}

/// Every object of a shard this replica just gained, for its controller
/// to reconcile at once.
fn on_shard_gained<K: kube::Resource<DynamicType = ()> + Send + Sync + 'static>(
    ctx: &Arc<Context>,
    objects: fn(&Context) -> Vec<Arc<K>>,
) -> tokio_stream::wrappers::UnboundedReceiverStream<ObjectRef<K>> {
    on_each(
        ctx,
        ctx.shards.gained(),
        objects,
        |ctx, shard, namespace| shard_of(namespace, ctx.shards.shard_count()) == *shard,
    )
}

/// Every object, in a shard this replica holds, of a namespace that just
/// came to match `--namespace-selector`.
fn on_namespace_entered<K: kube::Resource<DynamicType = ()> + Send + Sync + 'static>(
    ctx: &Arc<Context>,
    objects: fn(&Context) -> Vec<Arc<K>>,
) -> tokio_stream::wrappers::UnboundedReceiverStream<ObjectRef<K>> {
    on_each(
        ctx,
        ctx.scope.entered(),
        objects,
        |ctx, entered, namespace| namespace == entered && ctx.shards.holds(namespace),
    )
}

/// For each message of `events`, the objects (by namespace) it concerns.
fn on_each<K, T>(
    ctx: &Arc<Context>,
    mut events: tokio::sync::broadcast::Receiver<T>,
    objects: fn(&Context) -> Vec<Arc<K>>,
    concerns: fn(&Context, &T, &str) -> bool,
) -> tokio_stream::wrappers::UnboundedReceiverStream<ObjectRef<K>>
where
    K: kube::Resource<DynamicType = ()> + Send + Sync + 'static,
    T: Clone + Send + 'static,
{
    let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
    let ctx = ctx.clone();
    tokio::spawn(async move {
        loop {
            let event = match events.recv().await {
                Ok(event) => event,
                Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => continue,
                Err(tokio::sync::broadcast::error::RecvError::Closed) => break,
            };
            for object in objects(&ctx) {
                let concerned = object
                    .meta()
                    .namespace
                    .as_deref()
                    .is_some_and(|ns| concerns(&ctx, &event, ns));
                if concerned && tx.send(ObjectRef::from_obj(&*object)).is_err() {
                    return;
                }
            }
        }
    });
    tokio_stream::wrappers::UnboundedReceiverStream::new(rx)
}

fn router_settings(
    args: &ControllerArgs,
    keys: &signing::CatalogKeys,
) -> anyhow::Result<RouterSettings> {
    let env = |name: &str, value: String| EnvVar {
        name: name.to_owned(),
        value: Some(value),
        value_from: None,
    };
    let mut redis_env = match (&args.router_redis_url, &args.redis.redis_url) {
        (Some(url), _) | (None, Some(url)) => vec![env(redis_var::URL, url.clone())],
        (None, None) => vec![env(
            redis_var::CLUSTER_URLS,
            args.redis.redis_cluster_urls.join(","),
        )],
    };
    // Routers verify a private CA's nodes with the operator's own CA.
    if let Some(pem) = args.redis.ca_pem()? {
        let pem = String::from_utf8(pem)
            .map_err(|_| anyhow::anyhow!("--redis-ca-file is not a PEM text file"))?;
        redis_env.push(env(redis_var::CA, pem));
    }
    let images = ImagePolicy::new(args.router_image.clone(), &args.allowed_router_images)
        .map_err(|error| anyhow::anyhow!("--allowed-router-images: {error}"))?;
    Ok(RouterSettings {
        images,
        max_catalog_bytes: args.max_catalog_bytes,
        redis_env,
        catalog_public_keys: keys.public_keys_value(),
        otlp_endpoint: args
            .router_otlp_endpoint
            .as_deref()
            .map(server::workload::otlp_endpoint)
            .transpose()
            .map_err(|error| anyhow::anyhow!("--router-otlp-endpoint: {error}"))?,
    })
}

/// The servers each member event concerns, for members of the shards this
/// replica holds.
fn servers_of<M: Member + Send + 'static>(
    ctx: &Arc<Context>,
    events: watch::Events<M>,
) -> futures::stream::BoxStream<'static, ObjectRef<MCPServer>> {
    let ctx = ctx.clone();
    events
        .filter_map(|event| std::future::ready(event.ok()))
        .filter({
            let ctx = ctx.clone();
            move |member| {
                let namespace = member.meta().namespace.as_deref().unwrap_or_default();
                std::future::ready(ctx.shards.holds(namespace) && ctx.scope.includes(namespace))
            }
        })
        .flat_map(move |member| {
            let servers = ctx.servers.state();
            let concerned: Vec<_> = ctx
                .membership()
                .servers_for(&member, &servers)
                .into_iter()
                .map(|id| ObjectRef::new(&id.name).within(&id.namespace))
                .collect();
            futures::stream::iter(concerned)
        })
        .boxed()
}

/// A member kind's controller. Members are reconciled when their spec
/// changes, not again after their own status write; what else they depend
/// on (their backend Service, a gained shard) triggers them separately.
fn member_controller<M>(
    events: watch::Events<M>,
    store: kube::runtime::reflector::Store<M>,
    services: Option<watch::Events<Service>>,
    members: fn(&Context) -> Vec<Arc<M>>,
    ctx: &Arc<Context>,
    config: &controller::Config,
    stop: &tokio::sync::watch::Receiver<bool>,
) -> impl futures::Stream<
    Item = Result<(ObjectRef<M>, Action), controller::Error<Error, watcher::Error>>,
> + use<M>
where
    M: Member
        + kube::Resource<DynamicType = ()>
        + Clone
        + std::fmt::Debug
        + serde::de::DeserializeOwned
        + Send
        + Sync
        + 'static,
{
    let controller = Controller::for_stream(
        events.predicate_filter(predicates::generation, PredicateConfig::default()),
        store,
    );
    let controller = match services {
        Some(services) => controller.watches_stream(services, backed_by::<M>(ctx, members)),
        None => controller,
    };
    controller
        .reconcile_on(on_shard_gained(ctx, members))
        .reconcile_on(on_namespace_entered(ctx, members))
        .with_config(config.clone())
        .graceful_shutdown_on(stopped(stop.clone()))
        .run(check::reconcile::<M>, error_policy, ctx.clone())
}

/// Maps a Service event to the members whose backend it is.
fn backed_by<M: Member>(
    ctx: &Arc<Context>,
    members: fn(&Context) -> Vec<Arc<M>>,
) -> impl Fn(Service) -> Vec<ObjectRef<M>> + Send + Sync + 'static {
    let ctx = ctx.clone();
    move |service| check::members_behind(&service, &members(&ctx))
}

/// Transient errors retry with this object's own backoff. A conflict is
/// not the object failing but this replica's copy being behind: it retries
/// soon, without growing the backoff, or a few conflicts in a row while the
/// watch catches up (after a failover) would delay the object for seconds.
fn error_policy<K: kube::Resource<DynamicType = ()>>(
    object: Arc<K>,
    error: &Error,
    ctx: Arc<Context>,
) -> Action {
    let key = ObjectRef::from_obj(&*object).to_string();
    if error.is_conflict() {
        tracing::debug!(object = %key, "status conflict; retrying on a newer copy");
        return Action::requeue(CONFLICT_RETRY);
    }
    // drain() sets mcp_operator_queue_depth once this failure reaches it.
    let delay = ctx.backoff.failed(&key);
    tracing::warn!(object = %key, %error, retry_in = ?delay, "reconcile failed");
    Action::requeue(delay)
}

/// How soon a reconcile whose status write conflicted runs again.
const CONFLICT_RETRY: std::time::Duration = std::time::Duration::from_millis(250);

/// Consumes a controller's results: a success clears the object's backoff,
/// and so does its deletion (kube-runtime drops the retry of an object
/// that is gone), or deleted objects would count as pending for good.
async fn drain<K, S>(results: S, ctx: &Context)
where
    K: kube::Resource<DynamicType = ()>,
    S: futures::Stream<
            Item = Result<(ObjectRef<K>, Action), controller::Error<Error, watcher::Error>>,
        >,
{
    results
        .for_each(|result| {
            match result {
                Ok((object, _)) => ctx.backoff.forget(&object.to_string()),
                Err(controller::Error::ObjectNotFound(object)) => {
                    tracing::debug!(%object, "object deleted before its reconcile");
                    ctx.backoff.forget(&object.to_string());
                }
                Err(error) => tracing::debug!(%error, "reconcile did not complete"),
            }
            telemetry::retries_pending(ctx.backoff.pending());
            std::future::ready(())
        })
        .await;
}

/// Whether every watch has listed its objects (false if one stopped).
async fn caches_filled(filled: Vec<tokio::sync::watch::Receiver<bool>>) -> bool {
    for mut filled in filled {
        if filled.wait_for(|filled| *filled).await.is_err() {
            return false;
        }
    }
    true
}
