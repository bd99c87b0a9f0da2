//! What the session does with each client event: a send goes to the writer
//! (under the per-user send rate; a flood of throttled sends closes the
//! socket), a read marker to the coalescer, `typing` to the chat's other user
//! (throttled per user and chat), a `sync` back to the session, a `ping` a
//! `pong`, and a bad event gets an `error` event. On a user socket each event
//! names its chat, which must be one of the user's; a per-chat socket's events
//! are about its chat.

use super::cursors::{Cursor, Cursors};
use super::send_gate::{SendGate, Throttled, UNAVAILABLE};
use crate::app::AppState;
use crate::delivery::events::{error_event, pong_event, EventError};
use crate::delivery::pipeline::{PipelineClosed, Submitted};
use crate::delivery::rooms::{peer_of, Audience, Outgoing, Subscriber};
use crate::input::message::MessageInput;
use crate::json;
use crate::model::User;
use crate::ws::protocol::{self, close, ClientEvent};
use std::sync::Arc;

/// Frames up to this size leave the parser's buffers for the next event (a
/// socket's sends and read markers); a larger one frees them once parsed.
const PARSER_BUFFERS_KEPT_UP_TO: usize = 4096;

/// Acts on decoded client events.
pub(super) struct EventHandler<'a> {
    pub(super) state: &'a AppState,
    pub(super) me: &'a Subscriber,
    pub(super) user: &'a Arc<User>,
    /// Keeps its buffers while the socket sends; freed at each ping.
    pub(super) parser: json::Parser,
    /// The send rate and refused sends' holds.
    pub(super) sends: SendGate,
    /// Set when an answer of this socket's own (an `error`, a `pong`) was
    /// queued: the session writes it before it reads the next event, which
    /// may take long to act on (a lookup while the database is away).
    pub(super) answered: bool,
}

/// Why an event's chat could not be resolved.
enum Unresolved {
    /// Refused for good: no chat named, or not one of the user's.
    Refused(EventError),
    /// The chat could not be read now; the event may be retried.
    Unreadable(i64),
}

impl From<Unresolved> for EventError {
    fn from(unresolved: Unresolved) -> Self {
        match unresolved {
            Unresolved::Refused(error) => error,
            Unresolved::Unreadable(chat) => unreadable(chat),
        }
    }
}

fn no_such_chat(chat: i64) -> EventError {
    EventError::new("not_found", "No such chat.").in_chat(chat)
}

fn not_a_participant(chat: i64) -> EventError {
    EventError::new("forbidden", "You are not a participant of this chat.").in_chat(chat)
}

fn unreadable(chat: i64) -> EventError {
    EventError::new(UNAVAILABLE, "The chat could not be read; retry.").in_chat(chat)
}

/// What the session must do after an event.
pub(super) enum Reaction {
    Done,
    /// Resume these chats: `(chat, after_seq)`.
    Sync(Vec<(i64, i64)>),
    Close(u16),
}

impl EventHandler<'_> {
    /// Acts on one event.
    pub(super) async fn handle(&mut self, bytes: &mut [u8], cursors: &mut Cursors) -> Reaction {
        let frame_len = bytes.len();
        let event = protocol::decode(&mut self.parser, bytes, &self.state.config.limits);
        if frees_parser_buffers(frame_len, &event) {
            self.parser.release();
        }
        let outcome = match event {
            Ok(ClientEvent::Sync { chats }) => return Reaction::Sync(chats),
            Ok(ClientEvent::Ping) => {
                self.me.offer(Outgoing::Event(pong_event()));
                self.answered = true;
                return Reaction::Done;
            }
            Ok(ClientEvent::Send { chat, input }) => return self.send(chat, input, cursors).await,
            Ok(ClientEvent::Read { chat, seq }) => match self.resolve(chat, cursors).await {
                Ok(chat) => self.read(chat, seq),
                Err(unresolved) => Err(unresolved.into()),
            },
            Ok(ClientEvent::Typing { chat }) => match self.resolve(chat, cursors).await {
                Ok(chat) => {
                    self.typing(chat).await;
                    Ok(())
                }
                Err(unresolved) => Err(unresolved.into()),
            },
            Err(error) => Err(error),
        };
        if let Err(error) = outcome {
            self.refuse(error);
        }
        Reaction::Done
    }

    /// The chat an event is about and its participants: a per-chat socket's
    /// own, or the one a user socket's event names, if the user is in it (the
    /// other participant is then kept in the chat's cursor).
    async fn resolve(
        &self,
        named: Option<i64>,
        cursors: &mut Cursors,
    ) -> Result<(i64, Audience), Unresolved> {
        let me = self.user.id;
        if let Some(chat) = cursors.only_chat() {
            let peer = cursors.get(chat).map_or(0, |c| c.peer);
            return Ok((chat, [me, peer]));
        }
        let Some(chat) = named else {
            return Err(Unresolved::Refused(EventError {
                fields: Some(vec![(
                    "chat".into(),
                    vec!["This field is required.".into()],
                )]),
                ..EventError::new("invalid_fields", "chat: This field is required.")
            }));
        };
        if let Some(cursor) = cursors.get(chat).filter(|c| c.peer != 0) {
            return Ok((chat, [me, cursor.peer]));
        }
        match self.state.reads.lookups.ask((me, chat)).await {
            Ok((_, Some(access))) if access.includes(me) => {
                remember_peer(cursors, chat, peer_of(access.participants, me));
                Ok((chat, access.participants))
            }
            Ok((_, None)) => Err(Unresolved::Refused(no_such_chat(chat))),
            Ok((_, Some(_))) => Err(Unresolved::Refused(not_a_participant(chat))),
            Err(_) => Err(Unresolved::Unreadable(chat)),
        }
    }

    /// The error for a chat the user is not in: `not_found` without the
    /// chat, `forbidden` for someone else's.
    pub(super) async fn outsider_error(&self, chat: i64) -> EventError {
        match self.state.reads.lookups.ask((self.user.id, chat)).await {
            Ok((_, None)) => no_such_chat(chat),
            Ok((_, Some(_))) => not_a_participant(chat),
            Err(_) => unreadable(chat),
        }
    }

    /// Queues a message unless an earlier send on this socket is held back
    /// (see [`SendGate`]; checked first, so a held send costs no lookup), its
    /// chat cannot be resolved, or the user is over the send rate; a flood of
    /// throttled sends closes the socket.
    async fn send(
        &mut self,
        named: Option<i64>,
        input: MessageInput,
        cursors: &mut Cursors,
    ) -> Reaction {
        // A send that names no chat on a user socket gets its field error.
        let target = named.or(cursors.only_chat());
        let client_id = input.client_msg_id.as_deref();
        if let Some(throttled) = target.and_then(|_| self.sends.held_back(client_id)) {
            return self.refuse_throttled(throttled, target, input.client_msg_id);
        }
        let (chat, audience) = match self.resolve(named, cursors).await {
            Ok(resolved) => resolved,
            Err(unresolved) => {
                if let Unresolved::Unreadable(_) = unresolved {
                    self.sends.hold_behind_unreadable(client_id);
                }
                self.refuse(EventError {
                    client_msg_id: input.client_msg_id,
                    ..unresolved.into()
                });
                return Reaction::Done;
            }
        };
        let verdict = self.state.limiters.sends.check_user(self.user.id);
        if let Err(throttled) = self.sends.within_rate(verdict, client_id) {
            return self.refuse_throttled(throttled, Some(chat), input.client_msg_id);
        }
        self.sends.passed();
        let message = input.into_message(chat, self.user.clone());
        let pipeline = &self.state.delivery.pipeline;
        let refused = match pipeline.send_from_socket(message, audience, self.me.clone()) {
            Submitted::Queued => return Reaction::Done,
            Submitted::Closed(client_msg_id) => client_msg_id,
            Submitted::Full(waiting) => match waiting.await {
                Ok(()) => return Reaction::Done,
                Err(PipelineClosed(client_msg_id)) => client_msg_id,
            },
        };
        self.refuse(EventError {
            client_msg_id: refused,
            ..EventError::new(UNAVAILABLE, "The server is shutting down.").in_chat(chat)
        });
        Reaction::Done
    }

    /// Refuses a throttled send (see [`Throttled`]); a flood closes the socket.
    fn refuse_throttled(
        &mut self,
        throttled: Throttled,
        chat: Option<i64>,
        client_msg_id: Option<String>,
    ) -> Reaction {
        if throttled.rate_limited() {
            self.state.metrics.rate_limited.inc();
        }
        let close_after = self.state.config.limits.flood_close_after;
        if self.sends.flooded(&throttled, close_after) {
            return Reaction::Close(close::POLICY_VIOLATION);
        }
        self.refuse(EventError {
            client_msg_id,
            chat,
            ..throttled.error()
        });
        Reaction::Done
    }

    /// Hands the marker to the coalescing task (see [`crate::delivery::read_markers`]).
    fn read(&self, chat: (i64, Audience), seq: i64) -> Result<(), EventError> {
        if seq < 1 {
            let detail = "seq: Ensure this value is greater than or equal to 1.";
            return Err(EventError::new("invalid_fields", detail).in_chat(chat.0));
        }
        let markers = &self.state.delivery.read_markers;
        markers.mark(chat, self.user.id, seq, self.me);
        Ok(())
    }

    /// Forwards `typing` to the chat's other user, at most once per
    /// `WS_TYPING_INTERVAL_MS` per user and chat, whatever its sockets send.
    async fn typing(&self, (chat, audience): (i64, Audience)) {
        let user = self.user.id;
        if self.state.limiters.typing.check((user, chat)).is_err() {
            return;
        }
        if peer_of(audience, user) == 0 {
            return;
        }
        let notices = &self.state.delivery.notices;
        notices.typing(chat, audience, user).await;
    }

    /// Sends the client an `error` event; the socket stays open.
    pub(super) fn refuse(&mut self, error: EventError) {
        self.me.offer(Outgoing::Event(error_event(&error)));
        self.answered = true;
    }
}

/// Keeps a user socket's chat's other participant in its cursor (a cursor
/// that places nothing yet: its first message will).
fn remember_peer(cursors: &mut Cursors, chat: i64, peer: i64) {
    match cursors.get_mut(chat) {
        Some(cursor) => cursor.peer = peer,
        None => {
            cursors.add(Cursor::new(chat, 1, peer, 0));
        }
    }
}

/// Whether the parser's buffers go as soon as `event` is parsed from a frame
/// of `frame_len` bytes, rather than at the next ping: when they grew to a
/// rare frame's size (a `sync`, a long message). What the event then keeps
/// (a sync's cursors) may take their place, rather than sit beside a hole
/// the allocator cannot hand back (BENCHMARKS.md: a socket naming 100 chats
/// held twice its live memory).
fn frees_parser_buffers(frame_len: usize, event: &Result<ClientEvent, EventError>) -> bool {
    frame_len > PARSER_BUFFERS_KEPT_UP_TO || matches!(event, Ok(ClientEvent::Sync { .. }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Config;

    fn decoded(text: &str) -> (usize, Result<ClientEvent, EventError>) {
        let vars = [("SECRET_KEY".to_string(), "k".to_string())];
        let limits = Config::from_vars(vars.into_iter().collect())
            .unwrap()
            .limits;
        let mut bytes = text.as_bytes().to_vec();
        let event = protocol::decode(&mut json::Parser::default(), &mut bytes, &limits);
        (text.len(), event)
    }

    #[test]
    fn a_sync_or_a_large_frame_frees_the_parsers_buffers_and_a_small_event_keeps_them() {
        let (len, sync) = decoded(r#"{"type":"sync","chats":{"1":0}}"#);
        assert!(frees_parser_buffers(len, &sync), "a sync, however small");
        let send = r#"{"type":"message.send","chat":1,"content":"hi"}"#;
        let (len, small) = decoded(send);
        assert!(!frees_parser_buffers(len, &small));
        let long = format!(
            r#"{{"type":"message.send","chat":1,"content":"{}"}}"#,
            "x".repeat(5000)
        );
        let (len, large) = decoded(&long);
        assert!(large.is_ok());
        assert!(frees_parser_buffers(len, &large));
    }
}
