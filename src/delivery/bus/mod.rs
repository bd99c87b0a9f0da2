//! The bus between nodes. After a batch commits, each new message is published
//! (with this node's id) so other nodes deliver it to their local sockets; each
//! node listens only to the chats that have local sockets.
//!
//! The bus is a wake-up path, never the source of truth: sessions order by `seq`
//! and fill any gap from the store, and whenever the bus may have missed
//! something (a new subscription, a reconnect) the watching sessions catch up
//! from the store. So a lost, late or reordered bus message delays a delivery at
//! worst; it never loses or duplicates one. With no `REDIS_URL` the bus is
//! in-process only (one node).

mod redis;
mod wire;

pub use wire::{Received, Wire};

use crate::delivery::rooms::{Interest, Published, Rooms};
use crate::metrics::Metrics;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use tokio::sync::mpsc;

/// Publishing side of the bus; cheap to clone.
#[derive(Clone)]
pub struct Bus {
    outgoing: Option<mpsc::Sender<Vec<Published>>>,
    healthy: Arc<AtomicBool>,
}

/// Batches of messages waiting to be published while Redis is slow or down.
const PUBLISH_QUEUE: usize = 4096;

impl Bus {
    /// A bus for one node: nothing leaves the process.
    pub fn local() -> Self {
        Bus {
            outgoing: None,
            healthy: Arc::new(AtomicBool::new(true)),
        }
    }

    /// A Redis bus: spawns the publisher and the subscriber. `interest` carries the
    /// room map's watch/unwatch notices.
    pub fn redis(
        url: &str,
        prefix: &str,
        secret: &str,
        rooms: Rooms,
        interest: mpsc::UnboundedReceiver<Interest>,
        metrics: Arc<Metrics>,
    ) -> Result<Self, String> {
        let client = ::redis::Client::open(url).map_err(|e| format!("invalid REDIS_URL: {e}"))?;
        let wire = Wire::new(secret, crate::digest::random_hex(8));
        let healthy = Arc::new(AtomicBool::new(false));
        let (tx, rx) = mpsc::channel(PUBLISH_QUEUE);
        let publisher = redis::publish_loop(
            client.clone(),
            wire.clone(),
            prefix.to_owned(),
            rx,
            metrics.clone(),
        );
        tokio::spawn(publisher);
        let subscriber = redis::subscribe_loop(
            client,
            wire,
            prefix.to_owned(),
            rooms,
            interest,
            healthy.clone(),
            metrics,
        );
        tokio::spawn(subscriber);
        Ok(Bus {
            outgoing: Some(tx),
            healthy,
        })
    }

    /// Hands a committed batch to the publisher without waiting. If the queue is
    /// full the batch is dropped: other nodes fill the gap from the store on the
    /// chat's next message or their next catch-up.
    pub fn publish(&self, batch: Vec<Published>) {
        if batch.is_empty() {
            return;
        }
        if let Some(tx) = &self.outgoing {
            if tx.try_send(batch).is_err() {
                tracing::warn!("bus publish queue full; other nodes will catch up from the store");
            }
        }
    }

    /// Whether the bus is connected (always true in-process).
    pub fn is_healthy(&self) -> bool {
        self.healthy.load(Ordering::Relaxed)
    }

    pub fn is_distributed(&self) -> bool {
        self.outgoing.is_some()
    }
}

/// Channel name of a chat: `{prefix}:chat:{id}` (the prefix separates
/// deployments sharing one Redis).
pub fn channel(prefix: &str, chat: i64) -> String {
    format!("{prefix}:chat:{chat}")
}

/// The chat id of a channel name.
pub fn chat_of(prefix: &str, channel: &str) -> Option<i64> {
    channel
        .strip_prefix(prefix)?
        .strip_prefix(":chat:")?
        .parse()
        .ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn channel_names_round_trip() {
        assert_eq!(chat_of("p", &channel("p", 7)), Some(7));
        assert_eq!(chat_of("q", &channel("p", 7)), None);
        assert_eq!(chat_of("p", "p:other:1"), None);
    }
}
