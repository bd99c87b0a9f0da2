//! The scenarios, and what every run does around them: write the JSON report and
//! the plot when asked.

mod chat;
mod client;
mod connect;
mod echo;
mod rest;
mod store;
mod verify;

use crate::cli::{Cli, Scenario};
use crate::report::Report;
use crate::Result;

/// Runs the scenario; `None` for the tool's helper processes (the echo server
/// and `connect`'s workers), which report to the process that started them,
/// and for `targets`, which prints its own table.
pub async fn run(cli: Cli) -> Result<Option<Report>> {
    let output = cli.scenario.output().cloned();
    let report = match cli.scenario {
        Scenario::EchoServer => {
            echo::serve_until_stdin_closes().await?;
            return Ok(None);
        }
        Scenario::ConnectWorker(args) => {
            connect::work(args).await?;
            return Ok(None);
        }
        Scenario::Targets(args) => {
            crate::targets::run(&args)?;
            return Ok(None);
        }
        Scenario::Chat(args) => chat::run(args).await?,
        Scenario::Connect(args) => connect::run(args).await?,
        Scenario::Rest(args) => rest::run(args).await?,
        Scenario::Verify(args) => verify::run(args).await?,
        Scenario::Echo(args) => echo::run(args).await?,
        Scenario::StoreCeiling(args) => store::run(args).await?,
    };
    if let Some(path) = output.as_ref().and_then(|o| o.json.as_ref()) {
        report.write_json(path)?;
    }
    if let Some(path) = output.as_ref().and_then(|o| o.plot.as_ref()) {
        crate::plot::write_svg(&report, path)?;
    }
    Ok(Some(report))
}
