//! `loadtest`: converge a large population with 1, 2 and 4 operator
//! replicas and write the results to docs/benchmarks.md. Needs the testenv
//! (`make loadtest` provides it).

use clap::Parser;
use mcp_operator_chaos::Redis;
use mcp_operator_chaos::report::write_section;
use mcp_operator_loadtest::{Config, markdown, run};

#[derive(Parser)]
#[command(name = "loadtest", about)]
struct Cli {
    #[command(flatten)]
    config: Config,
    /// Rewrite the loadtest section of this report.
    #[arg(long)]
    report: Option<String>,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let client = kube::Client::try_default().await?;
    let redis = Redis::from_testenv(false)?;
    let runs = run(&cli.config, &client, &redis).await?;
    let section = markdown(&cli.config, &runs);
    println!("{section}");
    if let Some(path) = cli.report {
        write_section(&path, "loadtest", &section)?;
    }
    if let Some(churned) = runs.iter().find_map(|r| r.churn.as_ref()) {
        let churn = &churned.churn;
        anyhow::ensure!(
            churn.missed + churn.unserved == 0,
            "{} changes never published, {} never served by every router",
            churn.missed,
            churn.unserved
        );
    }
    Ok(())
}
