//! The two limits on a session's life, watched by one timer: silence for
//! `WS_IDLE_TIMEOUT_SECS`, and the access token's expiry.

use crate::ws::protocol::close;
use std::time::Duration;

/// The two limits on a session's life, watched by one timer: silence for the
/// idle timeout, and the access token's expiry. The timer is not moved on every
/// client event: when it fires early (the client spoke meanwhile) it is set again.
pub(super) struct Deadlines {
    pub(super) idle: Duration,
    /// When the client last sent anything (a pong included).
    pub(super) heard_at: tokio::time::Instant,
    pub(super) token_expires: tokio::time::Instant,
}

impl Deadlines {
    /// When one of the limits is next due.
    pub(super) fn next(&self) -> tokio::time::Instant {
        (self.heard_at + self.idle).min(self.token_expires)
    }

    /// The close code of a limit that has passed, if one has.
    pub(super) fn passed(&self) -> Option<u16> {
        let now = tokio::time::Instant::now();
        if now >= self.token_expires {
            Some(close::TOKEN_EXPIRED)
        } else if now >= self.heard_at + self.idle {
            Some(close::IDLE_TIMEOUT)
        } else {
            None
        }
    }
}

pub(super) fn token_deadline(expires_at: i64) -> tokio::time::Instant {
    let left = expires_at - crate::auth::jwt::unix_now();
    tokio::time::Instant::now() + Duration::from_secs(left.clamp(0, 10 * 365 * 86_400) as u64)
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::time::Instant;

    const IDLE: Duration = Duration::from_secs(75);

    #[test]
    fn the_one_timer_is_due_at_whichever_limit_comes_first() {
        let now = Instant::now();
        let expiring_soon = Deadlines {
            idle: IDLE,
            heard_at: now,
            token_expires: now + Duration::from_secs(2),
        };
        assert_eq!(expiring_soon.next(), now + Duration::from_secs(2));
        let long_lived = Deadlines {
            token_expires: now + Duration::from_secs(3_600),
            ..expiring_soon
        };
        assert_eq!(long_lived.next(), now + IDLE);
    }

    #[test]
    fn an_expired_token_closes_even_a_client_heard_just_now() {
        let now = Instant::now();
        let expired = Deadlines {
            idle: IDLE,
            heard_at: now,
            token_expires: now - Duration::from_millis(1),
        };
        assert_eq!(expired.passed(), Some(close::TOKEN_EXPIRED));
        let silent = Deadlines {
            idle: IDLE,
            heard_at: now - IDLE - Duration::from_millis(1),
            token_expires: now + Duration::from_secs(3_600),
        };
        assert_eq!(silent.passed(), Some(close::IDLE_TIMEOUT));
        let fine = Deadlines {
            heard_at: now,
            ..silent
        };
        assert_eq!(fine.passed(), None, "an early wake-up re-arms instead");
    }
}
