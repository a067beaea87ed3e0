//! The population a load test creates: namespaces, each with one backend
//! Service, and tools, prompts, resources and servers spread over them so
//! that every server selects its own share of members by label.

use anyhow::Context;
use futures::{StreamExt, TryStreamExt, stream};
use kube::Client;
use kube::api::{Api, DynamicObject, PostParams};
use mcp_operator_catalog::ServerId;
use serde_json::{Value, json};

use crate::kinds::Kind;

/// The label every object of a run carries, so the run lists only its own.
pub const RUN_LABEL: &str = "loadtest.kubemcp.io/run";
/// The label a server's members carry and its selectors match.
pub const SERVER_LABEL: &str = "loadtest.kubemcp.io/server";

/// How many of each kind; members are spread evenly over the servers and
/// servers over the namespaces.
#[derive(Clone, Copy, Debug, clap::Args)]
pub struct Sizes {
    #[arg(long, default_value_t = 10_000)]
    pub tools: usize,
    #[arg(long, default_value_t = 2_000)]
    pub prompts: usize,
    #[arg(long, default_value_t = 2_000)]
    pub resources: usize,
    #[arg(long, default_value_t = 1_000)]
    pub servers: usize,
    #[arg(long, default_value_t = 200)]
    pub namespaces: usize,
}

impl Sizes {
    /// Objects the operator reconciles (Services are not counted).
    pub fn objects(&self) -> usize {
        self.tools + self.prompts + self.resources + self.servers
    }
}

/// A created population.
#[derive(Debug)]
pub struct Population {
    pub run: String,
    pub namespaces: Vec<String>,
    pub servers: Vec<ServerId>,
}

/// Objects created at once; enough to keep the apiserver busy without
/// piling up client-side timeouts.
const CONCURRENCY: usize = 32;

/// Creates the population of `run` (a DNS-label prefix unique per run).
pub async fn create(client: &Client, run: &str, sizes: Sizes) -> anyhow::Result<Population> {
    anyhow::ensure!(
        sizes.namespaces > 0 && sizes.servers >= sizes.namespaces,
        "need at least one namespace and one server per namespace"
    );
    let namespaces: Vec<String> = (0..sizes.namespaces)
        .map(|i| format!("{run}-{i}"))
        .collect();
    let labels = |server: Option<usize>| {
        let mut labels = json!({RUN_LABEL: run});
        if let Some(server) = server {
            labels[SERVER_LABEL] = json!(format!("s{server}"));
        }
        labels
    };
    let namespace_of = |server: usize| &namespaces[server % sizes.namespaces];

    let mut objects: Vec<(Kind, Option<String>, Value)> = Vec::new();
    for ns in &namespaces {
        objects.push((
            Kind::Namespace,
            None,
            json!({"metadata": {"name": ns, "labels": labels(None)}}),
        ));
        objects.push((
            Kind::Service,
            Some(ns.clone()),
            json!({"metadata": {"name": "backend", "labels": labels(None)},
                   "spec": {"ports": [{"name": "http", "port": 8080}]}}),
        ));
    }
    let mut servers = Vec::new();
    for s in 0..sizes.servers {
        objects.push((
            Kind::Server,
            Some(namespace_of(s).clone()),
            json!({"metadata": {"name": format!("s{s}"), "labels": labels(None)},
            "spec": {
                "replicas": 1,
                "toolSelector": {"matchLabels": {SERVER_LABEL: format!("s{s}")}},
                "promptSelector": {"matchLabels": {SERVER_LABEL: format!("s{s}")}},
                "resourceSelector": {"matchLabels": {SERVER_LABEL: format!("s{s}")}},
            }}),
        ));
        servers.push(ServerId {
            namespace: namespace_of(s).clone(),
            name: format!("s{s}"),
        });
    }
    for t in 0..sizes.tools {
        let s = t % sizes.servers;
        let name = format!("t{t}");
        objects.push((
            Kind::Tool,
            Some(namespace_of(s).clone()),
            json!({"metadata": {"name": name, "labels": labels(Some(s))},
                   "spec": {
                       "description": format!("Load-test tool {t}"),
                       "inputSchema": {"type": "object", "properties": {"q": {"type": "string"}}},
                       "backend": {"service": {"name": "backend", "port": 8080}, "path": format!("/{name}")},
                   }}),
        ));
    }
    for p in 0..sizes.prompts {
        let s = p % sizes.servers;
        let name = format!("p{p}");
        objects.push((
            Kind::Prompt,
            Some(namespace_of(s).clone()),
            json!({"metadata": {"name": name, "labels": labels(Some(s))},
            "spec": {
                "arguments": [{"name": "topic", "required": true}],
                "messages": [{"role": "user", "content": "Tell me about {{ topic }}."}],
            }}),
        ));
    }
    for r in 0..sizes.resources {
        let s = r % sizes.servers;
        let uri = format!("file:///load/r{r}.txt");
        objects.push((
            Kind::Resource,
            Some(namespace_of(s).clone()),
            json!({"metadata": {"name": format!("r{r}"), "labels": labels(Some(s))},
                   "spec": {"uri": uri, "mimeType": "text/plain", "text": format!("Resource {r}.")}}),
        ));
    }

    // Namespaces and Services first: members refer to them.
    let (first, rest): (Vec<_>, Vec<_>) = objects
        .into_iter()
        .partition(|(kind, _, _)| matches!(kind, Kind::Namespace | Kind::Service));
    let (namespaces_only, services): (Vec<_>, Vec<_>) = first
        .into_iter()
        .partition(|(kind, _, _)| matches!(kind, Kind::Namespace));
    for batch in [namespaces_only, services, rest] {
        stream::iter(batch)
            .map(|(kind, ns, object)| create_one(client, kind, ns, object))
            .buffer_unordered(CONCURRENCY)
            .try_collect::<()>()
            .await?;
    }
    Ok(Population {
        run: run.to_owned(),
        namespaces,
        servers,
    })
}

async fn create_one(
    client: &Client,
    kind: Kind,
    namespace: Option<String>,
    mut object: Value,
) -> anyhow::Result<()> {
    let resource = kind.resource();
    object["apiVersion"] = json!(resource.api_version);
    object["kind"] = json!(resource.kind);
    let object: DynamicObject = serde_json::from_value(object)?;
    let api: Api<DynamicObject> = match &namespace {
        Some(ns) => Api::namespaced_with(client.clone(), ns, &resource),
        None => Api::all_with(client.clone(), &resource),
    };
    api.create(&PostParams::default(), &object)
        .await
        .with_context(|| format!("creating {} {:?}", resource.kind, object.metadata.name))?;
    Ok(())
}
