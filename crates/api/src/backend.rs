//! Where a tool call or a resource read is sent: an HTTP endpoint on a
//! Service in the resource's own namespace.

use k8s_openapi::api::core::v1::SecretKeySelector;
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use kube::KubeSchema;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// A Service in the same namespace, and one of its ports.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct ServiceRef {
    /// Name of the Service.
    #[schemars(length(min = 1, max = 63))]
    pub name: String,
    /// The Service port, by number or by name.
    pub port: IntOrString,
}

/// Header names a backend header may not set: the router owns the request's
/// framing and its target (Host), so a member cannot smuggle a second request
/// or redirect the call through them.
pub const RESERVED_HEADERS: [&str; 11] = [
    "host",
    "content-length",
    "connection",
    "keep-alive",
    "proxy-connection",
    "proxy-authenticate",
    "proxy-authorization",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
];

/// One HTTP header sent to the backend with every request.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, KubeSchema)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new("has(self.value) != has(self.valueFrom)").message("a header needs exactly one of value or valueFrom"))]
pub struct BackendHeader {
    /// Header name; not Host, Content-Length or a hop-by-hop header.
    #[schemars(
        length(min = 1, max = 256),
        regex(pattern = r"^[A-Za-z0-9!#$%&'*+.^_`|~-]+$")
    )]
    #[x_kube(validation = Rule::new("!(self.lowerAscii() in ['host', 'content-length', 'connection', 'keep-alive', 'proxy-connection', 'proxy-authenticate', 'proxy-authorization', 'te', 'trailer', 'transfer-encoding', 'upgrade'])").message("a header may not be Host, Content-Length or a hop-by-hop header: the router sets them"))]
    pub name: String,
    /// A literal value, for headers that are not secret.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub value: Option<String>,
    /// A value read from a Secret in the same namespace; it is never logged.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub value_from: Option<HeaderValueSource>,
}

/// Where a secret header value comes from. Its Secret name and key are
/// checked by the operator (`InvalidHeader`): a CEL rule on them would
/// cost more than the apiserver allows, as k8s-openapi bounds neither.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct HeaderValueSource {
    /// A key of a Secret in the same namespace.
    pub secret_key_ref: SecretKeySelector,
}

/// The part of a backend shared by tools and resources.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Backend {
    /// The Service that serves the endpoint.
    pub service: ServiceRef,
    /// Request path on the Service.
    #[serde(default = "default_path")]
    #[schemars(length(max = 2048), regex(pattern = r"^/"))]
    pub path: String,
    /// Per-attempt timeout of a request, in seconds.
    #[serde(default = "default_timeout_seconds")]
    // Kubernetes knows int32, not schemars' uint32; the range keeps it unsigned.
    #[schemars(range(min = 1, max = 600), extend("format" = "int32"))]
    pub timeout_seconds: u32,
    /// Retries after a failed attempt (connection errors, 502, 503, 504);
    /// only idempotent requests are retried.
    #[serde(default)]
    #[schemars(range(max = 10), extend("format" = "int32"))]
    pub retries: u32,
    /// Headers sent with every request.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 32), extend("x-kubernetes-list-type" = "map", "x-kubernetes-list-map-keys" = ["name"]))]
    pub headers: Vec<BackendHeader>,
}

/// A tool's backend: a [`Backend`] and the HTTP method its calls use.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ToolBackend {
    #[serde(flatten)]
    pub endpoint: Backend,
    /// HTTP method of a call; the tool's arguments are the JSON body, or the
    /// query string for GET and DELETE.
    #[serde(default)]
    pub method: HttpMethod,
}

/// HTTP methods a tool backend may be called with.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "UPPERCASE")]
pub enum HttpMethod {
    Get,
    #[default]
    Post,
    Put,
    Patch,
    Delete,
}

fn default_path() -> String {
    "/".to_owned()
}

fn default_timeout_seconds() -> u32 {
    30
}
