-- Failed logins per account, as in the PostgreSQL store (its migration 0012):
-- one row per account (its lowercased email) while its window is open, so a
-- restart does not reset the count; window_ends in microseconds since 1970.
CREATE TABLE login_failures (
    account     TEXT PRIMARY KEY,
    failures    INTEGER NOT NULL,
    window_ends INTEGER NOT NULL
);
CREATE INDEX login_failures_window_ends ON login_failures (window_ends);
