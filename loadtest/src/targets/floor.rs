//! The least CPU one item (a chat message, an opened socket) can cost on this
//! machine, from the run's own measurements, in named parts: no server on
//! these cores can go faster than `cores / (sum of the parts)` items per second.

use super::reports::Reports;
use super::verdict::whole;

#[derive(Debug, Clone, PartialEq)]
pub struct Floor {
    parts: Vec<(&'static str, f64)>,
    cores: f64,
}

impl Floor {
    /// `None` without a part or when the parts cost nothing.
    fn new(parts: Vec<(&'static str, Option<f64>)>, cores: Option<u64>) -> Option<Self> {
        let parts = parts
            .into_iter()
            .map(|(name, us)| Some((name, us?)))
            .collect::<Option<Vec<_>>>()?;
        let floor = Floor {
            parts,
            cores: cores? as f64,
        };
        (floor.per_item_us() > 0.0).then_some(floor)
    }

    /// A chat message: its database work (PostgreSQL's CPU per message in
    /// `chat`) plus a bare echo's transport (the `echo` tool's CPU per
    /// message, server and client together). A chat message moves more frames
    /// than an echo (the send, its ack, the delivery) and parses and checks
    /// them. `None` without both reports' figures, or when the echo run
    /// failed: its CPU figure then bounds nothing.
    pub fn chat(reports: &Reports) -> Option<Self> {
        let (chat, echo) = (reports.chat.as_ref()?, reports.echo.as_ref()?);
        if echo.failed() {
            return None;
        }
        Floor::new(
            vec![
                ("database", chat.figures.database_cpu_per_message_us),
                ("echo", echo.figures.tool_cpu_per_message_us),
            ],
            chat.figures.machine.cores,
        )
    }

    /// An authenticated socket: what a bare upgrade costs (the connect
    /// ceiling's server and client CPU per socket: both ends of the TCP
    /// connection, the HTTP upgrade) plus the database and bus work the
    /// `connect` run cost per socket (PostgreSQL's membership lookups,
    /// Redis's subscriptions to new rooms; taken as this server does them).
    /// `None` without the figures, or when the ceiling run failed.
    pub fn connect(reports: &Reports) -> Option<Self> {
        let (connect, ceiling) = (reports.connect.as_ref()?, reports.connect_ceiling.as_ref()?);
        if ceiling.failed() {
            return None;
        }
        let (connect, ceiling) = (&connect.figures, &ceiling.figures);
        let mut parts = vec![
            ("upgrade", ceiling.server_cpu_per_connection_us),
            ("client", ceiling.tool_cpu_per_connection_us),
            ("database", connect.database_cpu_per_connection_us),
        ];
        // No local Redis (one node, or Redis elsewhere): no bus part here.
        if let Some(bus) = connect.bus_cpu_per_connection_us {
            parts.push(("bus", Some(bus)));
        }
        Floor::new(parts, connect.machine.cores)
    }

    fn per_item_us(&self) -> f64 {
        self.parts.iter().map(|(_, us)| us).sum()
    }

    /// Items per second at most.
    pub fn rate(&self) -> f64 {
        self.cores * 1e6 / self.per_item_us()
    }

    /// `"; floor: a 1.0 + b 2.0 µs per <item>, so at most N<unit> on C cores
    /// (<who> X× of it)"`.
    pub fn describe(&self, measured: f64, item: &str, unit: &str, who: &str) -> String {
        let parts: Vec<String> = self
            .parts
            .iter()
            .map(|(name, us)| format!("{name} {us:.1}"))
            .collect();
        format!(
            "; floor: {} µs per {item}, so at most {}{unit} on {} cores ({who} {:.2}× of it)",
            parts.join(" + "),
            whole(self.rate()),
            self.cores,
            measured / self.rate()
        )
    }
}

/// `"; the cores N% idle"` when the report measured it: the share of the
/// cores' time nobody used, which the floor counts as available.
pub fn idle_note(idle_share: Option<f64>) -> String {
    idle_share.map_or(String::new(), |share| {
        format!("; the cores {:.0}% idle", share * 100.0)
    })
}
