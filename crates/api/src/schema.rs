//! Hand-written schema fragments for fields whose Rust type says less than
//! the apiserver should check.

use schemars::{Schema, SchemaGenerator, json_schema};

/// A JSON Schema document embedded in a resource (`inputSchema`,
/// `outputSchema`). MCP requires the root to be `type: object`; the rest is
/// free-form, so unknown fields are preserved and meta-validation is left to
/// the controller, which can report the exact path of an error.
pub fn json_schema_object(_: &mut SchemaGenerator) -> Schema {
    json_schema!({
        "type": "object",
        "description": "A JSON Schema whose root is `type: object`.",
        "required": ["type"],
        "properties": {
            "type": { "type": "string", "enum": ["object"] }
        },
        "x-kubernetes-preserve-unknown-fields": true
    })
}
