//! The catalog this router serves now, compiled once per version: MCP list
//! entries built, argument validators compiled, lookups indexed. A
//! `watch` channel holds it, so every request reads the current version
//! without locking and every open stream learns of a new one.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use mcp_operator_catalog::{Catalog, CatalogVersion, Prompt, Published, Resource, Tool};
use rmcp::model;
use serde_json::{Value, json};
use tokio::sync::watch;

use crate::metrics;

/// One tool: the catalog entry, its MCP form and its argument validator.
pub struct CompiledTool {
    pub entry: Tool,
    pub listed: model::Tool,
    /// `Err` when the schema does not compile (the controller compiles it
    /// first, so only a hand-written catalog gets here); calls then fail
    /// with that error instead of the whole catalog being refused.
    pub validator: Result<jsonschema::Validator, String>,
}

/// One catalog version, ready to serve.
pub struct Compiled {
    pub version: CatalogVersion,
    pub catalog: Catalog,
    pub tools: Vec<CompiledTool>,
    tool_index: HashMap<String, usize>,
    pub prompts: Vec<model::Prompt>,
    prompt_index: HashMap<String, usize>,
    pub resources: Vec<model::Resource>,
    resource_index: HashMap<String, usize>,
}

impl Compiled {
    /// Builds the MCP forms of every entry and compiles the validators.
    pub fn new(published: Published) -> Result<Self, serde_json::Error> {
        let Published { version, catalog } = published;
        let tools = catalog
            .tools
            .iter()
            .map(|tool| {
                Ok(CompiledTool {
                    listed: serde_json::from_value(listed_tool(tool))?,
                    validator: jsonschema::validator_for(&tool.input_schema)
                        .map_err(|e| e.to_string()),
                    entry: tool.clone(),
                })
            })
            .collect::<Result<Vec<_>, serde_json::Error>>()?;
        let prompts = catalog
            .prompts
            .iter()
            .map(|p| serde_json::from_value(listed_prompt(p)))
            .collect::<Result<Vec<_>, _>>()?;
        let resources = catalog
            .resources
            .iter()
            .map(|r| serde_json::from_value(listed_resource(r)))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Self {
            tool_index: index(catalog.tools.iter().map(|t| t.name.clone())),
            prompt_index: index(catalog.prompts.iter().map(|p| p.name.clone())),
            resource_index: index(catalog.resources.iter().map(|r| r.uri.clone())),
            version,
            catalog,
            tools,
            prompts,
            resources,
        })
    }

    pub fn tool(&self, name: &str) -> Option<&CompiledTool> {
        self.tool_index.get(name).map(|&i| &self.tools[i])
    }

    pub fn prompt(&self, name: &str) -> Option<&Prompt> {
        self.prompt_index
            .get(name)
            .map(|&i| &self.catalog.prompts[i])
    }

    pub fn resource(&self, uri: &str) -> Option<&Resource> {
        self.resource_index
            .get(uri)
            .map(|&i| &self.catalog.resources[i])
    }

    /// What changed between two versions, for list_changed notifications.
    pub fn changes_from(&self, old: Option<&Compiled>) -> Changes {
        let Some(old) = old else {
            return Changes::ALL;
        };
        Changes {
            tools: old.catalog.tools != self.catalog.tools,
            prompts: old.catalog.prompts != self.catalog.prompts,
            resources: old.catalog.resources != self.catalog.resources,
        }
    }
}

/// Which lists differ between two catalog versions.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Changes {
    pub tools: bool,
    pub prompts: bool,
    pub resources: bool,
}

impl Changes {
    pub const ALL: Self = Self {
        tools: true,
        prompts: true,
        resources: true,
    };
}

fn index(keys: impl Iterator<Item = String>) -> HashMap<String, usize> {
    keys.enumerate().map(|(i, key)| (key, i)).collect()
}

fn listed_tool(tool: &Tool) -> Value {
    let mut listed = json!({"name": tool.name, "inputSchema": tool.input_schema});
    set(&mut listed, "title", &tool.title);
    set(&mut listed, "description", &tool.description);
    set(&mut listed, "outputSchema", &tool.output_schema);
    set(&mut listed, "annotations", &tool.annotations);
    listed
}

fn listed_prompt(prompt: &Prompt) -> Value {
    let mut listed = json!({"name": prompt.name, "arguments": prompt.arguments});
    set(&mut listed, "title", &prompt.title);
    set(&mut listed, "description", &prompt.description);
    listed
}

fn listed_resource(resource: &Resource) -> Value {
    let mut listed = json!({"uri": resource.uri, "name": resource.name});
    set(&mut listed, "title", &resource.title);
    set(&mut listed, "description", &resource.description);
    set(&mut listed, "mimeType", &resource.mime_type);
    listed
}

fn set<T: serde::Serialize>(object: &mut Value, key: &str, value: &Option<T>) {
    if let Some(value) = value {
        object[key] = json!(value);
    }
}

/// The served catalog and whether it may be stale. Cheap to clone.
#[derive(Clone)]
pub struct CatalogState {
    current: watch::Sender<Option<Arc<Compiled>>>,
    stale: Arc<AtomicBool>,
}

impl Default for CatalogState {
    fn default() -> Self {
        Self {
            current: watch::Sender::new(None),
            stale: Arc::new(AtomicBool::new(false)),
        }
    }
}

impl CatalogState {
    /// The catalog being served, if one was ever loaded.
    pub fn current(&self) -> Option<Arc<Compiled>> {
        self.current.borrow().clone()
    }

    pub fn version(&self) -> Option<CatalogVersion> {
        self.current.borrow().as_ref().map(|c| c.version.clone())
    }

    /// Serves `compiled` from now on; open streams wake up.
    pub fn replace(&self, compiled: Compiled) {
        metrics::catalog_loaded(self.current().as_deref(), &compiled);
        self.current.send_replace(Some(Arc::new(compiled)));
    }

    /// A receiver that wakes on every new version.
    pub fn subscribe(&self) -> watch::Receiver<Option<Arc<Compiled>>> {
        let mut receiver = self.current.subscribe();
        receiver.mark_unchanged();
        receiver
    }

    /// Whether Redis was unreachable at the last attempt to check the
    /// version.
    pub fn set_stale(&self, stale: bool) {
        self.stale.store(stale, Ordering::Relaxed);
        metrics::catalog_stale(stale);
    }

    pub fn is_stale(&self) -> bool {
        self.stale.load(Ordering::Relaxed)
    }

    /// Ready once a catalog is loaded.
    pub fn is_ready(&self) -> bool {
        self.current.borrow().is_some()
    }
}
