//! Logs, metrics and traces for every subcommand that runs a server: a
//! tracing subscriber (text or JSON, filtered by `RUST_LOG`), the
//! Prometheus recorder whose handle renders `/metrics`, and, with
//! `--otlp-endpoint`, the export of the tracing spans over OTLP/HTTP.

use anyhow::Context;
use clap::{Args, ValueEnum};
use mcp_operator_catalog::router::env as router_env;
use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};
use opentelemetry::trace::TracerProvider as _;
use opentelemetry_otlp::{SpanExporter, WithExportConfig};
use opentelemetry_sdk::Resource;
use opentelemetry_sdk::propagation::TraceContextPropagator;
use opentelemetry_sdk::trace::SdkTracerProvider;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{EnvFilter, Layer};

/// How log lines are written.
#[derive(Clone, Copy, Debug, ValueEnum)]
pub enum LogFormat {
    /// Human-readable lines.
    Text,
    /// One JSON object a line, for log collectors.
    Json,
}

/// Logging flags shared by the servers.
#[derive(Args, Clone, Debug)]
pub struct LogArgs {
    /// Log line format. The level comes from RUST_LOG (default: info).
    #[arg(long, env = router_env::LOG_FORMAT, value_enum, default_value_t = LogFormat::Text)]
    pub log_format: LogFormat,
    /// OTLP/HTTP collector to export traces to, e.g. http://jaeger:4318
    /// (`/v1/traces` is appended). Unset: no traces are exported.
    #[arg(long, env = router_env::OTLP_ENDPOINT)]
    pub otlp_endpoint: Option<String>,
}

/// What [`init`] installed: the metrics handle, and the trace pipeline to
/// flush at exit.
pub struct Telemetry {
    pub metrics: PrometheusHandle,
    traces: Option<SdkTracerProvider>,
}

impl Telemetry {
    /// Sends the spans still batched; call once the server has stopped.
    pub fn shutdown(self) {
        if let Some(traces) = self.traces
            && let Err(error) = traces.shutdown()
        {
            eprintln!("mcp-operator: flushing traces: {error}");
        }
    }
}

/// Installs the global tracing subscriber, metrics recorder and (with an
/// OTLP endpoint) trace exporter; call once, at start, outside a Tokio
/// runtime. `service` is the traces' `service.name`.
pub fn init(args: &LogArgs, service: &'static str) -> anyhow::Result<Telemetry> {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let log = tracing_subscriber::fmt::layer();
    let log = match args.log_format {
        LogFormat::Text => log.boxed(),
        LogFormat::Json => log.json().boxed(),
    };
    let traces = args
        .otlp_endpoint
        .as_deref()
        .map(|endpoint| tracer_provider(endpoint, service))
        .transpose()?;
    let export = traces.as_ref().map(|provider| {
        tracing_opentelemetry::layer().with_tracer(provider.tracer(env!("CARGO_PKG_NAME")))
    });
    tracing_subscriber::registry()
        .with(filter)
        .with(log)
        .with(export)
        .try_init()
        .map_err(|e| anyhow::anyhow!("installing the log subscriber: {e}"))?;
    let metrics = PrometheusBuilder::new()
        .install_recorder()
        .context("installing the metrics recorder")?;
    Ok(Telemetry { metrics, traces })
}

/// Spans batched and sent by the SDK's own thread to `endpoint`; W3C trace
/// context as the propagator, so the router continues callers' traces.
fn tracer_provider(endpoint: &str, service: &'static str) -> anyhow::Result<SdkTracerProvider> {
    // For an https endpoint.
    mcp_operator_store::install_tls_provider();
    let exporter = SpanExporter::builder()
        .with_http()
        .with_endpoint(traces_url(endpoint))
        .build()
        .with_context(|| format!("the OTLP exporter for {endpoint}"))?;
    opentelemetry::global::set_text_map_propagator(TraceContextPropagator::new());
    Ok(SdkTracerProvider::builder()
        .with_batch_exporter(exporter)
        .with_resource(Resource::builder().with_service_name(service).build())
        .build())
}

/// The traces path under a collector's base URL, as the
/// OTEL_EXPORTER_OTLP_ENDPOINT convention has it.
fn traces_url(endpoint: &str) -> String {
    format!("{}/v1/traces", endpoint.trim_end_matches('/'))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn traces_url_appends_the_signal_path_once() {
        assert_eq!(
            traces_url("http://jaeger:4318"),
            "http://jaeger:4318/v1/traces"
        );
        assert_eq!(
            traces_url("http://jaeger:4318/"),
            "http://jaeger:4318/v1/traces"
        );
    }
}
