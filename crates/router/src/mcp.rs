//! The MCP server of one router: rmcp's `ServerHandler` over the current
//! catalog. One [`Session`] exists per MCP session (or per request for
//! stateless 2026-07-28 clients); all share one [`Shared`].

use std::borrow::Cow;
use std::collections::BTreeSet;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Instant;

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use mcp_operator_api::HttpMethod;
use mcp_operator_catalog::ResourceContent;
use rmcp::model::{
    CallToolRequestParams, CallToolResponse, CallToolResult, ContentBlock, ErrorData,
    GetPromptRequestParams, GetPromptResponse, ListPromptsResult, ListResourceTemplatesResult,
    ListResourcesResult, ListToolsResult, PaginatedRequestParams, ProtocolVersion,
    ReadResourceRequestParams, ReadResourceResponse, ResourceUpdatedNotificationParam,
    ServerConfig, SubscribeRequestParams, SubscriptionFilter, UnsubscribeRequestParams,
};
use rmcp::service::{NotificationContext, RequestContext, SubscriptionContext};
use rmcp::{RoleServer, ServerHandler};
use serde::de::DeserializeOwned;
use serde_json::{Map, Value, json};
use tokio_util::sync::{CancellationToken, DropGuard};
use tracing::Instrument;

use axum::http::request::Parts;
use rmcp::transport::common::http_header::HEADER_SESSION_ID;

use crate::catalog::{CatalogState, Compiled};
use crate::direct::SessionPeers;
use crate::forward::{Forwarder, Reply};
use crate::metrics;
use crate::notify::{Note, follow};
use crate::page::page;
use crate::render::{RenderError, render};
use crate::trace;

/// The protocol revisions this router speaks.
const PROTOCOL_VERSIONS: &[ProtocolVersion] = &[
    ProtocolVersion::V_2025_06_18,
    ProtocolVersion::V_2025_11_25,
    ProtocolVersion::V_2026_07_28,
];

/// What every session uses.
pub struct Shared {
    pub state: CatalogState,
    pub forwarder: Forwarder,
    pub page_size: usize,
    /// Longest time one MCP request may take, backend calls included.
    pub request_timeout: std::time::Duration,
    /// The sessions' peers, for the requests answered directly.
    pub session_peers: SessionPeers,
}

/// The handler of one session. Dropped when the session ends, which stops
/// its list_changed watcher.
pub struct Session {
    shared: Arc<Shared>,
    watcher: OnceLock<DropGuard>,
    /// The session's id, once initialized, under which its peer is known.
    id: OnceLock<String>,
    /// Resource URIs this session subscribed to.
    subscriptions: Arc<Mutex<BTreeSet<String>>>,
}

impl Session {
    pub fn new(shared: Arc<Shared>) -> Self {
        Self {
            shared,
            watcher: OnceLock::new(),
            id: OnceLock::new(),
            subscriptions: Arc::default(),
        }
    }

    pub fn shared(&self) -> &Shared {
        &self.shared
    }

    fn catalog(&self) -> Result<Arc<Compiled>, ErrorData> {
        self.shared.state.current().ok_or_else(|| {
            ErrorData::internal_error("no catalog is loaded yet; retry shortly", None)
        })
    }
}

impl Drop for Session {
    fn drop(&mut self) {
        if self.watcher.get().is_some() {
            metrics::sessions(-1.0);
        }
        if let Some(id) = self.id.get() {
            self.shared.session_peers.remove(id);
        }
    }
}

/// Runs one request in a span that continues the caller's trace, bounded
/// by the request timeout, and records its method, outcome and latency.
async fn observe<T>(
    shared: &Shared,
    method: &'static str,
    context: &RequestContext<RoleServer>,
    handle: impl Future<Output = Result<T, ErrorData>>,
    is_tool_error: impl FnOnce(&T) -> bool,
) -> Result<T, ErrorData> {
    let started = Instant::now();
    let limit = shared.request_timeout;
    let span = tracing::info_span!("mcp", method);
    trace::continue_trace(&span, trace::caller_of(&context.meta, &context.extensions));
    let result = tokio::time::timeout(limit, handle.instrument(span))
        .await
        .unwrap_or_else(|_| {
            Err(ErrorData::internal_error(
                format!(
                    "{method} took longer than the router's {}s limit",
                    limit.as_secs()
                ),
                None,
            ))
        });
    let outcome = match &result {
        Ok(value) if is_tool_error(value) => "tool_error",
        Ok(_) => "ok",
        Err(_) => "error",
    };
    metrics::request(method, outcome, started.elapsed());
    result
}

fn no_tool_error<T>(_: &T) -> bool {
    false
}

/// rmcp's result types are non-exhaustive: they are built from their JSON.
/// Every result the router builds is complete; 2026-07-28 requires saying
/// so (rmcp drops the field for older protocol versions).
fn from_json<T: DeserializeOwned>(mut value: Value) -> Result<T, ErrorData> {
    if let Some(result) = value.as_object_mut() {
        result.insert("resultType".into(), json!("complete"));
    }
    serde_json::from_value(value).map_err(|e| ErrorData::internal_error(e.to_string(), None))
}

/// The items of the requested page, and the next page's cursor.
fn paged<T, U>(
    items: &[T],
    request: Option<&PaginatedRequestParams>,
    size: usize,
    listed: impl Fn(&T) -> U,
) -> Result<(Vec<U>, Option<String>), ErrorData> {
    let cursor = request.and_then(|r| r.cursor.as_deref());
    let (range, next) =
        page(items.len(), cursor, size).map_err(|e| ErrorData::invalid_params(e, None))?;
    Ok((items[range].iter().map(listed).collect(), next))
}

fn tool_error(message: impl Into<String>) -> CallToolResult {
    CallToolResult::error(vec![ContentBlock::text(message.into())])
}

/// A 2xx JSON body becomes structured content plus the same JSON as text;
/// text stays text; images and audio become their content blocks; any
/// other status, or a body that claims JSON but is not, is an error result.
fn tool_result(reply: Reply) -> Result<CallToolResult, ErrorData> {
    let content_type = reply.content_type.as_deref().unwrap_or("");
    let media = content_type
        .split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase();
    let text = std::str::from_utf8(&reply.body);
    if !reply.status.is_success() {
        let detail = text
            .map(|t| t.chars().take(512).collect::<String>())
            .unwrap_or_default();
        let detail = if detail.trim().is_empty() {
            String::new()
        } else {
            format!(": {}", detail.trim())
        };
        return Ok(tool_error(format!(
            "the backend answered {}{detail}",
            reply.status
        )));
    }
    let is_json = media == "application/json" || media.ends_with("+json");
    if is_json {
        let value: Value = match serde_json::from_slice(&reply.body) {
            Ok(value) => value,
            Err(error) => {
                return Ok(tool_error(format!(
                    "the backend's response claims to be JSON but does not parse: {error}"
                )));
            }
        };
        let mut result = CallToolResult::success(vec![ContentBlock::text(value.to_string())]);
        if value.is_object() {
            result.structured_content = Some(value);
        }
        return Ok(result);
    }
    if media.starts_with("image/") {
        return Ok(CallToolResult::success(vec![ContentBlock::image(
            STANDARD.encode(&reply.body),
            media,
        )]));
    }
    if media.starts_with("audio/") {
        return Ok(CallToolResult::success(vec![ContentBlock::audio(
            STANDARD.encode(&reply.body),
            media,
        )]));
    }
    match text {
        Ok(text) => Ok(CallToolResult::success(vec![ContentBlock::text(text)])),
        Err(_) => Ok(tool_error(format!(
            "the backend answered {} bytes of binary content ({}), which a tool result cannot carry",
            reply.body.len(),
            if media.is_empty() {
                "no content type"
            } else {
                &media
            }
        ))),
    }
}

/// Names the failing fields: at most three errors, each with its path.
fn invalid_arguments(validator: &jsonschema::Validator, arguments: &Value) -> Option<String> {
    let errors: Vec<String> = validator
        .iter_errors(arguments)
        .take(3)
        .map(|error| {
            let path = error.instance_path().as_str().to_owned();
            if path.is_empty() {
                format!("{error}")
            } else {
                format!("at '{path}': {error}")
            }
        })
        .collect();
    (!errors.is_empty()).then(|| format!("invalid arguments: {}", errors.join("; ")))
}

/// Whether repeating a call is harmless: the method is idempotent, or the
/// tool says it is.
fn retry_safe(method: HttpMethod, annotations: Option<&mcp_operator_api::ToolAnnotations>) -> bool {
    matches!(
        method,
        HttpMethod::Get | HttpMethod::Put | HttpMethod::Delete
    ) || annotations
        .is_some_and(|a| a.idempotent_hint == Some(true) || a.read_only_hint == Some(true))
}

impl ServerHandler for Session {
    fn get_info(&self) -> ServerConfig {
        let (name, version, instructions) = match self.shared.state.current() {
            Some(current) => {
                let info = &current.catalog.server_info;
                (
                    info.name.clone(),
                    info.version.clone(),
                    info.instructions.clone(),
                )
            }
            None => (
                "mcp-operator-router".to_owned(),
                env!("CARGO_PKG_VERSION").to_owned(),
                None,
            ),
        };
        let mut config = json!({
            "protocolVersion": ProtocolVersion::V_2025_11_25,
            // completion/complete answers with no suggestions: the catalog
            // has no value sources, and an empty list is a valid answer.
            "capabilities": {
                "tools": {"listChanged": true},
                "prompts": {"listChanged": true},
                "resources": {"listChanged": true, "subscribe": true},
                "completions": {},
            },
            "serverInfo": {"name": name, "version": version},
        });
        if let Some(instructions) = instructions {
            config["instructions"] = json!(instructions);
        }
        serde_json::from_value(config).unwrap_or_default()
    }

    fn supported_protocol_versions(&self) -> Cow<'static, [ProtocolVersion]> {
        Cow::Borrowed(PROTOCOL_VERSIONS)
    }

    /// Session (2025-era) clients get notifications on their standalone
    /// stream, from a watcher that lives as long as this session's handler.
    async fn on_initialized(&self, context: NotificationContext<RoleServer>) {
        let stop = CancellationToken::new();
        if self.watcher.set(stop.clone().drop_guard()).is_err() {
            return;
        }
        metrics::sessions(1.0);
        // rmcp leaves the HTTP request of `notifications/initialized` in the
        // extensions; its session header names this session.
        let id = context
            .extensions
            .get::<Parts>()
            .and_then(|parts| parts.headers.get(HEADER_SESSION_ID))
            .and_then(|id| id.to_str().ok());
        if let Some(id) = id
            && self.id.set(id.to_owned()).is_ok()
        {
            self.shared
                .session_peers
                .insert(id.to_owned(), context.peer.clone());
        }
        let state = self.shared.state.clone();
        let subscriptions = self.subscriptions.clone();
        let peer = context.peer;
        tokio::spawn(async move {
            let subscribed = || {
                subscriptions
                    .lock()
                    .map(|s| s.iter().cloned().collect())
                    .unwrap_or_default()
            };
            let send = |note| {
                let peer = peer.clone();
                async move {
                    match note {
                        Note::ToolsChanged => peer.notify_tool_list_changed().await,
                        Note::PromptsChanged => peer.notify_prompt_list_changed().await,
                        Note::ResourcesChanged => peer.notify_resource_list_changed().await,
                        Note::ResourceUpdated(uri) => {
                            let updated = ResourceUpdatedNotificationParam::new(uri);
                            peer.notify_resource_updated(updated).await
                        }
                    }
                    .is_ok()
                }
            };
            follow(&state, subscribed, send, stop.cancelled_owned()).await;
        });
    }

    /// What was asked for; rmcp narrows it to what was also advertised.
    fn accepted_subscription_filter(
        &self,
        requested: &SubscriptionFilter,
    ) -> Option<SubscriptionFilter> {
        Some(requested.clone())
    }

    /// 2026-07-28 clients: notifications on a subscriptions/listen stream.
    async fn listen(&self, context: SubscriptionContext) -> Result<(), ErrorData> {
        let accepted = context.accepted().clone();
        let sink = context.sink().clone();
        let subscribed = || accepted.resource_subscriptions.clone().unwrap_or_default();
        let send = |note| {
            let (sink, accepted) = (sink.clone(), accepted.clone());
            async move {
                let wanted = |flag: Option<bool>| flag == Some(true);
                match note {
                    Note::ToolsChanged if wanted(accepted.tools_list_changed) => {
                        sink.notify_tool_list_changed().await.is_ok()
                    }
                    Note::PromptsChanged if wanted(accepted.prompts_list_changed) => {
                        sink.notify_prompt_list_changed().await.is_ok()
                    }
                    Note::ResourcesChanged if wanted(accepted.resources_list_changed) => {
                        sink.notify_resource_list_changed().await.is_ok()
                    }
                    Note::ResourceUpdated(uri) => sink.notify_resource_updated(uri).await.is_ok(),
                    // Not asked for: skipped, the stream goes on.
                    _ => true,
                }
            }
        };
        follow(&self.shared.state, subscribed, send, context.cancelled()).await;
        Ok(())
    }

    /// resources/subscribe (2025-era): any URI may be followed; a
    /// notification comes when a new catalog version changes its entry.
    #[allow(deprecated)]
    async fn subscribe(
        &self,
        request: SubscribeRequestParams,
        context: RequestContext<RoleServer>,
    ) -> Result<(), ErrorData> {
        observe(
            &self.shared,
            "resources/subscribe",
            &context,
            async {
                if let Ok(mut subscriptions) = self.subscriptions.lock() {
                    subscriptions.insert(request.uri);
                }
                Ok(())
            },
            no_tool_error,
        )
        .await
    }

    #[allow(deprecated)]
    async fn unsubscribe(
        &self,
        request: UnsubscribeRequestParams,
        context: RequestContext<RoleServer>,
    ) -> Result<(), ErrorData> {
        observe(
            &self.shared,
            "resources/unsubscribe",
            &context,
            async {
                if let Ok(mut subscriptions) = self.subscriptions.lock() {
                    subscriptions.remove(&request.uri);
                }
                Ok(())
            },
            no_tool_error,
        )
        .await
    }

    async fn list_tools(
        &self,
        request: Option<PaginatedRequestParams>,
        context: RequestContext<RoleServer>,
    ) -> Result<ListToolsResult, ErrorData> {
        observe(
            &self.shared,
            "tools/list",
            &context,
            async {
                let catalog = self.catalog()?;
                let (tools, next_cursor) = paged(
                    &catalog.tools,
                    request.as_ref(),
                    self.shared.page_size,
                    |t| t.listed.clone(),
                )?;
                Ok(ListToolsResult {
                    tools,
                    next_cursor,
                    ..Default::default()
                })
            },
            no_tool_error,
        )
        .await
    }

    async fn call_tool(
        &self,
        request: CallToolRequestParams,
        context: RequestContext<RoleServer>,
    ) -> Result<CallToolResponse, ErrorData> {
        let name = request.name.to_string();
        observe(
            &self.shared,
            "tools/call",
            &context,
            async {
                let catalog = self.catalog()?;
                let tool = catalog.tool(&name).ok_or_else(|| {
                    ErrorData::invalid_params(
                        format!("unknown tool '{name}'"),
                        Some(json!({"name": name})),
                    )
                })?;
                let arguments = Value::Object(request.arguments.unwrap_or_default());
                let validator = match &tool.validator {
                    Ok(validator) => validator,
                    Err(error) => {
                        return Ok(tool_error(format!(
                            "the tool's inputSchema cannot be compiled: {error}"
                        )));
                    }
                };
                if let Some(message) = invalid_arguments(validator, &arguments) {
                    return Ok(tool_error(message));
                }
                let Value::Object(arguments) = arguments else {
                    return Ok(tool_error("arguments must be an object"));
                };
                let entry = &tool.entry;
                let safe = retry_safe(entry.method, entry.annotations.as_ref());
                match self
                    .shared
                    .forwarder
                    .send(&entry.name, &entry.endpoint, entry.method, &arguments, safe)
                    .await
                {
                    Ok(reply) => tool_result(reply),
                    Err(message) => Ok(tool_error(message)),
                }
            },
            |result: &CallToolResult| result.is_error == Some(true),
        )
        .await
        .map(CallToolResponse::from)
    }

    async fn list_prompts(
        &self,
        request: Option<PaginatedRequestParams>,
        context: RequestContext<RoleServer>,
    ) -> Result<ListPromptsResult, ErrorData> {
        observe(
            &self.shared,
            "prompts/list",
            &context,
            async {
                let catalog = self.catalog()?;
                let (prompts, next_cursor) = paged(
                    &catalog.prompts,
                    request.as_ref(),
                    self.shared.page_size,
                    Clone::clone,
                )?;
                Ok(ListPromptsResult {
                    prompts,
                    next_cursor,
                    ..Default::default()
                })
            },
            no_tool_error,
        )
        .await
    }

    async fn get_prompt(
        &self,
        request: GetPromptRequestParams,
        context: RequestContext<RoleServer>,
    ) -> Result<GetPromptResponse, ErrorData> {
        observe(
            &self.shared,
            "prompts/get",
            &context,
            async {
                let catalog = self.catalog()?;
                let name = &request.name;
                let prompt = catalog.prompt(name).ok_or_else(|| {
                    ErrorData::invalid_params(
                        format!("unknown prompt '{name}'"),
                        Some(json!({"name": name})),
                    )
                })?;
                let rendered =
                    render(prompt, request.arguments.as_ref()).map_err(|error| match error {
                        RenderError::MissingArgument(_) => {
                            ErrorData::invalid_params(error.to_string(), None)
                        }
                        RenderError::Template { .. } => {
                            ErrorData::internal_error(error.to_string(), None)
                        }
                    })?;
                from_json::<rmcp::model::GetPromptResult>(rendered).map(GetPromptResponse::from)
            },
            no_tool_error,
        )
        .await
    }

    async fn list_resources(
        &self,
        request: Option<PaginatedRequestParams>,
        context: RequestContext<RoleServer>,
    ) -> Result<ListResourcesResult, ErrorData> {
        observe(
            &self.shared,
            "resources/list",
            &context,
            async {
                let catalog = self.catalog()?;
                let (resources, next_cursor) = paged(
                    &catalog.resources,
                    request.as_ref(),
                    self.shared.page_size,
                    Clone::clone,
                )?;
                Ok(ListResourcesResult {
                    resources,
                    next_cursor,
                    ..Default::default()
                })
            },
            no_tool_error,
        )
        .await
    }

    async fn list_resource_templates(
        &self,
        _request: Option<PaginatedRequestParams>,
        context: RequestContext<RoleServer>,
    ) -> Result<ListResourceTemplatesResult, ErrorData> {
        // Catalog resources have fixed URIs; there are no templates.
        observe(
            &self.shared,
            "resources/templates/list",
            &context,
            async { Ok(ListResourceTemplatesResult::default()) },
            no_tool_error,
        )
        .await
    }

    async fn read_resource(
        &self,
        request: ReadResourceRequestParams,
        context: RequestContext<RoleServer>,
    ) -> Result<ReadResourceResponse, ErrorData> {
        observe(
            &self.shared,
            "resources/read",
            &context,
            async {
                let catalog = self.catalog()?;
                let uri = &request.uri;
                let resource = catalog.resource(uri).ok_or_else(|| {
                    ErrorData::resource_not_found(
                        format!("unknown resource '{uri}'"),
                        Some(json!({"uri": uri})),
                    )
                })?;
                let mut content = json!({"uri": uri});
                if let Some(mime) = &resource.mime_type {
                    content["mimeType"] = json!(mime);
                }
                match &resource.content {
                    ResourceContent::Text(text) => content["text"] = json!(text),
                    ResourceContent::Blob(blob) => content["blob"] = json!(blob),
                    ResourceContent::Backend(endpoint) => {
                        let reply = self
                            .shared
                            .forwarder
                            .send(uri, endpoint, HttpMethod::Get, &Map::new(), true)
                            .await
                            .map_err(|e| ErrorData::internal_error(e, Some(json!({"uri": uri}))))?;
                        if !reply.status.is_success() {
                            return Err(ErrorData::internal_error(
                                format!("the resource's backend answered {}", reply.status),
                                Some(json!({"uri": uri})),
                            ));
                        }
                        if resource.mime_type.is_none()
                            && let Some(media) = &reply.content_type
                        {
                            content["mimeType"] = json!(media);
                        }
                        match String::from_utf8(reply.body.to_vec()) {
                            Ok(text) => content["text"] = json!(text),
                            Err(_) => content["blob"] = json!(STANDARD.encode(&reply.body)),
                        }
                    }
                }
                from_json::<rmcp::model::ReadResourceResult>(json!({"contents": [content]}))
                    .map(ReadResourceResponse::from)
            },
            no_tool_error,
        )
        .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reply(status: u16, content_type: Option<&str>, body: &[u8]) -> Reply {
        Reply {
            status: reqwest::StatusCode::from_u16(status).expect("a status"),
            content_type: content_type.map(str::to_owned),
            body: bytes::Bytes::copy_from_slice(body),
        }
    }

    /// Backend answers and the tool results they become, as JSON.
    #[test]
    fn backend_answers_become_tool_results() {
        let png = [0x89, b'P', b'N', b'G'];
        let cases = [
            (
                reply(200, Some("application/json"), br#"{"temp": 21}"#),
                json!({"content": [{"type": "text", "text": "{\"temp\":21}"}],
                       "structuredContent": {"temp": 21}, "isError": false, "resultType": "complete"}),
            ),
            (
                reply(
                    200,
                    Some("application/problem+json; charset=utf-8"),
                    b"[1, 2]",
                ),
                json!({"content": [{"type": "text", "text": "[1,2]"}], "isError": false, "resultType": "complete"}),
            ),
            (
                reply(200, Some("text/plain"), b"sunny"),
                json!({"content": [{"type": "text", "text": "sunny"}], "isError": false, "resultType": "complete"}),
            ),
            (
                reply(200, None, b"no type"),
                json!({"content": [{"type": "text", "text": "no type"}], "isError": false, "resultType": "complete"}),
            ),
            (
                reply(200, Some("image/png"), &png),
                json!({"content": [{"type": "image", "data": STANDARD.encode(png), "mimeType": "image/png"}],
                       "isError": false, "resultType": "complete"}),
            ),
            (
                reply(200, Some("application/json"), b"{not json"),
                json!({"content": [{"type": "text", "text": "the backend's response claims to be JSON but does not parse: key must be a string at line 1 column 2"}],
                       "isError": true, "resultType": "complete"}),
            ),
            (
                reply(503, Some("text/plain"), b"  busy \n"),
                json!({"content": [{"type": "text", "text": "the backend answered 503 Service Unavailable: busy"}],
                       "isError": true, "resultType": "complete"}),
            ),
            (
                reply(404, None, b""),
                json!({"content": [{"type": "text", "text": "the backend answered 404 Not Found"}],
                       "isError": true, "resultType": "complete"}),
            ),
            (
                reply(200, Some("application/octet-stream"), &[0xff, 0xfe]),
                json!({"content": [{"type": "text", "text": "the backend answered 2 bytes of binary content (application/octet-stream), which a tool result cannot carry"}],
                       "isError": true, "resultType": "complete"}),
            ),
        ];
        for (reply, expected) in cases {
            let described = format!("{reply:?}");
            let result = tool_result(reply).expect("a tool result");
            assert_eq!(
                serde_json::to_value(&result).expect("JSON"),
                expected,
                "{described}"
            );
        }
    }
}
