//! What holds a socket's sends back before they reach the writer: the
//! per-user send rate, and a refused send that later ones wait behind. After
//! a send is refused for the rate, or as `unavailable` (its chat could not be
//! read), every later send on the socket is refused too, the same way, until
//! the refused one comes back or its hold runs out (see
//! [`crate::delivery::send_holds`]). So no send is stored ahead of a refused
//! one that its client resends in order, even when the client learns of the
//! refusal late. A flood of throttled sends closes the socket.

use crate::delivery::events::EventError;
use crate::delivery::send_holds::{Hold, DEFAULT_RETRY};
use std::time::{Duration, Instant};

/// The refusal code of a send that may be retried (`unavailable`).
pub(super) const UNAVAILABLE: &str = "unavailable";

/// How long past a refused send's retry time held sends are still taken for
/// a burst that was on its way: far longer than a burst takes to arrive.
const FLOOD_SLACK: Duration = Duration::from_secs(1);

/// One socket's gate.
#[derive(Default)]
pub(super) struct SendGate {
    /// Throttled sends since the last one let through.
    throttled_in_a_row: u32,
    /// Set when a send is refused (boxed: a socket that is never refused
    /// pays one word for it).
    held: Option<Box<HeldSends>>,
}

struct HeldSends {
    hold: Hold,
    why: HoldReason,
}

/// Why a socket's sends are held.
#[derive(Clone, Copy, PartialEq, Eq)]
enum HoldReason {
    /// The user went over the send rate.
    RateLimited,
    /// A send's chat could not be read.
    Unavailable,
}

/// A send refused for the rate, or held behind a refused one.
pub(super) struct Throttled {
    /// Until the refused send may be retried.
    wait: Duration,
    why: HoldReason,
    /// Whether it counts towards the flood close: a refusal by the limiter,
    /// or a held send that came [`FLOOD_SLACK`] past the refused one's retry
    /// time without it. Held sends before that may have left a pipelining
    /// client (an outbox flushed at once) before the refusal reached it.
    flooding: bool,
}

impl Throttled {
    /// Whether it is about the send rate: refused by the limiter, or held
    /// behind such a refusal.
    pub(super) fn rate_limited(&self) -> bool {
        self.why == HoldReason::RateLimited
    }

    /// The refusal the client gets, with the wait before a retry.
    pub(super) fn error(&self) -> EventError {
        let (code, reason) = match self.why {
            HoldReason::RateLimited => ("rate_limited", "Too many messages"),
            HoldReason::Unavailable => (
                UNAVAILABLE,
                "An earlier message on this socket was not stored; send it again first",
            ),
        };
        let wait = self.wait.as_millis().max(1);
        EventError::new(code, format!("{reason}; retry in {wait} ms."))
    }
}

impl SendGate {
    /// Whether a send (with `client_id`) must wait behind an earlier refused
    /// one; lifts a hold its send came back to, or that ran out.
    #[inline]
    pub(super) fn held_back(&mut self, client_id: Option<&str>) -> Option<Throttled> {
        // The common case (nothing held) is decided inline.
        self.held.as_ref()?;
        self.still_held(client_id)
    }

    #[cold]
    fn still_held(&mut self, client_id: Option<&str>) -> Option<Throttled> {
        let held = self.held.as_ref()?;
        let now = Instant::now();
        if held.hold.lifted_by(client_id, now) {
            self.held = None;
            return None;
        }
        let retry_at = held.hold.retry_at();
        Some(Throttled {
            wait: retry_at.saturating_duration_since(now),
            why: held.why,
            flooding: now >= retry_at + FLOOD_SLACK,
        })
    }

    /// The send rate's verdict (`Err`: the wait it asks for); a refusal holds
    /// later sends.
    pub(super) fn within_rate(
        &mut self,
        verdict: Result<(), Duration>,
        client_id: Option<&str>,
    ) -> Result<(), Throttled> {
        verdict.map_err(|wait| {
            self.hold(client_id, Instant::now() + wait, HoldReason::RateLimited);
            Throttled {
                wait,
                why: HoldReason::RateLimited,
                flooding: true,
            }
        })
    }

    /// Holds later sends behind one refused because its chat could not be
    /// read; a hold still running keeps waiting for its own send.
    pub(super) fn hold_behind_unreadable(&mut self, client_id: Option<&str>) {
        let now = Instant::now();
        if let Some(held) = &self.held {
            if held.hold.running(now) {
                return;
            }
        }
        self.hold(client_id, now + DEFAULT_RETRY, HoldReason::Unavailable);
    }

    fn hold(&mut self, client_id: Option<&str>, retry_at: Instant, why: HoldReason) {
        let hold = Hold::new(client_id, retry_at);
        self.held = Some(Box::new(HeldSends { hold, why }));
    }

    /// A send went through.
    pub(super) fn passed(&mut self) {
        self.throttled_in_a_row = 0;
    }

    /// Counts a throttled send; true when the flood is past `close_after`
    /// and the socket must close.
    pub(super) fn flooded(&mut self, throttled: &Throttled, close_after: u32) -> bool {
        if !throttled.flooding {
            return false;
        }
        self.throttled_in_a_row += 1;
        self.throttled_in_a_row > close_after
    }
}

#[cfg(test)]
mod tests {
    use super::{SendGate, UNAVAILABLE};
    use std::time::Duration;

    #[test]
    fn a_send_over_the_rate_holds_later_ones_until_it_comes_back() {
        let mut gate = SendGate::default();
        assert!(gate.held_back(Some("b")).is_none(), "nothing refused yet");
        let wait = Duration::from_millis(200);
        let refused = gate.within_rate(Err(wait), Some("a")).unwrap_err();
        assert!(refused.rate_limited() && refused.flooding);
        let held = gate.held_back(Some("b")).expect("b waits behind a");
        assert_eq!(held.error().code, "rate_limited");
        assert!(!held.flooding, "a burst may still be on its way");
        assert!(gate.held_back(Some("a")).is_none(), "a came back");
        assert!(gate.held_back(Some("b")).is_none(), "and lifted the hold");
    }

    #[test]
    fn an_unreadable_chat_holds_without_replacing_a_running_hold() {
        let mut gate = SendGate::default();
        gate.hold_behind_unreadable(Some("a"));
        gate.hold_behind_unreadable(Some("b"));
        let held = gate.held_back(Some("b")).expect("still waiting for a");
        assert_eq!(held.error().code, UNAVAILABLE);
        assert!(gate.held_back(Some("a")).is_none());
    }

    #[test]
    fn a_flood_of_refusals_closes_and_a_passed_send_starts_the_count_again() {
        let mut gate = SendGate::default();
        let refused = gate.within_rate(Err(Duration::ZERO), None).unwrap_err();
        assert!(!gate.flooded(&refused, 1));
        assert!(gate.flooded(&refused, 1), "the second past a limit of one");
        gate.passed();
        assert!(!gate.flooded(&refused, 1));
    }
}
