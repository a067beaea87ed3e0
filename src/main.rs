//! `mcp-operator`: one binary for the operator and the MCP routers it runs.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{CommandFactory, Parser, Subcommand};

mod crds;
mod flags;
mod telemetry;

#[derive(Parser)]
#[command(name = "mcp-operator", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the operator: reconcile MCPTool, MCPPrompt, MCPResource and
    /// MCPServer objects and publish catalogs to Redis.
    Controller {
        #[command(flatten)]
        args: Box<mcp_operator_controller::ControllerArgs>,
        #[command(flatten)]
        log: telemetry::LogArgs,
    },
    /// Serve one MCPServer's catalog from Redis over MCP Streamable HTTP,
    /// forwarding tool calls to their backends.
    Router {
        #[command(flatten)]
        args: Box<mcp_operator_router::RouterArgs>,
        #[command(flatten)]
        log: telemetry::LogArgs,
    },
    /// Print every CustomResourceDefinition as YAML, or write one file per CRD.
    Crds {
        /// Write `<plural>.<group>.yaml` files into this directory instead
        /// of printing a multi-document stream.
        #[arg(long, env = "MCP_CRDS_OUT_DIR")]
        out_dir: Option<PathBuf>,
        /// Print the Markdown reference of the CRDs (docs/crds.md) instead.
        #[arg(long, conflicts_with = "out_dir")]
        reference: bool,
    },
    /// Print a subcommand's flags as the Markdown table of the docs, or
    /// write it into a doc between its markers (`make docs`).
    Flags {
        /// `controller` or `router`.
        subcommand: String,
        /// Rewrite the table in this Markdown file instead of printing it.
        #[arg(long)]
        into: Option<PathBuf>,
    },
}

/// Starts logging, metrics, traces and a Tokio runtime, then runs a
/// server; flushes the traces when it stops.
fn serve<F, Fut>(log: &telemetry::LogArgs, service: &'static str, server: F) -> anyhow::Result<()>
where
    F: FnOnce(metrics_exporter_prometheus::PrometheusHandle) -> Fut,
    Fut: std::future::Future<Output = anyhow::Result<()>>,
{
    let telemetry = telemetry::init(log, service)?;
    let result = tokio::runtime::Runtime::new()?.block_on(server(telemetry.metrics.clone()));
    telemetry.shutdown();
    result
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Crds { out_dir, reference } => crds::run(out_dir.as_deref(), reference),
        Command::Flags { subcommand, into } => {
            flags::run(&Cli::command(), &subcommand, into.as_deref())
        }
        Command::Controller { args, log } => serve(&log, "mcp-operator-controller", |metrics| {
            mcp_operator_controller::run(*args, metrics)
        }),
        Command::Router { args, log } => serve(&log, "mcp-operator-router", |metrics| {
            mcp_operator_router::run(*args, metrics)
        }),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("mcp-operator: {error:#}");
            ExitCode::FAILURE
        }
    }
}
