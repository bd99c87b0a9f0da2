//! `connect --processes K`: the sockets are opened by K worker processes of this
//! tool (`loadtest connect-worker`), so a run can hold more sockets than one
//! process may have files (each side of a loopback socket is a file of its
//! process). The coordinator starts the workers, lets each set up its own users,
//! starts their storms together, reads the servers' memory and sums what the
//! workers report. Workers hold their sockets until the coordinator closes their
//! standard input.
//!
//! With `--ceiling` every worker starts an echo server of its own and opens its
//! share against it: the connect ceiling with as many processes on each side.
//!
//! The conversation, one line each way at a time: the worker says `ready` (with
//! its echo server's pid under `--ceiling`); the
//! coordinator says `go`; the worker says `opened <errors> <recorder>`; the
//! coordinator says `synced?`; the worker has its user sockets ask and says
//! `synced <unanswered>` once their first `sync`s were answered or it gave up
//! waiting (`synced 0` at once for other sockets); the
//! coordinator says `held?`; the worker says `held <n>`.

use super::storm::Storm;
use super::{Outcome, ServerUsage};
use crate::cli::{ConnectArgs, ConnectWorkerArgs};
use crate::progress::Progress;
use crate::report::{ConnectFigures, Report};
use crate::stats::Recorder;
use crate::Result;
use std::process::Stdio;
use std::sync::atomic::AtomicU64;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader, Lines};
use tokio::process::{Child, ChildStdin, ChildStdout, Command};

pub async fn coordinate(args: ConnectArgs) -> Result<Report<ConnectFigures>> {
    let processes = usize::from(args.processes);
    let mut workers = Vec::with_capacity(processes);
    for index in 0..processes {
        workers.push(Worker::spawn(index)?);
    }
    // With --ceiling each worker runs its own echo server and says its pid.
    let mut echo_pids = Vec::new();
    for worker in &mut workers {
        let pid = worker.expect("ready").await?;
        echo_pids.extend(pid.parse::<u32>().ok());
    }
    let server_pids = if args.ceiling {
        echo_pids
    } else {
        args.server.pids.clone()
    };
    let hold = Duration::from_secs(args.output.duration);
    let mut tool = vec![std::process::id()];
    tool.extend(workers.iter().filter_map(Worker::pid));
    let mut usage = ServerUsage::before(&server_pids, &tool);
    let live = Arc::new(AtomicU64::new(0));
    let progress = Progress::start("connect", hold, live.clone());
    let began = Instant::now();
    for worker in &mut workers {
        worker.say("go").await?;
    }
    let mut opened = Recorder::new(began, live.clone());
    let mut errors = 0;
    for worker in &mut workers {
        let line = worker.expect("opened").await?;
        let (failed, recorded) = line.split_once(' ').ok_or("worker: bad opened line")?;
        errors += failed.parse::<u64>()?;
        opened.merge(&Recorder::from_line(began, live.clone(), recorded)?);
    }
    let took = began.elapsed();
    usage.all_open();
    for worker in &mut workers {
        worker.say("synced?").await?;
    }
    let mut unanswered = 0;
    for worker in &mut workers {
        unanswered += worker.expect("synced").await?.parse::<u64>()?;
    }
    let settled = began.elapsed();
    tokio::time::sleep_until(super::hold_ends(&args, began, settled, hold).into()).await;
    usage.end_of_hold();
    let mut held = 0;
    for worker in &mut workers {
        worker.say("held?").await?;
        held += worker.expect("held").await?.parse::<u64>()?;
    }
    drop(progress);
    let outcome = Outcome {
        took,
        settled,
        opened: &opened,
        errors,
        unanswered,
        held,
    };
    let mut report = outcome.report(&args, &usage, hold);
    report.figures.processes = Some(processes as u64);
    Ok(report)
}

/// `connect-worker`: opens this worker's share of the sockets when told, and
/// holds them until its standard input closes.
pub async fn work(args: ConnectWorkerArgs) -> Result<()> {
    let connect = args.connect;
    let (first, count) = share(
        connect.connections,
        usize::from(connect.processes),
        args.index,
    );
    let target = super::Target::of(&connect, count).await?;
    let mut commands = BufReader::new(tokio::io::stdin()).lines();
    let mut out = tokio::io::stdout();
    let echo_pid = target.echo_pid().map(|pid| pid.to_string());
    say(&mut out, &format!("ready {}", echo_pid.unwrap_or_default())).await?;
    expect(&mut commands, "go").await?;
    let live = Arc::new(AtomicU64::new(0));
    let storm = Storm::open(
        &target.endpoints,
        target.openings,
        first,
        connect.concurrency,
        live,
    )
    .await;
    let opened = format!("opened {} {}", storm.errors, storm.opened.to_line());
    say(&mut out, &opened).await?;
    expect(&mut commands, "synced?").await?;
    let unanswered = storm.syncs_answered(super::SYNCS_WAIT).await;
    say(&mut out, &format!("synced {unanswered}")).await?;
    expect(&mut commands, "held?").await?;
    say(&mut out, &format!("held {}", storm.held_now())).await?;
    while commands.next_line().await?.is_some() {}
    Ok(())
}

/// Worker `index`'s sockets out of `total` over `workers`: (first, count).
fn share(total: usize, workers: usize, index: usize) -> (usize, usize) {
    let (each, rest) = (total / workers, total % workers);
    let first = index * each + index.min(rest);
    (first, each + usize::from(index < rest))
}

async fn say(out: &mut (impl AsyncWriteExt + Unpin), line: &str) -> Result<()> {
    out.write_all(format!("{line}\n").as_bytes()).await?;
    Ok(out.flush().await?)
}

/// Reads a line that starts with `word`; the rest of it.
async fn expect<R>(lines: &mut Lines<R>, word: &str) -> Result<String>
where
    R: tokio::io::AsyncBufRead + Unpin,
{
    let line = lines
        .next_line()
        .await?
        .ok_or_else(|| format!("expected `{word}`, the other side ended"))?;
    match line.strip_prefix(word) {
        Some(rest) => Ok(rest.trim_start().to_owned()),
        None => Err(format!("expected `{word}`, got `{line}`").into()),
    }
}

/// A worker process; killed if still running when dropped.
struct Worker {
    stdin: ChildStdin,
    lines: Lines<BufReader<ChildStdout>>,
    child: Child,
}

impl Worker {
    /// `loadtest connect-worker <this run's connect flags> --index <index>`.
    fn spawn(index: usize) -> Result<Self> {
        let flags = std::env::args_os()
            .skip_while(|arg| arg != "connect")
            .skip(1);
        let mut child = Command::new(std::env::current_exe()?)
            .arg("connect-worker")
            .args(flags)
            .arg("--index")
            .arg(index.to_string())
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .kill_on_drop(true)
            .spawn()?;
        let stdin = child.stdin.take().ok_or("worker: no stdin")?;
        let stdout = child.stdout.take().ok_or("worker: no stdout")?;
        Ok(Worker {
            stdin,
            lines: BufReader::new(stdout).lines(),
            child,
        })
    }

    /// Its process id, while it runs.
    fn pid(&self) -> Option<u32> {
        self.child.id()
    }

    async fn say(&mut self, line: &str) -> Result<()> {
        say(&mut self.stdin, line).await
    }

    async fn expect(&mut self, word: &str) -> Result<String> {
        expect(&mut self.lines, word).await
    }
}

#[cfg(test)]
mod tests {
    use super::share;

    #[test]
    fn shares_cover_every_socket_once() {
        for (total, workers) in [(50_000, 3), (10, 4), (2, 3), (7, 1)] {
            let mut next = 0;
            for index in 0..workers {
                let (first, count) = share(total, workers, index);
                assert_eq!(first, next, "{total} over {workers}, worker {index}");
                next += count;
            }
            assert_eq!(next, total, "{total} over {workers}");
        }
    }
}
