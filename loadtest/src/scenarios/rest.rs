//! `rest`: REST throughput, in two phases of `duration` each: sends (POST a
//! message) then history reads (GET the newest page, or with `--scroll` a
//! random page of the chat), by `concurrency` clients on their own keep-alive
//! connections.

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
use rand::Rng;
use std::sync::atomic::AtomicU64;
use std::sync::Arc;
use std::time::{Duration, Instant};

#[derive(Clone, Copy, PartialEq, Eq)]
enum Phase {
    Send,
    Read(Reads),
}

/// Which history pages the read phase asks for.
#[derive(Clone, Copy, PartialEq, Eq)]
struct Reads {
    page_size: Option<u32>,
    scroll: bool,
}

impl Reads {
    /// The page size to ask for: a scroll always names one, so that its
    /// count of pages is the server's.
    fn asked_size(self) -> Option<u32> {
        self.page_size.or(self.scroll.then_some(SCROLL_PAGE_SIZE))
    }
}

pub async fn run(args: RestArgs) -> Result<Report<RestFigures>> {
    let endpoint = Endpoint::resolve(&args.target.url).await?;
    let pairs = setup::pairs(&args.target, &endpoint, args.concurrency).await?;
    let chats = args.target.routes.paths().chats;
    let duration = Duration::from_secs(args.output.duration);
    let cpu_at_start = procfs::cpu_sum(&args.server.pids);
    let (sends, send_errors) = phase(Phase::Send, &endpoint, &pairs, chats, duration).await?;
    let cpu_after_sends = procfs::cpu_sum(&args.server.pids);
    let read = Phase::Read(Reads {
        page_size: args.page_size,
        scroll: args.scroll,
    });
    let (reads, read_errors) = phase(read, &endpoint, &pairs, chats, duration).await?;
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
    let label = if matches!(phase, Phase::Send) {
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
    let pages = match phase {
        Phase::Read(reads) if reads.scroll => pages_of(client, pair, &path, reads).await,
        _ => 1,
    };
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
            Phase::Read(reads) => {
                let page = read_path(&path, reads, pages);
                client
                    .request(Method::GET, &page, Some(&pair.b.token), None)
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

/// How many pages of `reads.page_size` the chat holds (1 when the first
/// page cannot be read: the reads then count its errors).
async fn pages_of(client: &mut HttpClient, pair: &Pair, path: &str, reads: Reads) -> u64 {
    let first = read_path(
        path,
        Reads {
            scroll: false,
            ..reads
        },
        1,
    );
    let count = match client
        .request(Method::GET, &first, Some(&pair.b.token), None)
        .await
    {
        Ok((status, body)) if status.is_success() => {
            serde_json::from_slice::<serde_json::Value>(&body)
                .ok()
                .and_then(|page| page["count"].as_u64())
        }
        _ => None,
    };
    let size = u64::from(reads.asked_size().unwrap_or(SCROLL_PAGE_SIZE)).max(1);
    count.map_or(1, |count| count.div_ceil(size).max(1))
}

/// The page size a scroll asks for when `--page-size` is not given (the
/// server's default `PAGE_SIZE`).
const SCROLL_PAGE_SIZE: u32 = 25;

/// The history page a read asks for: the newest, or a random one of `pages`
/// when it scrolls.
fn read_path(path: &str, reads: Reads, pages: u64) -> String {
    let mut query = Vec::new();
    if let Some(size) = reads.asked_size() {
        query.push(format!("page_size={size}"));
    }
    if reads.scroll {
        query.push(format!(
            "page={}",
            rand::rng().random_range(1..=pages.max(1))
        ));
    }
    if query.is_empty() {
        path.to_owned()
    } else {
        format!("{path}?{}", query.join("&"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const PATH: &str = "/api/chat/chats/7/messages/";

    fn reads(page_size: Option<u32>, scroll: bool) -> Reads {
        Reads { page_size, scroll }
    }

    #[test]
    fn reads_ask_for_the_newest_page_unless_told_otherwise() {
        assert_eq!(read_path(PATH, reads(None, false), 9), PATH);
        assert_eq!(
            read_path(PATH, reads(Some(100), false), 9),
            format!("{PATH}?page_size=100")
        );
    }

    #[test]
    fn scrolling_reads_name_their_page_size_and_a_page_within_the_chat() {
        let mut seen = std::collections::BTreeSet::new();
        for _ in 0..200 {
            let path = read_path(PATH, reads(None, true), 3);
            let page = path
                .strip_prefix(&format!("{PATH}?page_size=25&page="))
                .expect("the default page size, then the page");
            seen.insert(page.parse::<u64>().unwrap());
        }
        assert_eq!(seen.into_iter().collect::<Vec<_>>(), [1, 2, 3]);
        assert_eq!(
            read_path(PATH, reads(Some(100), true), 1),
            format!("{PATH}?page_size=100&page=1")
        );
    }
}
