//! Requests the router answers on the connection's own task. rmcp's
//! Streamable HTTP service gives every request a task, a one-shot
//! transport, a service loop and channels, and parses the body into an
//! untagged union tried variant by variant: that was most of the router's
//! cost (docs/router.md has the numbers). Here a single JSON-RPC request
//! for a list, a call, a prompt or a read, from a 2026-07-28 stateless
//! client or on a session this replica holds, is parsed once (envelope,
//! then its params into rmcp's own request type) and handed to the same
//! handler through `Service::handle_request`, which keeps rmcp's protocol
//! rules (version checks, `resultType`, error codes); the answer is one
//! JSON write. Anything else, and anything this path would have to refuse,
//! goes to rmcp as it came, so every refusal stays rmcp's.

use std::borrow::Cow;
use std::collections::HashMap;
use std::sync::{Arc, RwLock};

use axum::body::{Body, Bytes};
use axum::extract::{Request, State};
use axum::http::request::Parts;
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use http_body_util::BodyExt;
use rmcp::model::{
    CallToolRequest, ClientJsonRpcMessage, ClientRequest, ErrorCode, GetExtensions, GetMeta,
    GetPromptRequest, InitializeRequestParams, JsonObject, ListPromptsRequest,
    ListResourceTemplatesRequest, ListResourcesRequest, ListToolsRequest, ProtocolVersion,
    ReadResourceRequest, Request as McpRequest, RequestId, RequestMetaObject, RequestOptionalParam,
    ServerJsonRpcMessage,
};
use rmcp::service::{Peer, RequestContext, RunningService};
use rmcp::transport::common::http_header::{
    BASE64_HEADER_PREFIX, HEADER_MCP_METHOD, HEADER_MCP_NAME, HEADER_MCP_PROTOCOL_VERSION,
    HEADER_SESSION_ID,
};
use rmcp::transport::streamable_http_server::SessionManager;
use rmcp::transport::streamable_http_server::session::local::LocalSessionManager;
use rmcp::{RoleServer, Service};
use serde::Deserialize;
use serde::de::DeserializeOwned;
use serde_json::value::RawValue;

use crate::mcp::{Session, Shared};

/// The peers of the sessions this replica holds, by session id: an answer
/// on a session follows the protocol version that session negotiated.
#[derive(Default)]
pub struct SessionPeers(RwLock<HashMap<String, Peer<RoleServer>>>);

impl SessionPeers {
    pub fn insert(&self, id: String, peer: Peer<RoleServer>) {
        if let Ok(mut peers) = self.0.write() {
            peers.insert(id, peer);
        }
    }

    pub fn remove(&self, id: &str) {
        if let Ok(mut peers) = self.0.write() {
            peers.remove(id);
        }
    }

    fn get(&self, id: &str) -> Option<Peer<RoleServer>> {
        self.0.read().ok()?.get(id).cloned()
    }
}

/// What answering directly needs.
pub struct Direct {
    /// One handler for every direct request: the methods answered here
    /// use no per-session state.
    handler: Session,
    /// A peer that reaches no client, for stateless requests (2026-07-28
    /// forbids server-to-client requests; their version is in `_meta`).
    stateless: Peer<RoleServer>,
    /// Keeps `stateless` connected to an idle service loop.
    _idle: RunningService<RoleServer, Session>,
    local_sessions: Arc<LocalSessionManager>,
    max_request_bytes: usize,
}

impl Direct {
    pub fn new(
        shared: Arc<Shared>,
        local_sessions: Arc<LocalSessionManager>,
        max_request_bytes: usize,
    ) -> Self {
        let transport = (
            futures::sink::drain::<ServerJsonRpcMessage>(),
            futures::stream::pending::<ClientJsonRpcMessage>(),
        );
        let idle = rmcp::service::serve_directly(
            Session::new(shared.clone()),
            transport,
            Some(
                InitializeRequestParams::new(Default::default(), Default::default())
                    .with_protocol_version(ProtocolVersion::V_2026_07_28),
            ),
        );
        Self {
            handler: Session::new(shared),
            stateless: idle.peer().clone(),
            _idle: idle,
            local_sessions,
            max_request_bytes,
        }
    }
}

/// The middleware in front of rmcp's service on `/mcp` (`None`: all to
/// rmcp, as the tests compare).
pub async fn answer(
    State(direct): State<Option<Arc<Direct>>>,
    request: Request,
    next: Next,
) -> Response {
    let Some(direct) = direct else {
        return next.run(request).await;
    };
    if request.method() != Method::POST || !json_both_ways(request.headers()) {
        return next.run(request).await;
    }
    let (parts, body) = request.into_parts();
    let body = match read(body, direct.max_request_bytes).await {
        Ok(body) => body,
        Err(refusal) => return refusal,
    };
    match direct.plan(&parts.headers, &body).await {
        Some(plan) => direct.serve(plan, parts).await,
        None => next.run(Request::from_parts(parts, Body::from(body))).await,
    }
}

/// A request this path will answer, with the peer whose protocol it
/// follows.
struct Plan {
    id: RequestId,
    request: ClientRequest,
    peer: Peer<RoleServer>,
    stateless: bool,
}

impl Direct {
    /// Whether and how to answer: `None` leaves the request to rmcp.
    async fn plan(&self, headers: &HeaderMap, body: &[u8]) -> Option<Plan> {
        let envelope: Envelope = serde_json::from_slice(body).ok()?;
        if envelope.jsonrpc != "2.0" {
            return None;
        }
        let (request, name) = typed(&envelope.method, envelope.params)?;
        let header_version = single(headers, HEADER_MCP_PROTOCOL_VERSION).ok()?;
        let meta = request.get_meta();
        let meta_version = meta.protocol_version();
        let (peer, stateless) = match single(headers, HEADER_SESSION_ID).ok()? {
            None => {
                // 2026-07-28 stateless, complete and consistent, with the
                // standard headers matching the body.
                let modern = ProtocolVersion::V_2026_07_28;
                let complete = header_version == Some(modern.as_str())
                    && meta_version.as_ref() == Some(&modern)
                    && meta.missing_required_keys(&modern).is_empty()
                    && single(headers, HEADER_MCP_METHOD).ok()? == Some(&*envelope.method)
                    && name.is_none_or(|name| plain_header_is(headers, HEADER_MCP_NAME, &name));
                (complete.then(|| self.stateless.clone())?, true)
            }
            Some(session) => {
                // A 2025-era session: the version it negotiated applies,
                // and no request of it names one of its own.
                let legacy = meta_version.is_none()
                    && header_version.is_none_or(|version| {
                        version < ProtocolVersion::V_2026_07_28.as_str()
                            && ProtocolVersion::KNOWN_VERSIONS
                                .iter()
                                .any(|known| known.as_str() == version)
                    });
                if !legacy {
                    return None;
                }
                let peer = self.peers().get(session)?;
                let held = self
                    .local_sessions
                    .has_session(&session.to_owned().into())
                    .await
                    .ok()?;
                (held.then_some(peer)?, false)
            }
        };
        Some(Plan {
            id: envelope.id,
            request,
            peer,
            stateless,
        })
    }

    fn peers(&self) -> &SessionPeers {
        &self.handler.shared().session_peers
    }

    async fn serve(&self, plan: Plan, parts: Parts) -> Response {
        let Plan {
            id,
            mut request,
            peer,
            stateless,
        } = plan;
        // As rmcp does: the HTTP request's parts reach the handler (its
        // trace context comes from their headers).
        request.extensions_mut().insert(parts);
        let mut context = RequestContext::new(id.clone(), peer);
        context.meta = std::mem::take(request.get_meta_mut());
        context.extensions = std::mem::take(request.extensions_mut());
        let (message, status) = match self.handler.handle_request(request, context).await {
            Ok(result) => (ServerJsonRpcMessage::response(result, id), StatusCode::OK),
            Err(error) => {
                // rmcp's status for a stateless error; sessions keep 200.
                let status = if stateless {
                    error_status(error.code)
                } else {
                    StatusCode::OK
                };
                (ServerJsonRpcMessage::error(error, Some(id)), status)
            }
        };
        match serde_json::to_vec(&message) {
            Ok(body) => (
                status,
                [(header::CONTENT_TYPE, HeaderValue::from_static(JSON))],
                body,
            )
                .into_response(),
            Err(error) => (
                StatusCode::INTERNAL_SERVER_ERROR,
                format!("serializing the response: {error}"),
            )
                .into_response(),
        }
    }
}

const JSON: &str = "application/json";
const EVENT_STREAM: &str = "text/event-stream";

/// A JSON-RPC message as far as deciding needs: its params stay unparsed.
#[derive(Deserialize)]
struct Envelope<'a> {
    #[serde(borrow)]
    jsonrpc: Cow<'a, str>,
    id: RequestId,
    #[serde(borrow)]
    method: Cow<'a, str>,
    #[serde(borrow, default)]
    params: Option<&'a RawValue>,
}

/// Params as rmcp reads them: `_meta` goes to the request's extensions.
#[derive(Deserialize)]
struct Params<P> {
    #[serde(rename = "_meta", default)]
    meta: Option<JsonObject>,
    #[serde(flatten)]
    rest: P,
}

fn params<P: DeserializeOwned>(raw: &RawValue) -> Option<(P, Option<RequestMetaObject>)> {
    let Params { meta, rest } = serde_json::from_str(raw.get()).ok()?;
    Some((rest, meta.map(RequestMetaObject::from)))
}

fn required<M: Default, P: DeserializeOwned>(raw: Option<&RawValue>) -> Option<McpRequest<M, P>> {
    let (params, meta) = params(raw?)?;
    let mut request = McpRequest::new(params);
    if let Some(meta) = meta {
        request.extensions.insert(meta);
    }
    Some(request)
}

fn optional<M: Default, P: DeserializeOwned>(
    raw: Option<&RawValue>,
) -> Option<RequestOptionalParam<M, P>> {
    let (params, meta) = match raw {
        Some(raw) => {
            let (params, meta) = params(raw)?;
            (Some(params), meta)
        }
        None => (None, None),
    };
    let mut request = RequestOptionalParam {
        method: M::default(),
        params,
        extensions: Default::default(),
    };
    if let Some(meta) = meta {
        request.extensions.insert(meta);
    }
    Some(request)
}

/// The request, if its method is one answered here, and the name the
/// standard `Mcp-Name` header must carry for it.
fn typed(method: &str, raw: Option<&RawValue>) -> Option<(ClientRequest, Option<String>)> {
    Some(match method {
        "tools/call" => {
            let request: CallToolRequest = required(raw)?;
            let name = request.params.name.to_string();
            (request.into(), Some(name))
        }
        "prompts/get" => {
            let request: GetPromptRequest = required(raw)?;
            let name = request.params.name.clone();
            (request.into(), Some(name))
        }
        "resources/read" => {
            let request: ReadResourceRequest = required(raw)?;
            let uri = request.params.uri.clone();
            (request.into(), Some(uri))
        }
        "tools/list" => (optional::<_, _>(raw).map(ListToolsRequest::into)?, None),
        "prompts/list" => (optional::<_, _>(raw).map(ListPromptsRequest::into)?, None),
        "resources/list" => (optional::<_, _>(raw).map(ListResourcesRequest::into)?, None),
        "resources/templates/list" => (
            optional::<_, _>(raw).map(ListResourceTemplatesRequest::into)?,
            None,
        ),
        _ => return None,
    })
}

/// The one value of a header; `Err` when it repeats or is not text.
fn single<'a>(headers: &'a HeaderMap, name: &str) -> Result<Option<&'a str>, ()> {
    let mut values = headers.get_all(name).iter();
    let Some(value) = values.next() else {
        return Ok(None);
    };
    if values.next().is_some() {
        return Err(());
    }
    value.to_str().map(Some).map_err(|_| ())
}

/// Whether the header is present once and says `expected` as plain text
/// (a Base64-encoded value is left for rmcp to decode).
fn plain_header_is(headers: &HeaderMap, name: &str, expected: &str) -> bool {
    matches!(single(headers, name), Ok(Some(value))
        if !value.starts_with(BASE64_HEADER_PREFIX) && value == expected)
}

/// rmcp answers only clients that accept both JSON and SSE and send JSON.
fn json_both_ways(headers: &HeaderMap) -> bool {
    let accepted = || {
        headers
            .get_all(header::ACCEPT)
            .iter()
            .filter_map(|value| value.to_str().ok())
            .flat_map(|value| value.split(','))
            .map(|media| media.split(';').next().unwrap_or("").trim())
    };
    let accepts = |wanted: &str| accepted().any(|m| m.eq_ignore_ascii_case(wanted));
    let sends_json = headers
        .get(header::CONTENT_TYPE)
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.split(';').next())
        .is_some_and(|media| media.trim().eq_ignore_ascii_case(JSON));
    sends_json && accepts(JSON) && accepts(EVENT_STREAM)
}

/// The body, or rmcp's refusal of one too large.
async fn read(body: Body, limit: usize) -> Result<Bytes, Response> {
    match http_body_util::Limited::new(body, limit).collect().await {
        Ok(collected) => Ok(collected.to_bytes()),
        Err(error) if error.is::<http_body_util::LengthLimitError>() => Err((
            StatusCode::PAYLOAD_TOO_LARGE,
            format!("Payload Too Large: request body exceeds {limit} bytes"),
        )
            .into_response()),
        Err(error) => Err((
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("Failed to read request body: {error}"),
        )
            .into_response()),
    }
}

/// The HTTP status rmcp gives a stateless request's JSON-RPC error.
fn error_status(code: ErrorCode) -> StatusCode {
    match code {
        ErrorCode::UNSUPPORTED_PROTOCOL_VERSION
        | ErrorCode::MISSING_REQUIRED_CLIENT_CAPABILITY
        | ErrorCode::HEADER_MISMATCH => StatusCode::BAD_REQUEST,
        ErrorCode::METHOD_NOT_FOUND => StatusCode::NOT_FOUND,
        _ => StatusCode::OK,
    }
}

#[cfg(test)]
mod tests {
    use axum::Router;
    use base64::Engine;
    use serde_json::{Value, json};
    use tower::ServiceExt;

    use super::*;
    use crate::fixture::{self, TOKEN};
    use crate::http::{app, app_without_direct};

    /// The same app twice, over one catalog and one set of sessions: with
    /// direct answers, and with everything left to rmcp.
    struct Pair {
        direct: Router,
        rmcp: Router,
        /// The planner of `direct`, to check which requests it takes.
        planner: Direct,
    }

    async fn pair() -> Pair {
        let shared = fixture::shared();
        let local_sessions: Arc<LocalSessionManager> = Default::default();
        Pair {
            direct: fixture::app(shared.clone(), local_sessions.clone(), app).await,
            rmcp: fixture::app(shared.clone(), local_sessions.clone(), app_without_direct).await,
            planner: Direct::new(shared, local_sessions, 4096),
        }
    }

    fn request(body: &Value, headers: &[(&str, &str)]) -> Request {
        let mut request = Request::post("/mcp")
            .header("host", "localhost")
            .header("authorization", format!("Bearer {TOKEN}"))
            .header("accept", "application/json, text/event-stream")
            .header("content-type", "application/json");
        for (name, value) in headers {
            request = request.header(*name, *value);
        }
        request
            .body(Body::from(body.to_string()))
            .expect("a request")
    }

    /// The status, the content type and the JSON-RPC message of an
    /// answer, whether plain JSON or an SSE stream.
    async fn send(app: &Router, request: Request) -> (StatusCode, String, Option<Value>) {
        let response = app.clone().oneshot(request).await.expect("an answer");
        let status = response.status();
        let content_type = response
            .headers()
            .get(header::CONTENT_TYPE)
            .and_then(|value| value.to_str().ok())
            .unwrap_or("")
            .to_owned();
        let body = response
            .into_body()
            .collect()
            .await
            .expect("a body")
            .to_bytes();
        let text = String::from_utf8_lossy(&body);
        let message = serde_json::from_str(&text).ok().or_else(|| {
            text.lines()
                .filter_map(|line| line.strip_prefix("data:"))
                .filter_map(|data| serde_json::from_str::<Value>(data.trim()).ok())
                .find(|message| message.get("jsonrpc").is_some())
        });
        (status, content_type, message)
    }

    /// The requests answered directly, as (method, params, Mcp-Name).
    fn calls() -> Vec<(&'static str, Value, Option<&'static str>)> {
        vec![
            ("tools/list", json!({}), None),
            ("tools/list", json!({"cursor": "not-a-cursor"}), None),
            (
                "tools/call",
                json!({"name": "echo", "arguments": {"message": "hi"}}),
                Some("echo"),
            ),
            (
                "tools/call",
                json!({"name": "echo", "arguments": {"count": "x"}}),
                Some("echo"),
            ),
            (
                "tools/call",
                json!({"name": "nope", "arguments": {}}),
                Some("nope"),
            ),
            ("prompts/list", json!({}), None),
            (
                "prompts/get",
                json!({"name": "greet", "arguments": {"who": "Ada"}}),
                Some("greet"),
            ),
            ("prompts/get", json!({"name": "greet"}), Some("greet")),
            ("prompts/get", json!({"name": "nope"}), Some("nope")),
            ("resources/list", json!({}), None),
            (
                "resources/read",
                json!({"uri": "docs://a"}),
                Some("docs://a"),
            ),
            (
                "resources/read",
                json!({"uri": "docs://none"}),
                Some("docs://none"),
            ),
            ("resources/templates/list", json!({}), None),
        ]
    }

    fn stateless_meta() -> Value {
        json!({
            "io.modelcontextprotocol/protocolVersion": "2026-07-28",
            "io.modelcontextprotocol/clientCapabilities": {},
            "io.modelcontextprotocol/clientInfo": {"name": "test", "version": "0"},
        })
    }

    fn stateless(method: &str, mut params: Value) -> Value {
        params["_meta"] = stateless_meta();
        json!({"jsonrpc": "2.0", "id": 7, "method": method, "params": params})
    }

    /// A 2025-11-25 session, initialized through rmcp.
    async fn session(pair: &Pair) -> String {
        let initialize = json!({"jsonrpc": "2.0", "id": 0, "method": "initialize", "params": {
            "protocolVersion": "2025-11-25", "capabilities": {}, "clientInfo": {"name": "test", "version": "0"}}});
        let response = pair
            .rmcp
            .clone()
            .oneshot(request(&initialize, &[]))
            .await
            .expect("an answer");
        let id = response
            .headers()
            .get(HEADER_SESSION_ID)
            .and_then(|id| id.to_str().ok())
            .expect("a session id")
            .to_owned();
        let initialized = json!({"jsonrpc": "2.0", "method": "notifications/initialized"});
        let headers = [(HEADER_SESSION_ID, id.as_str())];
        let (status, _, _) = send(&pair.rmcp, request(&initialized, &headers)).await;
        assert_eq!(status, StatusCode::ACCEPTED);
        // The handler registers the session's peer as it handles the
        // notification, on rmcp's own task.
        for _ in 0..100 {
            if pair.planner.peers().get(&id).is_some() {
                return id;
            }
            tokio::time::sleep(std::time::Duration::from_millis(10)).await;
        }
        panic!("the session's peer was never registered");
    }

    /// Whether the direct path takes `body` with `headers`.
    async fn planned(pair: &Pair, body: &Value, headers: &[(&str, &str)]) -> bool {
        let request_headers = request(body, headers).headers().clone();
        pair.planner
            .plan(&request_headers, body.to_string().as_bytes())
            .await
            .is_some()
    }

    #[tokio::test]
    async fn stateless_answers_are_rmcps() {
        let pair = pair().await;
        for (method, params, name) in calls() {
            let body = stateless(method, params);
            let mut headers = vec![
                (HEADER_MCP_PROTOCOL_VERSION, "2026-07-28"),
                (HEADER_MCP_METHOD, method),
            ];
            headers.extend(name.map(|name| (HEADER_MCP_NAME, name)));
            assert!(
                planned(&pair, &body, &headers).await,
                "{method} {body} is answered directly"
            );
            let direct = send(&pair.direct, request(&body, &headers)).await;
            let rmcp = send(&pair.rmcp, request(&body, &headers)).await;
            assert!(direct.2.is_some(), "{method}: a JSON-RPC answer");
            assert_eq!(direct, rmcp, "{method} {body}");
        }
    }

    #[tokio::test]
    async fn session_answers_are_rmcps() {
        let pair = pair().await;
        let id = session(&pair).await;
        for (method, params, _) in calls() {
            let body = json!({"jsonrpc": "2.0", "id": 7, "method": method, "params": params});
            let headers = [
                (HEADER_SESSION_ID, id.as_str()),
                (HEADER_MCP_PROTOCOL_VERSION, "2025-11-25"),
            ];
            assert!(
                planned(&pair, &body, &headers).await,
                "{method} {body} is answered directly"
            );
            let (direct_status, direct_type, direct) =
                send(&pair.direct, request(&body, &headers)).await;
            let (rmcp_status, rmcp_type, rmcp) = send(&pair.rmcp, request(&body, &headers)).await;
            // The same message, as one JSON write instead of an SSE stream.
            assert_eq!(direct_type, JSON);
            assert!(rmcp_type.starts_with(EVENT_STREAM), "{rmcp_type}");
            assert_eq!(
                (direct_status, &direct),
                (rmcp_status, &rmcp),
                "{method} {body}"
            );
            assert!(direct.is_some());
        }
    }

    type Headers<'a> = Vec<(&'a str, &'a str)>;

    /// Requests this path must leave to rmcp, whose refusal (or answer)
    /// the app then gives unchanged.
    #[tokio::test]
    async fn the_rest_stays_rmcps() {
        let pair = pair().await;
        let session = session(&pair).await;
        let call = stateless(
            "tools/call",
            json!({"name": "echo", "arguments": {"message": "hi"}}),
        );
        let encoded = format!(
            "{BASE64_HEADER_PREFIX}{}?=",
            base64::engine::general_purpose::STANDARD.encode("echo")
        );
        let modern = (HEADER_MCP_PROTOCOL_VERSION, "2026-07-28");
        let named = (HEADER_MCP_NAME, "echo");
        let calling = (HEADER_MCP_METHOD, "tools/call");
        let legacy_call = json!({"jsonrpc": "2.0", "id": 3, "method": "tools/call",
            "params": {"name": "echo", "arguments": {"message": "hi"}}});
        let cases: Vec<(&str, Value, Headers)> = vec![
            (
                "Base64 Mcp-Name",
                call.clone(),
                vec![modern, calling, (HEADER_MCP_NAME, &encoded)],
            ),
            ("no Mcp-Method", call.clone(), vec![modern, named]),
            (
                "wrong Mcp-Method",
                call.clone(),
                vec![modern, named, (HEADER_MCP_METHOD, "tools/list")],
            ),
            (
                "wrong Mcp-Name",
                call.clone(),
                vec![modern, calling, (HEADER_MCP_NAME, "other")],
            ),
            ("no version header", call.clone(), vec![calling, named]),
            (
                "older version header",
                call.clone(),
                vec![(HEADER_MCP_PROTOCOL_VERSION, "2025-11-25"), calling, named],
            ),
            (
                "no _meta",
                json!({"jsonrpc": "2.0", "id": 1, "method": "tools/list"}),
                vec![modern, (HEADER_MCP_METHOD, "tools/list")],
            ),
            (
                "a batch",
                json!([call.clone()]),
                vec![modern, calling, named],
            ),
            (
                "a notification",
                json!({"jsonrpc": "2.0", "method": "notifications/cancelled", "params": {"requestId": 1}}),
                vec![modern],
            ),
            (
                "initialize",
                json!({"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {"protocolVersion": "2025-11-25", "capabilities": {}, "clientInfo": {"name": "t", "version": "0"}}}),
                vec![],
            ),
            (
                "server/discover",
                stateless("server/discover", json!({})),
                vec![modern, (HEADER_MCP_METHOD, "server/discover")],
            ),
            (
                "unknown session",
                legacy_call.clone(),
                vec![(HEADER_SESSION_ID, "no-such-session")],
            ),
            (
                "session with a 2026 version",
                legacy_call.clone(),
                vec![(HEADER_SESSION_ID, &session), modern],
            ),
            (
                "session with an unknown version",
                legacy_call.clone(),
                vec![
                    (HEADER_SESSION_ID, &session),
                    (HEADER_MCP_PROTOCOL_VERSION, "1999-01-01"),
                ],
            ),
            (
                "session twice",
                legacy_call.clone(),
                vec![(HEADER_SESSION_ID, &session), (HEADER_SESSION_ID, &session)],
            ),
        ];
        for (case, body, headers) in cases {
            assert!(
                !planned(&pair, &body, &headers).await,
                "{case}: left to rmcp"
            );
            let direct = send(&pair.direct, request(&body, &headers)).await;
            let rmcp = send(&pair.rmcp, request(&body, &headers)).await;
            assert_eq!(direct.0, rmcp.0, "{case}: the same status");
            assert_eq!(direct.1, rmcp.1, "{case}: the same content type");
        }
    }

    #[tokio::test]
    async fn too_large_a_body_is_refused_as_rmcp_does() {
        let pair = pair().await;
        let body = stateless("tools/list", json!({"cursor": "x".repeat(8192)}));
        let headers = [modern_header(), (HEADER_MCP_METHOD, "tools/list")];
        let direct = send(&pair.direct, request(&body, &headers)).await;
        let rmcp = send(&pair.rmcp, request(&body, &headers)).await;
        assert_eq!(direct.0, StatusCode::PAYLOAD_TOO_LARGE);
        assert_eq!(direct.0, rmcp.0);
    }

    fn modern_header() -> (&'static str, &'static str) {
        (HEADER_MCP_PROTOCOL_VERSION, "2026-07-28")
    }
}
