//! Assembling an MCPServer's catalog from the members it selects: only
//! members Ready for their current generation, whose backend headers read
//! only Secrets the server lists in `spec.backendSecrets`, are served, and
//! of members that share a catalog key the one whose object name sorts
//! first wins.
//! Everything left out is listed, with the reason, for the server's status.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use kube::ResourceExt;
use mcp_operator_api::{Backend, ExcludedMember, MCPPrompt, MCPResource, MCPServer, MCPTool};
use mcp_operator_catalog::{
    Catalog, Endpoint, Header, HeaderValue, Prompt, Published, Resource, ResourceContent,
    ServerInfo, Source, Tool,
};

use crate::member::Member;
use crate::runtime::conditions;
use crate::server::membership::server_id;

/// The members a server selected, sorted by object name.
pub struct Selection {
    pub tools: Vec<Arc<MCPTool>>,
    pub prompts: Vec<Arc<MCPPrompt>>,
    pub resources: Vec<Arc<MCPResource>>,
}

impl Selection {
    /// Members not checked since their spec last changed.
    pub fn unchecked(&self) -> usize {
        fn count<M: Member>(members: &[Arc<M>]) -> usize {
            members
                .iter()
                .filter(|m| !conditions::is_checked_for(m.conditions(), m.meta().generation))
                .count()
        }
        count(&self.tools) + count(&self.prompts) + count(&self.resources)
    }
}

/// A server's catalog and the selected members it leaves out.
pub struct Assembly {
    pub catalog: Catalog,
    pub excluded: Vec<ExcludedMember>,
}

/// The version routers report when `serverInfo.version` is not set.
const DEFAULT_SERVER_VERSION: &str = env!("CARGO_PKG_VERSION");

pub fn assemble(server: &MCPServer, selection: &Selection) -> Assembly {
    let mut excluded = Vec::new();
    let secrets = &server.spec.backend_secrets;
    let tools = served(&selection.tools, secrets, &mut excluded)
        .into_iter()
        .filter_map(|tool| {
            let url = tool.resolved_endpoint()?.to_owned();
            Some(Tool {
                name: tool.catalog_key(),
                title: tool.spec.title.clone(),
                description: tool.spec.description.clone(),
                input_schema: tool.spec.input_schema.clone(),
                output_schema: tool.spec.output_schema.clone(),
                annotations: tool.spec.annotations.clone(),
                endpoint: endpoint(&tool.spec.backend.endpoint, url),
                method: tool.spec.backend.method,
                source: source(&*tool),
            })
        })
        .collect();
    let prompts = served(&selection.prompts, secrets, &mut excluded)
        .into_iter()
        .map(|prompt| Prompt {
            name: prompt.catalog_key(),
            title: prompt.spec.title.clone(),
            description: prompt.spec.description.clone(),
            arguments: prompt.spec.arguments.clone(),
            messages: prompt.spec.messages.clone(),
            source: source(&*prompt),
        })
        .collect();
    let resources = served(&selection.resources, secrets, &mut excluded)
        .into_iter()
        .filter_map(|resource| {
            let spec = &resource.spec;
            let content = match (&spec.text, &spec.blob, &spec.backend) {
                (Some(text), _, _) => ResourceContent::Text(text.clone()),
                (None, Some(blob), _) => ResourceContent::Blob(blob.clone()),
                (None, None, Some(backend)) => ResourceContent::Backend(endpoint(
                    backend,
                    resource.resolved_endpoint()?.to_owned(),
                )),
                (None, None, None) => return None,
            };
            Some(Resource {
                uri: spec.uri.clone(),
                name: spec.name.clone().unwrap_or_else(|| resource.name_any()),
                title: spec.title.clone(),
                description: spec.description.clone(),
                mime_type: spec.mime_type.clone(),
                content,
                source: source(&*resource),
            })
        })
        .collect();
    let info = server.spec.server_info.clone().unwrap_or_default();
    let mut catalog = Catalog {
        server: server_id(server),
        server_info: ServerInfo {
            name: info.name.unwrap_or_else(|| server.name_any()),
            version: info
                .version
                .unwrap_or_else(|| DEFAULT_SERVER_VERSION.to_owned()),
            instructions: info.instructions,
        },
        tools,
        prompts,
        resources,
    };
    catalog.normalize();
    excluded.sort();
    Assembly { catalog, excluded }
}

/// The members to serve: Ready ones whose Secrets the server allows, one
/// per catalog key (the first by object name; `members` is sorted by it).
/// The rest go to `excluded`.
fn served<M: Member>(
    members: &[Arc<M>],
    allowed_secrets: &[String],
    excluded: &mut Vec<ExcludedMember>,
) -> Vec<Arc<M>> {
    let mut winners: BTreeMap<String, Arc<M>> = BTreeMap::new();
    for member in members {
        let generation = member.meta().generation;
        let ready = conditions::is_ready_for(member.conditions(), generation)
            && (member.backend().is_none() || member.resolved_endpoint().is_some());
        if !ready {
            let why = conditions::find(member.conditions(), conditions::READY)
                .filter(|c| c.observed_generation == generation)
                .map_or_else(
                    || "it has not been checked since its last change".to_owned(),
                    |c| format!("{}: {}", c.reason, c.message.trim_end_matches('.')),
                );
            excluded.push(exclusion(
                &**member,
                "NotReady",
                format!("Not Ready ({why})."),
            ));
            continue;
        }
        if let Some((header, secret)) = member
            .backend()
            .and_then(|backend| secret_not_allowed(backend, allowed_secrets))
        {
            excluded.push(exclusion(
                &**member,
                "SecretNotAllowed",
                format!(
                    "Its backend header '{header}' reads Secret '{secret}', which the server's spec.backendSecrets does not list."
                ),
            ));
            continue;
        }
        let key = member.catalog_key();
        match winners.get(&key) {
            Some(winner) => excluded.push(exclusion(
                &**member,
                "NameCollision",
                format!(
                    "'{key}' is also defined by {} '{}', which is served because its name sorts first.",
                    M::KIND.as_str(),
                    winner.name_any()
                ),
            )),
            None => {
                winners.insert(key, member.clone());
            }
        }
    }
    winners.into_values().collect()
}

/// The first header of `backend` that reads a Secret not in `allowed`, and
/// that Secret.
fn secret_not_allowed<'a>(backend: &'a Backend, allowed: &[String]) -> Option<(&'a str, &'a str)> {
    backend.headers.iter().find_map(|header| {
        let secret = &header.value_from.as_ref()?.secret_key_ref.name;
        (!allowed.contains(secret)).then_some((header.name.as_str(), secret.as_str()))
    })
}

fn exclusion<M: Member>(member: &M, reason: &str, message: String) -> ExcludedMember {
    ExcludedMember {
        kind: M::KIND.as_str().to_owned(),
        name: member.name_any(),
        reason: reason.to_owned(),
        message,
    }
}

fn source<M: Member>(member: &M) -> Source {
    Source {
        kind: M::KIND.as_str().to_owned(),
        name: member.name_any(),
    }
}

fn endpoint(backend: &Backend, url: String) -> Endpoint {
    Endpoint {
        url,
        timeout_seconds: backend.timeout_seconds,
        retries: backend.retries,
        headers: backend
            .headers
            .iter()
            .filter_map(|header| {
                let value = match (&header.value, &header.value_from) {
                    (Some(value), _) => HeaderValue::Value(value.clone()),
                    (None, Some(from)) => HeaderValue::Secret {
                        name: from.secret_key_ref.name.clone(),
                        key: from.secret_key_ref.key.clone(),
                    },
                    (None, None) => return None,
                };
                Some(Header {
                    name: header.name.clone(),
                    value,
                })
            })
            .collect(),
    }
}

/// How many bytes `value` takes as JSON, without building the JSON.
pub fn json_size<T: serde::Serialize>(value: &T) -> usize {
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
pub fn secrets(published: &Published) -> BTreeMap<String, BTreeSet<String>> {
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

#[cfg(test)]
mod tests {
    use super::*;

    /// A tool at `generation` whose Ready condition was written for
    /// `checked` (None: never checked).
    fn tool(generation: i64, checked: Option<i64>) -> Arc<MCPTool> {
        let conditions: Vec<serde_json::Value> = checked
            .map(|g| {
                serde_json::json!({"type": "Ready", "status": "True", "reason": "Ready", "message": "",
                    "lastTransitionTime": "2026-11-26T00:00:00Z", "observedGeneration": g})
            })
            .into_iter()
            .collect();
        let tool = serde_json::json!({
            "apiVersion": "kubemcp.io/v1alpha1", "kind": "MCPTool",
            "metadata": {"name": "t", "namespace": "n", "generation": generation},
            "spec": {"description": "d", "inputSchema": {"type": "object"},
                     "backend": {"service": {"name": "b", "port": 80}}},
            "status": {"conditions": conditions},
        });
        Arc::new(serde_json::from_value(tool).expect("an MCPTool"))
    }

    #[test]
    fn members_changed_since_their_check_are_unchecked() {
        let selection = Selection {
            tools: vec![tool(1, Some(1)), tool(2, Some(1)), tool(1, None)],
            prompts: vec![],
            resources: vec![],
        };
        assert_eq!(selection.unchecked(), 2);
    }

    /// A Ready, resolved tool whose one header reads `secret`, if any.
    fn served_tool(name: &str, secret: Option<&str>) -> Arc<MCPTool> {
        let headers: Vec<serde_json::Value> = secret
            .map(|s| serde_json::json!({"name": "Authorization", "valueFrom": {"secretKeyRef": {"name": s, "key": "token"}}}))
            .into_iter()
            .collect();
        let tool = serde_json::json!({
            "apiVersion": "kubemcp.io/v1alpha1", "kind": "MCPTool",
            "metadata": {"name": name, "namespace": "n", "generation": 1},
            "spec": {"inputSchema": {"type": "object"},
                     "backend": {"service": {"name": "b", "port": 80}, "headers": headers}},
            "status": {"conditions": [{"type": "Ready", "status": "True", "reason": "Ready", "message": "",
                "lastTransitionTime": "2026-11-26T00:00:00Z", "observedGeneration": 1}],
                "resolvedEndpoint": "http://b.n.svc:80/"},
        });
        Arc::new(serde_json::from_value(tool).expect("an MCPTool"))
    }

    #[test]
    fn members_reading_secrets_the_server_does_not_list_are_not_served() {
        let server: MCPServer = serde_json::from_value(serde_json::json!({
            "apiVersion": "kubemcp.io/v1alpha1", "kind": "MCPServer",
            "metadata": {"name": "s", "namespace": "n"},
            "spec": {"toolSelector": {}, "backendSecrets": ["weather-token"]},
        }))
        .expect("an MCPServer");
        let selection = Selection {
            tools: vec![
                served_tool("a", Some("weather-token")),
                served_tool("b", Some("payments-token")),
                served_tool("c", None),
            ],
            prompts: vec![],
            resources: vec![],
        };
        let assembly = assemble(&server, &selection);
        let names: Vec<_> = assembly
            .catalog
            .tools
            .iter()
            .map(|t| t.name.as_str())
            .collect();
        assert_eq!(names, ["a", "c"]);
        assert_eq!(
            assembly.excluded,
            [ExcludedMember {
                kind: "MCPTool".into(),
                name: "b".into(),
                reason: "SecretNotAllowed".into(),
                message: "Its backend header 'Authorization' reads Secret 'payments-token', which the server's spec.backendSecrets does not list.".into(),
            }]
        );
    }
}
