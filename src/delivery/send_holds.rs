//! Sends held behind one the writer could not store, per socket and chat.
//!
//! A socket pipelines its sends, so when a batch fails (the database stayed
//! away past `DB_RETRY_SECS`, or refused the batch), later sends from the same
//! socket to the same chat may already be queued in the lane, and the
//! database may be back by the time their batch runs. Stored, they would
//! take `seq`s ahead of the failed one, which its client resends: a reorder.
//! So after a socket's send fails, the lane refuses that socket's later sends
//! in that chat until the failed one comes back (its client id) or, for a
//! client that does not resend it, until [`HOLD_FOR`] has passed. Order is per
//! chat, so other chats' sends go on.
//!
//! A lane owns one of these: every send of a chat passes through one lane,
//! in the order its socket sent it.

use crate::delivery::rooms::ConnId;
use std::collections::HashMap;
use std::time::{Duration, Instant};

/// How long later sends stay refused when the failed one does not come back:
/// the client's wait before it resends (a refusal that states none is retried
/// after 1 s) and a grace of 2 s for a slow client.
pub(super) const HOLD_FOR: Duration = Duration::from_secs(3);

/// The holds of one lane.
#[derive(Default)]
pub(super) struct SendHolds {
    held: HashMap<(ConnId, i64), Hold>,
}

struct Hold {
    /// The failed send's client id, if it had one.
    awaiting: Option<String>,
    until: Instant,
}

impl SendHolds {
    /// Whether no send is held (the common case: nothing to check).
    pub(super) fn is_empty(&self) -> bool {
        self.held.is_empty()
    }

    /// Drops the holds that ran out (a socket that went away leaves its own
    /// behind), so the map empties within [`HOLD_FOR`] of the last failure.
    pub(super) fn forget_expired(&mut self) {
        let now = Instant::now();
        self.held.retain(|_, hold| hold.until > now);
    }

    /// Notes a send from socket `conn` to `chat` that was not stored. A hold
    /// already there keeps waiting for its own send (the earliest failed one),
    /// and lasts from now.
    pub(super) fn failed(&mut self, conn: ConnId, chat: i64, client_id: Option<&str>) {
        let now = Instant::now();
        let hold = self.held.entry((conn, chat)).or_insert_with(|| Hold {
            awaiting: client_id.map(str::to_owned),
            until: now,
        });
        hold.until = now + HOLD_FOR;
    }

    /// Whether a send from `conn` to `chat` (with `client_id`) must be refused
    /// now. The awaited send coming back, or the hold running out, lifts it.
    pub(super) fn holds_back(&mut self, conn: ConnId, chat: i64, client_id: Option<&str>) -> bool {
        let Some(hold) = self.held.get(&(conn, chat)) else {
            return false;
        };
        let came_back = hold.awaiting.is_some() && hold.awaiting.as_deref() == client_id;
        if came_back || Instant::now() >= hold.until {
            self.held.remove(&(conn, chat));
            return false;
        }
        true
    }
}

#[cfg(test)]
mod tests {
    use super::SendHolds;

    #[test]
    fn a_failed_send_holds_its_socket_and_chat_until_it_comes_back() {
        let mut holds = SendHolds::default();
        assert!(!holds.holds_back(1, 10, Some("b")), "nothing failed yet");
        holds.failed(1, 10, Some("a"));
        holds.failed(1, 10, Some("b"));
        assert!(holds.holds_back(1, 10, Some("b")), "waits for a, the first");
        assert!(holds.holds_back(1, 10, None));
        assert!(!holds.holds_back(1, 11, Some("c")), "another chat goes on");
        assert!(
            !holds.holds_back(2, 10, Some("c")),
            "another socket goes on"
        );
        assert!(!holds.holds_back(1, 10, Some("a")), "a came back");
        assert!(!holds.holds_back(1, 10, Some("b")), "and the hold is gone");
        assert!(holds.is_empty());
    }

    #[test]
    fn a_send_without_a_client_id_holds_until_the_time_runs_out() {
        let mut holds = SendHolds::default();
        holds.failed(1, 10, None);
        assert!(holds.holds_back(1, 10, None), "None is not a client id");
        holds.held.get_mut(&(1, 10)).unwrap().until = std::time::Instant::now();
        assert!(!holds.holds_back(1, 10, Some("b")), "run out");
        assert!(holds.is_empty());
    }
}
