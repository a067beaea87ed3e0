//! The `kubemcp.io/v1alpha1` API: the four custom resources the operator
//! reconciles and the CustomResourceDefinitions generated from them.
//!
//! Validation that needs no cluster state lives in the generated schemas
//! (OpenAPI constraints and CEL rules) so the apiserver rejects bad objects
//! before they are stored; everything that needs other objects (Services,
//! JSON Schema meta-validation, template parsing) is the controllers' job and
//! is reported in status conditions.

pub mod backend;
pub mod prompt;
pub mod reference;
pub mod resource;
mod schema;
pub mod server;
pub mod tool;

use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::CustomResourceExt;

pub use backend::{
    Backend, BackendHeader, HeaderValueSource, HttpMethod, RESERVED_HEADERS, ServiceRef,
    ToolBackend,
};
pub use prompt::{MCPPrompt, MCPPromptSpec, MCPPromptStatus, PromptArgument, PromptMessage, Role};
pub use resource::{MCPResource, MCPResourceSpec, MCPResourceStatus};
pub use server::{
    ExcludedMember, IngressSpec, MCPServer, MCPServerSpec, MCPServerStatus, ServerInfo,
    ServiceExposure, ServiceType,
};
pub use tool::{MCPTool, MCPToolSpec, MCPToolStatus, ToolAnnotations};

/// The API group of every resource in this crate.
pub const GROUP: &str = "kubemcp.io";

/// Every CustomResourceDefinition of the API, in a stable order.
pub fn crds() -> Vec<CustomResourceDefinition> {
    vec![
        MCPTool::crd(),
        MCPPrompt::crd(),
        MCPResource::crd(),
        MCPServer::crd(),
    ]
}

/// Every CRD rendered as YAML with its file name (`<plural>.<group>.yaml`):
/// exactly the files committed under `manifests/base/crds/`.
pub fn crd_manifests() -> Result<Vec<(String, String)>, serde_yaml_ng::Error> {
    crds()
        .into_iter()
        .map(|crd| {
            let file = format!("{}.yaml", crd.metadata.name.as_deref().unwrap_or_default());
            serde_yaml_ng::to_string(&crd).map(|yaml| (file, yaml))
        })
        .collect()
}
