//! Failed logins per account in the embedded store (migration 0004): a
//! window of counted failures per account, kept across restarts, and swept
//! a few rows at a time once closed, as in the PostgreSQL store.

use super::failed;
use crate::store::{FailedLogins, StoreError};
use rusqlite::{params, Connection, OptionalExtension};
use std::time::Duration;

/// A window closed this long ago (µs) is swept by the next failure counted.
const SWEPT_AFTER: i64 = 60_000_000;

/// The failures counted against `account` in its window open at `now` (µs).
pub fn counted(
    conn: &Connection,
    account: &str,
    now: i64,
) -> Result<Option<FailedLogins>, StoreError> {
    conn.prepare_cached(
        "SELECT failures, window_ends FROM login_failures WHERE account = ?1 AND window_ends > ?2",
    )
    .and_then(|mut statement| {
        statement
            .query_row(params![account, now], |row| {
                Ok(window_at(row.get(0)?, row.get(1)?, now))
            })
            .optional()
    })
    .map_err(failed)
}

/// Counts a failure against `account` at `now` (µs): in its open window, or
/// in a new one of `window`. Sweeps up to 16 windows closed long ago first,
/// more than the one row a failure adds.
pub fn count(
    conn: &Connection,
    account: &str,
    now: i64,
    window: Duration,
) -> Result<FailedLogins, StoreError> {
    conn.execute(
        "DELETE FROM login_failures WHERE account IN (
             SELECT account FROM login_failures WHERE window_ends < ?1 LIMIT 16)",
        [now - SWEPT_AFTER],
    )
    .map_err(failed)?;
    let ends = now.saturating_add(i64::try_from(window.as_micros()).unwrap_or(i64::MAX));
    conn.prepare_cached(
        "INSERT INTO login_failures (account, failures, window_ends) VALUES (?1, 1, ?3)
         ON CONFLICT (account) DO UPDATE SET
             failures = CASE WHEN window_ends > ?2 THEN failures + 1 ELSE 1 END,
             window_ends = CASE WHEN window_ends > ?2 THEN window_ends ELSE excluded.window_ends END
         RETURNING failures, window_ends",
    )
    .and_then(|mut statement| {
        statement.query_row(params![account, now, ends], |row| {
            Ok(window_at(row.get(0)?, row.get(1)?, now))
        })
    })
    .map_err(failed)
}

fn window_at(failures: i64, ends: i64, now: i64) -> FailedLogins {
    FailedLogins {
        count: u32::try_from(failures).unwrap_or(u32::MAX),
        window_left: Duration::from_micros(u64::try_from(ends - now).unwrap_or(0)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_failure_sweeps_windows_closed_long_ago_and_keeps_the_rest() {
        let mut conn = Connection::open_in_memory().unwrap();
        super::super::migrations::migrate(&mut conn).unwrap();
        let minute = Duration::from_secs(60);
        count(&conn, "old@example.com", 0, minute).unwrap();
        count(&conn, "recent@example.com", 61_000_000, minute).unwrap();
        // The old window closed 2 minutes before, the recent one 59 s before.
        let now = 180_000_000;
        assert_eq!(
            count(&conn, "new@example.com", now, minute).unwrap().count,
            1
        );
        let accounts: Vec<String> = conn
            .prepare("SELECT account FROM login_failures ORDER BY account")
            .unwrap()
            .query_map([], |row| row.get(0))
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap();
        assert_eq!(accounts, ["new@example.com", "recent@example.com"]);
        assert_eq!(counted(&conn, "recent@example.com", now).unwrap(), None);
    }
}
