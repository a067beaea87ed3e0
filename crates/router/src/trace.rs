//! W3C trace context through the router: a request's spans continue the
//! caller's trace, from `_meta.traceparent` in the params (which MCP
//! 2026-07-28 allows) or else the `traceparent` header, and each backend
//! call carries it on in its own `traceparent` header. Without
//! `--otlp-endpoint` no propagator is installed and all of this is a no-op.

use axum::http::HeaderMap;
use axum::http::request::Parts;
use opentelemetry::propagation::Extractor;
use opentelemetry::trace::TraceContextExt;
use opentelemetry::{Context, global};
use opentelemetry_http::{HeaderExtractor, HeaderInjector};
use serde_json::{Map, Value};
use tracing_opentelemetry::OpenTelemetrySpanExt;

const TRACEPARENT: &str = "traceparent";

/// The `_meta` of an MCP request as a carrier: its string members.
struct MetaExtractor<'a>(&'a Map<String, Value>);

impl Extractor for MetaExtractor<'_> {
    fn get(&self, key: &str) -> Option<&str> {
        self.0.get(key).and_then(Value::as_str)
    }

    fn keys(&self) -> Vec<&str> {
        self.0.keys().map(String::as_str).collect()
    }
}

/// The caller's trace context: `_meta` when it names one (it belongs to
/// this very request), else the HTTP headers.
pub fn caller(meta: &Map<String, Value>, headers: Option<&HeaderMap>) -> Context {
    global::get_text_map_propagator(|propagator| {
        if meta.contains_key(TRACEPARENT) {
            propagator.extract(&MetaExtractor(meta))
        } else if let Some(headers) = headers {
            propagator.extract(&HeaderExtractor(headers))
        } else {
            Context::new()
        }
    })
}

/// The caller's context of an MCP request handled by rmcp, whose
/// Streamable HTTP service leaves the HTTP request's parts in the
/// extensions.
pub fn caller_of(meta: &Map<String, Value>, extensions: &rmcp::model::Extensions) -> Context {
    caller(meta, extensions.get::<Parts>().map(|parts| &parts.headers))
}

/// Makes `span` a child of the caller's span, when the caller sent one.
pub fn continue_trace(span: &tracing::Span, caller: Context) {
    if caller.span().span_context().is_valid() {
        // Fails only when no trace exporter is installed: nothing to join.
        let _ = span.set_parent(caller);
    }
}

/// The current span's context as headers for a backend request.
pub fn outgoing_headers() -> HeaderMap {
    let mut headers = HeaderMap::new();
    let context = tracing::Span::current().context();
    global::get_text_map_propagator(|propagator| {
        propagator.inject_context(&context, &mut HeaderInjector(&mut headers));
    });
    headers
}

#[cfg(test)]
mod tests {
    use super::*;
    use opentelemetry::trace::{TraceId, TracerProvider as _};
    use opentelemetry_sdk::propagation::TraceContextPropagator;
    use opentelemetry_sdk::trace::SdkTracerProvider;
    use serde_json::json;
    use tracing_subscriber::layer::SubscriberExt;

    const CALLER: &str = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
    const META_CALLER: &str = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01";

    fn trace_id(context: &Context) -> TraceId {
        context.span().span_context().trace_id()
    }

    fn headers_with(traceparent: &str) -> HeaderMap {
        let mut headers = HeaderMap::new();
        headers.insert(
            TRACEPARENT,
            traceparent.parse().expect("a valid header value"),
        );
        headers
    }

    /// Runs `test` with the W3C propagator and a span-recording subscriber,
    /// as the binary installs them with --otlp-endpoint.
    fn with_tracing(test: impl FnOnce()) {
        global::set_text_map_propagator(TraceContextPropagator::new());
        let provider = SdkTracerProvider::builder().build();
        let subscriber = tracing_subscriber::registry()
            .with(tracing_opentelemetry::layer().with_tracer(provider.tracer("test")));
        tracing::subscriber::with_default(subscriber, test);
    }

    #[test]
    fn caller_reads_the_header() {
        with_tracing(|| {
            let context = caller(&Map::new(), Some(&headers_with(CALLER)));
            assert_eq!(
                trace_id(&context).to_string(),
                "4bf92f3577b34da6a3ce929d0e0e4736"
            );
        });
    }

    #[test]
    fn caller_prefers_meta_over_the_header() {
        with_tracing(|| {
            let meta = json!({"traceparent": META_CALLER});
            let meta = meta.as_object().expect("an object");
            let context = caller(meta, Some(&headers_with(CALLER)));
            assert_eq!(
                trace_id(&context).to_string(),
                "0af7651916cd43dd8448eb211c80319c"
            );
        });
    }

    #[test]
    fn caller_without_a_traceparent_is_no_trace() {
        with_tracing(|| {
            let context = caller(&Map::new(), Some(&HeaderMap::new()));
            assert!(!context.span().span_context().is_valid());
        });
    }

    #[test]
    fn backend_headers_carry_the_callers_trace_id() {
        with_tracing(|| {
            let span = tracing::info_span!("mcp");
            continue_trace(&span, caller(&Map::new(), Some(&headers_with(CALLER))));
            let headers = span.in_scope(outgoing_headers);
            let sent = headers
                .get(TRACEPARENT)
                .and_then(|value| value.to_str().ok())
                .expect("a traceparent header");
            let parts: Vec<&str> = sent.split('-').collect();
            assert_eq!(parts.get(1), Some(&"4bf92f3577b34da6a3ce929d0e0e4736"));
            // The router's own span, not the caller's, is the parent.
            assert_ne!(parts.get(2), Some(&"00f067aa0ba902b7"));
        });
    }
}
