//! The publisher on one Redis: each committed batch as one pipeline of
//! `PUBLISH` (a payload per recipient, and usage reports on their channel),
//! in order, on a connection of its own; what Redis never confirmed is
//! named in a lost notice rather than sent twice.

use super::super::missed::Missed;
use super::super::{usage_publishes, Envelope, Wire};
use super::{gathered, next_backoff, ANSWER_TIMEOUT, MIN_BACKOFF};
use crate::metrics::Metrics;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::mpsc;

/// Publishes batches in order. While no connection opens, the current batch
/// waits (nothing was sent) and later ones wait in the queue. A pipeline
/// sent but not answered, or answered with an error, may have published any
/// part of itself: it is never sent again (that could deliver its events
/// twice, after later ones); its recipients are named in the next lost
/// notice instead, and their sockets on other nodes catch up from the store,
/// once and in order.
pub(in crate::delivery::bus) async fn publish_loop(
    client: redis::Client,
    wire: Wire,
    prefix: String,
    mut queue: mpsc::Receiver<Vec<Envelope>>,
    missed: Arc<Missed>,
    metrics: Arc<Metrics>,
) {
    let mut connection = Connection::new(client);
    while let Some(first) = queue.recv().await {
        let mut batch = gathered(first, &mut queue);
        // Until the batch, and any notice of what was not confirmed, is
        // published: a notice must not wait for a later batch to carry it.
        loop {
            let conn = connection.open().await;
            let payloads = wire.payloads(&batch);
            let mut pipe = redis::pipe();
            for (user, payload) in &payloads {
                pipe.publish(super::super::channel(&prefix, *user), &payload[..])
                    .ignore();
            }
            // Events were dropped or not confirmed: the other nodes hear
            // whose, and those users' sockets catch up (see `Kind::Lost`).
            let notice = missed.take();
            if let Some(notice) = &notice {
                pipe.publish(super::super::lost_channel(&prefix), wire.encode(notice))
                    .ignore();
            }
            let mut reports = 0;
            for (channel, report) in usage_publishes(&wire, &prefix, &batch) {
                pipe.publish(channel, report).ignore();
                reports += 1;
            }
            if payloads.is_empty() && notice.is_none() && reports == 0 {
                break;
            }
            match pipe.query_async::<()>(conn).await {
                Ok(()) => {
                    metrics.bus_published.inc_by(batch.len() as u64);
                    connection.confirmed();
                    break;
                }
                Err(error) => {
                    tracing::warn!(%error, "redis did not confirm a publish; its users catch up from the store");
                    unconfirmed(&missed, &batch, notice.as_ref());
                    metrics.bus_unconfirmed.inc_by(payloads.len() as u64);
                    connection.lost().await;
                    batch.clear();
                }
            }
        }
    }
}

/// The publisher's connection, opened again with backoff after it is lost.
struct Connection {
    client: redis::Client,
    open: Option<redis::aio::MultiplexedConnection>,
    backoff: Duration,
}

impl Connection {
    fn new(client: redis::Client) -> Self {
        Connection {
            client,
            open: None,
            backoff: MIN_BACKOFF,
        }
    }

    /// The open connection, or a new one once Redis takes it.
    async fn open(&mut self) -> &mut redis::aio::MultiplexedConnection {
        match self.open {
            Some(ref mut open) => open,
            None => {
                let opened = self.opened().await;
                self.open.insert(opened)
            }
        }
    }

    /// A new connection, retried with backoff until Redis takes it.
    async fn opened(&mut self) -> redis::aio::MultiplexedConnection {
        let config = answering();
        loop {
            match self
                .client
                .get_multiplexed_async_connection_with_config(&config)
                .await
            {
                Ok(opened) => return opened,
                Err(error) => {
                    let backoff = self.backoff;
                    tracing::warn!(%error, ?backoff, "redis unavailable for publishing; retrying");
                    self.pause().await;
                }
            }
        }
    }

    /// A publish was confirmed: the next failure waits the least.
    fn confirmed(&mut self) {
        self.backoff = MIN_BACKOFF;
    }

    /// Drops a connection that failed, and waits before the next one.
    async fn lost(&mut self) {
        self.open = None;
        self.pause().await;
    }

    async fn pause(&mut self) {
        tokio::time::sleep(self.backoff).await;
        self.backoff = next_backoff(self.backoff);
    }
}

/// A publisher connection's settings: Redis has [`ANSWER_TIMEOUT`] to
/// answer, as the subscriber gives it (the client's default, half a second,
/// takes a Redis that stalls briefly for a lost one).
pub(super) fn answering() -> redis::AsyncConnectionConfig {
    redis::AsyncConnectionConfig::new().set_response_timeout(Some(ANSWER_TIMEOUT))
}

/// Notes what a publish Redis never confirmed was for: the recipients of
/// `batch`, and the users `notice` named (a lost notice may be heard twice,
/// which costs a catch-up, never a duplicate).
fn unconfirmed(missed: &Missed, batch: &[Envelope], notice: Option<&Envelope>) {
    if let Some(notice) = notice {
        missed.restore(notice);
    }
    missed.note(batch);
}
