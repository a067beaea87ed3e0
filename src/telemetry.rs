//! Logs and metrics for every subcommand that runs a server: a tracing
//! subscriber (text or JSON, filtered by `RUST_LOG`) and the Prometheus
//! recorder whose handle renders `/metrics`.

use anyhow::Context;
use clap::{Args, ValueEnum};
use mcp_operator_catalog::router::env as router_env;
use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};
use tracing_subscriber::EnvFilter;

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
}

/// Installs the global tracing subscriber and metrics recorder; call once,
/// at start.
pub fn init(args: &LogArgs) -> anyhow::Result<PrometheusHandle> {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt().with_env_filter(filter);
    match args.log_format {
        LogFormat::Text => builder.try_init(),
        LogFormat::Json => builder.json().try_init(),
    }
    .map_err(|e| anyhow::anyhow!("installing the log subscriber: {e}"))?;
    PrometheusBuilder::new()
        .install_recorder()
        .context("installing the metrics recorder")
}
