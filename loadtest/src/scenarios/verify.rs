//! `verify`: integrity under churn. Each pair's users send over REST (round-robin
//! over the nodes) while both keep a WebSocket that drops at random and
//! reconnects, to a random node, with `after_seq` = the last `seq` it saw. Every
//! receiver must end with every stored message exactly once, in order.

use crate::cli::VerifyArgs;
use crate::endpoint::Endpoint;
use crate::http::HttpClient;
use crate::progress::Progress;
use crate::report::Report;
use crate::setup::{self, Account, Pair};
use crate::stats::Recorder;
use crate::ws::{self, Event};
use crate::Result;
use rand::Rng;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::{mpsc, watch};

/// What one receiver saw over all its connections.
#[derive(Debug, Default)]
struct Tally {
    arrivals: u64,
    lost: u64,
    duplicated: u64,
    out_of_order: u64,
    reconnects: u64,
}

pub async fn run(args: VerifyArgs) -> Result<Report> {
    let endpoints = Arc::new(Endpoint::resolve_all(&args.target.url).await?);
    let pairs = setup::pairs(&args.target, &endpoints[0], args.pairs).await?;
    let live = Arc::new(AtomicU64::new(0));
    let duration = Duration::from_secs(args.output.duration);
    let start = Instant::now();
    let progress = Progress::start("verify", duration, live.clone());
    let chats = args.target.routes.paths().chats;
    let mut tasks = Vec::new();
    for pair in pairs {
        let (final_tx, final_rx) = watch::channel(None::<i64>);
        let churn = Duration::from_millis(args.churn_ms.max(1));
        for account in [pair.a.clone(), pair.b.clone()] {
            let receiver = receive(
                endpoints.clone(),
                pair.chat,
                account,
                churn,
                final_rx.clone(),
                live.clone(),
            );
            tasks.push(tokio::spawn(async move {
                Ok::<_, crate::Error>((0, 0, receiver.await))
            }));
        }
        let (endpoints, deadline) = (endpoints.clone(), start + duration);
        tasks.push(tokio::spawn(async move {
            let (acked, errors) =
                send(&endpoints, &pair, chats, args.rate_per_pair, deadline).await?;
            let _ = final_tx.send(Some(acked as i64));
            Ok((acked, errors, Tally::default()))
        }));
    }
    let (mut acked, mut errors, mut total) = (0u64, 0u64, Tally::default());
    for task in tasks {
        let (a, e, tally) = task.await??;
        acked += a;
        errors += e;
        total.arrivals += tally.arrivals;
        total.lost += tally.lost;
        total.duplicated += tally.duplicated;
        total.out_of_order += tally.out_of_order;
        total.reconnects += tally.reconnects;
    }
    drop(progress);
    let mut recorder = Recorder::new(start, Arc::new(AtomicU64::new(0)));
    for _ in 0..total.arrivals {
        recorder.count();
    }
    let mut report = Report::measured("verify", duration.as_secs_f64(), &recorder);
    report.errors = errors;
    report.lost = Some(total.lost);
    report.duplicated = Some(total.duplicated);
    report.out_of_order = Some(total.out_of_order);
    report.set("acknowledged", acked);
    report.set("reconnects", total.reconnects);
    report.set("nodes", endpoints.len() as u64);
    Ok(report)
}

/// Sends at `rate` messages/s (alternating users) until `deadline`; returns how
/// many were acknowledged (201) and how many failed. The chat is fresh, so the
/// acknowledged count is also its last `seq`.
async fn send(
    endpoints: &[Endpoint],
    pair: &Pair,
    chats: &str,
    rate: u64,
    deadline: Instant,
) -> Result<(u64, u64)> {
    let mut clients = Vec::with_capacity(endpoints.len());
    for endpoint in endpoints {
        clients.push(HttpClient::connect(endpoint).await?);
    }
    let path = format!("{chats}{}/messages/", pair.chat);
    let mut ticker = tokio::time::interval(Duration::from_secs_f64(1.0 / rate.max(1) as f64));
    let (mut acked, mut errors, mut n) = (0u64, 0u64, 0usize);
    while Instant::now() < deadline {
        ticker.tick().await;
        let (client, from) = (
            &mut clients[n % endpoints.len()],
            if n % 2 == 0 { &pair.a } else { &pair.b },
        );
        let body =
            serde_json::json!({"content": format!("v{n}"), "client_msg_id": format!("v{n}")});
        match client
            .request(
                hyper::Method::POST,
                &path,
                Some(&from.token),
                Some(body.to_string().into_bytes()),
            )
            .await
        {
            Ok((status, _)) if status.is_success() => acked += 1,
            _ => errors += 1,
        }
        n += 1;
    }
    Ok((acked, errors))
}

/// One user's socket: reads, drops at random, reconnects with `after_seq`, until
/// it has seen the chat's final `seq` (or 20 s after the senders stop).
async fn receive(
    endpoints: Arc<Vec<Endpoint>>,
    chat: i64,
    account: Account,
    churn: Duration,
    mut last_seq: watch::Receiver<Option<i64>>,
    live: Arc<AtomicU64>,
) -> Tally {
    let mut seen: Vec<u32> = Vec::new();
    let (mut tally, mut last_seen) = (Tally::default(), 0i64);
    let mut give_up = None;
    loop {
        if let Some(target) = *last_seq.borrow_and_update() {
            if last_seen >= target {
                break;
            }
            let at = *give_up
                .get_or_insert_with(|| tokio::time::Instant::now() + Duration::from_secs(20));
            if tokio::time::Instant::now() >= at {
                break;
            }
        }
        let endpoint = &endpoints[rand::rng().random_range(0..endpoints.len())];
        let path = ws::chat_path(chat, &account.token, Some(last_seen));
        let Ok(socket) = ws::connect(endpoint, &path, None).await else {
            tokio::time::sleep(Duration::from_millis(50)).await;
            continue;
        };
        tally.reconnects += 1;
        let (tx, mut rx) = mpsc::unbounded_channel();
        let reader = tokio::spawn(read_seqs(socket, tx));
        let stay = churn.mul_f64(rand::rng().random_range(0.2..1.8));
        let until = tokio::time::Instant::now() + stay;
        loop {
            tokio::select! {
                seq = rx.recv() => match seq {
                    Some(seq) => account_for(seq, &mut seen, &mut last_seen, &mut tally, &live),
                    None => break,
                },
                () = tokio::time::sleep_until(until) => break,
                _ = last_seq.changed() => {
                    if last_seq.borrow().is_some_and(|t| last_seen >= t) { break }
                }
            }
        }
        reader.abort();
        while let Ok(seq) = rx.try_recv() {
            account_for(seq, &mut seen, &mut last_seen, &mut tally, &live);
        }
    }
    let target = (*last_seq.borrow()).unwrap_or(last_seen).max(0) as usize;
    seen.resize(target.max(seen.len()), 0);
    tally.lost = seen[..target].iter().filter(|n| **n == 0).count() as u64;
    tally
}

fn account_for(
    seq: i64,
    seen: &mut Vec<u32>,
    last_seen: &mut i64,
    tally: &mut Tally,
    live: &AtomicU64,
) {
    let index = (seq.max(1) - 1) as usize;
    if seen.len() <= index {
        seen.resize(index + 1, 0);
    }
    seen[index] += 1;
    tally.arrivals += 1;
    live.fetch_add(1, Ordering::Relaxed);
    if seen[index] > 1 {
        tally.duplicated += 1;
    } else if seq != *last_seen + 1 {
        tally.out_of_order += 1;
    }
    *last_seen = (*last_seen).max(seq);
}

/// Forwards the `seq` of every message event.
async fn read_seqs(socket: ws::Socket, seqs: mpsc::UnboundedSender<i64>) {
    let mut ws = fastwebsockets::FragmentCollector::new(socket);
    while let Some(bytes) = ws::next_text(&mut ws).await {
        let Ok(event) = serde_json::from_slice::<Event>(&bytes) else {
            continue;
        };
        if let Some(seq) = event
            .data
            .filter(|_| event.kind == "message")
            .and_then(|d| d.seq)
        {
            if seqs.send(seq).is_err() {
                return;
            }
        }
    }
}
