//! A small MCP client over Streamable HTTP for the router tests: JSON-RPC
//! requests whose answers may come as JSON or as an SSE stream, a session
//! id, and the standalone GET stream for notifications.

use std::time::Duration;

use futures::StreamExt;
use serde_json::{Value, json};

/// An HTTP client, with the TLS provider the router installs.
pub fn http() -> reqwest::Client {
    mcp_operator_store::install_tls_provider();
    reqwest::Client::new()
}

/// One MCP session with a router.
pub struct Client {
    pub http: reqwest::Client,
    pub url: String,
    pub session: Option<String>,
    pub protocol: String,
    next_id: u64,
}

/// The events of an SSE body, as the JSON of their `data:` lines.
pub struct Events {
    body: futures::stream::BoxStream<'static, reqwest::Result<bytes::Bytes>>,
    buffer: String,
}

impl Events {
    pub fn new(response: reqwest::Response) -> Self {
        Self {
            body: response.bytes_stream().boxed(),
            buffer: String::new(),
        }
    }

    /// The next event's JSON, or `None` when the stream ends.
    pub async fn next(&mut self) -> Option<Value> {
        loop {
            if let Some(end) = self.buffer.find("\n\n") {
                let event: String = self.buffer.drain(..end + 2).collect();
                let data: Vec<&str> = event
                    .lines()
                    .filter_map(|line| line.strip_prefix("data:"))
                    .map(str::trim)
                    .collect();
                if data.is_empty() || data.iter().all(|d| d.is_empty()) {
                    continue; // priming event or keep-alive
                }
                return serde_json::from_str(&data.join("\n")).ok();
            }
            let chunk = self.body.next().await?.ok()?;
            self.buffer
                .push_str(&String::from_utf8_lossy(&chunk).replace("\r\n", "\n"));
        }
    }

    /// Waits up to `within` for a notification named `method`.
    pub async fn notification(&mut self, method: &str, within: Duration) -> Option<Value> {
        tokio::time::timeout(within, async {
            while let Some(event) = self.next().await {
                if event["method"] == method {
                    return Some(event);
                }
            }
            None
        })
        .await
        .ok()
        .flatten()
    }
}

impl Client {
    pub fn new(base: &str) -> Self {
        Self {
            http: http(),
            url: format!("{base}/mcp"),
            session: None,
            protocol: "2025-11-25".into(),
            next_id: 0,
        }
    }

    /// initialize + notifications/initialized; returns the initialize result.
    pub async fn initialize(&mut self) -> Value {
        let response = self
            .request(
                "initialize",
                json!({
                    "protocolVersion": self.protocol,
                    "capabilities": {},
                    "clientInfo": {"name": "router-tests", "version": "0"},
                }),
            )
            .await;
        let result = response["result"].clone();
        assert!(result.is_object(), "initialize failed: {response}");
        self.notify("notifications/initialized", json!({})).await;
        result
    }

    pub fn post(&self, body: &Value) -> reqwest::RequestBuilder {
        let mut request = self
            .http
            .post(&self.url)
            .header("accept", "application/json, text/event-stream")
            .header("mcp-protocol-version", &self.protocol)
            .json(body);
        if let Some(session) = &self.session {
            request = request.header("mcp-session-id", session);
        }
        request
    }

    /// Sends a request and returns the JSON-RPC response with its id.
    pub async fn request(&mut self, method: &str, params: Value) -> Value {
        self.next_id += 1;
        let id = self.next_id;
        let body = json!({"jsonrpc": "2.0", "id": id, "method": method, "params": params});
        let response = self.post(&body).send().await.expect("POST /mcp");
        let status = response.status();
        assert!(
            status.is_success(),
            "{method}: HTTP {status}: {}",
            response.text().await.unwrap_or_default()
        );
        if let Some(session) = response.headers().get("mcp-session-id") {
            self.session = Some(session.to_str().expect("ascii").to_owned());
        }
        answer(response, id)
            .await
            .unwrap_or_else(|| panic!("{method}: the stream ended without a response"))
    }

    /// The `result` of a request that must succeed.
    pub async fn result(&mut self, method: &str, params: Value) -> Value {
        let response = self.request(method, params).await;
        assert!(
            response.get("error").is_none(),
            "{method} failed: {response}"
        );
        response["result"].clone()
    }

    /// The `error` of a request that must fail.
    pub async fn error(&mut self, method: &str, params: Value) -> Value {
        let response = self.request(method, params).await;
        assert!(
            response.get("error").is_some(),
            "{method} should fail: {response}"
        );
        response["error"].clone()
    }

    pub async fn notify(&self, method: &str, params: Value) {
        let body = json!({"jsonrpc": "2.0", "method": method, "params": params});
        let status = self.post(&body).send().await.expect("POST /mcp").status();
        assert_eq!(status.as_u16(), 202, "{method}: HTTP {status}");
    }

    /// Ends the session with DELETE, which must answer 204 No Content.
    pub async fn end_session(&self) {
        let session = self.session.as_deref().expect("a session to end");
        let deleted = self
            .http
            .delete(&self.url)
            .header("mcp-session-id", session)
            .send()
            .await
            .expect("DELETE /mcp");
        // 204: what the SDKs take as a session ended (not rmcp's 202).
        assert_eq!(
            deleted.status().as_u16(),
            204,
            "DELETE: HTTP {}",
            deleted.status()
        );
    }

    /// Opens the standalone GET stream that carries notifications.
    pub async fn stream(&self) -> Events {
        let mut request = self
            .http
            .get(&self.url)
            .header("accept", "text/event-stream")
            .header("mcp-protocol-version", &self.protocol);
        if let Some(session) = &self.session {
            request = request.header("mcp-session-id", session);
        }
        let response = request.send().await.expect("GET /mcp");
        assert!(
            response.status().is_success(),
            "GET /mcp: HTTP {}",
            response.status()
        );
        Events::new(response)
    }

    /// tools/call's result.
    pub async fn call(&mut self, tool: &str, arguments: Value) -> Value {
        self.result("tools/call", json!({"name": tool, "arguments": arguments}))
            .await
    }
}

/// The JSON-RPC message answering request `id`: the body when it is plain
/// JSON (as the router answers single requests), else the matching event
/// of the SSE stream; `None` when the stream ends without it.
pub async fn answer(response: reqwest::Response, id: u64) -> Option<Value> {
    let is_sse = response
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("text/event-stream"));
    if !is_sse {
        return response.json().await.ok();
    }
    let mut events = Events::new(response);
    while let Some(event) = events.next().await {
        if event["id"] == id {
            return Some(event);
        }
    }
    None
}
