//! The session's loop: client events in, outbox frames and pings out, one
//! timer for both deadlines, and the close (with a linger, so the client reads
//! the close code rather than a reset).

use super::client_events::{EventHandler, Reaction};
use super::cursors::Cursors;
use super::deadlines::{token_deadline, Deadlines};
use super::{End, Opening};
use crate::app::AppState;
use crate::delivery::events::ready_event;
use crate::delivery::rooms::{Alarm, Outbox, Taken};
use crate::model::Timestamp;
use crate::ws::protocol::close;
use crate::ws::transport::{FrameWriter, Inbound, MessageReader, ReadError};
use std::time::Duration;

/// After the server's close frame, how long the client's own close (or the end
/// of its stream) is awaited while what it still sends is read and dropped.
const CLOSE_LINGER: Duration = Duration::from_secs(2);

/// The session's state: the socket's write half and where delivery stands.
pub(super) struct Session<'a> {
    pub(super) state: &'a AppState,
    pub(super) writer: FrameWriter<'a>,
    pub(super) user_id: i64,
    /// Where the socket stands in each chat (see [`super::order`]).
    pub(super) cursors: Cursors,
    /// A user socket before its first `sync`: the outbox is not read.
    pub(super) holding: bool,
    /// When a user socket sent `ready`, in microseconds since the Unix epoch.
    pub(super) ready_at: i64,
}

impl Session<'_> {
    pub(super) async fn serve(
        &mut self,
        opening: Opening,
        reader: &mut MessageReader<'_>,
        outbox: &Outbox,
        events: &mut EventHandler<'_>,
    ) -> End {
        let result = async {
            if let Some(chat) = self.chat_to_open(opening.stored_through) {
                Box::pin(self.open_chat(chat, opening.stored_through)).await?;
            }
            if self.cursors.all_chats() {
                Box::pin(self.ready(outbox)).await?;
            }
            self.live(opening.token_expires_at, reader, outbox, events)
                .await
        }
        .await;
        let code = match result {
            Ok(code) | Err(End::Closed(code)) => code,
            // A read the session needed (a catch-up, a `sync`) failed: the
            // database is away. The client is told to come back (1013), not
            // dropped without a close code; frames are whole between reads.
            // (Logged here, not held: the error would add its size to every
            // session's task.)
            Err(End::Store(error)) => {
                tracing::warn!(%error, "a read the session needed failed");
                close::TRY_AGAIN_LATER
            }
            Err(other) => return other,
        };
        if self.writer.close(code, reason(code)).await.is_ok() && code != close::NORMAL {
            linger(reader).await;
        }
        End::Closed(code)
    }

    /// A user socket's `ready`, once the bus follows its user (at once on
    /// one node): from then on every event reaches the outbox. A bus that
    /// does not confirm within the idle timeout closes the socket (1013, try
    /// again later).
    async fn ready(&mut self, outbox: &Outbox) -> Result<(), End> {
        let idle = self.state.config.realtime.idle_timeout;
        match tokio::time::timeout(idle, outbox.followed()).await {
            Ok(Ok(())) => {}
            Ok(Err(alarm)) => return Err(End::Closed(close_code(alarm))),
            Err(_) => return Err(End::Closed(close::TRY_AGAIN_LATER)),
        }
        self.ready_at = Timestamp::now().unix_micros();
        self.writer.text(&ready_event(self.user_id)).await?;
        self.writer.flush().await?;
        Ok(())
    }

    /// Until the session must close: client events in, outbox frames and pings
    /// out. A read in progress is never dropped half-way (see the module note).
    async fn live(
        &mut self,
        token_expires_at: i64,
        reader: &mut MessageReader<'_>,
        outbox: &Outbox,
        events: &mut EventHandler<'_>,
    ) -> Result<u16, End> {
        let realtime = &self.state.config.realtime;
        let mut ping = tokio::time::interval(realtime.ping_interval);
        ping.tick().await;
        let mut limits = Deadlines {
            idle: realtime.idle_timeout,
            heard_at: tokio::time::Instant::now(),
            token_expires: token_deadline(token_expires_at),
        };
        let deadline = tokio::time::sleep_until(limits.next());
        tokio::pin!(deadline);
        // Writing a burst, pinging and acting on a client event are boxed below:
        // each is one allocation per wake-up, where their futures held inline
        // would be part of every idle session's task.
        loop {
            // A client that keeps sending keeps the read branch ready, which
            // the select below polls before the outbox: check here too, so such
            // a socket is closed as soon as it misses a frame, or at once when
            // the server goes away (what is queued is resent on resume).
            if let Some(alarm) = outbox.alarm() {
                return Ok(close_code(alarm));
            }
            let read = reader.next();
            tokio::pin!(read);
            let inbound = loop {
                tokio::select! {
                    biased;
                    () = &mut deadline => match limits.passed() {
                        Some(code) => return Ok(code),
                        None => deadline.as_mut().reset(limits.next()),
                    },
                    inbound = &mut read => break inbound,
                    taken = outbox.take_unless_holding(self.holding) => match taken {
                        Taken::Item(item) => Box::pin(self.write_burst(item, outbox)).await?,
                        Taken::Alarm(alarm) => return Ok(close_code(alarm)),
                    },
                    _ = ping.tick() => {
                        events.parser.release();
                        Box::pin(self.writer.ping()).await?
                    }
                }
            };
            limits.heard_at = tokio::time::Instant::now();
            if let Some(code) = Box::pin(self.act_on(inbound, events)).await? {
                return Ok(code);
            }
            // The read branch comes first in the select above: an answer to
            // this event goes out now, not after the next event is acted on.
            if std::mem::take(&mut events.answered) && !self.holding {
                if let Some(item) = outbox.try_take() {
                    Box::pin(self.write_burst(item, outbox)).await?;
                }
            }
        }
    }

    /// Acts on what the client sent; `Some(code)` when the socket must close.
    async fn act_on(
        &mut self,
        inbound: Result<Inbound, ReadError>,
        events: &mut EventHandler<'_>,
    ) -> Result<Option<u16>, End> {
        let code = match inbound {
            Ok(Inbound::Text(mut bytes)) => {
                match events.handle(&mut bytes, &mut self.cursors).await {
                    Reaction::Done => return Ok(None),
                    Reaction::Sync(chats) => {
                        Box::pin(self.sync(chats, events)).await?;
                        return Ok(None);
                    }
                    Reaction::Close(code) => code,
                }
            }
            Ok(Inbound::Ping(payload)) => {
                self.writer.pong(payload).await?;
                self.writer.flush().await?;
                return Ok(None);
            }
            Ok(Inbound::Pong) => return Ok(None),
            Ok(Inbound::Binary) => close::UNSUPPORTED_DATA,
            Ok(Inbound::Close) => close::NORMAL,
            Err(ReadError::TooBig) => close::MESSAGE_TOO_BIG,
            Err(ReadError::InvalidUtf8) => close::INVALID_PAYLOAD,
            Err(ReadError::Protocol) => close::PROTOCOL_ERROR,
            Err(ReadError::Closed) => return Err(End::ConnectionLost),
        };
        Ok(Some(code))
    }
}

/// The close code for an outbox's alarm: overflowed, the server going away,
/// or the user deactivated.
fn close_code(alarm: Alarm) -> u16 {
    match alarm {
        Alarm::Overflowed => close::SLOW_CONSUMER,
        Alarm::GoingAway => close::GOING_AWAY,
        Alarm::SignedOut => close::USER_INACTIVE,
    }
}

/// After the server's close frame: reads and drops what the client still sends,
/// until its close, the end of its stream or [`CLOSE_LINGER`]. Closing a socket
/// with unread data makes the kernel send a reset, and a client that is sent a
/// reset loses the close frame still in its receive buffer (it saw 1006, not the
/// code). A client-initiated close (`NORMAL`) needs none of this.
async fn linger(reader: &mut MessageReader<'_>) {
    let drain = async {
        while let Ok(inbound) = reader.next().await {
            if matches!(inbound, Inbound::Close) {
                break;
            }
        }
    };
    let _ = tokio::time::timeout(CLOSE_LINGER, drain).await;
}

fn reason(code: u16) -> &'static str {
    match code {
        close::GOING_AWAY => "server shutting down; reconnect with after_seq",
        close::SLOW_CONSUMER => "too slow to keep up; reconnect with after_seq",
        close::RESYNC => "events may have been missed; reconnect and sync",
        close::TOKEN_EXPIRED => "token expired; reconnect with a fresh token and after_seq",
        close::IDLE_TIMEOUT => "idle timeout",
        close::USER_INACTIVE => "User is inactive",
        close::TRY_AGAIN_LATER => "the server is not ready; try again later",
        close::MESSAGE_TOO_BIG => "message too big",
        close::UNSUPPORTED_DATA => "binary frames are not supported",
        close::INVALID_PAYLOAD => "text frames must be UTF-8",
        close::PROTOCOL_ERROR => "protocol error",
        close::POLICY_VIOLATION => "too many throttled events",
        _ => "",
    }
}
