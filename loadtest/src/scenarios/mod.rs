//! The scenarios, and what every run does around them: write the JSON report and
//! the plot when asked.

mod chat;
mod client;
mod connect;
mod echo;
mod inbox;
mod rest;
mod store;
mod verify;

use crate::cli::{Cli, Output, Scenario};
use crate::report::{Faults, Figures, Report};
use crate::Result;

/// Runs the scenario and prints its summary; `None` for the tool's helper
/// processes (the echo server and `connect`'s workers), which report to the
/// process that started them, and for `targets`, which prints its own table.
pub async fn run(cli: Cli) -> Result<Option<Faults>> {
    let output = cli.scenario.output().cloned();
    let output = output.as_ref();
    let faults = match cli.scenario {
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
        Scenario::Chat(args) => finish(chat::run(args).await?, output)?,
        Scenario::Inbox(args) => finish(inbox::run(args).await?, output)?,
        Scenario::Connect(args) => finish(connect::run(args).await?, output)?,
        Scenario::Rest(args) => finish(rest::run(args).await?, output)?,
        Scenario::Verify(args) => finish(verify::run(args).await?, output)?,
        Scenario::Echo(args) => finish(echo::run(args).await?, output)?,
        Scenario::StoreCeiling(args) => finish(store::run(args).await?, output)?,
    };
    Ok(Some(faults))
}

/// Writes the report and the plot when asked, prints the summary, and says
/// what the run counted against itself.
fn finish<F: Figures>(report: Report<F>, output: Option<&Output>) -> Result<Faults> {
    if let Some(path) = output.and_then(|o| o.json.as_ref()) {
        report.write_json(path)?;
    }
    if let Some(path) = output.and_then(|o| o.plot.as_ref()) {
        crate::plot::write_svg(&report, path)?;
    }
    report.print_summary();
    Ok(report.faults())
}
