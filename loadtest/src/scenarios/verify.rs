//! `verify`: integrity under churn. Each pair's users send over REST (round-robin
//! over the nodes, a failed attempt retried on the next node with the same
//! `client_msg_id`) while both keep a WebSocket that drops at random and
//! reconnects, to a random node, with `after_seq` = the last `seq` it saw. Every
//! receiver must end with every stored message (acknowledged or not) exactly
//! once, in order; every acknowledged message must be stored; no answer may be a
//! 5xx. Nodes may be killed and restarted meanwhile (`scripts/chaos.sh`).
//! With `--user-sockets` each receiver holds a user socket instead and resumes
//! with `sync` (the chat and the last `seq` it saw); a 4009 close (the bus may
//! have lost events) is one more resume.

use crate::cli::VerifyArgs;
use crate::endpoint::Endpoint;
use crate::http::HttpClient;
use crate::progress::Progress;
use crate::report::{Report, VerifyFigures};
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

pub async fn run(args: VerifyArgs) -> Result<Report<VerifyFigures>> {
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
                Receiver {
                    chat: pair.chat,
                    account,
                    churn,
                    user_socket: args.user_sockets,
                },
                final_rx.clone(),
                live.clone(),
            );
            tasks.push(tokio::spawn(async move {
                Ok::<_, crate::Error>((Sent::default(), receiver.await))
            }));
        }
        let (endpoints, deadline) = (endpoints.clone(), start + duration);
        tasks.push(tokio::spawn(async move {
            let sent = send(&endpoints, &pair, chats, args.rate_per_pair, deadline).await?;
            // Every receiver must see everything the chat holds, acknowledged or not.
            let _ = final_tx.send(Some(sent.stored));
            Ok((sent, Tally::default()))
        }));
    }
    let (mut sent, mut total) = (Sent::default(), Tally::default());
    for task in tasks {
        let (s, tally) = task.await??;
        sent.acknowledged += s.acknowledged;
        sent.server_errors += s.server_errors;
        sent.refused += s.refused;
        sent.unreachable += s.unreachable;
        sent.stored += s.stored;
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
    report.errors = sent.server_errors + sent.refused;
    report.lost = Some(total.lost);
    report.duplicated = Some(total.duplicated);
    report.out_of_order = Some(total.out_of_order);
    report.figures = VerifyFigures {
        acknowledged: sent.acknowledged,
        stored: sent.stored as u64,
        server_errors: sent.server_errors,
        unreachable: sent.unreachable,
        reconnects: total.reconnects,
        nodes: endpoints.len() as u64,
    };
    if (sent.stored as u64) < sent.acknowledged {
        report.problems.push(format!(
            "{} messages acknowledged but the chats hold {}",
            sent.acknowledged, sent.stored
        ));
    }
    Ok(report)
}

/// What one pair's sender counted.
#[derive(Debug, Default)]
struct Sent {
    acknowledged: u64,
    /// Answers with a 5xx status (each a fault: the server should ride out
    /// the faults it can, and refuse the rest with a 4xx).
    server_errors: u64,
    /// Answers with another non-2xx status (a fault too).
    refused: u64,
    /// Attempts that found no server to answer (a node killed or restarting):
    /// retried on the next node with the same `client_msg_id`, not a fault.
    unreachable: u64,
    /// The chat's last `seq` once sending stopped: how many messages it holds.
    stored: i64,
}

/// Attempts per message before it is given up (unacknowledged, not a fault:
/// it may or may not be stored, and the receivers check whatever is).
const ATTEMPTS: usize = 20;

/// Sends at `rate` messages/s (alternating users, round-robin over the
/// nodes, each failed attempt retried on the next node with the same
/// `client_msg_id`, as a client that keeps its guarantees does) until
/// `deadline`; then reads how many messages the chat holds.
async fn send(
    endpoints: &[Endpoint],
    pair: &Pair,
    chats: &str,
    rate: u64,
    deadline: Instant,
) -> Result<Sent> {
    let mut clients: Vec<Option<HttpClient>> = endpoints.iter().map(|_| None).collect();
    let path = format!("{chats}{}/messages/", pair.chat);
    let mut ticker = tokio::time::interval(Duration::from_secs_f64(1.0 / rate.max(1) as f64));
    let (mut sent, mut n, mut node) = (Sent::default(), 0usize, 0usize);
    while Instant::now() < deadline {
        ticker.tick().await;
        let from = if n % 2 == 0 { &pair.a } else { &pair.b };
        let body =
            serde_json::json!({"content": format!("v{n}"), "client_msg_id": format!("v{n}")})
                .to_string();
        for attempt in 0..ATTEMPTS {
            node = (node + 1) % endpoints.len();
            let answer = request(
                &mut clients,
                endpoints,
                node,
                hyper::Method::POST,
                &path,
                from,
                Some(&body),
            )
            .await;
            match answer {
                Some(status) if status.is_success() => {
                    sent.acknowledged += 1;
                    break;
                }
                Some(status) if status.is_server_error() => sent.server_errors += 1,
                Some(_) => {
                    sent.refused += 1;
                    break;
                }
                None => sent.unreachable += 1,
            }
            if attempt + 1 < ATTEMPTS {
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
        n += 1;
    }
    sent.stored = stored_count(&mut clients, endpoints, &path, &pair.a).await;
    Ok(sent)
}

/// A request on node `node`'s connection, made anew when there is none or
/// the last one failed; `None` when no answer came.
async fn request(
    clients: &mut [Option<HttpClient>],
    endpoints: &[Endpoint],
    node: usize,
    method: hyper::Method,
    path: &str,
    from: &crate::setup::Account,
    body: Option<&str>,
) -> Option<hyper::StatusCode> {
    if clients[node].is_none() {
        clients[node] = HttpClient::connect(&endpoints[node]).await.ok();
    }
    let client = clients[node].as_mut()?;
    let body = body.map(|b| b.as_bytes().to_vec());
    match client.request(method, path, Some(&from.token), body).await {
        Ok((status, _)) => Some(status),
        Err(_) => {
            clients[node] = None;
            None
        }
    }
}

/// How many messages the chat holds (its history's `count`), asked of any
/// node that answers; 0 when none does within a minute.
async fn stored_count(
    clients: &mut [Option<HttpClient>],
    endpoints: &[Endpoint],
    path: &str,
    from: &crate::setup::Account,
) -> i64 {
    let page = format!("{path}?page_size=1");
    for attempt in 0..600 {
        let node = attempt % endpoints.len();
        if clients[node].is_none() {
            clients[node] = HttpClient::connect(&endpoints[node]).await.ok();
        }
        if let Some(client) = clients[node].as_mut() {
            match client
                .request(hyper::Method::GET, &page, Some(&from.token), None)
                .await
            {
                Ok((status, bytes)) if status.is_success() => {
                    let count = serde_json::from_slice::<serde_json::Value>(&bytes)
                        .ok()
                        .and_then(|page| page["count"].as_i64());
                    if let Some(count) = count {
                        return count;
                    }
                }
                Ok(_) => {}
                Err(_) => clients[node] = None,
            }
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    0
}

/// Who receives, in which chat, on which kind of socket, and how long each
/// connection stays (on average).
struct Receiver {
    chat: i64,
    account: Account,
    churn: Duration,
    user_socket: bool,
}

impl Receiver {
    /// A socket that resumes after `last_seen`: a per-chat socket with
    /// `after_seq`, or a user socket that sends `sync` first.
    async fn resume(&self, endpoint: &Endpoint, last_seen: i64) -> Result<ws::Socket> {
        let token = &self.account.token;
        if !self.user_socket {
            let path = ws::chat_path(self.chat, token, Some(last_seen));
            return ws::connect(endpoint, &path, None).await;
        }
        let mut socket = ws::connect(endpoint, &ws::user_path(token), None).await?;
        let sync = format!(
            r#"{{"type":"sync","chats":{{"{}":{last_seen}}}}}"#,
            self.chat
        );
        let frame = fastwebsockets::Frame::text(fastwebsockets::Payload::Owned(sync.into_bytes()));
        socket.write_frame(frame).await?;
        Ok(socket)
    }
}

/// One user's socket: reads, drops at random, reconnects (resuming after the
/// last `seq` it saw), until it has seen the chat's final `seq` (or 20 s after
/// the senders stop).
async fn receive(
    endpoints: Arc<Vec<Endpoint>>,
    receiver: Receiver,
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
        let Ok(socket) = receiver.resume(endpoint, last_seen).await else {
            tokio::time::sleep(Duration::from_millis(50)).await;
            continue;
        };
        tally.reconnects += 1;
        let (tx, mut rx) = mpsc::unbounded_channel();
        let reader = tokio::spawn(read_seqs(socket, tx));
        let stay = receiver.churn.mul_f64(rand::rng().random_range(0.2..1.8));
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
