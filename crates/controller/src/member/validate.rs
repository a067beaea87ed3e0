//! Checks of a member's spec that need no cluster state: JSON Schemas,
//! prompt templates, resource URIs and inline content. Each failure is a
//! reason and one sentence for a status condition.

use std::collections::BTreeSet;

use base64::Engine;
use mcp_operator_api::{Backend, MCPPromptSpec, MCPResourceSpec, MCPToolSpec, RESERVED_HEADERS};

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

/// Deepest nesting of objects and arrays a tool's schema may have. Real
/// schemas stay far below it; recursive structures use `$ref`.
pub const MAX_SCHEMA_DEPTH: usize = 32;

/// Largest serialized tool schema: every router holds every schema of its
/// catalog in memory, and a catalog is one Redis value.
pub const MAX_SCHEMA_BYTES: usize = 256 * 1024;

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
    headers(&spec.backend.endpoint)
}

fn object_schema(field: &str, schema: &serde_json::Value) -> Result<(), Problem> {
    // Bounds first: what follows recurses through the schema.
    if deeper_than(schema, MAX_SCHEMA_DEPTH) {
        return Err(Problem::new(
            "SchemaTooDeep",
            format!(
                "{field} nests objects and arrays deeper than {MAX_SCHEMA_DEPTH} levels; use $ref for recursive structures."
            ),
        ));
    }
    let size = serde_json::to_vec(schema).map_or(usize::MAX, |json| json.len());
    if size > MAX_SCHEMA_BYTES {
        return Err(Problem::new(
            "SchemaTooLarge",
            format!(
                "{field} is {size} bytes as JSON, over the limit of {MAX_SCHEMA_BYTES} bytes (256 KiB)."
            ),
        ));
    }
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

/// Whether `value` nests objects and arrays more than `limit` levels deep
/// (a scalar is 0 levels, `{}` one).
fn deeper_than(value: &serde_json::Value, limit: usize) -> bool {
    match value {
        serde_json::Value::Object(map) => {
            limit == 0 || map.values().any(|child| deeper_than(child, limit - 1))
        }
        serde_json::Value::Array(items) => {
            limit == 0 || items.iter().any(|child| deeper_than(child, limit - 1))
        }
        _ => false,
    }
}

/// Backend headers the schema's rules now refuse, in objects stored before
/// those rules: a reserved name, or a Secret reference that cannot be
/// mounted.
pub fn headers(backend: &Backend) -> Result<(), Problem> {
    for header in &backend.headers {
        if RESERVED_HEADERS.contains(&header.name.to_ascii_lowercase().as_str()) {
            return Err(Problem::new(
                "InvalidHeader",
                format!(
                    "header '{}' is set by the router; a backend header may not be Host, Content-Length or a hop-by-hop header.",
                    header.name
                ),
            ));
        }
        let Some(from) = &header.value_from else {
            continue;
        };
        let secret = &from.secret_key_ref;
        let key_ok = !secret.key.is_empty()
            && secret.key != "."
            && secret.key != ".."
            && secret
                .key
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'));
        if !key_ok || !dns_subdomain(&secret.name) {
            return Err(Problem::new(
                "InvalidHeader",
                format!(
                    "header '{}' names Secret '{}' key '{}'; a Secret name is lowercase letters, digits, '-' and '.', a key letters, digits, '-', '_' and '.'.",
                    header.name, secret.name, secret.key
                ),
            ));
        }
    }
    Ok(())
}

/// A Kubernetes object name of the DNS-1123 subdomain form.
fn dns_subdomain(name: &str) -> bool {
    (1..=253).contains(&name.len())
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'.')
        && name.starts_with(|c: char| c.is_ascii_alphanumeric())
        && name.ends_with(|c: char| c.is_ascii_alphanumeric())
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

/// The URI is absolute, inline content is within [`MAX_INLINE_BYTES`], and
/// a backend's headers are allowed.
pub fn resource(spec: &MCPResourceSpec) -> Result<(), Problem> {
    if let Some(backend) = &spec.backend {
        headers(backend)?;
    }
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

#[cfg(test)]
mod tests {
    use super::*;

    fn tool_spec(patch: serde_json::Value) -> MCPToolSpec {
        let mut spec = serde_json::json!({
            "inputSchema": {"type": "object"},
            "backend": {"service": {"name": "b", "port": 80}},
        });
        for (key, value) in patch.as_object().expect("an object") {
            spec[key] = value.clone();
        }
        serde_json::from_value(spec).expect("a tool spec")
    }

    fn nested(depth: usize) -> serde_json::Value {
        (0..depth).fold(
            serde_json::json!(1),
            |inner, _| serde_json::json!({"a": inner}),
        )
    }

    fn header(name: &str, secret: Option<(&str, &str)>) -> serde_json::Value {
        match secret {
            Some((secret, key)) => {
                serde_json::json!({"backend": {"service": {"name": "b", "port": 80},
                "headers": [{"name": name, "valueFrom": {"secretKeyRef": {"name": secret, "key": key}}}]}})
            }
            None => serde_json::json!({"backend": {"service": {"name": "b", "port": 80},
                "headers": [{"name": name, "value": "v"}]}}),
        }
    }

    /// `result` is refused for `reason`, with a message that says `message`.
    fn assert_explained(result: Result<(), Problem>, reason: &str, message: &str) {
        let problem = result.expect_err(message);
        assert_eq!(problem.reason, reason, "{}", problem.message);
        assert!(problem.message.contains(message), "{}", problem.message);
    }

    /// Each bad input a tenant can write into a tool: the reason, and a
    /// part of the one sentence that explains it.
    #[test]
    fn bad_tools_are_explained() {
        let cases = [
            (
                tool_spec(
                    serde_json::json!({"inputSchema": {"type": "object", "required": "city"}}),
                ),
                "InvalidSchema",
                "inputSchema is not a valid JSON Schema at '/required'",
            ),
            (
                tool_spec(
                    serde_json::json!({"inputSchema": {"type": "object", "properties": {"a": {"type": 5}}}}),
                ),
                "InvalidSchema",
                "inputSchema is not a valid JSON Schema at '/properties/a/type'",
            ),
            (
                tool_spec(
                    serde_json::json!({"inputSchema": {"type": "object", "properties": {"a": {"$ref": "#/$defs/missing"}}}}),
                ),
                "InvalidSchema",
                "inputSchema cannot be compiled",
            ),
            (
                tool_spec(
                    serde_json::json!({"outputSchema": {"type": "object", "minProperties": -1}}),
                ),
                "InvalidSchema",
                "outputSchema is not a valid JSON Schema at '/minProperties'",
            ),
            (
                tool_spec(
                    serde_json::json!({"inputSchema": {"type": "object", "properties": nested(40)}}),
                ),
                "SchemaTooDeep",
                "inputSchema nests objects and arrays deeper than 32 levels",
            ),
            (
                tool_spec(
                    serde_json::json!({"outputSchema": {"type": "object", "items": [nested(40)]}}),
                ),
                "SchemaTooDeep",
                "outputSchema nests",
            ),
            (
                tool_spec(
                    serde_json::json!({"inputSchema": {"type": "object", "description": "x".repeat(MAX_SCHEMA_BYTES)}}),
                ),
                "SchemaTooLarge",
                "over the limit of 262144 bytes",
            ),
            (
                tool_spec(header("HOST", None)),
                "InvalidHeader",
                "header 'HOST' is set by the router",
            ),
            (
                tool_spec(header("transfer-encoding", None)),
                "InvalidHeader",
                "header 'transfer-encoding' is set by the router",
            ),
            (
                tool_spec(header("X-Key", Some(("token", "../etc")))),
                "InvalidHeader",
                "names Secret 'token' key '../etc'",
            ),
            (
                tool_spec(header("X-Key", Some(("Team_B", "token")))),
                "InvalidHeader",
                "names Secret 'Team_B'",
            ),
            (
                tool_spec(header("X-Key", Some(("token", "..")))),
                "InvalidHeader",
                "key '..'",
            ),
        ];
        for (spec, reason, message) in cases {
            assert_explained(tool(&spec, "t"), reason, message);
        }
    }

    /// Each bad template a tenant can write into a prompt.
    #[test]
    fn bad_prompts_are_explained() {
        let spec = |arguments: serde_json::Value, content: &str| -> MCPPromptSpec {
            serde_json::from_value(serde_json::json!({
                "arguments": arguments,
                "messages": [{"role": "user", "content": content}],
            }))
            .expect("a prompt spec")
        };
        let cases = [
            (
                spec(serde_json::json!([]), "Hello {{ who }}"),
                "UndeclaredArgument",
                "messages[0].content uses 'who', which is not a declared argument.",
            ),
            (
                spec(
                    serde_json::json!([{"name": "who", "required": true}]),
                    "Hello",
                ),
                "UnusedArgument",
                "required argument 'who' is not used by any message.",
            ),
            (
                spec(serde_json::json!([]), "Hello {{ who "),
                "InvalidTemplate",
                "messages[0].content does not parse",
            ),
        ];
        for (spec, reason, message) in cases {
            assert_explained(prompt(&spec, "p"), reason, message);
        }
        let good = spec(
            serde_json::json!([{"name": "who", "required": true}]),
            "Hello {{ who }}",
        );
        assert_eq!(prompt(&good, "p"), Ok(()));
    }

    /// Each bad URI or inline content a tenant can write into a resource.
    #[test]
    fn bad_resources_are_explained() {
        let spec = |spec: serde_json::Value| -> MCPResourceSpec {
            serde_json::from_value(spec).expect("a resource spec")
        };
        let cases = [
            (
                spec(
                    serde_json::json!({"uri": "docs://large", "text": "x".repeat(MAX_INLINE_BYTES + 1)}),
                ),
                "ContentTooLarge",
                "over the limit of 1048576 bytes (1 MiB)",
            ),
            (
                spec(serde_json::json!({"uri": "docs://bad host/x", "text": "x"})),
                "InvalidURI",
                "uri 'docs://bad host/x' is not an absolute URI",
            ),
            (
                spec(serde_json::json!({"uri": "relative/x", "text": "x"})),
                "InvalidURI",
                "is not an absolute URI",
            ),
            (
                spec(serde_json::json!({"uri": "docs://blob", "blob": "not base64!"})),
                "InvalidBlob",
                "blob is not valid base64",
            ),
        ];
        for (spec, reason, message) in cases {
            assert_explained(resource(&spec), reason, message);
        }
        let exactly_at_the_limit =
            spec(serde_json::json!({"uri": "docs://ok", "text": "x".repeat(MAX_INLINE_BYTES)}));
        assert_eq!(resource(&exactly_at_the_limit), Ok(()));
    }

    #[test]
    fn schemas_within_the_bounds_pass() {
        let deep_enough = tool_spec(serde_json::json!({"inputSchema": {"type": "object",
            "properties": {"a": nested(MAX_SCHEMA_DEPTH - 2)}}}));
        assert_eq!(tool(&deep_enough, "t"), Ok(()));
        let with_headers = tool_spec(header("X-Api-Key", Some(("weather-token", "api.key_1"))));
        assert_eq!(tool(&with_headers, "t"), Ok(()));
    }

    #[test]
    fn depth_counts_objects_and_arrays() {
        assert!(!deeper_than(&serde_json::json!(1), 0));
        assert!(deeper_than(&serde_json::json!({}), 0));
        assert!(!deeper_than(&serde_json::json!({"a": [1]}), 2));
        assert!(deeper_than(&serde_json::json!({"a": [[1]]}), 2));
    }
}
