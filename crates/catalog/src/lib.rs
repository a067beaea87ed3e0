//! The catalog: everything an MCPServer's routers serve, as one document.
//!
//! The controller builds a [`Catalog`] from the tools, prompts and resources
//! an MCPServer selects and publishes it to Redis under the keys in
//! [`keys`]; the router reads exactly this type back, signed
//! ([`signature`]). Its format and the keys are documented in
//! `docs/catalog.md`.

pub mod acl;
pub mod keys;
pub mod router;
pub mod signature;

use std::fmt;

use mcp_operator_api::{HttpMethod, PromptArgument, PromptMessage, ToolAnnotations};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

/// An MCPServer, by namespace and name: the unit a catalog belongs to.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct ServerId {
    pub namespace: String,
    pub name: String,
}

impl fmt::Display for ServerId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.namespace, self.name)
    }
}

/// Everything one MCPServer serves. Lists are sorted (tools and prompts by
/// name, resources by URI) so equal content always serializes, and hashes,
/// the same.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Catalog {
    pub server: ServerId,
    pub server_info: ServerInfo,
    pub tools: Vec<Tool>,
    pub prompts: Vec<Prompt>,
    pub resources: Vec<Resource>,
}

/// What the router reports at MCP initialize.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ServerInfo {
    pub name: String,
    pub version: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub instructions: Option<String>,
}

/// The object a catalog entry was built from, for errors and status.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct Source {
    pub kind: String,
    pub name: String,
}

/// One tool, with its backend resolved to a URL.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Tool {
    pub name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub title: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    pub input_schema: serde_json::Value,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub output_schema: Option<serde_json::Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub annotations: Option<ToolAnnotations>,
    pub endpoint: Endpoint,
    pub method: HttpMethod,
    pub source: Source,
}

/// A resolved backend: where to send a request and how.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Endpoint {
    /// e.g. `http://weather.team-a.svc:8080/forecast`
    pub url: String,
    pub timeout_seconds: u32,
    pub retries: u32,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub headers: Vec<Header>,
}

/// A header sent to a backend. Secret values never enter the catalog: the
/// router reads them from the Secret volume the operator mounts.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Header {
    pub name: String,
    #[serde(flatten)]
    pub value: HeaderValue,
}

/// Where a header's value comes from.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum HeaderValue {
    /// A literal, non-secret value.
    Value(String),
    /// A key of a Secret in the server's namespace.
    Secret { name: String, key: String },
}

/// One prompt: its templates are rendered by the router.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Prompt {
    pub name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub title: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub arguments: Vec<PromptArgument>,
    pub messages: Vec<PromptMessage>,
    pub source: Source,
}

/// One resource: inline content, or a backend read with GET.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Resource {
    pub uri: String,
    pub name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub title: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mime_type: Option<String>,
    pub content: ResourceContent,
    pub source: Source,
}

/// Where a resource's content comes from.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum ResourceContent {
    Text(String),
    /// Base64, as in the MCPResource.
    Blob(String),
    Backend(Endpoint),
}

/// A catalog's content hash: equal catalogs have equal versions, so a
/// reconcile that changes nothing can tell and publish nothing.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct CatalogVersion(pub String);

impl fmt::Display for CatalogVersion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl Catalog {
    /// Sorts every list into catalog order.
    pub fn normalize(&mut self) {
        self.tools.sort_by(|a, b| a.name.cmp(&b.name));
        self.prompts.sort_by(|a, b| a.name.cmp(&b.name));
        self.resources.sort_by(|a, b| a.uri.cmp(&b.uri));
    }

    /// The first endpoint (tool or resource backend) that is not a Service
    /// of `namespace`, i.e. whose URL is not `http(s)://<service>.<namespace>.svc[:port]/…`
    /// without credentials. The operator resolves every backend to such a
    /// URL, so anything else was not written by it, and a router refuses it.
    pub fn endpoint_outside(&self, namespace: &str) -> Option<&str> {
        let suffix = format!(".{namespace}.svc");
        let inside = |raw: &str| {
            let Ok(url) = url::Url::parse(raw) else {
                return false;
            };
            let service = url
                .host_str()
                .and_then(|host| host.strip_suffix(suffix.as_str()));
            matches!(url.scheme(), "http" | "https")
                && url.username().is_empty()
                && url.password().is_none()
                && service.is_some_and(|s| !s.is_empty() && !s.contains('.'))
        };
        let resources = self.resources.iter().filter_map(|r| match &r.content {
            ResourceContent::Backend(endpoint) => Some(endpoint),
            ResourceContent::Text(_) | ResourceContent::Blob(_) => None,
        });
        self.tools
            .iter()
            .map(|t| &t.endpoint)
            .chain(resources)
            .map(|e| e.url.as_str())
            .find(|url| !inside(url))
    }

    /// The [`digest`] of the canonical JSON.
    pub fn version(&self) -> CatalogVersion {
        CatalogVersion(digest(&self.canonical_json()))
    }

    /// The bytes the version hashes: serde_json writes struct fields in
    /// declaration order and free-form objects (schemas) with sorted keys.
    fn canonical_json(&self) -> Vec<u8> {
        serde_json::to_vec(self).unwrap_or_default()
    }
}

/// SHA-256 of `bytes`, hex, truncated to 128 bits: a catalog's version,
/// and the operator's record of what it applied to an object.
pub fn digest(bytes: &[u8]) -> String {
    let hash = Sha256::digest(bytes);
    hash[..16].iter().map(|b| format!("{b:02x}")).collect()
}

/// What Redis holds for a server: the catalog and its version together, so
/// a reader never pairs one version with another's content.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Published {
    pub version: CatalogVersion,
    pub catalog: Catalog,
}

impl Published {
    /// `catalog` with its version.
    pub fn new(catalog: Catalog) -> Self {
        Self {
            version: catalog.version(),
            catalog,
        }
    }
}

/// The message on a server's invalidation channel. `version: None` is a
/// tombstone: the server was deleted.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Invalidation {
    pub server: ServerId,
    pub version: Option<CatalogVersion>,
}
