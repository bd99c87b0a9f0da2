//! `connect`: open N authenticated idle sockets as fast as the server takes them
//! (source addresses spread over 127.0.0.x so N can exceed one address's
//! ephemeral ports), hold them for `duration` (user sockets: counted from when
//! the server had answered every socket's first `sync`, so what is read is
//! idle sockets, not syncs still at work), and read the server's resident
//! memory from /proc before, once all are open, and at the end of the hold, and
//! the CPU time that opening them cost the servers, this tool (with its
//! workers), the local PostgreSQL and the local Redis.
//! With `--ceiling` the same sockets go to the minimal echo server of `echo`,
//! run as a process of its own, instead: the connect rate of this machine and
//! client with a server that only upgrades (no token, no membership query, no
//! room), and what such a server holds per socket. With `--processes K` the
//! sockets are opened by K worker processes (see `spread`). With
//! `--user-sockets` they are user sockets (`/ws/`) of users with
//! `--chats-per-user` chats each (`connect-user`).

mod spread;
mod storm;

pub use spread::work;

use super::echo::EchoProcess;
use crate::cli::{self, ConnectArgs};
use crate::endpoint::Endpoint;
use crate::procfs::{rss_sum, Consumer, CpuSnapshot};
use crate::progress::Progress;
use crate::report::{self, ConnectFigures, Machine, Report};
use crate::setup;
use crate::stats::Recorder;
use crate::ws;
use crate::Result;
use std::sync::atomic::AtomicU64;
use std::sync::Arc;
use std::time::{Duration, Instant};
use storm::Storm;

pub async fn run(args: ConnectArgs) -> Result<Report<ConnectFigures>> {
    if args.processes > 1 {
        return spread::coordinate(args).await;
    }
    let target = Target::of(&args, args.connections).await?;
    let hold = Duration::from_secs(args.output.duration);
    let mut usage = ServerUsage::before(&target.pids, &[std::process::id()]);
    let live = Arc::new(AtomicU64::new(0));
    let progress = Progress::start("connect", hold, live.clone());
    let storm = Storm::open(
        &target.endpoints,
        target.openings,
        0,
        args.concurrency,
        live,
    )
    .await;
    usage.all_open();
    let unanswered = storm.syncs_answered(SYNCS_WAIT).await;
    let settled = storm.began.elapsed();
    tokio::time::sleep_until(hold_ends(&args, storm.began, settled, hold).into()).await;
    usage.end_of_hold();
    drop(progress);
    let outcome = Outcome {
        took: storm.took,
        settled,
        opened: &storm.opened,
        errors: storm.errors,
        unanswered,
        held: storm.held_now(),
    };
    Ok(outcome.report(&args, &usage, hold))
}

/// The longest a run waits for the user sockets' first `sync`s to be answered.
const SYNCS_WAIT: Duration = Duration::from_secs(120);

/// When the hold ends: `hold` after the storm began for per-chat sockets, and
/// `hold` after every user socket's `sync` was answered (`settled` after the
/// storm began), so user sockets are measured idle, whatever the hour made
/// the syncs take.
fn hold_ends(args: &ConnectArgs, began: Instant, settled: Duration, hold: Duration) -> Instant {
    if args.user_sockets {
        began + settled + hold
    } else {
        began + hold
    }
}

fn scenario_name(args: &ConnectArgs) -> &'static str {
    if args.ceiling {
        "connect-ceiling"
    } else if args.user_sockets {
        "connect-user"
    } else {
        "connect"
    }
}

/// Where one process's sockets go: the nodes, each socket's opening, and the
/// processes whose memory is read. Under `--ceiling`, an echo server started
/// here (kept running while this lives).
struct Target {
    endpoints: Vec<Endpoint>,
    openings: Vec<ws::Opening>,
    pids: Vec<u32>,
    echo: Option<EchoProcess>,
}

impl Target {
    async fn of(args: &ConnectArgs, connections: usize) -> Result<Self> {
        if args.ceiling {
            let echo = EchoProcess::start().await?;
            return Ok(Target {
                endpoints: vec![echo.endpoint.clone()],
                openings: vec![ws::Opening::plain("/".to_owned()); connections],
                pids: echo.pid().into_iter().collect(),
                echo: Some(echo),
            });
        }
        let endpoints = Endpoint::resolve_all(&args.target.url).await?;
        let openings = if args.user_sockets {
            user_socket_openings(&args.target, connections, args).await?
        } else {
            chat_socket_openings(&args.target, &endpoints[0], connections).await?
        };
        Ok(Target {
            endpoints,
            openings,
            pids: args.server.pids.clone(),
            echo: None,
        })
    }

    fn echo_pid(&self) -> Option<u32> {
        self.echo.as_ref().and_then(EchoProcess::pid)
    }
}

/// What a run measured, in one process or summed over workers.
struct Outcome<'a> {
    took: Duration,
    /// From the storm's start until every socket was open and, for user
    /// sockets, its first `sync` answered.
    settled: Duration,
    opened: &'a Recorder,
    /// Sockets that failed to open.
    errors: u64,
    /// User sockets held whose first `sync` went unanswered (see
    /// [`SYNCS_WAIT`]): errors too, reported apart.
    unanswered: u64,
    held: u64,
}

impl Outcome<'_> {
    fn report(
        &self,
        args: &ConnectArgs,
        usage: &ServerUsage,
        hold: Duration,
    ) -> Report<ConnectFigures> {
        let connect_secs = self.took.as_secs_f64();
        let scenario = scenario_name(args);
        let mut report = Report::<ConnectFigures>::measured(scenario, connect_secs, self.opened);
        report.figures.chats_per_user = args.user_sockets.then_some(args.chats_per_user as u64);
        report.errors = self.errors + self.unanswered;
        let figures = &mut report.figures;
        figures.connections_held = self.held;
        figures.connect_per_s = self.opened.total() as f64 / connect_secs;
        figures.server_rss_bytes = usage.rss_all_open;
        self.report_cpu(figures, usage);
        if let (Some(before), Some(after)) = (usage.rss_before, usage.rss_all_open) {
            let per_connection =
                |rss: u64| rss.saturating_sub(before) as f64 / self.held.max(1) as f64;
            figures.rss_per_connection_bytes = Some(per_connection(after));
            figures.server_rss_before_bytes = Some(before);
            // After the hold the server has pinged every socket (with a ping
            // interval shorter than the hold) and read its pong.
            figures.rss_per_connection_end_of_hold_bytes =
                usage.rss_end_of_hold.map(|end| per_connection(end).round());
        }
        figures.held_for_s = hold.as_secs();
        figures.syncs_answered_after_s = args
            .user_sockets
            .then(|| (self.settled.as_secs_f64() * 100.0).round() / 100.0);
        figures.syncs_unanswered = args.user_sockets.then_some(self.unanswered);
        report
    }

    /// What opening the sockets cost each consumer of the cores, per socket.
    fn report_cpu(&self, figures: &mut ConnectFigures, usage: &ServerUsage) {
        let Some(after) = &usage.cpu_all_open else {
            return;
        };
        let spent = |consumer| after.spent_since(&usage.cpu_before, consumer);
        let opened = self.opened.total();
        figures.machine = Machine::between(&usage.cpu_before, after);
        figures.server_cpu_per_connection_us = report::cpu_per(spent(Consumer::Servers), opened);
        figures.tool_cpu_per_connection_us = report::cpu_per(spent(Consumer::Tool), opened);
        figures.database_cpu_per_connection_us = report::cpu_per(spent(Consumer::Database), opened);
        figures.bus_cpu_per_connection_us = report::cpu_per(spent(Consumer::Bus), opened);
    }
}

/// Each socket's opening: both members of a chat per pair, with their tokens.
async fn chat_socket_openings(
    target: &cli::Target,
    endpoint: &Endpoint,
    connections: usize,
) -> Result<Vec<ws::Opening>> {
    let pairs = setup::pairs(target, endpoint, connections.div_ceil(2)).await?;
    let openings = (0..connections).map(|i| {
        let pair = &pairs[i / 2];
        let account = if i % 2 == 0 { &pair.a } else { &pair.b };
        ws::Opening::plain(ws::chat_path(pair.chat, &account.token, None))
    });
    Ok(openings.collect())
}

/// Each socket's opening: a user socket per user, each user in
/// `chats_per_user` chats, whose `sync` names none of them or, with
/// `--sync-every-chat`, every one.
async fn user_socket_openings(
    target: &cli::Target,
    connections: usize,
    args: &ConnectArgs,
) -> Result<Vec<ws::Opening>> {
    let inboxes = setup::inboxes(target, connections, args.chats_per_user).await?;
    Ok(inboxes
        .iter()
        .map(|inbox| {
            let chats: Vec<i64> = if args.sync_every_chat {
                inbox.chats.iter().map(|&(chat, _)| chat).collect()
            } else {
                Vec::new()
            };
            ws::Opening::user_socket(&inbox.account.token, &chats)
        })
        .collect())
}

/// The servers' resident memory (summed over their processes) at three points,
/// and the CPU time of the servers, the tool's processes (`tool`) and the local
/// services before the storm and once all sockets are open.
struct ServerUsage {
    pids: Vec<u32>,
    tool: Vec<u32>,
    rss_before: Option<u64>,
    rss_all_open: Option<u64>,
    rss_end_of_hold: Option<u64>,
    cpu_before: CpuSnapshot,
    cpu_all_open: Option<CpuSnapshot>,
}

impl ServerUsage {
    fn before(pids: &[u32], tool: &[u32]) -> Self {
        ServerUsage {
            pids: pids.to_vec(),
            tool: tool.to_vec(),
            rss_before: rss_sum(pids),
            rss_all_open: None,
            rss_end_of_hold: None,
            cpu_before: CpuSnapshot::with_tool(pids, tool),
            cpu_all_open: None,
        }
    }

    fn all_open(&mut self) {
        self.cpu_all_open = Some(CpuSnapshot::with_tool(&self.pids, &self.tool));
        self.rss_all_open = rss_sum(&self.pids);
    }

    fn end_of_hold(&mut self) {
        self.rss_end_of_hold = rss_sum(&self.pids);
    }
}
