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
    let (report, output) = match cli.scenario {
        Scenario::Chat(args) => {
            let output = args.output.clone();
            (chat::run(args).await?, output)
        }
        Scenario::Connect(args) => {
            let output = args.output.clone();
            (connect::run(args).await?, output)
        }
        Scenario::Rest(args) => {
            let output = args.output.clone();
            (rest::run(args).await?, output)
        }
        Scenario::Verify(args) => {
            let output = args.output.clone();
            (verify::run(args).await?, output)
        }
        Scenario::Echo(args) => {
            let output = args.output.clone();
            (echo::run(args).await?, output)
        }
        Scenario::StoreCeiling(args) => {
            let output = args.output.clone();
            (store::run(args).await?, output)
        }
    };
    if let Some(path) = &output.json {
        report.write_json(path)?;
    }
    if let Some(path) = &output.plot {
        crate::plot::write_svg(&report, path)?;
    }
    Ok(report)
}
