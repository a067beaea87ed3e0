//! `MCPServer`: selects tools, prompts and resources by label and runs
//! router pods that serve them over MCP.

use k8s_openapi::api::core::v1::{EnvVar, ResourceRequirements};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, LabelSelector};
use kube::{CustomResource, KubeSchema};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// An MCP server assembled from the MCPTools, MCPPrompts and MCPResources
/// of its namespace that its selectors match.
#[derive(CustomResource, Clone, Debug, PartialEq, Serialize, Deserialize, KubeSchema)]
#[kube(
    group = "kubemcp.io",
    version = "v1alpha1",
    kind = "MCPServer",
    plural = "mcpservers",
    shortname = "mcps",
    category = "mcp",
    namespaced,
    status = "MCPServerStatus",
    printcolumn = r#"{"name":"Ready","type":"string","jsonPath":".status.conditions[?(@.type==\"Ready\")].status"}"#,
    printcolumn = r#"{"name":"Reason","type":"string","jsonPath":".status.conditions[?(@.type==\"Ready\")].reason"}"#,
    printcolumn = r#"{"name":"Tools","type":"integer","jsonPath":".status.toolCount"}"#,
    printcolumn = r#"{"name":"Prompts","type":"integer","jsonPath":".status.promptCount"}"#,
    printcolumn = r#"{"name":"Resources","type":"integer","jsonPath":".status.resourceCount"}"#,
    printcolumn = r#"{"name":"Replicas","type":"integer","jsonPath":".status.readyReplicas"}"#,
    printcolumn = r#"{"name":"URL","type":"string","priority":1,"jsonPath":".status.url"}"#,
    printcolumn = r#"{"name":"Age","type":"date","jsonPath":".metadata.creationTimestamp"}"#
)]
#[serde(rename_all = "camelCase")]
pub struct MCPServerSpec {
    /// Selects the MCPTools of this namespace to serve; none when absent,
    /// all when empty (`{}`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tool_selector: Option<LabelSelector>,
    /// Selects the MCPPrompts of this namespace to serve; none when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prompt_selector: Option<LabelSelector>,
    /// Selects the MCPResources of this namespace to serve; none when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resource_selector: Option<LabelSelector>,
    /// Number of router pods.
    #[serde(default = "default_replicas")]
    #[schemars(range(min = 0, max = 100))]
    pub replicas: i32,
    /// Router image; defaults to the operator's own image. Another image
    /// must match the operator's `--allowed-router-images`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 512))]
    pub image: Option<String>,
    /// What the server tells clients at initialize.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub server_info: Option<ServerInfo>,
    /// How the routers are exposed inside the cluster.
    #[serde(default)]
    pub service: ServiceExposure,
    /// An Ingress in front of the Service, when set.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ingress: Option<IngressSpec>,
    /// Compute resources of each router container.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resources: Option<ResourceRequirements>,
    /// Extra environment variables of each router container. `MCP_*`
    /// names are the operator's: they configure which catalog, Redis and
    /// Secrets a router uses.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[x_kube(validation = Rule::new("self.all(e, !e.name.startsWith('MCP_'))").message("env may not set MCP_* variables: the operator sets them"))]
    #[schemars(length(max = 64), extend("x-kubernetes-list-type" = "map", "x-kubernetes-list-map-keys" = ["name"]))]
    pub env: Vec<EnvVar>,
    /// The Secrets of this namespace whose keys the selected members' backend
    /// headers may send: a member whose header names a Secret not listed here
    /// is not served (status.excluded, reason SecretNotAllowed). Only the
    /// keys the served headers name are mounted into the routers.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[x_kube(validation = Rule::new("self.all(s, s.matches('^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$'))").message("backendSecrets must be Secret names: lowercase letters, digits, '-' and '.'"))]
    #[schemars(length(max = 64), inner(length(min = 1, max = 253)), extend("x-kubernetes-list-type" = "set"))]
    pub backend_secrets: Vec<String>,
}

/// Identity the server reports in the MCP initialize result.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct ServerInfo {
    /// Server name; defaults to metadata.name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// Server version; defaults to the operator's version.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version: Option<String>,
    /// Instructions for the model on how to use this server.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub instructions: Option<String>,
}

/// The Service in front of the router pods.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct ServiceExposure {
    /// Service type.
    #[serde(default, rename = "type")]
    pub type_: ServiceType,
    /// Service port; the routers listen on 8080 behind it.
    #[serde(default = "default_service_port")]
    #[schemars(range(min = 1, max = 65535))]
    pub port: i32,
}

impl Default for ServiceExposure {
    fn default() -> Self {
        Self {
            type_: ServiceType::default(),
            port: default_service_port(),
        }
    }
}

/// Kubernetes Service types a router Service may have.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub enum ServiceType {
    #[default]
    ClusterIP,
    NodePort,
    LoadBalancer,
}

/// An Ingress routing `host` + `path` to the router Service.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct IngressSpec {
    /// Host name the Ingress serves.
    #[schemars(length(min = 1, max = 253))]
    pub host: String,
    /// Path prefix; the MCP endpoint is `<path>/mcp` below it.
    #[serde(default = "default_ingress_path")]
    #[x_kube(validation = Rule::new("self.startsWith('/')").message("ingress path must start with '/'"))]
    pub path: String,
    /// IngressClass to use; the cluster default when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub class_name: Option<String>,
    /// A TLS Secret for `host`; plain HTTP when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tls_secret_name: Option<String>,
}

/// Observed state of an MCPServer.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct MCPServerStatus {
    /// The metadata.generation the conditions describe.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// CatalogPublished, DeploymentAvailable and Ready.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(extend("x-kubernetes-list-type" = "map", "x-kubernetes-list-map-keys" = ["type"]))]
    pub conditions: Vec<Condition>,
    /// Router pods that are ready.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ready_replicas: Option<i32>,
    /// In-cluster URL of the MCP endpoint.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub url: Option<String>,
    /// Tools in the published catalog.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tool_count: Option<i32>,
    /// Prompts in the published catalog.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prompt_count: Option<i32>,
    /// Resources in the published catalog.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resource_count: Option<i32>,
    /// Content hash of the published catalog.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub catalog_version: Option<String>,
    /// Selected members that are not served, and why: not Ready, or a name
    /// that another selected member also uses. At most 100 entries.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub excluded: Vec<ExcludedMember>,
}

/// A member an MCPServer selects but does not serve.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize, JsonSchema)]
pub struct ExcludedMember {
    /// MCPTool, MCPPrompt or MCPResource.
    pub kind: String,
    /// The member's metadata.name.
    pub name: String,
    /// NotReady, NameCollision or SecretNotAllowed.
    pub reason: String,
    /// One sentence that explains it.
    pub message: String,
}

fn default_replicas() -> i32 {
    1
}

fn default_service_port() -> i32 {
    80
}

fn default_ingress_path() -> String {
    "/".to_owned()
}
