//! `loadtest targets`: reads the JSON reports of one run of every scenario the
//! throughput targets name (`scripts/targets.sh` writes them into one
//! directory) and says, target by target, what was measured and whether it
//! was met, with the ratios to the echo and store ceilings taken from the same
//! run. A figure from a run that reported errors or integrity problems does not
//! count: its target is marked failed. A ratio target that no chat server could
//! meet on this machine, or a connect rate no server could reach on it (see
//! [`floor`]), is marked out of reach.
//!
//! The targets are data ([`TARGETS`]); [`judges`] holds how each is measured,
//! [`reports`] reads the run, [`verdict`] says how it went.

mod floor;
mod judges;
mod reports;
mod verdict;

use crate::cli::TargetsArgs;
use crate::Result;
pub use reports::Reports;
pub use verdict::{Status, Verdict};

/// One throughput target: what it asks, and how a run is judged against it.
pub struct Target {
    /// As the table shows it; `{connections}` stands for the socket count
    /// the run was asked to hold.
    pub text: &'static str,
    /// The figure to reach (a rate, a ratio, milliseconds or bytes).
    pub bound: f64,
    /// For a latency target, the load it is measured at (msg/s offered); for
    /// a user socket's memory, the bytes allowed per chat of its user.
    pub at: f64,
    pub judge: fn(&Target, &Run<'_>) -> Verdict,
}

/// One run: its reports, and how many sockets it was asked to hold.
pub struct Run<'a> {
    pub reports: &'a Reports,
    pub connections: u64,
}

impl Target {
    /// The target as the table shows it for `run`.
    fn text_for(&self, run: &Run<'_>) -> String {
        self.text
            .replace("{connections}", &verdict::whole(run.connections as f64))
    }
}

/// The throughput targets, in the order the table lists them.
pub const TARGETS: [Target; 12] = [
    Target {
        text: "chat ≥ 100,000 delivered msg/s, nothing lost",
        bound: 100_000.0,
        at: 0.0,
        judge: judges::chat_rate,
    },
    Target {
        text: "chat p99 ≤ 5 ms at 10,000 msg/s offered",
        bound: 5.0,
        at: 10_000.0,
        judge: judges::chat_latency,
    },
    Target {
        text: "chat ≥ 50% of echo (same run)",
        bound: 0.5,
        at: 0.0,
        judge: judges::chat_to_echo,
    },
    Target {
        text: "persisted ≥ 70% of store-ceiling (same run)",
        bound: 0.7,
        at: 0.0,
        judge: judges::persisted_to_store,
    },
    Target {
        text: "connect {connections} sockets at ≥ 20,000/s",
        bound: 20_000.0,
        at: 0.0,
        judge: judges::connect_rate,
    },
    Target {
        text: "connect ≤ 4 KiB server RSS per idle socket",
        bound: 4096.0,
        at: 0.0,
        judge: judges::connect_memory,
    },
    Target {
        text: "inbox (user sockets) ≥ 0.9× chat's delivered msg/s (same run), nothing lost",
        bound: 0.9,
        at: 0.0,
        judge: judges::inbox_to_chat,
    },
    Target {
        text: "connect user sockets (100 chats each) ≥ 0.8× connect's rate (same run)",
        bound: 0.8,
        at: 0.0,
        judge: judges::user_connect_rate,
    },
    Target {
        text: "connect ≤ 4 KiB + 64 B per chat server RSS per idle user socket",
        bound: 4096.0,
        at: 64.0,
        judge: judges::user_connect_memory,
    },
    Target {
        text:
            "connect ≤ 4 KiB + 64 B per chat server RSS per idle user socket that synced every chat",
        bound: 4096.0,
        at: 64.0,
        judge: judges::user_sync_memory,
    },
    Target {
        text: "rest sends ≥ 30,000/s",
        bound: 30_000.0,
        at: 0.0,
        judge: judges::rest_sends,
    },
    Target {
        text: "rest history reads ≥ 50,000/s",
        bound: 50_000.0,
        at: 0.0,
        judge: judges::rest_reads,
    },
];

/// Every target against one run's reports; `connections` is how many sockets
/// the connect target asks for.
pub fn evaluate(reports: &Reports, connections: u64) -> Vec<Verdict> {
    let run = Run {
        reports,
        connections,
    };
    TARGETS
        .iter()
        .map(|target| (target.judge)(target, &run))
        .collect()
}

/// Prints the table of one run's reports (and writes it as JSON when asked).
/// A target whose scenario failed is an error; so, with `--strict`, is one not
/// met or not run.
pub fn run(args: &TargetsArgs) -> Result<()> {
    let reports = Reports::load(&args.reports)?;
    let verdicts = evaluate(&reports, args.connections);
    print!("{}", verdict::table(&verdicts));
    if let Some(path) = &args.json {
        std::fs::write(path, serde_json::to_string_pretty(&verdicts)? + "\n")?;
    }
    let count = |status| verdicts.iter().filter(|v| v.status == status).count();
    if count(Status::Failed) > 0 {
        return Err(format!(
            "{} targets' scenarios reported errors",
            count(Status::Failed)
        )
        .into());
    }
    let missed = count(Status::NotMet) + count(Status::OutOfReach) + count(Status::NotRun);
    if args.strict && missed > 0 {
        return Err(format!("{missed} of {} targets not met", verdicts.len()).into());
    }
    Ok(())
}

#[cfg(test)]
mod tests;
