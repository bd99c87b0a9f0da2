//! Delivery order, per chat: the socket joins its user's room before it
//! reads where its chat stands (a per-chat socket's `last_seq`, a `sync`'s
//! positions), so every message committed after that read queues in its
//! outbox. Each chat's cursor keeps `next_seq`, the next message this socket
//! must send: a resume from before `last_seq` first replays the store from
//! `after_seq + 1` to the end, then takes live messages from the outbox.
//! One below `next_seq` was already sent (dropped); one above it means a gap,
//! filled from the store first. So each message arrives once, in `seq` order,
//! with no gap or duplicate at the seam between history and live delivery.
//! What happens when the bus may have missed events is in [`super::resync`].
//!
//! A user socket meets most chats by their first message after its `ready`:
//! the bus follows the user from `ready` on, so that message is the chat's
//! first since `ready`, and it places the cursor. A chat's first message ever
//! (`seq` 1) comes after its `chat` event; when the bus lost that event (or
//! the message overtook it) the chat is read from the store and announced
//! first.

use super::cursors::{Cursor, ANNOUNCED, DELIVERED, PLACED};
use super::live::Session;
use super::End;
use crate::delivery::events::{chat_event, message_event};
use crate::delivery::rooms::{peer_of, Outbox, Outgoing};
use crate::store::{ReplayRead, StoreError};
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
            Outgoing::Chat { chat, peer, frame } => {
                if self.learn_chat(chat, peer) {
                    self.writer.text(&frame).await?;
                }
            }
            Outgoing::Message { chat, seq, frame } => {
                let Some(next_seq) = self.place(chat, seq).await? else {
                    return Ok(());
                };
                if seq < next_seq {
                    return Ok(());
                }
                if seq > next_seq {
                    Box::pin(self.replay_until(chat, seq - 1)).await?;
                }
                self.writer.text(&frame).await?;
                self.moved(chat, seq);
            }
        }
        Ok(())
    }

    /// A `chat` event: whether to send it (the client has not heard of the
    /// chat, or seen a message of it, on this socket).
    pub(super) fn learn_chat(&mut self, chat: i64, peer: i64) -> bool {
        match self.cursors.get_mut(chat) {
            Some(cursor) if cursor.has(ANNOUNCED | DELIVERED) => false,
            Some(cursor) => {
                cursor.flags |= ANNOUNCED;
                cursor.peer = peer;
                true
            }
            None => self.cursors.add(Cursor::new(chat, 1, peer, ANNOUNCED)),
        }
    }

    /// The chat's `next_seq` for message `seq` about to be written: a user
    /// socket's first message of a chat places its cursor there (after
    /// announcing the chat when this is its first message ever and no `chat`
    /// event was sent). `None` when the message is not for this socket.
    async fn place(&mut self, chat: i64, seq: i64) -> Result<Option<i64>, End> {
        let cursor = match self.cursors.get_mut(chat) {
            Some(cursor) if cursor.has(PLACED) => return Ok(Some(cursor.next_seq)),
            Some(cursor) => {
                cursor.next_seq = seq;
                cursor.flags |= PLACED;
                *cursor
            }
            None => {
                let new = Cursor::new(chat, seq, 0, PLACED);
                if !self.cursors.add(new) {
                    return Ok(None);
                }
                new
            }
        };
        if seq == 1 && !cursor.has(ANNOUNCED) {
            Box::pin(self.announce(chat)).await?;
        }
        Ok(Some(seq))
    }

    /// For a first message ever: when its chat was created after `ready`,
    /// reads the chat and sends its `chat` event (its own event was lost on
    /// the bus, or is still on its way and will be dropped). A chat created
    /// before `ready` is in the chat list the client reads after it. When the
    /// chat was created is a batched read (many first messages at once, as
    /// when the chats of a list made earlier start, cost a statement, not one
    /// each); only a chat to announce is read whole. (Clocks of the node and
    /// the database that disagree by a little either send an event the
    /// client did not need or leave one to that list.)
    async fn announce(&mut self, chat: i64) -> Result<(), End> {
        let progress = self.state.reads.progress.ask(chat).await?;
        let created_since_ready =
            progress.is_some_and(|p| p.created_at.unix_micros() >= self.ready_at);
        if created_since_ready {
            if let Some(found) = self.state.store.chat(chat, self.user_id).await? {
                self.writer.text(&chat_event(&found)).await?;
            }
        }
        if let Some(cursor) = self.cursors.get_mut(chat) {
            cursor.flags |= ANNOUNCED;
            if let Some(progress) = progress {
                cursor.peer = peer_of(progress.access.participants, self.user_id);
            }
        }
        Ok(())
    }

    /// After sending message `seq` of `chat`.
    pub(super) fn moved(&mut self, chat: i64, seq: i64) {
        if let Some(cursor) = self.cursors.get_mut(chat) {
            cursor.next_seq = seq + 1;
            cursor.flags |= DELIVERED;
        }
    }

    pub(super) fn next_seq(&self, chat: i64) -> i64 {
        self.cursors.get(chat).map_or(i64::MAX, |c| c.next_seq)
    }

    /// Sends the stored messages of `chat` from its `next_seq` through `last`
    /// (a catch-up after a resume, a sync or a resync, or a gap), in chunks of
    /// at most `CATCH_UP_CHUNK` messages and about `WS_CATCH_UP_BYTES` bytes,
    /// all within `WS_CATCH_UP_TIMEOUT_SECS`: a socket that cannot take them
    /// that fast is closed with 4008 (resumable), so many slow resuming
    /// sockets hold bounded memory each, for a bounded time. Later messages
    /// reach the outbox (the socket joined its room before `last` was read).
    ///
    /// Catch-up and gap filling are the rare paths; callers box their futures,
    /// which would otherwise add their size to every idle session's task.
    pub(super) async fn replay_until(&mut self, chat: i64, last: i64) -> Result<(), End> {
        // Checked between messages, never by cancelling a write: a frame cut
        // half-way would leave no way to send the close.
        let deadline = Instant::now() + self.state.config.realtime.catch_up_timeout;
        while self.next_seq(chat) <= last {
            let from = self.next_seq(chat);
            let to = last.min(from.saturating_add(CATCH_UP_CHUNK - 1));
            if self.replay(chat, (from, to), deadline).await? == 0 {
                return Err(End::Store(StoreError::Inconsistent(
                    "a committed message is missing",
                )));
            }
            self.writer.flush().await?;
        }
        Ok(())
    }

    async fn replay(
        &mut self,
        chat: i64,
        (from, to): (i64, i64),
        deadline: Instant,
    ) -> Result<i64, End> {
        let read = ReplayRead {
            chat,
            from_seq: from,
            to_seq: to,
        };
        let messages = self.state.reads.replays.ask(read).await?;
        for message in &messages {
            if Instant::now() > deadline {
                return Err(End::Closed(close::SLOW_CONSUMER));
            }
            self.writer.text(&message_event(message)).await?;
            self.moved(chat, message.seq);
            self.cursors
                .raise_known_marker(chat, self.user_id, message.sender.id, message.seq);
        }
        Ok(messages.len() as i64)
    }
}
