-- Failed logins per account (RATE_LIMIT_LOGIN_FAILURES_PER_EMAIL_PER_MIN),
-- counted here so that every node sharing the database counts them together:
-- one row per account (its lowercased email, known or not) while its window
-- is open; rows whose window closed long ago are swept as failures come.
CREATE TABLE login_failures (
    account     TEXT PRIMARY KEY,
    failures    INTEGER NOT NULL,
    window_ends TIMESTAMPTZ NOT NULL
);
CREATE INDEX login_failures_window_ends ON login_failures (window_ends);
