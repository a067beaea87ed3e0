//! Property test of the HTTP/JSON-RPC request path: arbitrary requests
//! (methods, Host/Origin/Accept/auth headers, session ids, raw bytes or
//! JSON-RPC messages with arbitrary params) go through the whole app in
//! process. None may panic, hang or answer 5xx, and every answer is
//! well-formed. `PROPTEST_CASES` sets the number of cases (default 2,000);
//! the million-case run is in docs/router.md.

use std::sync::{LazyLock, Mutex};
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::http::{Request, StatusCode};
use http_body_util::BodyExt;
use proptest::prelude::*;
use serde_json::{Value, json};
use tower::ServiceExt;

use crate::fixture::{self, TOKEN};
use crate::http::app;

/// The app under test, built once (crate::fixture).
struct Fixture {
    runtime: tokio::runtime::Runtime,
    app: Router,
    /// The session the fixture initialized; renewed when a case ends it.
    session: Mutex<Option<String>>,
}

static FIXTURE: LazyLock<Fixture> = LazyLock::new(|| {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("a runtime");
    let app = runtime.block_on(fixture::app(fixture::shared(), Default::default(), app));
    Fixture {
        runtime,
        app,
        session: Mutex::new(None),
    }
});

/// What a case sends.
#[derive(Debug, Clone)]
struct Case {
    method: &'static str,
    host: Option<String>,
    origin: Option<String>,
    accept: Option<&'static str>,
    content_type: Option<&'static str>,
    protocol: Option<&'static str>,
    authorized: bool,
    /// Use the fixture's live session, a made-up one, or none.
    session: Option<Option<String>>,
    body: Vec<u8>,
}

fn json_value() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::from),
        any::<i64>().prop_map(Value::from),
        any::<f64>()
            .prop_filter("finite", |f| f.is_finite())
            .prop_map(Value::from),
        "[a-z{}%|. ]{0,12}".prop_map(Value::from),
        prop::sample::select(vec![
            "echo",
            "greet",
            "docs://a",
            "who",
            "message",
            "{{ who }}",
            "MQ"
        ])
        .prop_map(Value::from),
    ];
    leaf.prop_recursive(3, 24, 6, |inner| {
        let key = prop::sample::select(vec![
            "name",
            "arguments",
            "uri",
            "cursor",
            "message",
            "count",
            "who",
            "_meta",
            "protocolVersion",
            "capabilities",
            "clientInfo",
        ]);
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..4).prop_map(Value::from),
            prop::collection::btree_map(key.prop_map(str::to_owned), inner, 0..5)
                .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

/// Params shaped like the real ones most of the time (known names, URIs,
/// cursors, arguments of any type), free-form JSON otherwise.
fn params() -> impl Strategy<Value = Value> {
    let name = prop::sample::select(vec!["echo", "greet", "nope", ""]).prop_map(Value::from);
    let uri = prop::sample::select(vec!["docs://a", "docs://nope", ""]).prop_map(Value::from);
    let cursor = prop::sample::select(vec!["MQ", "MA", "bogus", "", "OTk5OTk5OTk5OTk5OTk5OTk5OTk"])
        .prop_map(Value::from);
    let arguments = (json_value(), json_value(), json_value())
        .prop_map(|(message, count, who)| json!({"message": message, "count": count, "who": who}));
    let shaped = (name, uri, cursor, prop_oneof![3 => arguments, 1 => json_value()], any::<u8>()).prop_map(
        |(name, uri, cursor, arguments, drop)| {
            let mut params = json!({"name": name, "uri": uri, "cursor": cursor, "arguments": arguments,
                "protocolVersion": "2025-11-25", "capabilities": {}, "clientInfo": {"name": "p", "version": "0"}});
            // Leave out some fields, by the bits of `drop`.
            for (bit, key) in ["name", "uri", "cursor", "arguments"].into_iter().enumerate() {
                if drop & (1 << bit) != 0 && drop & 0x80 != 0 {
                    params.as_object_mut().map(|p| p.remove(key));
                }
            }
            params
        },
    );
    prop_oneof![3 => shaped, 1 => json_value()]
}

fn jsonrpc() -> impl Strategy<Value = Vec<u8>> {
    let method = prop::sample::select(vec![
        "initialize",
        "ping",
        "tools/list",
        "tools/call",
        "prompts/list",
        "prompts/get",
        "resources/list",
        "resources/read",
        "resources/templates/list",
        "notifications/initialized",
        "notifications/cancelled",
        "subscriptions/listen",
        "server/discover",
        "completion/complete",
        "logging/setLevel",
        "resources/subscribe",
        "nope",
    ]);
    let id = prop_oneof![
        Just(None),
        any::<i32>().prop_map(|i| Some(json!(i))),
        "[a-z]{0,4}".prop_map(|s| Some(json!(s))),
        Just(Some(Value::Null))
    ];
    let batch = prop::bool::weighted(0.05);
    let valid_version = prop::bool::weighted(0.9);
    (method, id, params(), batch, valid_version).prop_map(|(method, id, params, batch, valid_version)| {
        let mut message = json!({"jsonrpc": if valid_version { "2.0" } else { "1.0" }, "method": method, "params": params});
        if let Some(id) = id {
            message["id"] = id;
        }
        let message = if batch { json!([message]) } else { message };
        serde_json::to_vec(&message).unwrap_or_default()
    })
}

fn case() -> impl Strategy<Value = Case> {
    // Each part is valid most of the time, so that a good share of cases
    // gets past the guard, auth and rmcp's checks into the handlers.
    let host = prop_oneof![
        10 => Just(Some("localhost:8080".to_owned())),
        10 => Just(Some("router.ns.svc".to_owned())),
        1 => Just(None),
        1 => "[a-z.:0-9]{0,16}".prop_map(Some),
    ];
    let origin = prop_oneof![
        16 => Just(None),
        4 => Just(Some("http://localhost:3000".to_owned())),
        1 => "[a-z:/.]{0,16}".prop_map(Some),
    ];
    let body = prop_oneof![12 => jsonrpc(), 1 => prop::collection::vec(any::<u8>(), 0..64), 1 => Just(vec![b'x'; 5000])];
    (
        prop_oneof![16 => Just("POST"), 1 => Just("GET"), 1 => Just("DELETE"), 1 => Just("PUT")],
        host,
        origin,
        prop_oneof![
            16 => Just(Some("application/json, text/event-stream")),
            1 => Just(Some("application/json")),
            1 => Just(Some("text/event-stream")),
            1 => Just(None),
        ],
        prop_oneof![16 => Just(Some("application/json")), 1 => Just(Some("text/plain")), 1 => Just(None)],
        prop_oneof![
            1 => Just(Some("2025-06-18")),
            8 => Just(Some("2025-11-25")),
            2 => Just(Some("2026-07-28")),
            1 => Just(Some("bogus")),
            1 => Just(None),
        ],
        prop::bool::weighted(0.9),
        prop_oneof![
            2 => Just(None),
            8 => Just(Some(None)),
            1 => "[a-f0-9-]{0,12}".prop_map(|s| Some(Some(s))),
        ],
        body,
    )
        .prop_map(
            |(method, host, origin, accept, content_type, protocol, authorized, session, body)| {
                Case {
                    method,
                    host,
                    origin,
                    accept,
                    content_type,
                    protocol,
                    authorized,
                    session,
                    body,
                }
            },
        )
}

impl Fixture {
    /// A live session id, initializing one when there is none.
    async fn session(&self) -> Option<String> {
        if let Some(session) = self.session.lock().ok()?.clone() {
            return Some(session);
        }
        let body = json!({"jsonrpc": "2.0", "id": 0, "method": "initialize", "params": {
            "protocolVersion": "2025-11-25", "capabilities": {}, "clientInfo": {"name": "props", "version": "0"}}});
        let request = Request::post("/mcp")
            .header("host", "localhost")
            .header("authorization", format!("Bearer {TOKEN}"))
            .header("accept", "application/json, text/event-stream")
            .header("content-type", "application/json")
            .body(Body::from(body.to_string()))
            .ok()?;
        let response = self.app.clone().oneshot(request).await.ok()?;
        let session = response
            .headers()
            .get("mcp-session-id")?
            .to_str()
            .ok()?
            .to_owned();
        let _ = response.into_body().collect().await;
        *self.session.lock().ok()? = Some(session.clone());
        Some(session)
    }

    /// Sends one case; `Err` describes a broken property.
    async fn send(&self, case: &Case) -> Result<(), String> {
        let mut request = Request::builder().method(case.method).uri("/mcp");
        if let Some(host) = &case.host {
            request = request.header("host", host.as_str());
        }
        if let Some(origin) = &case.origin {
            request = request.header("origin", origin.as_str());
        }
        if let Some(accept) = case.accept {
            request = request.header("accept", accept);
        }
        if let Some(content_type) = case.content_type {
            request = request.header("content-type", content_type);
        }
        if let Some(protocol) = case.protocol {
            request = request.header("mcp-protocol-version", protocol);
        }
        if case.authorized {
            request = request.header("authorization", format!("Bearer {TOKEN}"));
        }
        match &case.session {
            Some(None) => {
                if let Some(session) = self.session().await {
                    request = request.header("mcp-session-id", session);
                }
            }
            Some(Some(made_up)) => request = request.header("mcp-session-id", made_up.as_str()),
            None => {}
        }
        let Ok(request) = request.body(Body::from(case.body.clone())) else {
            return Ok(()); // a header value http itself refuses: nothing sent
        };
        let response =
            tokio::time::timeout(Duration::from_secs(10), self.app.clone().oneshot(request))
                .await
                .map_err(|_| "no response head within 10s".to_owned())?
                .map_err(|e| format!("service error: {e:?}"))?;
        let status = response.status();
        if status.is_server_error() {
            return Err(format!("answered {status}"));
        }
        if status == StatusCode::NOT_FOUND {
            // The live session was ended (e.g. by a DELETE case).
            if let Ok(mut session) = self.session.lock() {
                *session = None;
            }
        }
        let is_sse = response
            .headers()
            .get("content-type")
            .is_some_and(|v| v.as_bytes().starts_with(b"text/event-stream"));
        if is_sse && case.method == "GET" {
            return Ok(()); // the standalone stream stays open by design
        }
        let body = tokio::time::timeout(Duration::from_secs(10), response.into_body().collect())
            .await
            .map_err(|_| "body not complete within 10s".to_owned())?
            .map_err(|e| format!("body error: {e}"))?
            .to_bytes();
        let is_json = !is_sse && body.first() == Some(&b'{');
        if is_json && serde_json::from_slice::<Value>(&body).is_err() {
            return Err(format!(
                "malformed JSON answer: {}",
                String::from_utf8_lossy(&body)
            ));
        }
        Ok(())
    }
}

fn cases() -> u32 {
    std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(2_000)
}

proptest! {
    #![proptest_config(ProptestConfig { cases: cases(), failure_persistence: None, ..ProptestConfig::default() })]

    #[test]
    fn no_request_breaks_the_router(case in case()) {
        let fixture = &*FIXTURE;
        let outcome = fixture.runtime.block_on(fixture.send(&case));
        prop_assert!(outcome.is_ok(), "{:?}: {}", case, outcome.err().unwrap_or_default());
    }
}
