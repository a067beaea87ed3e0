//! `MCPResource`: an MCP resource with inline content or content fetched
//! from a backend.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
use kube::{CustomResource, KubeSchema};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::backend::Backend;

/// An MCP resource: exactly one of `text`, `blob` or `backend` gives its content.
#[derive(CustomResource, Clone, Debug, PartialEq, Serialize, Deserialize, KubeSchema)]
#[kube(
    group = "kubemcp.io",
    version = "v1alpha1",
    kind = "MCPResource",
    plural = "mcpresources",
    shortname = "mcpr",
    category = "mcp",
    namespaced,
    status = "MCPResourceStatus",
    printcolumn = r#"{"name":"URI","type":"string","jsonPath":".spec.uri"}"#,
    printcolumn = r#"{"name":"Ready","type":"string","jsonPath":".status.conditions[?(@.type==\"Ready\")].status"}"#,
    printcolumn = r#"{"name":"Reason","type":"string","jsonPath":".status.conditions[?(@.type==\"Ready\")].reason"}"#,
    printcolumn = r#"{"name":"Age","type":"date","jsonPath":".metadata.creationTimestamp"}"#
)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new("[has(self.text), has(self.blob), has(self.backend)].filter(x, x).size() == 1").message("exactly one of text, blob or backend must be set"))]
pub struct MCPResourceSpec {
    /// The resource's URI, absolute (with a scheme), e.g. `file:///guide.md`.
    #[x_kube(validation = Rule::new("self.matches('^[A-Za-z][A-Za-z0-9+.-]*:')").message("uri must be an absolute URI that starts with a scheme, e.g. docs://guide"))]
    #[schemars(length(min = 1, max = 2048))]
    pub uri: String,
    /// The resource's MCP name; defaults to metadata.name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 128))]
    pub name: Option<String>,
    /// Human-readable name for display.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub title: Option<String>,
    /// What the resource holds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// MIME type of the content.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mime_type: Option<String>,
    /// Inline text content.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub text: Option<String>,
    /// Inline binary content, base64-encoded.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(extend("format" = "byte"))]
    pub blob: Option<String>,
    /// Content read with GET from a backend on every resources/read.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub backend: Option<Backend>,
}

/// Observed state of an MCPResource.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct MCPResourceStatus {
    /// The metadata.generation the conditions describe.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// ContentValid, BackendResolved and Ready.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(extend("x-kubernetes-list-type" = "map", "x-kubernetes-list-map-keys" = ["type"]))]
    pub conditions: Vec<Condition>,
    /// The URL content is read from, for a backend resource.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resolved_endpoint: Option<String>,
}
