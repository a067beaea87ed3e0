//! Catalog versions: equal content, equal version; any change, a new one.

use mcp_operator_catalog::{Catalog, Endpoint, Prompt, ServerId, ServerInfo, Source, Tool};
use serde_json::json;

fn tool(name: &str, schema: serde_json::Value) -> Tool {
    serde_json::from_value(json!({
        "name": name,
        "inputSchema": schema,
        "endpoint": { "url": format!("http://{name}.ns.svc:80/"), "timeoutSeconds": 30, "retries": 0 },
        "method": "POST",
        "source": { "kind": "MCPTool", "name": name },
    }))
    .expect("a tool")
}

fn catalog(tools: Vec<Tool>) -> Catalog {
    let mut catalog = Catalog {
        server: ServerId {
            namespace: "ns".into(),
            name: "s".into(),
        },
        server_info: ServerInfo {
            name: "s".into(),
            version: "1".into(),
            instructions: None,
        },
        tools,
        prompts: Vec::<Prompt>::new(),
        resources: Vec::new(),
    };
    catalog.normalize();
    catalog
}

#[test]
fn order_of_members_and_of_schema_keys_does_not_change_the_version() {
    let a = catalog(vec![
        tool(
            "a",
            json!({ "type": "object", "properties": { "x": {}, "y": {} } }),
        ),
        tool("b", json!({ "type": "object" })),
    ]);
    let b = catalog(vec![
        tool("b", json!({ "type": "object" })),
        tool(
            "a",
            serde_json::from_str(r#"{ "properties": { "y": {}, "x": {} }, "type": "object" }"#)
                .expect("json"),
        ),
    ]);
    assert_eq!(a.version(), b.version());
    assert_eq!(a.version().0.len(), 32);
}

#[test]
fn any_change_gives_a_new_version() {
    let base = catalog(vec![tool("a", json!({ "type": "object" }))]);
    let mut changed_timeout = base.clone();
    changed_timeout.tools[0].endpoint = Endpoint {
        timeout_seconds: 5,
        ..changed_timeout.tools[0].endpoint.clone()
    };
    let mut renamed = base.clone();
    renamed.tools[0].source = Source {
        kind: "MCPTool".into(),
        name: "other".into(),
    };
    let empty = catalog(vec![]);
    let versions = [
        base.version(),
        changed_timeout.version(),
        renamed.version(),
        empty.version(),
    ];
    for (i, a) in versions.iter().enumerate() {
        for b in &versions[i + 1..] {
            assert_ne!(a, b);
        }
    }
}

#[test]
fn the_document_round_trips_through_json() {
    let base = catalog(vec![tool("a", json!({ "type": "object" }))]);
    let json = serde_json::to_string(&base).expect("serialize");
    let back: Catalog = serde_json::from_str(&json).expect("deserialize");
    assert_eq!(back, base);
    assert_eq!(back.version(), base.version());
}
