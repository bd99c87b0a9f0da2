//! Graceful shutdown, as in mini-redis: a watch channel tells every connection to
//! stop, and an mpsc channel whose senders every connection holds tells when the
//! last one has finished.

use std::time::Duration;
use tokio::sync::{mpsc, watch};

/// Owned by the server: starts the shutdown and waits for the drain.
pub struct ShutdownController {
    notify: watch::Sender<bool>,
    done_tx: mpsc::Sender<()>,
    done_rx: mpsc::Receiver<()>,
}

/// Held by each connection: learns when to stop; dropping it reports "finished".
#[derive(Clone)]
pub struct Shutdown {
    notify: watch::Receiver<bool>,
    _done: mpsc::Sender<()>,
}

impl ShutdownController {
    pub fn new() -> Self {
        let (notify, _) = watch::channel(false);
        let (done_tx, done_rx) = mpsc::channel(1);
        ShutdownController {
            notify,
            done_tx,
            done_rx,
        }
    }

    /// A handle for one more connection.
    pub fn handle(&self) -> Shutdown {
        Shutdown {
            notify: self.notify.subscribe(),
            _done: self.done_tx.clone(),
        }
    }

    /// Tells every connection to stop, then waits up to `timeout` for all of them.
    /// Returns whether they all finished in time.
    pub async fn drain(self, timeout: Duration) -> bool {
        let ShutdownController {
            notify,
            done_tx,
            mut done_rx,
        } = self;
        let _ = notify.send(true);
        drop(done_tx);
        tokio::time::timeout(timeout, done_rx.recv()).await.is_ok()
    }
}

impl Default for ShutdownController {
    fn default() -> Self {
        Self::new()
    }
}

impl Shutdown {
    /// Resolves once shutdown has begun.
    pub async fn recv(&mut self) {
        let _ = self.notify.wait_for(|stopping| *stopping).await;
    }
}
