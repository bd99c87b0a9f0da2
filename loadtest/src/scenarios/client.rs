//! The chatting client shared by `chat` and `echo`: a sender that keeps a window
//! of messages in flight on one socket (acknowledged by their echo), and a
//! receiver that timestamps what arrives. Content carries the send time, so the
//! same code measures any server that echoes content back.

use crate::stats::{self, Recorder};
use crate::ws::{self, Socket};
use fastwebsockets::{Frame, OpCode, Payload, WebSocketWrite};
use hyper::upgrade::Upgraded;
use hyper_util::rt::TokioIo;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::io::{BufWriter, WriteHalf};
use tokio::sync::{Mutex, Semaphore};

type Writer = Arc<Mutex<WebSocketWrite<BufWriter<WriteHalf<TokioIo<Upgraded>>>>>>;

/// How a sender paces itself.
#[derive(Debug, Clone, Copy)]
pub struct Pace {
    pub window: usize,
    /// Messages per second for this sender, or as fast as the window allows.
    pub rate: Option<f64>,
    pub size: usize,
}

impl Pace {
    /// The first send of sender `index` of `senders`, as a delay: senders holding
    /// a rate start at evenly spread phases of their period, so the offered load
    /// arrives spread out rather than as one burst from every sender per period.
    pub fn phase(&self, index: usize, senders: usize) -> Duration {
        match self.rate {
            Some(rate) => {
                Duration::from_secs_f64(index as f64 / senders.max(1) as f64 / rate.max(0.001))
            }
            None => Duration::ZERO,
        }
    }
}

/// What a sender did.
#[derive(Debug, Default, Clone, Copy)]
pub struct Sent {
    pub sent: u64,
    pub acked: u64,
    pub errors: u64,
}

/// `lt:{stamp_ns}:{n}:` padded with `x` to `size` bytes.
pub fn content(start: Instant, n: u64, size: usize) -> String {
    let mut text = format!("lt:{}:{n}:", stats::stamp(start));
    let padding = size.saturating_sub(text.len());
    text.extend(std::iter::repeat_n('x', padding));
    text
}

/// The send stamp inside a content marker.
pub fn stamp_of(content: &str) -> Option<u128> {
    let mut parts = content.splitn(3, ':');
    (parts.next()? == "lt").then_some(())?;
    parts.next()?.parse().ok()
}

/// Sends until `deadline` keeping `pace`, then waits (up to `drain`) for every ack.
/// `frame_for(n)` builds message n; `is_ack` recognises an echo in a text frame.
pub async fn send_loop(
    socket: Socket,
    pace: Pace,
    phase: Duration,
    deadline: Instant,
    drain: Duration,
    frame_for: impl Fn(u64) -> Frame<'static>,
    is_ack: impl Fn(&[u8]) -> bool + Send + 'static,
) -> Sent {
    let (mut read, write) = socket.split(|io| {
        let (r, w) = tokio::io::split(io);
        (r, BufWriter::new(w))
    });
    read.set_auto_pong(false);
    let writer: Writer = Arc::new(Mutex::new(write));
    let window = Arc::new(Semaphore::new(pace.window.max(1)));
    let acked = Arc::new(AtomicU64::new(0));
    let reader = {
        let (writer, window, acked) = (writer.clone(), window.clone(), acked.clone());
        tokio::spawn(async move {
            while let Ok(frame) = read
                .read_frame(&mut |_| std::future::ready(Ok::<(), std::convert::Infallible>(())))
                .await
            {
                match frame.opcode {
                    OpCode::Text if is_ack(&frame.payload) => {
                        acked.fetch_add(1, Ordering::Relaxed);
                        window.add_permits(1);
                    }
                    OpCode::Ping => {
                        let payload = frame.payload.to_vec();
                        let mut w = writer.lock().await;
                        let _ = w.write_frame(Frame::pong(Payload::Owned(payload))).await;
                        let _ = w.flush().await;
                    }
                    OpCode::Close => break,
                    _ => {}
                }
            }
        })
    };
    let mut done = Sent::default();
    let mut ticker = pace.rate.map(|rate| {
        let period = Duration::from_secs_f64(1.0 / rate.max(0.001));
        let mut t = tokio::time::interval_at((Instant::now() + phase).into(), period);
        t.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
        t
    });
    while Instant::now() < deadline {
        if let Some(ticker) = ticker.as_mut() {
            if tokio::time::timeout_at(deadline.into(), ticker.tick())
                .await
                .is_err()
            {
                break;
            }
        }
        let Ok(Ok(permit)) = tokio::time::timeout_at(deadline.into(), window.acquire()).await
        else {
            break;
        };
        permit.forget();
        let mut burst = 1;
        if ticker.is_none() {
            while let Ok(p) = window.try_acquire() {
                p.forget();
                burst += 1;
            }
        }
        let mut w = writer.lock().await;
        for _ in 0..burst {
            if w.write_frame(frame_for(done.sent)).await.is_err() {
                done.errors += 1;
                break;
            }
            done.sent += 1;
        }
        if w.flush().await.is_err() {
            done.errors += 1;
            break;
        }
    }
    let drained_by = Instant::now() + drain;
    while acked.load(Ordering::Relaxed) < done.sent && Instant::now() < drained_by {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    done.acked = acked.load(Ordering::Relaxed);
    reader.abort();
    let _ = writer
        .lock()
        .await
        .write_frame(Frame::close(1000, b""))
        .await;
    done
}

/// What a receiver saw.
pub struct Received {
    pub recorder: Recorder,
    pub out_of_order: u64,
}

/// Records every message until `expected` resolves to a count it has reached, or
/// `give_up` after that.
pub async fn receive_loop(
    socket: Socket,
    start: Instant,
    mut recorder: Recorder,
    mut expected: tokio::sync::watch::Receiver<Option<u64>>,
    give_up: Duration,
) -> Received {
    let (tx, mut arrivals) = tokio::sync::mpsc::unbounded_channel();
    let reader = tokio::spawn(read_arrivals(socket, tx));
    let (mut count, mut last_seq, mut out_of_order) = (0u64, 0i64, 0u64);
    let mut deadline = tokio::time::Instant::now() + Duration::from_secs(86_400);
    loop {
        if let Some(target) = *expected.borrow_and_update() {
            if count >= target {
                break;
            }
            deadline = deadline.min(tokio::time::Instant::now() + give_up);
        }
        tokio::select! {
            arrival = arrivals.recv() => {
                let Some((stamp, seq)) = arrival else { break };
                recorder.record(stats::since(start, stamp));
                count += 1;
                if let Some(seq) = seq {
                    out_of_order += u64::from(seq <= last_seq);
                    last_seq = last_seq.max(seq);
                }
            }
            changed = expected.changed() => if changed.is_err() { break },
            () = tokio::time::sleep_until(deadline) => break,
        }
    }
    reader.abort();
    Received {
        recorder,
        out_of_order,
    }
}

/// Reads message events and forwards (send stamp, seq) of each.
async fn read_arrivals(
    socket: Socket,
    arrivals: tokio::sync::mpsc::UnboundedSender<(u128, Option<i64>)>,
) {
    let mut ws = fastwebsockets::FragmentCollector::new(socket);
    while let Some(bytes) = ws::next_text(&mut ws).await {
        let Some((seq, content)) = ws::message_fields(&bytes) else {
            continue;
        };
        if let Some(stamp) = stamp_of(&content) {
            if arrivals.send((stamp, seq)).is_err() {
                return;
            }
        }
    }
}
