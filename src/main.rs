//! `mcp-operator`: one binary for the operator and the MCP routers it runs.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

mod crds;

#[derive(Parser)]
#[command(name = "mcp-operator", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
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
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Crds { out_dir, reference } => crds::run(out_dir.as_deref(), reference),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("mcp-operator: {error:#}");
            ExitCode::FAILURE
        }
    }
}
