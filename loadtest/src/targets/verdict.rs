//! What a run made of a target: the figure measured and a [`Status`], and the
//! Markdown table of them all.

use serde::Serialize;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Status {
    Met,
    NotMet,
    /// Not met, and not within reach on this machine: the run's own floor for
    /// what a chat message (or an opened socket) costs leaves less than the
    /// target asks.
    OutOfReach,
    /// The scenario reported errors or integrity problems.
    Failed,
    NotRun,
}

impl Status {
    pub fn of(met: bool) -> Self {
        if met {
            Status::Met
        } else {
            Status::NotMet
        }
    }

    fn label(self) -> &'static str {
        match self {
            Status::Met => "met",
            Status::NotMet => "not met",
            Status::OutOfReach => "not met: out of reach (floor)",
            Status::Failed => "FAILED",
            Status::NotRun => "not run",
        }
    }
}

/// One target: what it asks, what the run measured, and the verdict.
#[derive(Debug, Serialize)]
pub struct Verdict {
    pub target: String,
    pub measured: String,
    pub status: Status,
}

impl Verdict {
    pub fn new(target: impl Into<String>, measured: impl Into<String>, status: Status) -> Self {
        Verdict {
            target: target.into(),
            measured: measured.into(),
            status,
        }
    }

    pub fn not_run(target: impl Into<String>) -> Self {
        Verdict::new(target, "", Status::NotRun)
    }
}

/// A figure checked against a bound, from reports any of which may be faulty.
pub fn judged(target: &str, failed: &[bool], measured: String, met: bool) -> Verdict {
    let status = if failed.iter().any(|failed| *failed) {
        Status::Failed
    } else {
        Status::of(met)
    };
    Verdict::new(target, measured, status)
}

/// A thousands-separated whole number.
pub fn whole(value: f64) -> String {
    let digits = format!("{:.0}", value.max(0.0));
    let mut out = String::with_capacity(digits.len() + digits.len() / 3);
    for (i, digit) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i) % 3 == 0 {
            out.push(',');
        }
        out.push(digit);
    }
    out
}

/// The verdicts as a Markdown table.
pub fn table(verdicts: &[Verdict]) -> String {
    let mut out = String::from("| Target | Measured | Status |\n|---|---|---|\n");
    for v in verdicts {
        out += &format!("| {} | {} | {} |\n", v.target, v.measured, v.status.label());
    }
    out
}
