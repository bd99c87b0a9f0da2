//! Opening many sockets at once and holding them: which node and source address
//! each socket uses, the handshakes in flight, and the tasks that keep the
//! opened sockets answering pings.

use crate::endpoint::Endpoint;
use crate::stats::Recorder;
use crate::ws;
use std::net::{IpAddr, Ipv4Addr};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::{watch, Semaphore};

/// Sockets per local source address. Linux hands out even ephemeral ports to
/// `connect` first (~14,000 of the default 28,000) and probes port by port, so a
/// crowded address makes every connect a long search (at 19,000 on one address,
/// half of all CPU was `__inet_hash_connect`); 4,000 keeps the search short.
const PER_SOURCE_ADDRESS: usize = 4_000;

/// The longest a handshake may take before it counts as failed: a server
/// that accepts nothing (out of descriptors, say) leaves connections
/// unanswered in its queue, and the run must end and say so, not wait.
const HANDSHAKE_WAIT: Duration = Duration::from_secs(30);

/// What a storm opened.
pub struct Storm {
    /// When the storm began; the recorder's timeline counts from here.
    pub began: Instant,
    /// Each opened socket's handshake time, recorded when it opened.
    pub opened: Recorder,
    pub errors: u64,
    /// How long until every socket had opened or failed.
    pub took: Duration,
    /// Sockets open now (they close when the server closes them).
    pub held: Arc<AtomicU64>,
    /// Whether the sockets send a first `sync` (user sockets do).
    syncing: bool,
    /// Sockets whose first `sync` the server has answered.
    synced: Arc<AtomicU64>,
    /// Raised once the storm is over: each user socket then asks whether its
    /// `sync` was answered (see [`ws::IdleSocket::hold_synced`]).
    ask: watch::Sender<bool>,
}

impl Storm {
    /// Opens one socket per opening, at most `concurrency` handshakes at a
    /// time, and returns once each has opened or failed. Opening `i` is socket
    /// `first + i` of the whole run, which picks its node (round robin over
    /// `endpoints`) and its source address. Opened sockets are held by tasks of
    /// their own until the server closes them or the runtime ends.
    pub async fn open(
        endpoints: &[Endpoint],
        openings: Vec<ws::Opening>,
        first: usize,
        concurrency: usize,
        live: Arc<AtomicU64>,
    ) -> Storm {
        let count = openings.len();
        let syncing = openings.iter().any(|opening| opening.first_sync.is_some());
        let held = Arc::new(AtomicU64::new(0));
        let synced = Arc::new(AtomicU64::new(0));
        let (ask, asked) = watch::channel(false);
        let limit = Arc::new(Semaphore::new(concurrency.max(1)));
        let began = Instant::now();
        let (opened_tx, mut opened_rx) = tokio::sync::mpsc::unbounded_channel::<Option<Duration>>();
        for (i, opening) in openings.into_iter().enumerate() {
            let endpoint = endpoints[(first + i) % endpoints.len()].clone();
            let local = loopback_source(&endpoint, first + i);
            let (limit, held, opened) = (limit.clone(), held.clone(), opened_tx.clone());
            let (synced, asked) = (synced.clone(), asked.clone());
            tokio::spawn(async move {
                let Ok(permit) = limit.acquire_owned().await else {
                    return;
                };
                let started = Instant::now();
                let opening_socket = ws::connect_idle(&endpoint, &opening.path, local);
                match tokio::time::timeout(HANDSHAKE_WAIT, opening_socket).await {
                    Ok(Ok(socket)) => {
                        drop(permit);
                        held.fetch_add(1, Ordering::Relaxed);
                        let _ = opened.send(Some(started.elapsed()));
                        match opening.first_sync {
                            Some(sync) => {
                                let answered = || {
                                    synced.fetch_add(1, Ordering::Relaxed);
                                };
                                socket.hold_synced(sync, asked, answered).await
                            }
                            None => socket.hold().await,
                        }
                        held.fetch_sub(1, Ordering::Relaxed);
                    }
                    Ok(Err(_)) | Err(_) => {
                        let _ = opened.send(None);
                    }
                }
            });
        }
        drop(opened_tx);
        let mut recorder = Recorder::new(began, live);
        let mut errors = 0;
        for _ in 0..count {
            match opened_rx.recv().await {
                Some(Some(took)) => recorder.record(took),
                _ => errors += 1,
            }
        }
        Storm {
            began,
            opened: recorder,
            errors,
            took: began.elapsed(),
            held,
            syncing,
            synced,
            ask,
        }
    }

    pub fn held_now(&self) -> u64 {
        self.held.load(Ordering::Relaxed)
    }

    /// Has every user socket ask whether its first `sync` was answered, and
    /// waits until each held socket's was (at most `limit`): until then the
    /// servers are still working for the storm, and its memory is not yet an
    /// idle socket's. Returns how many held sockets' syncs went unanswered
    /// (none, at once, for sockets that send no `sync`).
    pub async fn syncs_answered(&self, limit: Duration) -> u64 {
        if !self.syncing {
            return 0;
        }
        self.ask.send_replace(true);
        let deadline = Instant::now() + limit;
        let unanswered = || {
            self.held_now()
                .saturating_sub(self.synced.load(Ordering::Relaxed))
        };
        while unanswered() > 0 && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        unanswered()
    }
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
