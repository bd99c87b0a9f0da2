//! Sends held behind a refused one, so that no send is stored ahead of one
//! its client resends.
//!
//! A client pipelines its sends: when one is refused, later sends from the
//! same socket may be on their way, and the cause may be gone by the time they
//! arrive. Stored, they would take `seq`s ahead of the refused one, which its
//! client resends: a reorder. So later sends wait behind a [`Hold`] until the
//! refused one comes back (its client id) or, for a client that does not
//! resend it, until [`HOLD_GRACE`] past its retry time.
//!
//! Two places refuse sends, and both hold with this type:
//! - the session, before a send reaches the writer (over the send rate, or
//!   its chat could not be read): one hold for the whole socket;
//! - the writer's lane, after its batch was not stored (the database stayed
//!   away past `DB_RETRY_SECS`, or refused the batch): [`SendHolds`], one
//!   hold per socket and chat, since every send of a chat passes through one
//!   lane in the order its socket sent it, and order is per chat.

use crate::delivery::rooms::ConnId;
use std::collections::HashMap;
use std::time::{Duration, Instant};

/// How long past a refused send's retry time later sends stay held when it
/// does not come back: a grace for a slow client.
pub const HOLD_GRACE: Duration = Duration::from_secs(2);

/// The wait a refusal that states none implies: what a client takes by
/// default (the TypeScript client's 1 s).
pub const DEFAULT_RETRY: Duration = Duration::from_secs(1);

/// A refused send that later ones wait behind.
pub struct Hold {
    /// The refused send's client id, if it had one.
    awaiting: Option<String>,
    /// When the refused send may be retried.
    retry_at: Instant,
}

impl Hold {
    pub fn new(client_id: Option<&str>, retry_at: Instant) -> Self {
        Hold {
            awaiting: client_id.map(str::to_owned),
            retry_at,
        }
    }

    /// When the refused send may be retried.
    pub fn retry_at(&self) -> Instant {
        self.retry_at
    }

    /// Whether the hold still runs at `now` for a send with no way to lift it.
    pub fn running(&self, now: Instant) -> bool {
        now < self.retry_at + HOLD_GRACE
    }

    /// Whether a send with `client_id`, arriving at `now`, lifts the hold: it
    /// is the refused send come back, or the hold ran out.
    pub fn lifted_by(&self, client_id: Option<&str>, now: Instant) -> bool {
        let came_back = self.awaiting.is_some() && self.awaiting.as_deref() == client_id;
        came_back || !self.running(now)
    }
}

/// The holds of one writer lane, per socket and chat.
#[derive(Default)]
pub(super) struct SendHolds {
    held: HashMap<(ConnId, i64), Hold>,
}

impl SendHolds {
    /// Whether no send is held (the common case: nothing to check).
    pub(super) fn is_empty(&self) -> bool {
        self.held.is_empty()
    }

    /// Drops the holds that ran out (a socket that went away leaves its own
    /// behind), so the map empties soon after the last failure.
    pub(super) fn forget_expired(&mut self) {
        let now = Instant::now();
        self.held.retain(|_, hold| hold.running(now));
    }

    /// Notes a send from socket `conn` to `chat` that was not stored; its
    /// client retries after [`DEFAULT_RETRY`]. A hold already there keeps
    /// waiting for its own send (the earliest failed one), from now.
    pub(super) fn failed(&mut self, conn: ConnId, chat: i64, client_id: Option<&str>) {
        let retry_at = Instant::now() + DEFAULT_RETRY;
        let hold = self
            .held
            .entry((conn, chat))
            .or_insert_with(|| Hold::new(client_id, retry_at));
        hold.retry_at = retry_at;
    }

    /// Whether a send from `conn` to `chat` (with `client_id`) must be refused
    /// now. The awaited send coming back, or the hold running out, lifts it.
    pub(super) fn holds_back(&mut self, conn: ConnId, chat: i64, client_id: Option<&str>) -> bool {
        let Some(hold) = self.held.get(&(conn, chat)) else {
            return false;
        };
        if hold.lifted_by(client_id, Instant::now()) {
            self.held.remove(&(conn, chat));
            return false;
        }
        true
    }
}

#[cfg(test)]
mod tests {
    use super::{Hold, SendHolds, DEFAULT_RETRY, HOLD_GRACE};
    use std::time::Instant;

    #[test]
    fn a_hold_lifts_for_its_own_send_or_after_the_grace() {
        let now = Instant::now();
        let hold = Hold::new(Some("a"), now + DEFAULT_RETRY);
        assert!(!hold.lifted_by(Some("b"), now), "another send waits");
        assert!(
            !hold.lifted_by(None, now + DEFAULT_RETRY),
            "past the wait, in the grace"
        );
        assert!(hold.lifted_by(Some("a"), now), "a came back");
        assert!(
            hold.lifted_by(None, now + DEFAULT_RETRY + HOLD_GRACE),
            "ran out"
        );
        let anonymous = Hold::new(None, now);
        assert!(!anonymous.lifted_by(None, now), "None is not a client id");
    }

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
        holds.held.get_mut(&(1, 10)).unwrap().retry_at = Instant::now() - HOLD_GRACE;
        holds.forget_expired();
        assert!(holds.is_empty(), "run out, and forgotten");
        assert!(!holds.holds_back(1, 10, Some("b")));
    }
}
