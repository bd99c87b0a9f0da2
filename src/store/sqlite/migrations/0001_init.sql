-- The embedded store's schema: the same data as PostgreSQL's, in SQLite's dialect.
-- Times are microseconds since the Unix epoch (UTC); metadata is compact JSON text.

CREATE TABLE users (
    id            INTEGER PRIMARY KEY,
    email         TEXT NOT NULL,
    password_hash TEXT NOT NULL,
    full_name     TEXT NOT NULL,
    nickname      TEXT,
    other_info    TEXT NOT NULL DEFAULT '{}',
    is_active     INTEGER NOT NULL DEFAULT 1,
    date_joined   INTEGER NOT NULL
);
CREATE UNIQUE INDEX users_email_lower ON users (lower(email));

CREATE TABLE chats (
    id         INTEGER PRIMARY KEY,
    pair_key   TEXT NOT NULL UNIQUE,
    user_low   INTEGER NOT NULL REFERENCES users(id),
    user_high  INTEGER NOT NULL REFERENCES users(id),
    last_seq   INTEGER NOT NULL DEFAULT 0,
    created_at INTEGER NOT NULL,
    CHECK (user_low < user_high)
);
CREATE INDEX chats_user_low ON chats (user_low);
CREATE INDEX chats_user_high ON chats (user_high);

CREATE TABLE messages (
    id            INTEGER PRIMARY KEY,
    chat_id       INTEGER NOT NULL,
    seq           INTEGER NOT NULL,
    sender_id     INTEGER NOT NULL,
    content       TEXT NOT NULL,
    metadata      TEXT NOT NULL DEFAULT '{}',
    client_msg_id TEXT,
    created_at    INTEGER NOT NULL,
    UNIQUE (chat_id, seq),
    UNIQUE (sender_id, client_msg_id)
);

CREATE TABLE token_blacklist (
    jti        TEXT PRIMARY KEY,
    expires_at INTEGER NOT NULL
);

CREATE TABLE read_markers (
    chat_id    INTEGER NOT NULL,
    user_id    INTEGER NOT NULL,
    seq        INTEGER NOT NULL,
    PRIMARY KEY (chat_id, user_id)
);
