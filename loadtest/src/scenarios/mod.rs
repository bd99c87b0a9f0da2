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

pub async fn run(cli: Cli) -> Result<Report> {
    let output = cli.scenario.output().clone();
    let report = match cli.scenario {
        Scenario::Chat(args) => chat::run(args).await?,
        Scenario::Connect(args) => connect::run(args).await?,
        Scenario::Rest(args) => rest::run(args).await?,
        Scenario::Verify(args) => verify::run(args).await?,
        Scenario::Echo(args) => echo::run(args).await?,
        Scenario::StoreCeiling(args) => store::run(args).await?,
    };
    if let Some(path) = &output.json {
        report.write_json(path)?;
    }
    if let Some(path) = &output.plot {
        crate::plot::write_svg(&report, path)?;
    }
    Ok(report)
}
