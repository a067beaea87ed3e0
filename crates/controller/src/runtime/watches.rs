//! The operator's watches, declared once: one per kind ([`watch::shared`]),
//! with the store the reconcilers read and one event stream per consumer,
//! by name. Which consumers a kind has, and whether they hear of
//! deletions, is decided here; lib.rs only wires the named streams into
//! the controllers.

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{Service, ServiceAccount};
use k8s_openapi::api::networking::v1::Ingress;
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use kube::runtime::reflector::Store;
use kube::runtime::watcher;
use kube::{Api, Client};
use mcp_operator_api::{MCPPrompt, MCPResource, MCPServer, MCPTool};

use crate::context::Stores;
use crate::runtime::watch::{self, Deletions, Events};

/// Every watch's store, and the event streams of its consumers.
pub struct Watches {
    pub stores: Stores,
    pub events: Subscriptions,
    /// One per watch: turns true once its first LIST is in the store.
    pub filled: Vec<tokio::sync::watch::Receiver<bool>>,
}

/// The event streams, by consumer.
pub struct Subscriptions {
    /// Each member kind's own controller: changes only (a deleted member
    /// needs no check).
    pub tool_checks: Events<MCPTool>,
    pub prompt_checks: Events<MCPPrompt>,
    pub resource_checks: Events<MCPResource>,
    /// The servers that select a member, or did: changes and deletions.
    pub tool_servers: Events<MCPTool>,
    pub prompt_servers: Events<MCPPrompt>,
    pub resource_servers: Events<MCPResource>,
    /// The tools and resources a Service is the backend of.
    pub tool_backends: Events<Service>,
    pub resource_backends: Events<Service>,
    /// The server controller. Servers keep finalizers, so their deletion
    /// arrives as an update.
    pub servers: Events<MCPServer>,
    /// The objects of a server's workload (by the operator's label), kept
    /// in stores so that a reconcile applies only what is not in place
    /// (drift.rs) and a server without the optional ones costs no DELETE.
    pub owned_services: Events<Service>,
    pub owned_deployments: Events<Deployment>,
    pub owned_accounts: Events<ServiceAccount>,
    pub owned_ingresses: Events<Ingress>,
    pub owned_budgets: Events<PodDisruptionBudget>,
}

/// The label on every object the operator creates for a server.
const MANAGED: &str = "app.kubernetes.io/managed-by=mcp-operator";

impl Watches {
    /// Starts every watch on the current runtime.
    pub fn start(client: &Client) -> Self {
        use Deletions::{Include, Skip};
        let mut filled = Vec::new();
        let all = watcher::Config::default;
        let owned = || watcher::Config::default().labels(MANAGED);
        let (tools, [tool_checks, tool_servers]) =
            shared(client, all(), [Skip, Include], &mut filled);
        let (prompts, [prompt_checks, prompt_servers]) =
            shared(client, all(), [Skip, Include], &mut filled);
        let (resources, [resource_checks, resource_servers]) =
            shared(client, all(), [Skip, Include], &mut filled);
        // Backends of tools and resources, and the servers' own Services.
        let (services, [tool_backends, resource_backends, owned_services]) =
            shared(client, all(), [Include, Include, Include], &mut filled);
        let (servers, [server_events]) = shared(client, all(), [Skip], &mut filled);
        let (deployments, [owned_deployments]) = shared(client, owned(), [Include], &mut filled);
        let (accounts, [owned_accounts]) = shared(client, owned(), [Include], &mut filled);
        let (ingresses, [owned_ingresses]) = shared(client, owned(), [Include], &mut filled);
        let (budgets, [owned_budgets]) = shared(client, owned(), [Include], &mut filled);
        Self {
            stores: Stores {
                tools,
                prompts,
                resources,
                services,
                servers,
                deployments,
                accounts,
                ingresses,
                budgets,
            },
            events: Subscriptions {
                tool_checks,
                prompt_checks,
                resource_checks,
                tool_servers,
                prompt_servers,
                resource_servers,
                tool_backends,
                resource_backends,
                servers: server_events,
                owned_services,
                owned_deployments,
                owned_accounts,
                owned_ingresses,
                owned_budgets,
            },
            filled,
        }
    }
}

/// One kind's watch with `N` subscribers, in the order of `subscribers`.
fn shared<K, const N: usize>(
    client: &Client,
    config: watcher::Config,
    subscribers: [Deletions; N],
    filled: &mut Vec<tokio::sync::watch::Receiver<bool>>,
) -> (Store<K>, [Events<K>; N])
where
    K: kube::Resource<DynamicType = ()>
        + Clone
        + std::fmt::Debug
        + serde::de::DeserializeOwned
        + Send
        + Sync
        + 'static,
{
    let watched = watch::shared(Api::<K>::all(client.clone()), config, &subscribers);
    filled.push(watched.filled);
    let Ok(streams) = <[Events<K>; N]>::try_from(watched.streams) else {
        unreachable!("watch::shared returns one stream per subscriber")
    };
    (watched.store, streams)
}
