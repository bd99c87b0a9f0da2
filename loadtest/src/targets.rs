//! `loadtest targets`: reads the JSON reports of one run of every scenario the
//! throughput targets name (`scripts/targets.sh` writes them into one
//! directory) and says, target by target, what was measured and whether it
//! was met, with the ratios to the echo and store ceilings taken from the same
//! run. A figure from a run that reported errors or integrity problems does not
//! count: its target is marked failed. A ratio target that no chat server could
//! meet on this machine, or a connect rate no server could reach on it (see
//! [`Floor`]), is marked out of reach.

use crate::cli::TargetsArgs;
use crate::report::Faults;
use crate::Result;
use serde::Serialize;
use serde_json::Value;
use std::path::Path;

/// One run's reports (`<scenario>.json`); a missing file is a scenario that
/// did not run.
#[derive(Default)]
pub struct Reports {
    pub echo: Option<Value>,
    pub store_ceiling: Option<Value>,
    pub chat: Option<Value>,
    pub chat_rate: Option<Value>,
    pub rest: Option<Value>,
    pub connect: Option<Value>,
    pub connect_ceiling: Option<Value>,
}

impl Reports {
    /// Reads every scenario's report from `dir`.
    pub fn load(dir: &Path) -> Result<Self> {
        Ok(Reports {
            echo: read(dir, "echo")?,
            store_ceiling: read(dir, "store-ceiling")?,
            chat: read(dir, "chat")?,
            chat_rate: read(dir, "chat-rate")?,
            rest: read(dir, "rest")?,
            connect: read(dir, "connect")?,
            connect_ceiling: read(dir, "connect-ceiling")?,
        })
    }
}

/// `dir/<scenario>.json`, or `None` when there is no such file.
fn read(dir: &Path, scenario: &str) -> Result<Option<Value>> {
    let path = dir.join(format!("{scenario}.json"));
    match std::fs::read(&path) {
        Ok(bytes) => serde_json::from_slice(&bytes)
            .map(Some)
            .map_err(|error| format!("{}: {error}", path.display()).into()),
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(error) => Err(format!("{}: {error}", path.display()).into()),
    }
}

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
    fn of(met: bool) -> Self {
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
    fn new(target: impl Into<String>, measured: impl Into<String>, status: Status) -> Self {
        Verdict {
            target: target.into(),
            measured: measured.into(),
            status,
        }
    }

    fn not_run(target: impl Into<String>) -> Self {
        Verdict::new(target, "", Status::NotRun)
    }
}

fn number(report: &Value, key: &str) -> Option<f64> {
    report.get(key).and_then(Value::as_f64)
}

/// A report read back: its [`Faults`] (the rule the tool's exit status
/// follows), or a store that disagrees with the acks.
fn faulty(report: &Value) -> bool {
    // Counts as written (whole numbers); a fraction still counts as one.
    let count = |key| number(report, key).map_or(0, |n| n.max(0.0).ceil() as u64);
    let faults = Faults {
        errors: count("errors"),
        lost: count("lost"),
        duplicated: count("duplicated"),
        out_of_order: count("out_of_order"),
        problems: report
            .get("problems")
            .and_then(Value::as_array)
            .map_or(0, Vec::len),
    };
    let stored_differs = match (number(report, "stored"), number(report, "acknowledged")) {
        (Some(stored), Some(acked)) => stored != acked,
        _ => false,
    };
    faults.any() || stored_differs
}

/// A thousands-separated whole number.
fn whole(value: f64) -> String {
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

/// A figure checked against a bound, from reports any of which may be faulty.
fn judged(target: &str, reports: &[&Value], measured: String, met: bool) -> Verdict {
    let status = if reports.iter().any(|report| faulty(report)) {
        Status::Failed
    } else {
        Status::of(met)
    };
    Verdict::new(target, measured, status)
}

/// Every target of the load-test issue against one run's reports;
/// `connections` is how many sockets the connect target asks for.
pub fn evaluate(reports: &Reports, connections: u64) -> Vec<Verdict> {
    vec![
        chat_rate(reports),
        chat_latency(reports),
        chat_to_echo(reports),
        persisted_to_store(reports),
        connect_rate(reports, connections),
        connect_memory(reports),
        rest(reports, "sends_per_s", "rest sends ≥ 30,000/s", 30_000.0),
        rest(
            reports,
            "reads_per_s",
            "rest history reads ≥ 50,000/s",
            50_000.0,
        ),
    ]
}

fn chat_rate(reports: &Reports) -> Verdict {
    const TARGET: &str = "chat ≥ 100,000 delivered msg/s, nothing lost";
    let Some(chat) = &reports.chat else {
        return Verdict::not_run(TARGET);
    };
    let rate = number(chat, "delivered_per_s").unwrap_or(0.0);
    let stored = number(chat, "stored").map_or("?".into(), whole);
    let acked = number(chat, "acknowledged").map_or("?".into(), whole);
    let measured = format!(
        "{} msg/s; stored {stored}, acknowledged {acked}",
        whole(rate)
    );
    judged(TARGET, &[chat], measured, rate >= 100_000.0)
}

fn chat_latency(reports: &Reports) -> Verdict {
    const TARGET: &str = "chat p99 ≤ 5 ms at 10,000 msg/s offered";
    let Some(chat) = &reports.chat_rate else {
        return Verdict::not_run(TARGET);
    };
    let p99 = chat.pointer("/latency_ms/p99").and_then(Value::as_f64);
    let offered = number(chat, "offered_per_s").unwrap_or(0.0);
    let measured = format!(
        "p99 {} ms at {} msg/s offered",
        p99.map_or("?".into(), |ms| format!("{ms:.2}")),
        whole(offered)
    );
    let met = offered >= 10_000.0 && p99.is_some_and(|ms| ms <= 5.0);
    judged(TARGET, &[chat], measured, met)
}

/// The least CPU one item (a chat message, an opened socket) can cost on this
/// machine, from the run's own measurements, in named parts: no server on
/// these cores can go faster than `cores / (sum of the parts)` items per second.
#[derive(Debug, Clone, PartialEq)]
struct Floor {
    parts: Vec<(&'static str, f64)>,
    cores: f64,
}

impl Floor {
    /// `None` without a part or when the parts cost nothing.
    fn new(parts: Vec<(&'static str, Option<f64>)>, cores: Option<f64>) -> Option<Self> {
        let parts = parts
            .into_iter()
            .map(|(name, us)| Some((name, us?)))
            .collect::<Option<Vec<_>>>()?;
        let floor = Floor {
            parts,
            cores: cores?,
        };
        (floor.per_item_us() > 0.0).then_some(floor)
    }

    /// A chat message: its database work (PostgreSQL's CPU per message in
    /// `chat`) plus a bare echo's transport (the `echo` tool's CPU per
    /// message, server and client together). A chat message moves more frames
    /// than an echo (the send, its ack, the delivery) and parses and checks
    /// them. `None` without both reports' figures, or when the echo run
    /// failed: its CPU figure then bounds nothing.
    fn chat(reports: &Reports) -> Option<Self> {
        let (chat, echo) = (reports.chat.as_ref()?, reports.echo.as_ref()?);
        if faulty(echo) {
            return None;
        }
        Floor::new(
            vec![
                ("database", number(chat, "database_cpu_per_message_us")),
                ("echo", number(echo, "tool_cpu_per_message_us")),
            ],
            number(chat, "cores"),
        )
    }

    /// An authenticated socket: what a bare upgrade costs (the connect
    /// ceiling's server and client CPU per socket: both ends of the TCP
    /// connection, the HTTP upgrade) plus the database and bus work the
    /// `connect` run cost per socket (PostgreSQL's membership lookups,
    /// Redis's subscriptions to new rooms; taken as this server does them).
    /// `None` without the figures, or when the ceiling run failed.
    fn connect(reports: &Reports) -> Option<Self> {
        let (connect, ceiling) = (reports.connect.as_ref()?, reports.connect_ceiling.as_ref()?);
        if faulty(ceiling) {
            return None;
        }
        let mut parts = vec![
            ("upgrade", number(ceiling, "server_cpu_per_connection_us")),
            ("client", number(ceiling, "tool_cpu_per_connection_us")),
            (
                "database",
                number(connect, "database_cpu_per_connection_us"),
            ),
        ];
        // No local Redis (one node, or Redis elsewhere): no bus part here.
        if let Some(bus) = number(connect, "bus_cpu_per_connection_us") {
            parts.push(("bus", Some(bus)));
        }
        Floor::new(parts, number(connect, "cores"))
    }

    fn per_item_us(&self) -> f64 {
        self.parts.iter().map(|(_, us)| us).sum()
    }

    /// Items per second at most.
    fn rate(&self) -> f64 {
        self.cores * 1e6 / self.per_item_us()
    }

    /// `"; floor: a 1.0 + b 2.0 µs per <item>, so at most N<unit> on C cores
    /// (<who> X× of it)"`.
    fn describe(&self, measured: f64, item: &str, unit: &str, who: &str) -> String {
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
fn idle_note(report: &Value) -> String {
    number(report, "idle_share").map_or(String::new(), |share| {
        format!("; the cores {:.0}% idle", share * 100.0)
    })
}

/// Chat's `delivered_per_s` against `bound` × a ceiling's (`to`); with the
/// run's [`Floor`], a target the floor puts above reach is out of reach.
fn ratio(target: &str, reports: &Reports, to: Option<&Value>, bound: f64, unit: &str) -> Verdict {
    let (Some(chat), Some(to)) = (reports.chat.as_ref(), to) else {
        return Verdict::not_run(target);
    };
    let a = number(chat, "delivered_per_s").unwrap_or(0.0);
    let b = number(to, "delivered_per_s").unwrap_or(0.0);
    let r = if b > 0.0 { a / b } else { 0.0 };
    let mut measured = format!("{r:.2} ({} / {} {unit})", whole(a), whole(b));
    let floor = Floor::chat(reports);
    if let Some(floor) = &floor {
        measured += &floor.describe(a, "message", " msg/s", "chat");
        measured += &idle_note(chat);
    }
    let mut verdict = judged(target, &[chat, to], measured, r >= bound);
    let out_of_reach = floor.is_some_and(|floor| floor.rate() < bound * b);
    if verdict.status == Status::NotMet && out_of_reach {
        verdict.status = Status::OutOfReach;
    }
    verdict
}

fn chat_to_echo(reports: &Reports) -> Verdict {
    ratio(
        "chat ≥ 50% of echo (same run)",
        reports,
        reports.echo.as_ref(),
        0.5,
        "msg/s",
    )
}

fn persisted_to_store(reports: &Reports) -> Verdict {
    ratio(
        "persisted ≥ 70% of store-ceiling (same run)",
        reports,
        reports.store_ceiling.as_ref(),
        0.7,
        "rows/s",
    )
}

/// With the run's [`Floor`] for a socket, a rate the floor puts above reach
/// (every socket held) is out of reach.
fn connect_rate(reports: &Reports, connections: u64) -> Verdict {
    const RATE: f64 = 20_000.0;
    let target = format!(
        "connect {} sockets at ≥ 20,000/s",
        whole(connections as f64)
    );
    let Some(connect) = &reports.connect else {
        return Verdict::not_run(target);
    };
    let rate = number(connect, "connect_per_s").unwrap_or(0.0);
    let held = number(connect, "connections_held").unwrap_or(0.0);
    let mut measured = format!("{}/s, {} held", whole(rate), whole(held));
    if let Some(ceiling) = reports
        .connect_ceiling
        .as_ref()
        .and_then(|c| number(c, "connect_per_s"))
        .filter(|c| *c > 0.0)
    {
        measured += &format!("; ceiling {}/s ({:.2}×)", whole(ceiling), rate / ceiling);
    }
    let floor = Floor::connect(reports);
    if let Some(floor) = &floor {
        measured += &floor.describe(rate, "socket", "/s", "connect");
        measured += &idle_note(connect);
    }
    let all_held = held >= connections as f64;
    let mut verdict = judged(&target, &[connect], measured, all_held && rate >= RATE);
    let out_of_reach = floor.is_some_and(|floor| floor.rate() < RATE);
    if verdict.status == Status::NotMet && all_held && out_of_reach {
        verdict.status = Status::OutOfReach;
    }
    verdict
}

/// Judged on the memory of the sockets held idle (read at the end of the
/// hold, after a ping round when the servers ping within it); the figure right
/// after the storm, which still counts the finished handshakes' memory being
/// given back, is shown beside it.
fn connect_memory(reports: &Reports) -> Verdict {
    const TARGET: &str = "connect ≤ 4 KiB server RSS per idle socket";
    let Some(connect) = &reports.connect else {
        return Verdict::not_run(TARGET);
    };
    let after_storm = number(connect, "rss_per_connection_bytes");
    let end_of_hold = number(connect, "rss_per_connection_end_of_hold_bytes");
    let measured = format!(
        "{} B at the end of the hold ({} B right after the storm)",
        end_of_hold.map_or("?".into(), whole),
        after_storm.map_or("?".into(), whole)
    );
    let met = end_of_hold.is_some_and(|bytes| bytes <= 4096.0);
    judged(TARGET, &[connect], measured, met)
}

fn rest(reports: &Reports, key: &str, target: &str, bound: f64) -> Verdict {
    let Some(rest) = &reports.rest else {
        return Verdict::not_run(target);
    };
    let rate = number(rest, key).unwrap_or(0.0);
    let clients = number(rest, "concurrency").map_or("?".into(), whole);
    let measured = format!("{}/s ({clients} clients)", whole(rate));
    judged(target, &[rest], measured, rate >= bound)
}

/// Prints the table of one run's reports (and writes it as JSON when asked).
/// A target whose scenario failed is an error; so, with `--strict`, is one not
/// met or not run.
pub fn run(args: &TargetsArgs) -> Result<()> {
    let reports = Reports::load(&args.reports)?;
    let verdicts = evaluate(&reports, args.connections);
    print!("{}", table(&verdicts));
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

/// The verdicts as a Markdown table.
pub fn table(verdicts: &[Verdict]) -> String {
    let mut out = String::from("| Target | Measured | Status |\n|---|---|---|\n");
    for v in verdicts {
        out += &format!("| {} | {} | {} |\n", v.target, v.measured, v.status.label());
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn full_run() -> Reports {
        Reports {
            echo: Some(json!({"delivered_per_s": 400_000.0, "errors": 0})),
            store_ceiling: Some(json!({"delivered_per_s": 200_000.0, "errors": 0})),
            chat: Some(json!({
                "delivered_per_s": 150_000.0, "errors": 0,
                "stored": 1_500_000, "acknowledged": 1_500_000
            })),
            chat_rate: Some(json!({
                "delivered_per_s": 9_990.0, "errors": 0, "offered_per_s": 10_000,
                "latency_ms": {"p99": 3.2}, "stored": 99_900, "acknowledged": 99_900
            })),
            rest: Some(json!({
                "sends_per_s": 31_000.0, "reads_per_s": 49_000.0, "errors": 0, "concurrency": 64
            })),
            connect: Some(json!({
                "connect_per_s": 18_000.0, "connections_held": 50_000, "errors": 0,
                "rss_per_connection_bytes": 3_900.0, "rss_per_connection_end_of_hold_bytes": 3_050.0
            })),
            connect_ceiling: Some(json!({"connect_per_s": 22_500.0, "errors": 0})),
        }
    }

    /// The CPU figures a floor is made of: PostgreSQL 6.0 µs per chat message,
    /// echo 5.0 µs per message, 2 cores (at most 181,818 msg/s).
    fn with_floor_figures(mut run: Reports) -> Reports {
        let chat = run.chat.as_mut().unwrap();
        chat["database_cpu_per_message_us"] = json!(6.0);
        chat["cores"] = json!(2);
        run.echo.as_mut().unwrap()["tool_cpu_per_message_us"] = json!(5.0);
        run
    }

    /// The CPU figures a socket's floor is made of: the bare upgrade 33.0 and
    /// its client 46.0 µs per socket (the ceiling run), PostgreSQL 10.0 and
    /// Redis 3.0 µs per socket (the connect run), 2 cores: at most 21,739/s.
    fn with_socket_floor_figures(mut run: Reports) -> Reports {
        let ceiling = run.connect_ceiling.as_mut().unwrap();
        ceiling["server_cpu_per_connection_us"] = json!(33.0);
        ceiling["tool_cpu_per_connection_us"] = json!(46.0);
        let connect = run.connect.as_mut().unwrap();
        connect["database_cpu_per_connection_us"] = json!(10.0);
        connect["bus_cpu_per_connection_us"] = json!(3.0);
        connect["cores"] = json!(2);
        run
    }

    fn statuses(verdicts: &[Verdict]) -> Vec<Status> {
        verdicts.iter().map(|v| v.status).collect()
    }

    #[test]
    fn each_target_is_judged_against_its_bound() {
        use Status::{Met, NotMet};
        let verdicts = evaluate(&full_run(), 50_000);
        assert_eq!(
            statuses(&verdicts),
            [Met, Met, NotMet, Met, NotMet, Met, Met, NotMet],
            "{verdicts:#?}"
        );
        assert_eq!(verdicts[2].measured, "0.38 (150,000 / 400,000 msg/s)");
        assert_eq!(
            verdicts[4].measured,
            "18,000/s, 50,000 held; ceiling 22,500/s (0.80×)"
        );
    }

    #[test]
    fn the_cores_idle_share_follows_the_floor_when_measured() {
        let mut run = with_socket_floor_figures(with_floor_figures(full_run()));
        run.chat.as_mut().unwrap()["idle_share"] = json!(0.124);
        run.connect.as_mut().unwrap()["idle_share"] = json!(0.016);
        let verdicts = evaluate(&run, 50_000);
        assert!(
            verdicts[2]
                .measured
                .ends_with("(chat 0.82× of it); the cores 12% idle"),
            "{}",
            verdicts[2].measured
        );
        assert!(
            verdicts[4]
                .measured
                .ends_with("(connect 0.83× of it); the cores 2% idle"),
            "{}",
            verdicts[4].measured
        );
        let without = evaluate(&with_floor_figures(full_run()), 50_000);
        assert!(
            !without[2].measured.contains("idle"),
            "{}",
            without[2].measured
        );
    }

    #[test]
    fn a_ratio_just_under_its_bound_is_not_met_and_just_over_is() {
        let mut run = full_run();
        run.echo.as_mut().unwrap()["delivered_per_s"] = json!(300_000.0);
        run.chat.as_mut().unwrap()["delivered_per_s"] = json!(149_999.0);
        assert_eq!(evaluate(&run, 50_000)[2].status, Status::NotMet);
        run.chat.as_mut().unwrap()["delivered_per_s"] = json!(150_001.0);
        assert_eq!(evaluate(&run, 50_000)[2].status, Status::Met);
    }

    #[test]
    fn a_ratio_the_runs_floor_puts_above_reach_is_out_of_reach() {
        let mut run = with_floor_figures(full_run());
        // At most 2 cores / 11 µs = 181,818 msg/s: half of echo (200,000) is
        // out of reach; 70% of the store ceiling (140,000) is met.
        let verdicts = evaluate(&run, 50_000);
        assert_eq!(verdicts[2].status, Status::OutOfReach);
        assert_eq!(
            verdicts[2].measured,
            "0.38 (150,000 / 400,000 msg/s); floor: database 6.0 + echo 5.0 µs per message, \
             so at most 181,818 msg/s on 2 cores (chat 0.82× of it)"
        );
        assert_eq!(verdicts[3].status, Status::Met);

        run.store_ceiling.as_mut().unwrap()["delivered_per_s"] = json!(300_000.0);
        assert_eq!(
            evaluate(&run, 50_000)[3].status,
            Status::OutOfReach,
            "210,000 asked"
        );
        run.chat.as_mut().unwrap()["database_cpu_per_message_us"] = json!(4.0);
        let verdicts = evaluate(&run, 50_000);
        assert_eq!(
            statuses(&verdicts)[2..4],
            [Status::NotMet, Status::NotMet],
            "at most 222,222 msg/s: both within reach"
        );

        run.chat.as_mut().unwrap()["errors"] = json!(1);
        assert_eq!(evaluate(&run, 50_000)[2].status, Status::Failed);
    }

    #[test]
    fn a_connect_rate_the_runs_floor_puts_above_reach_is_out_of_reach() {
        let mut run = with_socket_floor_figures(full_run());
        let verdict = &evaluate(&run, 50_000)[4];
        assert_eq!(verdict.status, Status::NotMet, "21,739/s is within reach");
        assert_eq!(
            verdict.measured,
            "18,000/s, 50,000 held; ceiling 22,500/s (0.80×); floor: upgrade 33.0 + client 46.0 \
             + database 10.0 + bus 3.0 µs per socket, so at most 21,739/s on 2 cores \
             (connect 0.83× of it)"
        );

        run.connect.as_mut().unwrap()["database_cpu_per_connection_us"] = json!(21.0);
        assert_eq!(
            evaluate(&run, 50_000)[4].status,
            Status::OutOfReach,
            "103 µs per socket: at most 19,417/s"
        );
        assert_eq!(
            evaluate(&run, 60_000)[4].status,
            Status::NotMet,
            "50,000 held of 60,000 asked is not the floor's doing"
        );

        run.connect.as_mut().unwrap()["bus_cpu_per_connection_us"] = Value::Null;
        let verdict = &evaluate(&run, 50_000)[4];
        assert_eq!(
            verdict.status,
            Status::NotMet,
            "no local Redis: 100 µs, 20,000/s is within reach"
        );
        assert!(
            verdict
                .measured
                .contains("floor: upgrade 33.0 + client 46.0 + database 21.0 µs per socket"),
            "{}",
            verdict.measured
        );

        run.connect_ceiling.as_mut().unwrap()["errors"] = json!(1);
        let verdict = &evaluate(&run, 50_000)[4];
        assert!(
            !verdict.measured.contains("floor"),
            "a failed ceiling bounds nothing"
        );
    }

    #[test]
    fn a_failed_echo_run_gives_no_floor() {
        let mut run = with_floor_figures(full_run());
        run.store_ceiling.as_mut().unwrap()["delivered_per_s"] = json!(300_000.0);
        run.echo.as_mut().unwrap()["errors"] = json!(2);
        let verdicts = evaluate(&run, 50_000);
        assert_eq!(verdicts[2].status, Status::Failed, "the echo ratio itself");
        assert_eq!(
            verdicts[3].status,
            Status::NotMet,
            "not out of reach by a failed run's figure"
        );
        assert_eq!(verdicts[3].measured, "0.50 (150,000 / 300,000 rows/s)");
    }

    #[test]
    fn a_run_with_errors_or_a_store_that_disagrees_fails_its_targets() {
        let mut run = full_run();
        run.chat.as_mut().unwrap()["stored"] = json!(1_499_999);
        run.rest.as_mut().unwrap()["errors"] = json!(3);
        let verdicts = evaluate(&run, 50_000);
        assert_eq!(verdicts[0].status, Status::Failed, "stored ≠ acknowledged");
        assert_eq!(
            verdicts[2].status,
            Status::Failed,
            "the ratio uses that run"
        );
        assert_eq!(verdicts[3].status, Status::Failed);
        assert_eq!(verdicts[6].status, Status::Failed);
        assert_eq!(verdicts[7].status, Status::Failed);
        assert_eq!(verdicts[1].status, Status::Met, "the rate run was clean");

        for (key, value) in [
            ("lost", json!(1)),
            ("out_of_order", json!(2)),
            (
                "problems",
                json!(["1 acknowledged message never reached the peer"]),
            ),
        ] {
            let mut run = full_run();
            run.chat_rate.as_mut().unwrap()[key] = value;
            assert_eq!(evaluate(&run, 50_000)[1].status, Status::Failed, "{key}");
        }
    }

    #[test]
    fn a_report_read_back_fails_by_the_rule_the_exit_status_follows() {
        let mut report = crate::report::Report::default();
        assert!(!faulty(&serde_json::to_value(&report).unwrap()));
        report.duplicated = Some(1);
        assert!(report.faults().any());
        assert!(faulty(&serde_json::to_value(&report).unwrap()));
    }

    #[test]
    fn memory_is_judged_on_the_idle_sockets_at_the_end_of_the_hold() {
        let mut run = full_run();
        run.connect.as_mut().unwrap()["rss_per_connection_bytes"] = json!(4_178.0);
        let verdict = &evaluate(&run, 50_000)[5];
        assert_eq!(verdict.status, Status::Met);
        assert_eq!(
            verdict.measured,
            "3,050 B at the end of the hold (4,178 B right after the storm)"
        );
        run.connect.as_mut().unwrap()["rss_per_connection_end_of_hold_bytes"] = json!(4_097.0);
        assert_eq!(evaluate(&run, 50_000)[5].status, Status::NotMet);
    }

    #[test]
    fn fewer_sockets_held_than_asked_or_a_slow_rate_is_not_met() {
        let mut run = full_run();
        run.connect.as_mut().unwrap()["connect_per_s"] = json!(21_000.0);
        assert_eq!(evaluate(&run, 50_000)[4].status, Status::Met);
        assert_eq!(
            evaluate(&run, 60_000)[4].status,
            Status::NotMet,
            "50,000 held of 60,000 asked"
        );
        run.chat_rate.as_mut().unwrap()["offered_per_s"] = json!(5_000);
        assert_eq!(
            evaluate(&run, 50_000)[1].status,
            Status::NotMet,
            "the latency target is at 10,000 msg/s offered"
        );
    }

    #[test]
    fn missing_reports_are_not_run_and_the_table_has_every_target() {
        let verdicts = evaluate(&Reports::default(), 50_000);
        assert!(verdicts.iter().all(|v| v.status == Status::NotRun));
        let table = table(&verdicts);
        assert_eq!(table.lines().count(), 2 + 8);
        assert!(table.contains("| connect 50,000 sockets at ≥ 20,000/s |  | not run |"));
    }

    #[test]
    fn reports_are_read_from_their_files() {
        let dir = std::env::temp_dir().join(format!("loadtest-targets-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("echo.json"), r#"{"delivered_per_s": 12.5}"#).unwrap();
        std::fs::write(dir.join("chat-rate.json"), r#"{"offered_per_s": 7}"#).unwrap();
        let reports = Reports::load(&dir).unwrap();
        std::fs::remove_dir_all(&dir).unwrap();
        assert_eq!(
            number(reports.echo.as_ref().unwrap(), "delivered_per_s"),
            Some(12.5)
        );
        assert_eq!(
            number(reports.chat_rate.as_ref().unwrap(), "offered_per_s"),
            Some(7.0)
        );
        assert!(reports.chat.is_none() && reports.connect_ceiling.is_none());
    }

    #[test]
    fn whole_numbers_are_grouped_by_thousands() {
        assert_eq!(whole(0.0), "0");
        assert_eq!(whole(999.4), "999");
        assert_eq!(whole(1_000.0), "1,000");
        assert_eq!(whole(1_234_567.0), "1,234,567");
    }
}
