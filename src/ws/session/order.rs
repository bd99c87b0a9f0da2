//! Delivery order: the socket joins its chat's room before the chat's `last_seq`
//! is read, so every message committed after that read queues in its outbox. The
//! writer keeps `next_seq`, the next message this socket must get: when the
//! client resumes from before `last_seq` it first replays the store from
//! `after_seq + 1` to the end, then takes live messages from the outbox. One
//! below `next_seq` was already sent (dropped); one above it means a gap, filled
//! from the store first. So each message arrives once, in `seq` order, with no
//! gap or duplicate at the seam between history and live delivery.

use super::live::Session;
use super::End;
use crate::delivery::events::message_event;
use crate::delivery::rooms::{Outbox, Outgoing};
use crate::store::StoreError;
use crate::ws::protocol::close;
use std::time::Instant;

/// Messages read from the store per query while catching up.
const CATCH_UP_CHUNK: i64 = 500;
/// Frames written before a flush while draining a busy outbox.
const WRITE_BURST: usize = 256;
impl Session<'_> {
    /// Writes one item and whatever else is already queued, then flushes once.
    pub(super) async fn write_burst(
        &mut self,
        first: Outgoing,
        outbox: &Outbox,
    ) -> Result<(), End> {
        self.write(first).await?;
        for _ in 1..WRITE_BURST {
            match outbox.try_take() {
                Some(item) => self.write(item).await?,
                None => break,
            }
        }
        self.writer.flush().await?;
        Ok(())
    }

    async fn write(&mut self, item: Outgoing) -> Result<(), End> {
        match item {
            Outgoing::Event(frame) => self.writer.text(&frame).await?,
            Outgoing::Resync => Box::pin(self.resync()).await?,
            Outgoing::Message { seq, .. } if seq < self.next_seq => {}
            Outgoing::Message { seq, frame } => {
                if seq > self.next_seq {
                    Box::pin(self.replay_until(seq - 1)).await?;
                }
                self.writer.text(&frame).await?;
                self.next_seq = seq + 1;
            }
        }
        Ok(())
    }

    /// After the bus may have missed messages: catches up when the store holds
    /// any from `next_seq` on. (A session's first catch-up needs no such check:
    /// its handshake has just read `last_seq`.)
    async fn resync(&mut self) -> Result<(), End> {
        let stored_through = self.stored_through().await?;
        if stored_through >= self.next_seq {
            self.replay_until(stored_through).await?;
        }
        self.state.metrics.ws_resyncs.inc();
        Ok(())
    }

    /// The chat's `last_seq` now, through the batched lookups: a resync usually
    /// finds nothing new (a new room on a node: every socket of a connect storm
    /// across nodes), and many sockets' questions cost one statement together,
    /// where a message read each cost PostgreSQL a statement per socket. The
    /// answer's statement starts after the question was asked, so it sees every
    /// message committed before the resync. `i64::MAX` when the chat is gone
    /// (the message read then tells).
    async fn stored_through(&self) -> Result<i64, End> {
        let (_, access) = self
            .state
            .reads
            .lookups
            .ask((self.user_id, self.chat_id))
            .await?;
        Ok(access.map_or(i64::MAX, |access| access.last_seq))
    }

    /// Sends the stored messages from `next_seq` through `last` (a catch-up
    /// after a resume or a resync, or a gap), in chunks of at most
    /// `CATCH_UP_CHUNK` messages and about `WS_CATCH_UP_BYTES` bytes, all
    /// within `WS_CATCH_UP_TIMEOUT_SECS`: a socket that cannot take them that
    /// fast is closed with 4008 (resumable), so many slow resuming sockets
    /// hold bounded memory each, for a bounded time. Later messages reach the
    /// outbox (the socket joined its room before `last` was read).
    ///
    /// Catch-up and gap filling are the rare paths; callers box their futures,
    /// which would otherwise add their size to every idle session's task.
    pub(super) async fn replay_until(&mut self, last: i64) -> Result<(), End> {
        // Checked between messages, never by cancelling a write: a frame cut
        // half-way would leave no way to send the close.
        let deadline = Instant::now() + self.state.config.realtime.catch_up_timeout;
        while self.next_seq <= last {
            let to = last.min(self.next_seq.saturating_add(CATCH_UP_CHUNK - 1));
            if self.replay(to, deadline).await? == 0 {
                return Err(End::Store(StoreError::Inconsistent(
                    "a committed message is missing",
                )));
            }
            self.writer.flush().await?;
        }
        Ok(())
    }

    async fn replay(&mut self, to: i64, deadline: Instant) -> Result<i64, End> {
        let max_bytes = self.state.config.realtime.catch_up_bytes;
        let messages = self
            .state
            .store
            .messages_between(self.chat_id, self.next_seq, to, max_bytes)
            .await?;
        for message in &messages {
            if Instant::now() > deadline {
                return Err(End::Closed(close::SLOW_CONSUMER));
            }
            self.writer.text(&message_event(message)).await?;
            self.next_seq = message.seq + 1;
        }
        Ok(messages.len() as i64)
    }
}
