//! `chat`: N pairs, each in its own chat with a sender and a receiver socket. The
//! sender keeps `window` messages in flight (or holds `rate`); the receiver
//! timestamps arrivals. Afterwards the store must hold exactly what was
//! acknowledged.

use super::client::{self, Pace, Sent};
use crate::cli::{ChatArgs, Routes, Target};
use crate::endpoint::Endpoint;
use crate::procfs::{Consumer, CpuSnapshot};
use crate::progress::Progress;
use crate::report::{self, ChatFigures, Machine, Report};
use crate::setup::{self, Pair};
use crate::stats::Recorder;
use crate::ws;
use crate::Result;
use std::sync::atomic::AtomicU64;
use std::sync::Arc;
use std::time::{Duration, Instant};

pub async fn run(args: ChatArgs) -> Result<Report<ChatFigures>> {
    let nodes = Endpoint::resolve_all(&args.target.url).await?;
    let endpoint = nodes[0].clone();
    let pairs = setup::pairs(&args.target, &endpoint, args.pairs).await?;
    let mut sockets = Vec::with_capacity(pairs.len());
    for (i, pair) in pairs.iter().enumerate() {
        // With several nodes, a pair's sender and receiver sit on different ones.
        let (to_sender, to_receiver) = (&nodes[i % nodes.len()], &nodes[(i + 1) % nodes.len()]);
        let sender_path = ws::chat_path(pair.chat, &pair.a.token, None);
        let receiver_path = ws::chat_path(pair.chat, &pair.b.token, None);
        let sender = ws::connect(to_sender, &sender_path, None).await?;
        let receiver = ws::connect(to_receiver, &receiver_path, None).await?;
        sockets.push((sender, receiver));
    }
    let pace = Pace {
        window: args.window,
        rate: args.rate.map(|r| r as f64 / pairs.len().max(1) as f64),
        size: args.size,
    };
    let live = Arc::new(AtomicU64::new(0));
    let duration = Duration::from_secs(args.output.duration);
    let cpu_before = CpuSnapshot::take(&args.server.pids);
    let start = Instant::now();
    let deadline = start + duration;
    let progress = Progress::start("chat", duration, live.clone());
    let mut tasks = Vec::with_capacity(pairs.len());
    let senders = sockets.len();
    for (index, (sender, receiver)) in sockets.into_iter().enumerate() {
        let recorder = Recorder::new(start, live.clone());
        let phase = pace.phase(index, senders);
        tasks.push(tokio::spawn(run_pair(
            index,
            sender,
            receiver,
            (pace, phase),
            start,
            deadline,
            recorder,
        )));
    }
    let mut merged = Recorder::new(start, live.clone());
    let (mut sent, mut out_of_order, mut acked_per_pair) = (Sent::default(), 0, Vec::new());
    for task in tasks {
        let (done, received) = task.await?;
        merged.merge(&received.recorder);
        out_of_order += received.out_of_order;
        sent.sent += done.sent;
        sent.acked += done.acked;
        sent.errors += done.errors;
        acked_per_pair.push(done.acked);
    }
    drop(progress);
    let cpu_after = CpuSnapshot::take(&args.server.pids);
    let mut report = Report::measured("chat", duration.as_secs_f64(), &merged);
    // Over the run and its drain: every message sent, acknowledged and delivered.
    let spent = |consumer| cpu_after.spent_since(&cpu_before, consumer);
    let delivered = report.delivered;
    report.figures = ChatFigures {
        machine: Machine::between(&cpu_before, &cpu_after),
        server_cpu_per_message_us: report::cpu_per(spent(Consumer::Servers), delivered),
        database_cpu_per_message_us: report::cpu_per(spent(Consumer::Database), delivered),
        tool_cpu_per_message_us: report::cpu_per(spent(Consumer::Tool), delivered),
        sent: sent.sent,
        acknowledged: sent.acked,
        stored: None,
        pairs: pairs.len() as u64,
        nodes: nodes.len() as u64,
        window: args.window as u64,
        offered_per_s: args.rate,
    };
    report.errors = sent.errors + out_of_order;
    if report.delivered < sent.acked {
        report.problems.push(format!(
            "{} acknowledged messages never reached the peer",
            sent.acked - report.delivered
        ));
    }
    check_store(
        &args.target,
        &endpoint,
        &pairs,
        &acked_per_pair,
        &mut report,
    )
    .await?;
    Ok(report)
}

#[allow(clippy::too_many_arguments)]
async fn run_pair(
    index: usize,
    sender: ws::Socket,
    receiver: ws::Socket,
    (pace, phase): (Pace, Duration),
    start: Instant,
    deadline: Instant,
    recorder: Recorder,
) -> (Sent, client::Received) {
    let (expected_tx, expected_rx) = tokio::sync::watch::channel(None);
    let receiving = tokio::spawn(client::receive_loop(
        receiver,
        start,
        recorder,
        expected_rx,
        Duration::from_secs(10),
    ));
    let frame_for = move |n: u64| {
        let content = client::content(start, n, pace.size);
        ws::send_frame(&content, &format!("{index}-{n}"))
    };
    let done = client::send_loop(
        sender,
        pace,
        phase,
        deadline,
        Duration::from_secs(10),
        frame_for,
        is_echo,
    )
    .await;
    let _ = expected_tx.send(Some(done.acked));
    let received = receiving.await.unwrap_or_else(|_| client::Received {
        recorder: Recorder::new(start, Arc::new(AtomicU64::new(0))),
        out_of_order: 0,
    });
    (done, received)
}

/// An echo of one of our messages (a `message` event carrying a content marker).
fn is_echo(bytes: &[u8]) -> bool {
    ws::message_fields(bytes).is_some_and(|(_, content)| client::stamp_of(&content).is_some())
}

/// The store must hold exactly what was acknowledged, chat by chat.
async fn check_store(
    target: &Target,
    endpoint: &Endpoint,
    pairs: &[Pair],
    acked: &[u64],
    report: &mut Report<ChatFigures>,
) -> Result<()> {
    let stored = stored_counts(target, endpoint, pairs).await?;
    let total: u64 = stored.iter().sum();
    report.figures.stored = Some(total);
    let mismatched = stored.iter().zip(acked).filter(|(s, a)| s != a).count();
    if mismatched > 0 {
        report.problems.push(format!(
            "{mismatched} chats hold a different number of messages than were acknowledged ({total} stored, {} acknowledged)",
            acked.iter().sum::<u64>()
        ));
    }
    Ok(())
}

/// Messages stored per chat: from the database when known, else from the API.
async fn stored_counts(target: &Target, endpoint: &Endpoint, pairs: &[Pair]) -> Result<Vec<u64>> {
    let chats: Vec<i64> = pairs.iter().map(|p| p.chat).collect();
    if let (Some(url), Routes::Ours) = (&target.database_url, target.routes) {
        let (client, connection) = tokio_postgres::connect(url, tokio_postgres::NoTls).await?;
        tokio::spawn(connection);
        let rows = client
            .query(
                "SELECT id, last_seq FROM chats WHERE id = ANY($1)",
                &[&chats],
            )
            .await?;
        let by_chat: std::collections::HashMap<i64, i64> =
            rows.iter().map(|r| (r.get(0), r.get(1))).collect();
        return Ok(chats
            .iter()
            .map(|c| by_chat.get(c).copied().unwrap_or(0) as u64)
            .collect());
    }
    let mut http = crate::http::HttpClient::connect(endpoint).await?;
    let mut counts = Vec::with_capacity(pairs.len());
    for pair in pairs {
        let path = format!(
            "{}{}/messages/?page_size=1",
            target.routes.paths().chats,
            pair.chat
        );
        let (_, body) = http
            .request(hyper::Method::GET, &path, Some(&pair.a.token), None)
            .await?;
        let page: serde_json::Value = serde_json::from_slice(&body)?;
        counts.push(page["count"].as_u64().unwrap_or(0));
    }
    Ok(counts)
}
