//! The report: stable top-level JSON keys, a readable summary, and the JSON file.

use crate::stats::{Recorder, BUCKET};
use serde::Serialize;
use std::collections::BTreeMap;

/// Latency percentiles in milliseconds.
#[derive(Debug, Default, Clone, Serialize)]
pub struct Latency {
    pub p50: f64,
    pub p90: f64,
    pub p99: f64,
    pub p999: f64,
    pub max: f64,
}

impl Latency {
    pub fn from_recorder(recorder: &Recorder) -> Self {
        let h = &recorder.latency_us;
        let ms = |micros: u64| micros as f64 / 1000.0;
        if h.is_empty() {
            return Latency::default();
        }
        Latency {
            p50: ms(h.value_at_quantile(0.50)),
            p90: ms(h.value_at_quantile(0.90)),
            p99: ms(h.value_at_quantile(0.99)),
            p999: ms(h.value_at_quantile(0.999)),
            max: ms(h.max()),
        }
    }
}

/// What a run counted against itself. Any of it fails the run: the tool's
/// exit status, and in `loadtest targets` every target the run's figures
/// stand for (read back from its report, see [`Faults::any`]).
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Faults {
    pub errors: u64,
    pub lost: u64,
    pub duplicated: u64,
    pub out_of_order: u64,
    /// Problems found after the run (e.g. the store disagrees with the acks).
    pub problems: usize,
}

impl Faults {
    pub fn any(&self) -> bool {
        self.errors > 0
            || self.lost > 0
            || self.duplicated > 0
            || self.out_of_order > 0
            || self.problems > 0
    }
}

/// Everything a scenario measured.
#[derive(Debug, Default, Serialize)]
pub struct Report {
    pub scenario: String,
    pub duration_s: f64,
    pub delivered: u64,
    pub delivered_per_s: f64,
    pub latency_ms: Latency,
    pub errors: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub connections_held: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub connect_per_s: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub server_rss_bytes: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rss_per_connection_bytes: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub lost: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub duplicated: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub out_of_order: Option<u64>,
    /// Scenario-specific figures (e.g. `sends_per_s`, `reads_per_s`, `stored`).
    #[serde(flatten)]
    pub extra: BTreeMap<String, serde_json::Value>,
    /// Throughput over time: (seconds since start, events/s).
    #[serde(skip)]
    pub timeline: Vec<(f64, f64)>,
    /// A problem found after the run (e.g. the store disagrees with the acks).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub problems: Vec<String>,
}

impl Report {
    /// A report from a merged recorder over `duration_s` seconds.
    pub fn measured(scenario: &str, duration_s: f64, recorder: &Recorder) -> Self {
        let delivered = recorder.total();
        let bucket_s = BUCKET.as_secs_f64();
        Report {
            scenario: scenario.to_owned(),
            duration_s,
            delivered,
            delivered_per_s: delivered as f64 / duration_s.max(f64::EPSILON),
            latency_ms: Latency::from_recorder(recorder),
            timeline: recorder
                .timeline
                .iter()
                .enumerate()
                .map(|(i, n)| ((i as f64 + 1.0) * bucket_s, *n as f64 / bucket_s))
                .collect(),
            ..Report::default()
        }
    }

    pub fn set(&mut self, key: &str, value: impl Into<serde_json::Value>) {
        self.extra.insert(key.to_owned(), value.into());
    }

    /// `seconds` of CPU time divided over `count` events, as `key` in µs (one
    /// decimal); nothing when the time could not be read.
    pub fn set_cpu_per(&mut self, key: &str, seconds: Option<f64>, count: u64) {
        if let Some(seconds) = seconds {
            self.set(key, (seconds * 1e7 / count.max(1) as f64).round() / 10.0);
        }
    }

    /// A share between 0 and 1 as `key` (three decimals); nothing when unknown.
    pub fn set_share(&mut self, key: &str, share: Option<f64>) {
        if let Some(share) = share {
            self.set(key, (share * 1000.0).round() / 1000.0);
        }
    }

    /// What this run counted against itself.
    pub fn faults(&self) -> Faults {
        Faults {
            errors: self.errors,
            lost: self.lost.unwrap_or(0),
            duplicated: self.duplicated.unwrap_or(0),
            out_of_order: self.out_of_order.unwrap_or(0),
            problems: self.problems.len(),
        }
    }

    pub fn print_summary(&self) {
        println!("scenario      {}", self.scenario);
        println!("duration      {:.1} s", self.duration_s);
        println!(
            "delivered     {} ({:.0}/s)",
            self.delivered, self.delivered_per_s
        );
        let l = &self.latency_ms;
        println!(
            "latency ms    p50 {:.2}  p90 {:.2}  p99 {:.2}  p99.9 {:.2}  max {:.2}",
            l.p50, l.p90, l.p99, l.p999, l.max
        );
        println!("errors        {}", self.errors);
        let optional = [
            ("connections", self.connections_held.map(|v| v.to_string())),
            ("connect/s", self.connect_per_s.map(|v| format!("{v:.0}"))),
            (
                "server RSS",
                self.server_rss_bytes.map(|v| format!("{} KiB", v / 1024)),
            ),
            (
                "RSS/conn",
                self.rss_per_connection_bytes
                    .map(|v| format!("{v:.0} bytes")),
            ),
            ("lost", self.lost.map(|v| v.to_string())),
            ("duplicated", self.duplicated.map(|v| v.to_string())),
            ("out of order", self.out_of_order.map(|v| v.to_string())),
        ];
        for (name, value) in optional {
            if let Some(value) = value {
                println!("{name:<13} {value}");
            }
        }
        for (key, value) in &self.extra {
            println!("{key:<13} {value}");
        }
        for problem in &self.problems {
            println!("PROBLEM       {problem}");
        }
    }

    pub fn write_json(&self, path: &std::path::Path) -> std::io::Result<()> {
        let text = serde_json::to_string_pretty(self).map_err(std::io::Error::other)?;
        std::fs::write(path, text + "\n")
    }
}
