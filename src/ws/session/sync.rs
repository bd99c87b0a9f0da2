//! A user socket's `sync`: for each chat it names, every stored message after
//! the client's `after_seq`, then live ones (the outbox holds them meanwhile).
//! Where the named chats stand is read in one statement, batched with other
//! sockets' syncs (a reconnect storm has every user socket sync at once), and
//! started after the socket joined its user's room, so the replay and the
//! outbox meet with no gap;
//! the cursor then drops what the replay already sent. A chat the user is not
//! in, or one this socket has already delivered, gets an `error` naming it;
//! the rest proceed. A socket's later syncs are rate limited per user (each
//! reads where up to 1,000 chats stand): one over the limit gets
//! `rate_limited` and changes nothing, so its client retries it later.

use super::client_events::EventHandler;
use super::cursors::{Cursor, ANNOUNCED, DELIVERED, PLACED};
use super::live::Session;
use super::End;
use crate::delivery::events::EventError;
use crate::store::{ChatPosition, PositionsRead};

impl Session<'_> {
    /// Acts on a `sync`; the first one also starts delivery from the outbox.
    pub(super) async fn sync(
        &mut self,
        chats: Vec<(i64, i64)>,
        events: &mut EventHandler<'_>,
    ) -> Result<(), End> {
        if !self.cursors.all_chats() {
            let error = EventError::new("unknown_type", "sync is for the user socket (/ws/).");
            events.refuse(error);
            return Ok(());
        }
        // A socket's first sync, which starts its delivery, is always served:
        // a client that reconnects often is never left silent.
        if !self.holding {
            if let Err(wait) = self.state.limiters.syncs.check_user(self.user_id) {
                self.state.metrics.rate_limited.inc();
                let detail = format!("Too many syncs; retry in {} ms.", wait.as_millis().max(1));
                events.refuse(EventError::new("rate_limited", detail));
                return Ok(());
            }
        }
        self.holding = false;
        if chats.is_empty() {
            return Ok(());
        }
        let read = PositionsRead {
            user: self.user_id,
            chats: chats.iter().map(|(chat, _)| *chat).collect(),
        };
        let mut positions = self.state.reads.positions.ask(read).await?;
        positions.sort_unstable_by_key(|position| position.chat);
        self.cursors.make_room(positions.len());
        let mut outsiders = Vec::new();
        for (chat, after_seq) in chats {
            let found = positions.binary_search_by_key(&chat, |p| p.chat);
            match found {
                Ok(at) => self.resume(positions[at], after_seq, events).await?,
                Err(_) => outsiders.push(chat),
            }
        }
        // Asked together, so the batched lookups answer them in one statement
        // or a few, however many a sync names.
        let refusals = outsiders
            .into_iter()
            .map(|chat| events.outsider_error(chat));
        for refusal in futures_util::future::join_all(refusals).await {
            events.refuse(refusal);
        }
        Ok(())
    }

    /// Resumes one of the user's chats after `after_seq`, unless this socket
    /// already delivered some of it.
    async fn resume(
        &mut self,
        position: ChatPosition,
        after_seq: i64,
        events: &mut EventHandler<'_>,
    ) -> Result<(), End> {
        let chat = position.chat;
        // A cursor past the chat's end resumes from the end (see the per-chat
        // socket's `after_seq`): the position is read on the primary, so it
        // holds every message the client was sent.
        let next_seq = after_seq.min(position.last_seq).saturating_add(1);
        match self.cursors.get_mut(chat) {
            Some(cursor) if cursor.has(DELIVERED) => {
                let detail = "This chat is already live on this socket; sync names only chats \
                              of which it has delivered nothing.";
                events.refuse(EventError::new("already_live", detail).in_chat(chat));
                return Ok(());
            }
            Some(cursor) => {
                cursor.next_seq = next_seq;
                cursor.peer = position.peer;
                cursor.flags |= PLACED | ANNOUNCED;
            }
            None => {
                self.cursors.add(Cursor::new(
                    chat,
                    next_seq,
                    position.peer,
                    PLACED | ANNOUNCED,
                ));
            }
        }
        if after_seq < position.last_seq {
            self.replay_until(chat, position.last_seq).await?;
        }
        Ok(())
    }
}
