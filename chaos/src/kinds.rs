//! The kinds a load test creates and reads, as dynamic API resources so one
//! code path creates, lists and patches them all.

use k8s_openapi::api::core::v1::{Namespace, Service};
use kube::api::ApiResource;
use mcp_operator_api::{MCPPrompt, MCPResource, MCPServer, MCPTool};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    Namespace,
    Service,
    Tool,
    Prompt,
    Resource,
    Server,
}

impl Kind {
    /// The kinds the operator reconciles.
    pub const RECONCILED: [Kind; 4] = [Kind::Tool, Kind::Prompt, Kind::Resource, Kind::Server];

    pub fn resource(self) -> ApiResource {
        match self {
            Kind::Namespace => ApiResource::erase::<Namespace>(&()),
            Kind::Service => ApiResource::erase::<Service>(&()),
            Kind::Tool => ApiResource::erase::<MCPTool>(&()),
            Kind::Prompt => ApiResource::erase::<MCPPrompt>(&()),
            Kind::Resource => ApiResource::erase::<MCPResource>(&()),
            Kind::Server => ApiResource::erase::<MCPServer>(&()),
        }
    }
}
