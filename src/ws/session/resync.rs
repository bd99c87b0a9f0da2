//! Catching up after the bus may have missed events (it reconnected, a
//! subscription died silently, a node dropped events or sent a record this
//! node cannot read), and after a per-chat socket's resume.
//!
//! A per-chat socket catches up from the store, messages first, then, as
//! `read` events, the read markers that moved past what its client knows and
//! not to their owner's own message (which told it).
//!
//! A user socket reads once where each of its user's chats stands (those
//! that hold messages, and those created since `ready`), batched with the
//! other sockets' reads: an outage has every socket of a node ask at once,
//! and a batch's few statements, one after the other, keep that from filling
//! the pool. It reads no more chats than it could use (one per cursor, and
//! [`UNHEARD_NEW_CHATS`] more), and one over that closes it with 4009. It can
//! catch up in place when it knows where its client stands in every chat
//! that holds messages: the chat's cursor is placed (a `sync` named it, or
//! the socket delivered from it). Our client names every chat of its list
//! in its syncs (1,000 per event), so that is the common case. Each such chat
//! is replayed from its `next_seq` through the `last_seq` read, then the
//! read markers past what its client knows are told (it may have missed
//! their moves; a marker never moves back, so telling one it knows is
//! harmless, but a socket caught up again tells only those that moved since,
//! see [`super::cursors::KnownMarkers`]), never one at its owner's own last
//! message (the message told it), and an empty chat created after `ready`
//! that the socket never heard of is announced. A chat with messages the socket has no position in (not named
//! by `sync`, nothing delivered since `ready`) may have had messages stored
//! after `ready` that the bus lost, and which ones is unknown: the socket
//! closes with 4009 and its client resumes with `sync`. So does a socket
//! whose client has not sent its first `sync` yet, and one with no position
//! in any chat once a probe finds a chat of its user's with messages (its
//! client synced `{}`: the standings are not read).
//!
//! Every message committed before the standings were read is replayed;
//! every one committed after it reaches the outbox (the bus follows the user
//! again before the resync is queued).

use super::cursors::{PLACED, RESUMED};
use super::live::Session;
use super::End;
use crate::delivery::events::{chat_event, read_event};
use crate::store::{ChatAccess, ChatStanding, StandingsRead};
use crate::ws::protocol::close;

/// Empty chats created since `ready` that a user socket's resync announces
/// beyond those it has cursors for (their `chat` events lost with the bus):
/// a user with more is closed with 4009 and resumes with `sync`. It bounds
/// the standings read with the socket's cursors, so a batch of resyncs never
/// reads every chat of users with thousands.
const UNHEARD_NEW_CHATS: usize = 64;

impl Session<'_> {
    /// After the bus may have missed messages or read markers: a per-chat
    /// socket catches up when the store holds messages from its `next_seq`
    /// on, then tells the read markers that moved; a user socket catches up
    /// every chat, or closes with 4009 (see the module note).
    pub(super) async fn resync(&mut self) -> Result<(), End> {
        let Some(chat) = self.cursors.only_chat() else {
            return self.resync_every_chat().await;
        };
        let access = self.chat_now(chat).await?;
        // `i64::MAX` when the chat is gone: the message read then tells.
        let stored_through = access.map_or(i64::MAX, |access| access.last_seq);
        if stored_through >= self.next_seq(chat) {
            self.replay_until(chat, stored_through).await?;
        }
        let moved = access.is_some_and(|access| {
            self.cursors
                .markers_moved(chat, self.user_id, access.markers())
        });
        if moved {
            self.tell_read_markers(chat).await?;
        }
        self.state.metrics.ws_resyncs.inc();
        Ok(())
    }

    /// A per-chat socket's chat when its opening has work to do (see
    /// [`Self::open_chat`]): most connects have none, and skip its boxed
    /// future.
    pub(super) fn chat_to_open(&self, stored_through: i64) -> Option<i64> {
        let chat = self.cursors.only_chat()?;
        let behind = self.next_seq(chat) <= stored_through;
        let resumed = self.cursors.get(chat).is_some_and(|c| c.has(RESUMED));
        (behind || resumed).then_some(chat)
    }

    /// A per-chat socket's opening: the messages it missed when it resumes
    /// from before `stored_through` (its chat's `last_seq` at the
    /// handshake), then, when it resumed at all, the read markers past what
    /// those messages told (its client may have missed their moves).
    pub(super) async fn open_chat(&mut self, chat: i64, stored_through: i64) -> Result<(), End> {
        // Nothing to replay when the socket is not behind (`replay_until`
        // sends from `next_seq` through `stored_through`).
        self.replay_until(chat, stored_through).await?;
        if self.cursors.get(chat).is_some_and(|c| c.has(RESUMED)) {
            self.tell_read_markers(chat).await?;
        }
        Ok(())
    }

    /// The chat's row now (`last_seq`, read markers), through the batched
    /// lookups: a resync usually finds nothing new (a new room on a node:
    /// every socket of a connect storm across nodes), and many sockets'
    /// questions cost one statement together (with the handshakes' own),
    /// where a read each cost PostgreSQL a statement per socket. The answer's
    /// statement starts after the question was asked, so it sees every
    /// message and marker committed before the resync.
    async fn chat_now(&self, chat: i64) -> Result<Option<ChatAccess>, End> {
        let (_, access) = self.state.reads.lookups.ask((self.user_id, chat)).await?;
        Ok(access)
    }

    /// Sends each read marker that moved past what the client knows (see
    /// [`super::cursors::KnownMarkers`]), unless it names its owner's own
    /// message, which already told it; asked only when a marker moved, so
    /// the rarer read that says whose message a marker names costs nothing
    /// to the many resyncs that find none. A marker never passes `last_seq`,
    /// so it names a message already delivered (or it is later than the
    /// chat's row read before, and the outbox holds its message).
    async fn tell_read_markers(&mut self, chat: i64) -> Result<(), End> {
        let Some(progress) = self.state.reads.progress.ask(chat).await? else {
            return Ok(());
        };
        let access = &progress.access;
        let me = self.user_id;
        for at in 0..2 {
            if progress.marker_at_own_message[at] {
                let owner = access.participants[at];
                self.cursors
                    .raise_known_marker(chat, me, owner, access.read_seqs[at]);
            }
        }
        let moved = self.cursors.markers_to_tell(chat, me, access.markers());
        for &(user, seq) in &moved {
            self.writer.text(&read_event(chat, user, seq)).await?;
        }
        if !moved.is_empty() {
            self.writer.flush().await?;
        }
        Ok(())
    }

    /// A user socket's resync (see the module note).
    async fn resync_every_chat(&mut self) -> Result<(), End> {
        if self.holding {
            return Err(End::Closed(close::RESYNC));
        }
        // With no position in any chat, the first chat that holds a message
        // closes the socket: one probe finds it, where the standings read
        // every chat (an outage has every such socket of a node ask at once).
        if !self.cursors.any_placed() && self.state.reads.messaged_users.ask(self.user_id).await? {
            return Err(End::Closed(close::RESYNC));
        }
        let read = StandingsRead {
            user: self.user_id,
            created_since: self.ready_at,
            most: self.cursors.len().saturating_add(UNHEARD_NEW_CHATS),
        };
        let mut standings = self.state.reads.standings.ask(read).await?;
        // More than it can use: a chat with messages it has no cursor in, or
        // more new chats than it could have missed; which ones is unknown.
        if standings.len() > read.most
            || !standings
                .iter()
                .all(|chat| self.knows_where_it_stands(chat))
        {
            return Err(End::Closed(close::RESYNC));
        }
        // Oldest chat first: no order across chats is promised, but a
        // repeatable one is easier to follow.
        standings.sort_unstable_by_key(|chat| chat.chat);
        for chat in &standings {
            self.catch_up(chat).await?;
        }
        self.writer.flush().await?;
        self.state.metrics.ws_resyncs.inc();
        Ok(())
    }

    /// Whether the socket knows which of `chat`'s messages its client still
    /// needs: all after its placed cursor, or none (the chat holds none).
    fn knows_where_it_stands(&self, chat: &ChatStanding) -> bool {
        chat.last_seq == 0 || self.cursors.get(chat.chat).is_some_and(|c| c.has(PLACED))
    }

    /// One chat of a user socket's resync: its messages through `last_seq`
    /// and the read markers its client does not know, or, for an empty chat the socket never heard of
    /// and created after `ready`, its `chat` event.
    async fn catch_up(&mut self, chat: &ChatStanding) -> Result<(), End> {
        let me = self.user_id;
        if self.cursors.get(chat.chat).is_none() {
            // Empty (one with messages and no cursor closed the socket), so
            // created since `ready`: the standings leave older empty chats out.
            if self.learn_chat(chat.chat, chat.peer) {
                self.announce_missed_chat(chat.chat).await?;
            }
            return Ok(());
        }
        if let Some(cursor) = self.cursors.get_mut(chat.chat) {
            // One placed by a live message has not learned it.
            cursor.peer = chat.peer;
        }
        if chat.last_seq >= self.next_seq(chat.chat) {
            Box::pin(self.replay_until(chat.chat, chat.last_seq)).await?;
        }
        let stored = [(me, chat.read_seq), (chat.peer, chat.peer_read_seq)];
        for (user, seq) in stored {
            if names_own_last_message(chat, user, seq) {
                self.cursors.raise_known_marker(chat.chat, me, user, seq);
            }
        }
        for (user, seq) in self.cursors.markers_to_tell(chat.chat, me, stored) {
            self.writer.text(&read_event(chat.chat, user, seq)).await?;
        }
        Ok(())
    }

    /// The `chat` event of a chat created while the bus was away (rare: the
    /// standings hold no participants' names, so the chat is read whole).
    async fn announce_missed_chat(&mut self, chat: i64) -> Result<(), End> {
        if let Some(chat) = self.state.store.chat(chat, self.user_id).await? {
            self.writer.text(&chat_event(&chat)).await?;
        }
        Ok(())
    }
}

/// Whether `user`'s marker at `seq` is at the chat's last message, which
/// `user` sent: sending moved it there, and that message (delivered or
/// replayed) told the client.
fn names_own_last_message(chat: &ChatStanding, user: i64, seq: i64) -> bool {
    seq == chat.last_seq && chat.last_sender == user
}
