//! The report: what every scenario measures ([`Report`]), with the figures
//! of its own scenario as one typed struct ([`ChatFigures`], ...). The
//! scenario writes it, `loadtest targets` reads it back as the same type, and
//! the JSON keys are the field names.

use crate::procfs::{Consumer, CpuSnapshot};
use crate::stats::{Recorder, BUCKET};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

/// Latency percentiles in milliseconds.
#[derive(Debug, Default, Clone, Serialize, Deserialize)]
#[serde(default)]
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

/// What every scenario measured, and its own figures (`F`).
#[derive(Debug, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct Report<F> {
    pub scenario: String,
    pub duration_s: f64,
    pub delivered: u64,
    pub delivered_per_s: f64,
    pub latency_ms: Latency,
    pub errors: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub lost: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub duplicated: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub out_of_order: Option<u64>,
    /// The scenario's own figures, as top-level keys.
    #[serde(flatten)]
    pub figures: F,
    /// Throughput over time: (seconds since start, events/s).
    #[serde(skip)]
    pub timeline: Vec<(f64, f64)>,
    /// A problem found after the run (e.g. the store disagrees with the acks).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub problems: Vec<String>,
}

/// A scenario's own figures.
pub trait Figures: Serialize + DeserializeOwned + Default {
    /// Whether the store holds other than what the run saw acknowledged.
    fn store_disagrees(&self) -> bool {
        false
    }
}

/// Where the cores' time went, when /proc could tell; shared by the
/// scenarios that measure it. A figure that could not be measured is `null`.
#[derive(Debug, Default, Clone, Serialize, Deserialize)]
#[serde(default)]
pub struct Machine {
    /// The servers' CPU time over the run, in seconds.
    pub server_cpu_s: Option<f64>,
    pub cores: Option<u64>,
    /// The share of the cores' time nobody used (0 to 1).
    pub idle_share: Option<f64>,
}

impl Machine {
    /// The servers' CPU time, the cores and their idle share between two
    /// snapshots of a run.
    pub fn between(before: &CpuSnapshot, after: &CpuSnapshot) -> Self {
        Machine {
            server_cpu_s: seconds(after.spent_since(before, Consumer::Servers)),
            cores: Some(crate::procfs::cores()),
            idle_share: share(after.idle_share_since(before)),
        }
    }
}

/// Whether a store count is known and differs from what was acknowledged.
fn stored_differs(stored: Option<u64>, acknowledged: u64) -> bool {
    stored.is_some_and(|stored| stored != acknowledged)
}

/// `chat` (and `chat --rate`).
#[derive(Debug, Default, Clone, Serialize, Deserialize)]
#[serde(default)]
pub struct ChatFigures {
    #[serde(flatten)]
    pub machine: Machine,
    pub server_cpu_per_message_us: Option<f64>,
    pub database_cpu_per_message_us: Option<f64>,
    pub tool_cpu_per_message_us: Option<f64>,
    pub sent: u64,
    pub acknowledged: u64,
    /// What the chats hold after the run; `None` when the store was not read.
    pub stored: Option<u64>,
    pub pairs: u64,
    pub nodes: u64,
    pub window: u64,
    pub offered_per_s: Option<u64>,
}

impl Figures for ChatFigures {
    fn store_disagrees(&self) -> bool {
        stored_differs(self.stored, self.acknowledged)
    }
}

/// `connect` (and the connect ceiling).
/// `inbox`: user sockets, many chats per user.
#[derive(Debug, Default, Clone, Serialize, Deserialize)]
#[serde(default)]
pub struct InboxFigures {
    #[serde(flatten)]
    pub machine: Machine,
    pub server_cpu_per_message_us: Option<f64>,
    pub database_cpu_per_message_us: Option<f64>,
    pub tool_cpu_per_message_us: Option<f64>,
    pub sent: u64,
    pub acknowledged: u64,
    pub stored: Option<u64>,
    pub users: u64,
    pub chats_per_user: u64,
    pub senders: u64,
    pub window: u64,
    pub nodes: u64,
}

impl Figures for InboxFigures {
    fn store_disagrees(&self) -> bool {
        stored_differs(self.stored, self.acknowledged)
    }
}

#[derive(Debug, Default, Clone, Serialize, Deserialize)]
#[serde(default)]
pub struct ConnectFigures {
    pub connections_held: u64,
    pub connect_per_s: f64,
    pub server_rss_bytes: Option<u64>,
    pub server_rss_before_bytes: Option<u64>,
    /// Right after the storm.
    pub rss_per_connection_bytes: Option<f64>,
    /// At the end of the hold, after a ping round.
    pub rss_per_connection_end_of_hold_bytes: Option<f64>,
    /// Seconds held, counted for user sockets from when every one's first
    /// `sync` was answered.
    pub held_for_s: u64,
    /// User sockets: seconds from the storm's start until every socket's
    /// first `sync` was answered.
    pub syncs_answered_after_s: Option<f64>,
    /// User sockets held whose first `sync` was not answered within the
    /// run's wait (counted in `errors` too, which also counts failed
    /// openings).
    pub syncs_unanswered: Option<u64>,
    #[serde(flatten)]
    pub machine: Machine,
    pub server_cpu_per_connection_us: Option<f64>,
    pub tool_cpu_per_connection_us: Option<f64>,
    pub database_cpu_per_connection_us: Option<f64>,
    pub bus_cpu_per_connection_us: Option<f64>,
    /// Worker processes the sockets were spread over.
    pub processes: Option<u64>,
    /// User sockets: each user's chats.
    pub chats_per_user: Option<u64>,
}

impl Figures for ConnectFigures {}

/// `rest`: a send phase, then a history-read phase.
#[derive(Debug, Default, Clone, Serialize, Deserialize)]
#[serde(default)]
pub struct RestFigures {
    /// Messages sent (201) in the send phase.
    pub sends: u64,
    pub sends_per_s: f64,
    pub send_latency_ms: Latency,
    /// History pages read (200) in the read phase.
    pub reads: u64,
    pub reads_per_s: f64,
    pub read_latency_ms: Latency,
    /// Clients, each with one request in flight.
    pub concurrency: u64,
    /// With `--server-pid`: the server's CPU time per send and per read.
    pub server_cpu_per_send_us: Option<f64>,
    pub server_cpu_per_read_us: Option<f64>,
}

impl Figures for RestFigures {}

/// `echo`: the transport's ceiling, server and clients in this process.
#[derive(Debug, Default, Clone, Serialize, Deserialize)]
#[serde(default)]
pub struct EchoFigures {
    pub tool_cpu_per_message_us: Option<f64>,
    pub cores: Option<u64>,
    pub connections: u64,
    pub window: u64,
}

impl Figures for EchoFigures {}

/// `store-ceiling`: PostgreSQL's ceiling for batched inserts.
#[derive(Debug, Default, Clone, Serialize, Deserialize)]
#[serde(default)]
pub struct StoreFigures {
    pub database_cpu_per_row_us: Option<f64>,
    pub tool_cpu_per_row_us: Option<f64>,
    pub batch: u64,
    pub connections: u64,
}

impl Figures for StoreFigures {}

/// `verify`: sends that ride out faults, checked against the store.
#[derive(Debug, Default, Clone, Serialize, Deserialize)]
#[serde(default)]
pub struct VerifyFigures {
    pub acknowledged: u64,
    pub stored: u64,
    pub server_errors: u64,
    pub unreachable: u64,
    pub reconnects: u64,
    pub nodes: u64,
}

impl Figures for VerifyFigures {
    fn store_disagrees(&self) -> bool {
        self.stored != self.acknowledged
    }
}

/// `seconds` of CPU time divided over `count` events, in µs (one decimal);
/// `None` when the time could not be read.
pub fn cpu_per(seconds: Option<f64>, count: u64) -> Option<f64> {
    seconds.map(|seconds| (seconds * 1e7 / count.max(1) as f64).round() / 10.0)
}

/// A share between 0 and 1, to three decimals.
pub fn share(share: Option<f64>) -> Option<f64> {
    share.map(|share| (share * 1000.0).round() / 1000.0)
}

/// Seconds to the millisecond.
pub fn seconds(seconds: Option<f64>) -> Option<f64> {
    seconds.map(|seconds| (seconds * 1000.0).round() / 1000.0)
}

impl<F: Figures> Report<F> {
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

    /// A run that counts for nothing: its faults, or a store that disagrees
    /// with the acks.
    pub fn failed(&self) -> bool {
        self.faults().any() || self.figures.store_disagrees()
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
            ("lost", self.lost),
            ("duplicated", self.duplicated),
            ("out of order", self.out_of_order),
        ];
        for (name, value) in optional {
            if let Some(value) = value {
                println!("{name:<13} {value}");
            }
        }
        if let Ok(serde_json::Value::Object(figures)) = serde_json::to_value(&self.figures) {
            for (key, value) in figures {
                println!("{key:<13} {value}");
            }
        }
        for problem in &self.problems {
            println!("PROBLEM       {problem}");
        }
    }

    pub fn write_json(&self, path: &std::path::Path) -> std::io::Result<()> {
        let text = serde_json::to_string_pretty(self).map_err(std::io::Error::other)?;
        std::fs::write(path, text + "\n")
    }

    /// A report written by [`write_json`](Self::write_json), or `None` when
    /// there is no such file.
    pub fn read_json(path: &std::path::Path) -> crate::Result<Option<Self>> {
        match std::fs::read(path) {
            Ok(bytes) => serde_json::from_slice(&bytes)
                .map(Some)
                .map_err(|error| format!("{}: {error}", path.display()).into()),
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(error) => Err(format!("{}: {error}", path.display()).into()),
        }
    }
}
