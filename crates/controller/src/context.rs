//! What every reconcile shares: the API client, Redis, the in-memory
//! stores of the watched kinds, the membership index and the settings.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{Service, ServiceAccount};
use k8s_openapi::api::networking::v1::Ingress;
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use kube::Client;
use kube::runtime::events::Recorder;
use kube::runtime::reflector::Store;
use mcp_operator_api::{MCPPrompt, MCPResource, MCPServer, MCPTool};
use mcp_operator_catalog::signature::SigningKey;
use mcp_operator_store::Store as Redis;

use crate::identity::Identities;
use crate::publish::audit::Expected;
use crate::runtime::backoff::Backoff;
use crate::server::deferral::Deferrals;
use crate::server::membership::Membership;
use crate::server::workload::RouterSettings;
use crate::sharding::lease::Shards;
use crate::sharding::scope::Scope;

/// A namespaced Kubernetes object the operator reads and writes.
pub trait Object:
    kube::Resource<DynamicType = (), Scope = k8s_openapi::NamespaceResourceScope>
    + Clone
    + std::fmt::Debug
    + serde::Serialize
    + serde::de::DeserializeOwned
{
}

impl<K> Object for K where
    K: kube::Resource<DynamicType = (), Scope = k8s_openapi::NamespaceResourceScope>
        + Clone
        + std::fmt::Debug
        + serde::Serialize
        + serde::de::DeserializeOwned
{
}

/// The field manager of everything the operator applies.
pub const FIELD_MANAGER: &str = "mcp-operator";

pub struct Context {
    pub client: Client,
    pub redis: Redis,
    pub recorder: Recorder,
    pub tools: Store<MCPTool>,
    pub prompts: Store<MCPPrompt>,
    pub resources: Store<MCPResource>,
    pub services: Store<Service>,
    pub servers: Store<MCPServer>,
    pub deployments: Store<Deployment>,
    pub accounts: Store<ServiceAccount>,
    pub ingresses: Store<Ingress>,
    pub budgets: Store<PodDisruptionBudget>,
    pub membership: Mutex<Membership>,
    pub deferrals: Deferrals,
    pub backoff: Backoff,
    pub router: RouterSettings,
    /// Signs every catalog published.
    pub signing: SigningKey,
    /// What this replica last published per server, for the audit.
    pub expected: Expected,
    pub identities: Identities,
    pub shards: Arc<Shards>,
    pub scope: Scope,
}

impl Context {
    pub fn new(
        client: Client,
        redis: Redis,
        stores: Stores,
        router: RouterSettings,
        trust: Trust,
        shards: Arc<Shards>,
        scope: Scope,
    ) -> Self {
        let reporter = kube::runtime::events::Reporter {
            controller: FIELD_MANAGER.to_owned(),
            instance: Some(shards.identity().to_owned()),
        };
        Self {
            recorder: Recorder::new(client.clone(), reporter),
            client,
            redis,
            tools: stores.tools,
            prompts: stores.prompts,
            resources: stores.resources,
            services: stores.services,
            servers: stores.servers,
            deployments: stores.deployments,
            accounts: stores.accounts,
            ingresses: stores.ingresses,
            budgets: stores.budgets,
            membership: Mutex::default(),
            deferrals: Deferrals::default(),
            backoff: Backoff::new(Duration::from_millis(500), Duration::from_secs(300)),
            router,
            signing: trust.signing,
            expected: Expected::default(),
            identities: trust.identities,
            shards,
            scope,
        }
    }

    pub fn membership(&self) -> std::sync::MutexGuard<'_, Membership> {
        self.membership.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// What makes a server's routers trust only their own: the key that signs
/// their catalogs, and their Redis users.
pub struct Trust {
    pub signing: SigningKey,
    pub identities: Identities,
}

/// The in-memory stores the reconcilers read.
pub struct Stores {
    pub tools: Store<MCPTool>,
    pub prompts: Store<MCPPrompt>,
    pub resources: Store<MCPResource>,
    pub services: Store<Service>,
    pub servers: Store<MCPServer>,
    /// The operator's own (by label): server workloads.
    pub deployments: Store<Deployment>,
    pub accounts: Store<ServiceAccount>,
    pub ingresses: Store<Ingress>,
    pub budgets: Store<PodDisruptionBudget>,
}
