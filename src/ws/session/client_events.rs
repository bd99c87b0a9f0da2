//! What the session does with each client event: a send goes to the writer
//! (under the per-user send rate; a flood of throttled sends closes the
//! socket), a read marker to the coalescer, `typing` to the chat's other users
//! (throttled per user and chat), and a bad event gets an `error` event.

use super::SessionSpec;
use crate::app::AppState;
use crate::delivery::events::{error_event, typing_event, EventError};
use crate::delivery::pipeline::Submitted;
use crate::delivery::rooms::{Except, Outgoing, Subscriber};
use crate::json;
use crate::ws::protocol::{self, close, ClientEvent};

/// Acts on decoded client events.
pub(super) struct EventHandler<'a> {
    pub(super) state: &'a AppState,
    pub(super) me: &'a Subscriber,
    /// The chat and user, borrowed from the session's spec.
    pub(super) spec: &'a SessionSpec,
    /// Keeps its buffers while the socket sends; freed at each ping.
    pub(super) parser: json::Parser,
    pub(super) throttled_in_a_row: u32,
}

impl EventHandler<'_> {
    /// Acts on one event; `Some(code)` when the socket must be closed.
    pub(super) async fn handle(&mut self, bytes: &mut [u8]) -> Option<u16> {
        match protocol::decode(&mut self.parser, bytes, &self.state.config.limits) {
            Ok(ClientEvent::Send(input)) => return self.send(input).await,
            Ok(ClientEvent::Read { seq }) => self.read(seq),
            Ok(ClientEvent::Typing) => self.typing().await,
            Err(error) => {
                self.me.offer(Outgoing::Event(error_event(&error)));
            }
        }
        None
    }

    /// Queues a message unless the user is over the send rate; a flood of
    /// throttled sends closes the socket.
    async fn send(&mut self, input: crate::input::message::MessageInput) -> Option<u16> {
        if let Err(wait) = self.state.limiters.sends.check(self.spec.user.id) {
            self.state.metrics.rate_limited.inc();
            self.throttled_in_a_row += 1;
            if self.throttled_in_a_row > self.state.config.limits.flood_close_after {
                return Some(close::POLICY_VIOLATION);
            }
            let detail = format!(
                "Too many messages; retry in {} ms.",
                wait.as_millis().max(1)
            );
            let error = EventError {
                client_msg_id: input.client_msg_id,
                ..EventError::new("rate_limited", detail)
            };
            self.me.offer(Outgoing::Event(error_event(&error)));
            return None;
        }
        self.throttled_in_a_row = 0;
        let message = input.into_message(self.spec.chat_id, self.spec.user.clone());
        let queued = match self
            .state
            .delivery
            .pipeline
            .send_from_socket(message, self.me.clone())
        {
            Submitted::Queued => true,
            Submitted::Closed => false,
            Submitted::Full(waiting) => waiting.await.is_ok(),
        };
        if !queued {
            self.reply_error("unavailable", "The server is shutting down.");
        }
        None
    }

    /// Hands the marker to the coalescing task (see [`crate::delivery::read_markers`]).
    fn read(&mut self, seq: i64) {
        if seq < 1 {
            return self.reply_error(
                "invalid_fields",
                "seq: Ensure this value is greater than or equal to 1.",
            );
        }
        let (chat, user) = (self.spec.chat_id, self.spec.user.id);
        self.state
            .delivery
            .read_markers
            .mark(chat, user, seq, self.me);
    }

    /// Forwards `typing` to the chat's other users, at most once per
    /// `WS_TYPING_INTERVAL_MS` per user and chat, whatever its sockets send.
    async fn typing(&mut self) {
        let (chat, user) = (self.spec.chat_id, self.spec.user.id);
        if self.state.limiters.typing.check((user, chat)).is_err() {
            return;
        }
        let frame = typing_event(user);
        self.state
            .delivery
            .rooms
            .broadcast(chat, frame, Except::User(user))
            .await;
    }

    fn reply_error(&self, code: &'static str, detail: &str) {
        let error = EventError {
            code,
            detail: detail.into(),
            fields: None,
            client_msg_id: None,
        };
        self.me.offer(Outgoing::Event(error_event(&error)));
    }
}
