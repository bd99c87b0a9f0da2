//! `inbox`: U users, each in C chats, each with one user socket (`/ws/`)
//! that receives every chat of its user. S of the users send, each keeping
//! `window` messages in flight, each to a random chat of theirs; every user
//! records what reaches it from others (the delivery) and each sender counts
//! its echoes (the acknowledgement). Per chat, a socket must see `seq` rise;
//! every acknowledged message must reach its peer once, and the store must
//! hold exactly what was acknowledged.

use super::client::{self, Sent};
use crate::cli::InboxArgs;
use crate::endpoint::Endpoint;
use crate::procfs::{Consumer, CpuSnapshot};
use crate::progress::Progress;
use crate::report::{self, InboxFigures, Machine, Report};
use crate::setup::{self, Inbox};
use crate::stats::Recorder;
use crate::ws::{self, Socket};
use crate::Result;
use fastwebsockets::{Frame, OpCode, Payload, WebSocketRead, WebSocketWrite};
use hyper::upgrade::Upgraded;
use hyper_util::rt::TokioIo;
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::io::{BufWriter, ReadHalf, WriteHalf};
use tokio::sync::{watch, Mutex, Semaphore};

type Reader = WebSocketRead<ReadHalf<TokioIo<Upgraded>>>;
type Writer = Arc<Mutex<WebSocketWrite<BufWriter<WriteHalf<TokioIo<Upgraded>>>>>>;

/// Each sender numbers its messages from `index << SENDER_SHIFT`, so a
/// message's number says who sent it.
const SENDER_SHIFT: u32 = 32;
/// How long after the last send the run waits for deliveries.
const DRAIN: Duration = Duration::from_secs(10);
/// User sockets opened at once while setting up.
const CONNECTING_AT_ONCE: usize = 64;

pub async fn run(args: InboxArgs) -> Result<Report<InboxFigures>> {
    let nodes = Endpoint::resolve_all(&args.target.url).await?;
    let inboxes = setup::inboxes(&args.target, args.users, args.chats_per_user).await?;
    let sockets = connect_all(&nodes, &inboxes).await?;
    let live = Arc::new(AtomicU64::new(0));
    let duration = Duration::from_secs(args.output.duration);
    let cpu_before = CpuSnapshot::take(&args.server.pids);
    let start = Instant::now();
    let progress = Progress::start("inbox", duration, live.clone());
    let (stop_tx, stop) = watch::channel(false);
    let shared = Shared {
        start,
        deadline: start + duration,
        delivered: Arc::new(AtomicU64::new(0)),
        stop,
        live,
    };
    let senders = args.senders.min(inboxes.len());
    let mut tasks = Vec::with_capacity(sockets.len());
    for (index, (socket, inbox)) in sockets.into_iter().zip(&inboxes).enumerate() {
        let chats: Vec<i64> = inbox.chats.iter().map(|(chat, _)| *chat).collect();
        let sends = (index < senders).then_some(chats);
        let user = User {
            index,
            window: args.window,
            size: args.size,
        };
        tasks.push(tokio::spawn(run_user(user, socket, sends, shared.clone())));
    }
    let (sent, readers) = wait_for_senders(tasks).await?;
    let delivered_by = Instant::now() + DRAIN;
    while shared.delivered.load(Ordering::Relaxed) < sent.acked && Instant::now() < delivered_by {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let _ = stop_tx.send(true);
    let mut merged = Recorder::new(start, shared.live.clone());
    let mut out_of_order = 0;
    for reader in readers {
        let (recorder, disordered) = reader.await?;
        merged.merge(&recorder);
        out_of_order += disordered;
    }
    drop(progress);
    let cpu_after = CpuSnapshot::take(&args.server.pids);
    let spent = |consumer| cpu_after.spent_since(&cpu_before, consumer);
    let mut report = Report::measured("inbox", duration.as_secs_f64(), &merged);
    let delivered = report.delivered;
    report.figures = InboxFigures {
        machine: Machine::between(&cpu_before, &cpu_after),
        server_cpu_per_message_us: report::cpu_per(spent(Consumer::Servers), delivered),
        database_cpu_per_message_us: report::cpu_per(spent(Consumer::Database), delivered),
        tool_cpu_per_message_us: report::cpu_per(spent(Consumer::Tool), delivered),
        sent: sent.sent,
        acknowledged: sent.acked,
        stored: Some(stored(&args.target, &inboxes).await?),
        users: inboxes.len() as u64,
        chats_per_user: args.chats_per_user as u64,
        senders: senders as u64,
        window: args.window as u64,
        nodes: nodes.len() as u64,
    };
    report.errors = sent.errors;
    report.out_of_order = Some(out_of_order);
    report.lost = Some(sent.acked.saturating_sub(delivered));
    report.duplicated = Some(delivered.saturating_sub(sent.acked));
    Ok(report)
}

/// What every user's task shares.
#[derive(Clone)]
struct Shared {
    start: Instant,
    deadline: Instant,
    /// Messages that reached a peer, over all users.
    delivered: Arc<AtomicU64>,
    /// Set once every delivery is in (or the drain gave up).
    stop: watch::Receiver<bool>,
    live: Arc<AtomicU64>,
}

/// One user's part.
#[derive(Clone, Copy)]
struct User {
    index: usize,
    window: usize,
    size: usize,
}

type ReaderTask = tokio::task::JoinHandle<(Recorder, u64)>;

/// Sums what the senders did; hands back each user's reader.
async fn wait_for_senders(
    tasks: Vec<tokio::task::JoinHandle<(Sent, ReaderTask)>>,
) -> Result<(Sent, Vec<ReaderTask>)> {
    let mut sent = Sent::default();
    let mut readers = Vec::with_capacity(tasks.len());
    for task in tasks {
        let (done, reader) = task.await?;
        sent.sent += done.sent;
        sent.acked += done.acked;
        sent.errors += done.errors;
        readers.push(reader);
    }
    Ok((sent, readers))
}

/// Opens every user's socket (round robin over the nodes), reads its `ready`
/// and sends an empty `sync`: each chat live from now.
async fn connect_all(nodes: &[Endpoint], inboxes: &[Inbox]) -> Result<Vec<Socket>> {
    let limit = Arc::new(Semaphore::new(CONNECTING_AT_ONCE));
    let mut opening = Vec::with_capacity(inboxes.len());
    for (i, inbox) in inboxes.iter().enumerate() {
        let node = nodes[i % nodes.len()].clone();
        let user_socket = ws::Opening::user_socket(&inbox.account.token, &[]);
        let limit = limit.clone();
        opening.push(tokio::spawn(async move {
            let _permit = limit.acquire_owned().await?;
            let mut socket = ws::connect(&node, &user_socket.path, None).await?;
            let ready = socket.read_frame().await?;
            if ready.opcode != OpCode::Text || !ready.payload.starts_with(br#"{"type":"ready""#) {
                return Err("a user socket's first event is not ready".into());
            }
            let sync = user_socket.first_sync.unwrap_or_default().to_vec();
            socket
                .write_frame(Frame::text(Payload::Owned(sync)))
                .await?;
            Ok::<_, crate::Error>(socket)
        }));
    }
    let mut sockets = Vec::with_capacity(opening.len());
    for socket in opening {
        sockets.push(socket.await??);
    }
    Ok(sockets)
}

/// A user's socket: its reader records deliveries (and counts the user's
/// echoes), and, for a sender, the send loop keeps the window full until the
/// deadline and waits for the echoes. Returns what was sent and the reader,
/// which runs until the run says stop.
async fn run_user(
    user: User,
    socket: Socket,
    sends: Option<Vec<i64>>,
    shared: Shared,
) -> (Sent, ReaderTask) {
    let (mut read, write) = socket.split(|io| {
        let (r, w) = tokio::io::split(io);
        (r, BufWriter::new(w))
    });
    read.set_auto_pong(false);
    let writer: Writer = Arc::new(Mutex::new(write));
    let window = Arc::new(Semaphore::new(user.window.max(1)));
    let acked = Arc::new(AtomicU64::new(0));
    let reader = tokio::spawn(read_loop(
        read,
        writer.clone(),
        user.index,
        (window.clone(), acked.clone()),
        shared.clone(),
    ));
    let Some(chats) = sends else {
        return (Sent::default(), reader);
    };
    let mut done = send_loop(user, &writer, &window, &chats, &shared).await;
    let drained_by = Instant::now() + DRAIN;
    while acked.load(Ordering::Relaxed) < done.sent && Instant::now() < drained_by {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    done.acked = acked.load(Ordering::Relaxed);
    (done, reader)
}

/// Sends to random chats of the user, `window` in flight, until the deadline.
async fn send_loop(
    user: User,
    writer: &Writer,
    window: &Semaphore,
    chats: &[i64],
    shared: &Shared,
) -> Sent {
    let mut done = Sent::default();
    let mut random = (user.index as u64 + 1).wrapping_mul(0x9E37_79B9_7F4A_7C15);
    let first = (user.index as u64) << SENDER_SHIFT;
    while Instant::now() < shared.deadline {
        let acquired = tokio::time::timeout_at(shared.deadline.into(), window.acquire()).await;
        let Ok(Ok(permit)) = acquired else { break };
        permit.forget();
        let mut burst = 1;
        while let Ok(permit) = window.try_acquire() {
            permit.forget();
            burst += 1;
        }
        let mut w = writer.lock().await;
        for _ in 0..burst {
            // xorshift: a chat picked at random, with no lock or shared state.
            random ^= random << 13;
            random ^= random >> 7;
            random ^= random << 17;
            let chat = chats[(random % chats.len() as u64) as usize];
            let n = first + done.sent;
            let content = client::content(shared.start, n, user.size);
            let frame = ws::send_frame_in(Some(chat), &content, &format!("i{n}"));
            if w.write_frame(frame).await.is_err() {
                done.errors += 1;
                return done;
            }
            done.sent += 1;
        }
        if w.flush().await.is_err() {
            done.errors += 1;
            break;
        }
    }
    done
}

/// Reads the user's socket until told to stop: the user's own echoes free a
/// window slot, others' messages are deliveries (latency from their stamp);
/// per chat, `seq` must rise. Returns the deliveries and how many arrived out
/// of order.
async fn read_loop(
    mut read: Reader,
    writer: Writer,
    me: usize,
    (window, acked): (Arc<Semaphore>, Arc<AtomicU64>),
    mut shared: Shared,
) -> (Recorder, u64) {
    let mut recorder = Recorder::new(shared.start, shared.live.clone());
    let mut last_seq: HashMap<i64, i64> = HashMap::new();
    let mut out_of_order = 0;
    // Pongs are written by hand (auto-pong is off): nothing to send here.
    let mut ignore = |_| std::future::ready(Ok::<(), std::convert::Infallible>(()));
    loop {
        let frame = tokio::select! {
            frame = read.read_frame(&mut ignore) => frame,
            _ = shared.stop.changed() => break,
        };
        let Ok(frame) = frame else { break };
        match frame.opcode {
            OpCode::Text => {
                let Some((Some(seq), content)) = ws::message_fields(&frame.payload) else {
                    continue;
                };
                let chat = ws::message_chat(&frame.payload).unwrap_or(0);
                let previous = last_seq.insert(chat, seq).unwrap_or(0);
                out_of_order += u64::from(seq <= previous);
                let Some((stamp, n)) = stamp_and_number(&content) else {
                    continue;
                };
                if (n >> SENDER_SHIFT) as usize == me {
                    acked.fetch_add(1, Ordering::Relaxed);
                    window.add_permits(1);
                } else {
                    recorder.record(crate::stats::since(shared.start, stamp));
                    shared.delivered.fetch_add(1, Ordering::Relaxed);
                }
            }
            OpCode::Ping => {
                let mut w = writer.lock().await;
                let pong = Frame::pong(Payload::Owned(frame.payload.to_vec()));
                let _ = w.write_frame(pong).await;
                let _ = w.flush().await;
            }
            OpCode::Close => break,
            _ => {}
        }
    }
    (recorder, out_of_order)
}

/// `lt:{stamp}:{n}:...` → the stamp and the number.
fn stamp_and_number(content: &str) -> Option<(u128, u64)> {
    let mut parts = content.splitn(4, ':');
    (parts.next()? == "lt").then_some(())?;
    Some((parts.next()?.parse().ok()?, parts.next()?.parse().ok()?))
}

/// Messages stored in all the users' chats (each chat began empty).
async fn stored(target: &crate::cli::Target, inboxes: &[Inbox]) -> Result<u64> {
    let url = target.database_url.as_deref().ok_or("no DATABASE_URL")?;
    let (client, connection) = tokio_postgres::connect(url, tokio_postgres::NoTls).await?;
    tokio::spawn(connection);
    let mut chats: Vec<i64> = inboxes
        .iter()
        .flat_map(|inbox| inbox.chats.iter().map(|(chat, _)| *chat))
        .collect();
    chats.sort_unstable();
    chats.dedup();
    let row = client
        .query_one(
            "SELECT coalesce(sum(last_seq), 0)::BIGINT FROM chats WHERE id = ANY($1)",
            &[&chats],
        )
        .await?;
    Ok(row.get::<_, i64>(0) as u64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_content_marker_says_when_and_who_sent_it() {
        let start = Instant::now();
        let n = (7u64 << SENDER_SHIFT) + 3;
        let content = client::content(start, n, 64);
        let (_, number) = stamp_and_number(&content).unwrap();
        assert_eq!((number >> SENDER_SHIFT, number & 0xffff), (7, 3));
        assert!(stamp_and_number("hello").is_none());
    }
}
