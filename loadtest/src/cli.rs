//! Command line: one subcommand per scenario, with the flags they share.

use clap::{Args, Parser, Subcommand, ValueEnum};
use std::path::PathBuf;

#[derive(Parser)]
#[command(
    version,
    about = "Load tester for chat-server (real clients over real sockets)"
)]
pub struct Cli {
    #[command(subcommand)]
    pub scenario: Scenario,
}

#[derive(Subcommand)]
pub enum Scenario {
    /// N pairs chatting over WebSockets: delivered messages/s, end-to-end latency,
    /// and a check that the store holds exactly what was acknowledged.
    Chat(ChatArgs),
    /// U users with C chats each, one user socket per user; senders write to
    /// random chats of theirs: delivered msg/s, latency, stored = acknowledged.
    Inbox(InboxArgs),
    /// Hold N idle authenticated sockets: connect rate, RSS per connection.
    Connect(ConnectArgs),
    /// REST sends and history reads: throughput and latency.
    Rest(RestArgs),
    /// Integrity under churn: reconnects with after_seq across nodes.
    Verify(VerifyArgs),
    /// Transport ceiling: a minimal fastwebsockets echo server, same client code.
    Echo(EchoArgs),
    /// Storage ceiling: raw batched inserts of message-sized rows.
    StoreCeiling(StoreArgs),
    /// Reads one run's reports (`scripts/targets.sh` writes them) and checks
    /// each throughput target, with the ratios to the ceilings of the same run.
    Targets(TargetsArgs),
    /// The minimal echo server alone: prints its URL, serves until its standard
    /// input closes (`connect --ceiling` runs it as a process of its own).
    #[command(hide = true)]
    EchoServer,
    /// One of `connect --processes K`'s workers (started by the tool itself).
    #[command(hide = true)]
    ConnectWorker(ConnectWorkerArgs),
}

impl Scenario {
    /// The output flags of a measuring scenario (the tool's helper processes
    /// have none).
    pub fn output(&self) -> Option<&Output> {
        match self {
            Scenario::Chat(args) => Some(&args.output),
            Scenario::Inbox(args) => Some(&args.output),
            Scenario::Connect(args) => Some(&args.output),
            Scenario::Rest(args) => Some(&args.output),
            Scenario::Verify(args) => Some(&args.output),
            Scenario::Echo(args) => Some(&args.output),
            Scenario::StoreCeiling(args) => Some(&args.output),
            Scenario::EchoServer | Scenario::ConnectWorker(_) | Scenario::Targets(_) => None,
        }
    }
}

/// Which API dialect the target speaks.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum Routes {
    /// This server's README routes.
    Ours,
    /// The original Django implementation's routes (`/api/token/`, `/api/chats/...`).
    Django,
}

/// Output and timing flags every scenario takes.
#[derive(Args, Clone)]
pub struct Output {
    /// How long to measure, in seconds.
    #[arg(long, default_value_t = 10)]
    pub duration: u64,
    /// Write the JSON report here.
    #[arg(long)]
    pub json: Option<PathBuf>,
    /// Write an SVG plot (latency percentiles, throughput over time) here.
    #[arg(long)]
    pub plot: Option<PathBuf>,
}

/// The server under test and how to prepare users on it.
#[derive(Args, Clone)]
pub struct Target {
    /// Base URL of the server, e.g. http://127.0.0.1:8000 (comma-separated for
    /// several nodes where the scenario supports it).
    #[arg(long, default_value = "http://127.0.0.1:8000")]
    pub url: String,
    #[arg(long, value_enum, default_value_t = Routes::Ours)]
    pub routes: Routes,
    /// The server's database: with it (and SECRET_KEY) users, chats and tokens are
    /// created in bulk in seconds instead of one registration each.
    #[arg(long, env = "DATABASE_URL")]
    pub database_url: Option<String>,
    /// The server's SECRET_KEY, to mint tokens for bulk-created users.
    #[arg(long, env = "SECRET_KEY", hide_env_values = true)]
    pub secret_key: Option<String>,
}

/// The server's processes, read from /proc while a scenario runs.
#[derive(Args, Clone)]
pub struct ServerProcesses {
    /// The server's process id (comma-separated for several nodes: their
    /// figures are summed), to report its CPU time per delivered item (per
    /// message in chat, per send and per read in rest, per socket in connect)
    /// and, in connect, its resident memory per socket.
    #[arg(long = "server-pid", value_delimiter = ',')]
    pub pids: Vec<u32>,
}

#[derive(Args)]
pub struct ChatArgs {
    #[command(flatten)]
    pub target: Target,
    #[command(flatten)]
    pub output: Output,
    /// Chats, each with a sender and a receiver socket.
    #[arg(long, default_value_t = 100)]
    pub pairs: usize,
    /// Messages each sender keeps in flight (sent, not yet acknowledged).
    #[arg(long, default_value_t = 16)]
    pub window: usize,
    /// Offered load in messages/s over all pairs (instead of as fast as the window allows).
    #[arg(long)]
    pub rate: Option<u64>,
    /// Message content size in bytes.
    #[arg(long, default_value_t = 64)]
    pub size: usize,
    #[command(flatten)]
    pub server: ServerProcesses,
}

#[derive(Args)]
pub struct InboxArgs {
    #[command(flatten)]
    pub target: Target,
    #[command(flatten)]
    pub output: Output,
    /// Users, each with one user socket.
    #[arg(long, default_value_t = 2_000)]
    pub users: usize,
    /// Chats per user (even: half started by the user, half by others).
    #[arg(long, default_value_t = 20)]
    pub chats_per_user: usize,
    /// How many of the users send (to a random chat of theirs each time);
    /// every user receives.
    #[arg(long, default_value_t = 100)]
    pub senders: usize,
    /// Messages each sender keeps in flight (sent, not yet acknowledged).
    #[arg(long, default_value_t = 16)]
    pub window: usize,
    /// Message content size in bytes.
    #[arg(long, default_value_t = 64)]
    pub size: usize,
    #[command(flatten)]
    pub server: ServerProcesses,
}

#[derive(Args)]
pub struct ConnectArgs {
    #[command(flatten)]
    pub target: Target,
    #[command(flatten)]
    pub output: Output,
    #[arg(long, default_value_t = 10_000)]
    pub connections: usize,
    #[command(flatten)]
    pub server: ServerProcesses,
    /// Handshakes in flight at once.
    #[arg(long, default_value_t = 512)]
    pub concurrency: usize,
    /// Measure the connect ceiling instead: the same sockets opened against the
    /// minimal echo server of `echo` (an upgrade and nothing else), started as
    /// a process of its own (its own file limit; its RSS is reported); `--url`,
    /// `--server-pid` and the setup flags are not used.
    #[arg(long)]
    pub ceiling: bool,
    /// Open the sockets from this many processes of the tool (each holds its
    /// share), for more sockets than one process may have files.
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u16).range(1..))]
    pub processes: u16,
    /// Open user sockets (`/ws/`, each sending an empty `sync` once open)
    /// instead of per-chat sockets, for users with `--chats-per-user` chats
    /// each (bulk setup only).
    #[arg(long)]
    pub user_sockets: bool,
    /// With `--user-sockets`: each user's chats.
    #[arg(long, default_value_t = 100)]
    pub chats_per_user: usize,
    /// With `--user-sockets`: each socket's `sync` names every chat of its
    /// user (at 0: the chats are empty), as our client's does, instead of
    /// `{}`.
    #[arg(long)]
    pub sync_every_chat: bool,
}

#[derive(Args)]
pub struct ConnectWorkerArgs {
    #[command(flatten)]
    pub connect: ConnectArgs,
    /// Which worker this is, from 0.
    #[arg(long)]
    pub index: usize,
}

#[derive(Args)]
pub struct RestArgs {
    #[command(flatten)]
    pub target: Target,
    #[command(flatten)]
    pub output: Output,
    /// Concurrent clients, each on its own keep-alive connection.
    #[arg(long, default_value_t = 64)]
    pub concurrency: usize,
    /// Messages per history page read (`page_size`); the server's default
    /// when not given.
    #[arg(long)]
    pub page_size: Option<u32>,
    /// History reads scroll back: each reads a random page of its chat (most
    /// of them past the node's cache of recent messages), not the newest.
    #[arg(long)]
    pub scroll: bool,
    #[command(flatten)]
    pub server: ServerProcesses,
}

#[derive(Args)]
pub struct VerifyArgs {
    #[command(flatten)]
    pub target: Target,
    #[command(flatten)]
    pub output: Output,
    #[arg(long, default_value_t = 20)]
    pub pairs: usize,
    /// Messages per second each pair sends.
    #[arg(long, default_value_t = 50)]
    pub rate_per_pair: u64,
    /// Mean time between a socket's reconnects, in milliseconds.
    #[arg(long, default_value_t = 700)]
    pub churn_ms: u64,
    /// Receive on user sockets (`/ws/`), each resuming with `sync` from the
    /// last `seq` it saw, rather than on per-chat sockets with `after_seq`.
    #[arg(long)]
    pub user_sockets: bool,
}

#[derive(Args)]
pub struct TargetsArgs {
    /// The directory holding the run's `<scenario>.json` reports (echo,
    /// store-ceiling, chat, chat-rate, rest, connect, connect-ceiling).
    #[arg(long)]
    pub reports: PathBuf,
    /// How many sockets the connect target asks for.
    #[arg(long, default_value_t = 50_000)]
    pub connections: u64,
    /// Also write the verdicts here as JSON.
    #[arg(long)]
    pub json: Option<PathBuf>,
    /// Exit non-zero when a target is not met or its scenario did not run.
    #[arg(long)]
    pub strict: bool,
}

#[derive(Args)]
pub struct EchoArgs {
    #[command(flatten)]
    pub output: Output,
    #[arg(long, default_value_t = 200)]
    pub connections: usize,
    #[arg(long, default_value_t = 16)]
    pub window: usize,
    #[arg(long, default_value_t = 64)]
    pub size: usize,
}

#[derive(Args)]
pub struct StoreArgs {
    #[command(flatten)]
    pub output: Output,
    #[arg(long, env = "DATABASE_URL")]
    pub database_url: String,
    /// Rows per insert statement.
    #[arg(long, default_value_t = 512)]
    pub batch: usize,
    /// Connections inserting in parallel.
    #[arg(long, default_value_t = 4)]
    pub connections: usize,
    #[arg(long, default_value_t = 64)]
    pub size: usize,
}
