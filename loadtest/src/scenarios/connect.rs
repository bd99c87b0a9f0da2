//! `connect`: open N authenticated idle sockets as fast as the server takes them
//! (source addresses spread over 127.0.0.x so N can exceed one address's
//! ephemeral ports), hold them for `duration`, and read the server's resident
//! memory from /proc before, once all are open, and at the end of the hold.
//! With `--ceiling` the same sockets go to the minimal echo server of `echo`,
//! run as a process of its own, instead: the connect rate of this machine and
//! client with a server that only upgrades (no token, no membership query, no
//! room), and what such a server holds per socket.

use super::echo::EchoProcess;
use crate::cli::ConnectArgs;
use crate::endpoint::Endpoint;
use crate::progress::Progress;
use crate::report::Report;
use crate::setup;
use crate::stats::Recorder;
use crate::ws;
use crate::Result;
use std::net::{IpAddr, Ipv4Addr};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::Semaphore;

/// Sockets per local source address. Linux hands out even ephemeral ports to
/// `connect` first (~14,000 of the default 28,000) and probes port by port, so a
/// crowded address makes every connect a long search (at 19,000 on one address,
/// half of all CPU was `__inet_hash_connect`); 4,000 keeps the search short.
const PER_SOURCE_ADDRESS: usize = 4_000;

pub async fn run(args: ConnectArgs) -> Result<Report> {
    let (echo, server_pid) = if args.ceiling {
        let echo = EchoProcess::start().await?;
        let pid = echo.pid();
        (Some(echo), Some(pid))
    } else {
        (None, args.server_pid)
    };
    let (endpoint, paths) = match &echo {
        Some(echo) => (
            echo.endpoint.clone(),
            vec!["/".to_owned(); args.connections],
        ),
        None => {
            let endpoint = Endpoint::resolve(&args.target.url).await?;
            let paths = authenticated_paths(&args, &endpoint).await?;
            (endpoint, paths)
        }
    };
    let rss_before = server_pid.and_then(rss_bytes);
    let live = Arc::new(AtomicU64::new(0));
    let held = Arc::new(AtomicU64::new(0));
    let errors = Arc::new(AtomicU64::new(0));
    let limit = Arc::new(Semaphore::new(args.concurrency.max(1)));
    let start = Instant::now();
    let hold_until = Duration::from_secs(args.output.duration);
    let progress = Progress::start("connect", hold_until, live.clone());
    let (opened_tx, mut opened_rx) = tokio::sync::mpsc::unbounded_channel::<Duration>();
    for (i, path) in paths.into_iter().enumerate() {
        let local = loopback_source(&endpoint, i);
        let (endpoint, limit, held, errors, opened) = (
            endpoint.clone(),
            limit.clone(),
            held.clone(),
            errors.clone(),
            opened_tx.clone(),
        );
        tokio::spawn(async move {
            let Ok(permit) = limit.acquire_owned().await else {
                return;
            };
            let began = Instant::now();
            match ws::connect_idle(&endpoint, &path, local).await {
                Ok(socket) => {
                    drop(permit);
                    held.fetch_add(1, Ordering::Relaxed);
                    let _ = opened.send(began.elapsed());
                    socket.hold().await;
                    held.fetch_sub(1, Ordering::Relaxed);
                }
                Err(_) => {
                    errors.fetch_add(1, Ordering::Relaxed);
                    let _ = opened.send(Duration::ZERO);
                }
            }
        });
    }
    drop(opened_tx);
    let mut recorder = Recorder::new(start, live);
    for _ in 0..args.connections {
        match opened_rx.recv().await {
            Some(took) if !took.is_zero() => recorder.record(took),
            _ => {}
        }
    }
    let connect_secs = start.elapsed().as_secs_f64();
    let rss_all_open = server_pid.and_then(rss_bytes);
    tokio::time::sleep_until((start + hold_until).into()).await;
    let rss_end_of_hold = server_pid.and_then(rss_bytes);
    drop(progress);
    let held_now = held.load(Ordering::Relaxed);
    let scenario = if args.ceiling {
        "connect-ceiling"
    } else {
        "connect"
    };
    let mut report = Report::measured(scenario, connect_secs, &recorder);
    report.errors = errors.load(Ordering::Relaxed);
    report.connections_held = Some(held_now);
    report.connect_per_s = Some(recorder.total() as f64 / connect_secs);
    report.server_rss_bytes = rss_all_open;
    if let (Some(before), Some(after)) = (rss_before, rss_all_open) {
        let per_connection = |rss: u64| rss.saturating_sub(before) as f64 / held_now.max(1) as f64;
        report.rss_per_connection_bytes = Some(per_connection(after));
        report.set("server_rss_before_bytes", before);
        // After the hold the server has pinged every socket (with a ping
        // interval shorter than the hold) and read its pong.
        if let Some(end) = rss_end_of_hold {
            report.set(
                "rss_per_connection_end_of_hold_bytes",
                per_connection(end).round(),
            );
        }
    }
    report.set("held_for_s", hold_until.as_secs());
    Ok(report)
}

/// Each socket's path: both members of a chat per pair, with their tokens.
async fn authenticated_paths(args: &ConnectArgs, endpoint: &Endpoint) -> Result<Vec<String>> {
    let pairs = setup::pairs(&args.target, endpoint, args.connections.div_ceil(2)).await?;
    let paths = (0..args.connections).map(|i| {
        let pair = &pairs[i / 2];
        let account = if i % 2 == 0 { &pair.a } else { &pair.b };
        ws::chat_path(pair.chat, &account.token, None)
    });
    Ok(paths.collect())
}

/// 127.0.0.1, 127.0.0.2, ... for loopback targets; the default route otherwise.
fn loopback_source(endpoint: &Endpoint, index: usize) -> Option<IpAddr> {
    if !endpoint.addr.ip().is_loopback() || !endpoint.addr.is_ipv4() {
        return None;
    }
    let n = (index / PER_SOURCE_ADDRESS) as u32 + 1;
    Some(IpAddr::V4(Ipv4Addr::from(
        u32::from(Ipv4Addr::new(127, 0, 0, 0)) + n,
    )))
}

/// Resident memory of a process, from /proc/PID/status.
fn rss_bytes(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let kib: u64 = status
        .lines()
        .find_map(|line| line.strip_prefix("VmRSS:"))?
        .split_whitespace()
        .next()?
        .parse()
        .ok()?;
    Some(kib * 1024)
}
