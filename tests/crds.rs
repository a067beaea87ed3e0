//! The CRDs: the committed YAML is what the binary generates, and the real
//! apiserver installs them and enforces their schemas and CEL rules.

mod support;

use std::path::Path;

use kube::api::{Api, ApiResource, DynamicObject, PostParams};
use mcp_operator_api::{MCPPrompt, MCPResource, MCPServer, MCPTool};
use serde_json::{Value, json};

const CRD_DIR: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/manifests/base/crds");

/// What `mcp-operator crds ARGS` prints.
fn generate(args: &[&str]) -> String {
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_mcp-operator"))
        .arg("crds")
        .args(args)
        .output()
        .expect("run mcp-operator crds");
    assert!(
        output.status.success(),
        "mcp-operator crds failed: {output:?}"
    );
    String::from_utf8(output.stdout).expect("the output is UTF-8")
}

#[test]
fn committed_crd_reference_is_what_the_binary_generates() {
    let committed = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/docs/crds.md"))
        .expect("read docs/crds.md");
    assert!(
        generate(&["--reference"]) == committed,
        "docs/crds.md is stale: run `make crds` and commit the result"
    );
}

#[test]
fn committed_crds_are_what_the_binary_generates() {
    let generated = generate(&[]);

    let kustomization = std::fs::read_to_string(Path::new(CRD_DIR).join("kustomization.yaml"))
        .expect("read kustomization.yaml");
    let listed: Vec<&str> = kustomization
        .lines()
        .filter_map(|line| line.trim().strip_prefix("- "))
        .collect();
    let committed: String = listed
        .iter()
        .map(|file| {
            let yaml = std::fs::read_to_string(Path::new(CRD_DIR).join(file))
                .unwrap_or_else(|e| panic!("read {file}: {e}"));
            format!("---\n{yaml}")
        })
        .collect();
    assert!(
        generated == committed,
        "manifests/base/crds/ is stale: run `make crds` and commit the result"
    );
}

#[tokio::test]
async fn crds_install_and_become_established() {
    let client = support::client().await;
    support::install_crds(&client).await;
}

fn valid_tool() -> Value {
    json!({
        "inputSchema": { "type": "object", "properties": { "city": { "type": "string" } } },
        "backend": { "service": { "name": "weather", "port": 8080 }, "path": "/forecast" }
    })
}

fn valid_prompt() -> Value {
    json!({
        "arguments": [{ "name": "topic", "required": true }],
        "messages": [{ "role": "user", "content": "Tell me about {{ topic }}" }]
    })
}

fn valid_resource() -> Value {
    json!({ "uri": "docs://guide", "text": "hello" })
}

fn valid_server() -> Value {
    json!({ "toolSelector": { "matchLabels": { "team": "a" } }, "replicas": 2 })
}

/// Each case: the kind, a spec, and what the apiserver's message must say.
fn invalid_cases() -> Vec<(ApiResource, &'static str, Value, &'static str)> {
    let tool = ApiResource::erase::<MCPTool>(&());
    let prompt = ApiResource::erase::<MCPPrompt>(&());
    let resource = ApiResource::erase::<MCPResource>(&());
    let server = ApiResource::erase::<MCPServer>(&());
    let with = |base: Value, patch: Value| {
        let mut merged = base;
        json_patch_merge(&mut merged, patch);
        merged
    };
    vec![
        (
            tool.clone(),
            "bad-name",
            with(valid_tool(), json!({ "name": "get weather!" })),
            "spec.name: Invalid value",
        ),
        (
            tool.clone(),
            "array-schema",
            with(valid_tool(), json!({ "inputSchema": { "type": "array" } })),
            "spec.inputSchema.type: Unsupported value: \"array\"",
        ),
        (
            tool.clone(),
            "zero-timeout",
            with(valid_tool(), json!({ "backend": { "timeoutSeconds": 0 } })),
            "spec.backend.timeoutSeconds: Invalid value: 0",
        ),
        (
            tool.clone(),
            "relative-path",
            with(valid_tool(), json!({ "backend": { "path": "forecast" } })),
            "spec.backend.path: Invalid value",
        ),
        (
            tool.clone(),
            "bad-method",
            with(valid_tool(), json!({ "backend": { "method": "TRACE" } })),
            "spec.backend.method: Unsupported value: \"TRACE\"",
        ),
        (
            tool.clone(),
            "two-header-values",
            with(
                valid_tool(),
                json!({ "backend": { "headers": [{ "name": "X-Key", "value": "a", "valueFrom": { "secretKeyRef": { "name": "s", "key": "k" } } }] } }),
            ),
            "a header needs exactly one of value or valueFrom",
        ),
        (
            tool.clone(),
            "host-header",
            with(
                valid_tool(),
                json!({ "backend": { "headers": [{ "name": "Host", "value": "payments.team-b.svc" }] } }),
            ),
            "a header may not be Host, Content-Length or a hop-by-hop header",
        ),
        (
            tool,
            "hop-by-hop-header",
            with(
                valid_tool(),
                json!({ "backend": { "headers": [{ "name": "Transfer-ENCODING", "value": "chunked" }] } }),
            ),
            "a header may not be Host, Content-Length or a hop-by-hop header",
        ),
        (
            prompt.clone(),
            "system-role",
            with(
                valid_prompt(),
                json!({ "messages": [{ "role": "system", "content": "x" }] }),
            ),
            "Unsupported value: \"system\"",
        ),
        (
            prompt.clone(),
            "no-messages",
            with(valid_prompt(), json!({ "messages": [] })),
            "spec.messages: Invalid value: 0: spec.messages in body should have at least 1 items",
        ),
        (
            prompt,
            "duplicate-argument",
            with(
                valid_prompt(),
                json!({ "arguments": [{ "name": "topic" }, { "name": "topic" }] }),
            ),
            "spec.arguments[1]: Duplicate value",
        ),
        (
            resource.clone(),
            "two-sources",
            with(valid_resource(), json!({ "blob": "aGVsbG8=" })),
            "exactly one of text, blob or backend must be set",
        ),
        (
            resource.clone(),
            "no-source",
            json!({ "uri": "docs://guide" }),
            "exactly one of text, blob or backend must be set",
        ),
        (
            resource,
            "relative-uri",
            with(valid_resource(), json!({ "uri": "guide.md" })),
            "uri must be an absolute URI that starts with a scheme",
        ),
        (
            server.clone(),
            "negative-replicas",
            with(valid_server(), json!({ "replicas": -1 })),
            "spec.replicas: Invalid value: -1",
        ),
        (
            server.clone(),
            "operator-env",
            with(
                valid_server(),
                json!({ "env": [{ "name": "MCP_SERVER", "value": "team-b/payments" }] }),
            ),
            "env may not set MCP_* variables: the operator sets them",
        ),
        (
            server.clone(),
            "repeated-env",
            with(
                valid_server(),
                json!({ "env": [{ "name": "TZ", "value": "UTC" }, { "name": "TZ", "value": "CET" }] }),
            ),
            "spec.env[1]: Duplicate value",
        ),
        (
            server.clone(),
            "bad-backend-secret",
            with(valid_server(), json!({ "backendSecrets": ["../team-b"] })),
            "backendSecrets must be Secret names",
        ),
        (
            server,
            "ingress-path",
            with(
                valid_server(),
                json!({ "ingress": { "host": "mcp.example.com", "path": "mcp" } }),
            ),
            "ingress path must start with '/'",
        ),
    ]
}

/// RFC 7386 merge: enough to derive an invalid spec from a valid one.
fn json_patch_merge(target: &mut Value, patch: Value) {
    match (target, patch) {
        (Value::Object(target), Value::Object(patch)) => {
            for (key, value) in patch {
                json_patch_merge(target.entry(key).or_insert(Value::Null), value);
            }
        }
        (target, patch) => *target = patch,
    }
}

#[tokio::test]
async fn apiserver_accepts_valid_objects_and_rejects_invalid_ones_with_clear_messages() {
    let client = support::client().await;
    support::install_crds(&client).await;
    let ns = support::namespace(&client, "crd-validation").await;
    let post = PostParams::default();

    // The valid base of every invalid case is accepted, so each rejection
    // below is caused by the one field that case changes.
    let valid = [
        (ApiResource::erase::<MCPTool>(&()), valid_tool()),
        (ApiResource::erase::<MCPPrompt>(&()), valid_prompt()),
        (ApiResource::erase::<MCPResource>(&()), valid_resource()),
        (ApiResource::erase::<MCPServer>(&()), valid_server()),
    ];
    for (resource, spec) in valid {
        let api: Api<DynamicObject> = Api::namespaced_with(client.clone(), &ns, &resource);
        let mut obj = DynamicObject::new("valid", &resource);
        obj.data = json!({ "spec": spec });
        api.create(&post, &obj)
            .await
            .unwrap_or_else(|e| panic!("valid {} rejected: {e}", resource.kind));
    }

    let mut failures = Vec::new();
    for (resource, name, spec, expected) in invalid_cases() {
        let api: Api<DynamicObject> = Api::namespaced_with(client.clone(), &ns, &resource);
        let mut obj = DynamicObject::new(name, &resource);
        obj.data = json!({ "spec": spec });
        match api.create(&post, &obj).await {
            Err(kube::Error::Api(status))
                if status.code == 422 && status.message.contains(expected) => {}
            other => failures.push(format!(
                "{} {name}: expected 422 with {expected:?}, got {other:?}",
                resource.kind
            )),
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

/// A tool over the apiserver's request limit is refused with its reason,
/// before any controller sees it.
#[tokio::test]
async fn apiserver_refuses_a_huge_schema() {
    let client = support::client().await;
    support::install_crds(&client).await;
    let ns = support::namespace(&client, "crd-huge").await;
    let resource = ApiResource::erase::<MCPTool>(&());
    let api: Api<DynamicObject> = Api::namespaced_with(client.clone(), &ns, &resource);
    let mut spec = valid_tool();
    spec["inputSchema"]["description"] = json!("x".repeat(5 << 20));
    let mut obj = DynamicObject::new("huge", &resource);
    obj.data = json!({ "spec": spec });
    match api.create(&PostParams::default(), &obj).await {
        Err(kube::Error::Api(status)) if status.code == 413 => {
            assert!(status.message.contains("too large"), "{}", status.message);
        }
        other => panic!("expected 413 Request Entity Too Large, got {other:?}"),
    }
}
