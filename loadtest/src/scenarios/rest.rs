//! `rest`: REST throughput, in two phases of `duration` each: sends (POST a
//! message) then history reads (GET the newest page), by `concurrency` clients on
//! their own keep-alive connections.

use crate::cli::RestArgs;
use crate::endpoint::Endpoint;
use crate::http::HttpClient;
use crate::procfs;
use crate::progress::Progress;
use crate::report::{self, Latency, Report, RestFigures};
use crate::setup::{self, Pair};
use crate::stats::Recorder;
use crate::Result;
use hyper::Method;
use std::sync::atomic::AtomicU64;
use std::sync::Arc;
use std::time::{Duration, Instant};

#[derive(Clone, Copy, PartialEq, Eq)]
enum Phase {
    Send,
    Read,
}

pub async fn run(args: RestArgs) -> Result<Report<RestFigures>> {
    let endpoint = Endpoint::resolve(&args.target.url).await?;
    let pairs = setup::pairs(&args.target, &endpoint, args.concurrency).await?;
    let chats = args.target.routes.paths().chats;
    let duration = Duration::from_secs(args.output.duration);
    let cpu_at_start = procfs::cpu_sum(&args.server.pids);
    let (sends, send_errors) = phase(Phase::Send, &endpoint, &pairs, chats, duration).await?;
    let cpu_after_sends = procfs::cpu_sum(&args.server.pids);
    let (reads, read_errors) = phase(Phase::Read, &endpoint, &pairs, chats, duration).await?;
    let cpu_after_reads = procfs::cpu_sum(&args.server.pids);
    let mut all = Recorder::new(Instant::now(), Arc::new(AtomicU64::new(0)));
    all.merge(&sends);
    all.merge(&reads);
    let seconds = duration.as_secs_f64();
    let mut report = Report::measured("rest", seconds * 2.0, &all);
    report.timeline = Report::<RestFigures>::measured("rest", seconds, &sends).timeline;
    report.errors = send_errors + read_errors;
    let spent = |from: Option<f64>, to: Option<f64>| Some(to? - from?);
    report.figures = RestFigures {
        sends: sends.total(),
        sends_per_s: sends.total() as f64 / seconds,
        send_latency_ms: Latency::from_recorder(&sends),
        reads: reads.total(),
        reads_per_s: reads.total() as f64 / seconds,
        read_latency_ms: Latency::from_recorder(&reads),
        concurrency: args.concurrency as u64,
        server_cpu_per_send_us: report::cpu_per(
            spent(cpu_at_start, cpu_after_sends),
            sends.total(),
        ),
        server_cpu_per_read_us: report::cpu_per(
            spent(cpu_after_sends, cpu_after_reads),
            reads.total(),
        ),
    };
    Ok(report)
}

async fn phase(
    phase: Phase,
    endpoint: &Endpoint,
    pairs: &[Pair],
    chats: &'static str,
    duration: Duration,
) -> Result<(Recorder, u64)> {
    let live = Arc::new(AtomicU64::new(0));
    let label = if phase == Phase::Send {
        "rest sends"
    } else {
        "rest reads"
    };
    let start = Instant::now();
    let progress = Progress::start(label, duration, live.clone());
    let mut tasks = Vec::with_capacity(pairs.len());
    for pair in pairs {
        let mut client = HttpClient::connect(endpoint).await?;
        let (pair, recorder) = (pair.clone(), Recorder::new(start, live.clone()));
        tasks.push(tokio::spawn(async move {
            worker(phase, &mut client, &pair, chats, start + duration, recorder).await
        }));
    }
    let (merged, errors) = crate::stats::merge_workers(Recorder::new(start, live), tasks).await?;
    drop(progress);
    Ok((merged, errors))
}

async fn worker(
    phase: Phase,
    client: &mut HttpClient,
    pair: &Pair,
    chats: &str,
    deadline: Instant,
    mut recorder: Recorder,
) -> (Recorder, u64) {
    let path = format!("{chats}{}/messages/", pair.chat);
    let mut errors = 0;
    let mut n = 0u64;
    while Instant::now() < deadline {
        let began = Instant::now();
        let result = match phase {
            Phase::Send => {
                let body = serde_json::json!({"content": format!("rest {n}"), "client_msg_id": format!("r{n}")});
                client
                    .request(
                        Method::POST,
                        &path,
                        Some(&pair.a.token),
                        Some(body.to_string().into_bytes()),
                    )
                    .await
            }
            Phase::Read => {
                client
                    .request(Method::GET, &path, Some(&pair.b.token), None)
                    .await
            }
        };
        n += 1;
        match result {
            Ok((status, _)) if status.is_success() => recorder.record(began.elapsed()),
            _ => errors += 1,
        }
    }
    (recorder, errors)
}
