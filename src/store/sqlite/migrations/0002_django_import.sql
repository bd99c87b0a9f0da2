-- Inactive users, read by the node every INACTIVE_USERS_POLL_SECS.
CREATE INDEX users_inactive ON users (id) WHERE NOT is_active;

-- What `chat-server import-django` brought in (see the PostgreSQL migration
-- 0010): each committed run, and per chat how many Django messages.
CREATE TABLE django_import_runs (
    id             INTEGER PRIMARY KEY,
    finished_at    INTEGER NOT NULL,
    users_added    INTEGER NOT NULL,
    users_updated  INTEGER NOT NULL,
    chats_added    INTEGER NOT NULL,
    messages_added INTEGER NOT NULL,
    tokens_added   INTEGER NOT NULL
);

CREATE TABLE django_imported_chats (
    chat_id  INTEGER PRIMARY KEY,
    messages INTEGER NOT NULL
);
