//! Checks of a member's spec that need no cluster state: JSON Schemas,
//! prompt templates, resource URIs and inline content. Each failure is a
//! reason and one sentence for a status condition.

use std::collections::BTreeSet;

use base64::Engine;
use mcp_operator_api::{MCPPromptSpec, MCPResourceSpec, MCPToolSpec};

/// Why a spec is invalid, as a condition reason and message.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Problem {
    pub reason: &'static str,
    pub message: String,
}

impl Problem {
    pub fn new(reason: &'static str, message: impl Into<String>) -> Self {
        Self {
            reason,
            message: message.into(),
        }
    }
}

/// Inline resource content above this is refused: routers hold every
/// catalog in memory and Redis values should stay small.
pub const MAX_INLINE_BYTES: usize = 1024 * 1024;

/// The MCP tool and prompt name rule: 1–128 of `[A-Za-z0-9_.-]`.
pub fn mcp_name(field: &str, name: &str) -> Result<(), Problem> {
    let valid = (1..=128).contains(&name.len())
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'-'));
    if valid {
        Ok(())
    } else {
        Err(Problem::new(
            "InvalidName",
            format!(
                "{field} '{name}' must be 1 to 128 characters of letters, digits, '_', '.' or '-'."
            ),
        ))
    }
}

/// A tool's input (and output) schema must be a valid JSON Schema of type
/// object that compiles without fetching anything.
pub fn tool(spec: &MCPToolSpec, name: &str) -> Result<(), Problem> {
    mcp_name("tool name", name)?;
    object_schema("inputSchema", &spec.input_schema)?;
    if let Some(output) = &spec.output_schema {
        object_schema("outputSchema", output)?;
    }
    Ok(())
}

fn object_schema(field: &str, schema: &serde_json::Value) -> Result<(), Problem> {
    if let Err(error) = jsonschema::meta::validate(schema) {
        let path = error.instance_path().as_str();
        let at = if path.is_empty() {
            "the root".to_owned()
        } else {
            format!("'{path}'")
        };
        return Err(Problem::new(
            "InvalidSchema",
            format!("{field} is not a valid JSON Schema at {at}: {error}."),
        ));
    }
    if schema.get("type").and_then(serde_json::Value::as_str) != Some("object") {
        return Err(Problem::new(
            "InvalidSchema",
            format!("{field} must be a JSON Schema with \"type\": \"object\"."),
        ));
    }
    // Compiling catches what the meta-schema cannot: unresolvable $refs
    // (remote ones are never fetched) and invalid regular expressions.
    jsonschema::validator_for(schema)
        .map(drop)
        .map_err(|error| {
            Problem::new(
                "InvalidSchema",
                format!("{field} cannot be compiled: {error}."),
            )
        })
}

/// Every message template parses, uses only declared arguments, and every
/// required argument is used somewhere.
pub fn prompt(spec: &MCPPromptSpec, name: &str) -> Result<(), Problem> {
    mcp_name("prompt name", name)?;
    let env = minijinja::Environment::new();
    let globals: BTreeSet<&str> = env.globals().map(|(name, _)| name).collect();
    let declared: BTreeSet<&str> = spec.arguments.iter().map(|a| a.name.as_str()).collect();
    let mut used = BTreeSet::new();
    for (index, message) in spec.messages.iter().enumerate() {
        let template = env.template_from_str(&message.content).map_err(|error| {
            Problem::new(
                "InvalidTemplate",
                format!("messages[{index}].content does not parse: {error}."),
            )
        })?;
        let mut variables: Vec<String> = template.undeclared_variables(false).into_iter().collect();
        variables.sort();
        for variable in variables {
            if globals.contains(variable.as_str()) {
                continue;
            }
            if !declared.contains(variable.as_str()) {
                return Err(Problem::new(
                    "UndeclaredArgument",
                    format!(
                        "messages[{index}].content uses '{variable}', which is not a declared argument."
                    ),
                ));
            }
            used.insert(variable);
        }
    }
    if let Some(unused) = spec
        .arguments
        .iter()
        .find(|a| a.required && !used.contains(&a.name))
    {
        return Err(Problem::new(
            "UnusedArgument",
            format!(
                "required argument '{}' is not used by any message.",
                unused.name
            ),
        ));
    }
    Ok(())
}

/// The URI is absolute and inline content is within [`MAX_INLINE_BYTES`].
pub fn resource(spec: &MCPResourceSpec) -> Result<(), Problem> {
    url::Url::parse(&spec.uri).map_err(|error| {
        Problem::new(
            "InvalidURI",
            format!("uri '{}' is not an absolute URI: {error}.", spec.uri),
        )
    })?;
    let size = match (&spec.text, &spec.blob) {
        (Some(text), _) => text.len(),
        (None, Some(blob)) => base64::engine::general_purpose::STANDARD
            .decode(blob)
            .map_err(|error| {
                Problem::new("InvalidBlob", format!("blob is not valid base64: {error}."))
            })?
            .len(),
        (None, None) => 0,
    };
    if size > MAX_INLINE_BYTES {
        return Err(Problem::new(
            "ContentTooLarge",
            format!(
                "inline content is {size} bytes, over the limit of {MAX_INLINE_BYTES} bytes (1 MiB); serve it from a backend instead."
            ),
        ));
    }
    Ok(())
}
