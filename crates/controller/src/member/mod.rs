//! What differs between the three member kinds (MCPTool, MCPPrompt,
//! MCPResource): how each is checked, what it is keyed by in a catalog,
//! which selector of an MCPServer picks it, and its status shape.

pub mod backend;
pub mod check;
pub mod validate;

use std::fmt::Debug;

use k8s_openapi::NamespaceResourceScope;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, LabelSelector};
use kube::{Resource, ResourceExt};
use mcp_operator_api::{Backend, MCPPrompt, MCPResource, MCPServerSpec, MCPTool};
use serde::Serialize;
use serde::de::DeserializeOwned;

use validate::Problem;

/// A member kind, for logs, metrics, status and the membership index.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Kind {
    Tool,
    Prompt,
    Resource,
}

impl Kind {
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Tool => "MCPTool",
            Kind::Prompt => "MCPPrompt",
            Kind::Resource => "MCPResource",
        }
    }
}

/// A member resource the operator checks and MCPServers select.
pub trait Member:
    Resource<DynamicType = (), Scope = NamespaceResourceScope>
    + Clone
    + Debug
    + DeserializeOwned
    + Serialize
    + Send
    + Sync
    + 'static
{
    const KIND: Kind;

    /// The checks that need no cluster state.
    fn check_spec(&self) -> Result<(), Problem>;
    /// The backend to resolve, if the member has one.
    fn backend(&self) -> Option<&Backend>;
    /// What the member is known by in a catalog: its MCP name, or a
    /// resource's URI. Two selected members with one key collide.
    fn catalog_key(&self) -> String;
    /// The server selector that picks members of this kind.
    fn selector(spec: &MCPServerSpec) -> Option<&LabelSelector>;
    fn conditions(&self) -> &[Condition];
    fn resolved_endpoint(&self) -> Option<&str>;
}

/// The status subresource body of any member; a prompt has no endpoint
/// (`None` fields are left out when status is applied).
pub fn status(
    conditions: Vec<Condition>,
    generation: Option<i64>,
    endpoint: Option<String>,
) -> serde_json::Value {
    serde_json::json!({
        "observedGeneration": generation,
        "conditions": conditions,
        "resolvedEndpoint": endpoint,
    })
}

impl Member for MCPTool {
    const KIND: Kind = Kind::Tool;

    fn check_spec(&self) -> Result<(), Problem> {
        validate::tool(&self.spec, &self.catalog_key())
    }
    fn backend(&self) -> Option<&Backend> {
        Some(&self.spec.backend.endpoint)
    }
    fn catalog_key(&self) -> String {
        self.spec.name.clone().unwrap_or_else(|| self.name_any())
    }
    fn selector(spec: &MCPServerSpec) -> Option<&LabelSelector> {
        spec.tool_selector.as_ref()
    }
    fn conditions(&self) -> &[Condition] {
        self.status.as_ref().map_or(&[], |s| &s.conditions)
    }
    fn resolved_endpoint(&self) -> Option<&str> {
        self.status.as_ref()?.resolved_endpoint.as_deref()
    }
}

impl Member for MCPPrompt {
    const KIND: Kind = Kind::Prompt;

    fn check_spec(&self) -> Result<(), Problem> {
        validate::prompt(&self.spec, &self.catalog_key())
    }
    fn backend(&self) -> Option<&Backend> {
        None
    }
    fn catalog_key(&self) -> String {
        self.spec.name.clone().unwrap_or_else(|| self.name_any())
    }
    fn selector(spec: &MCPServerSpec) -> Option<&LabelSelector> {
        spec.prompt_selector.as_ref()
    }
    fn conditions(&self) -> &[Condition] {
        self.status.as_ref().map_or(&[], |s| &s.conditions)
    }
    fn resolved_endpoint(&self) -> Option<&str> {
        None
    }
}

impl Member for MCPResource {
    const KIND: Kind = Kind::Resource;

    fn check_spec(&self) -> Result<(), Problem> {
        validate::resource(&self.spec)
    }
    fn backend(&self) -> Option<&Backend> {
        self.spec.backend.as_ref()
    }
    fn catalog_key(&self) -> String {
        self.spec.uri.clone()
    }
    fn selector(spec: &MCPServerSpec) -> Option<&LabelSelector> {
        spec.resource_selector.as_ref()
    }
    fn conditions(&self) -> &[Condition] {
        self.status.as_ref().map_or(&[], |s| &s.conditions)
    }
    fn resolved_endpoint(&self) -> Option<&str> {
        self.status.as_ref()?.resolved_endpoint.as_deref()
    }
}
