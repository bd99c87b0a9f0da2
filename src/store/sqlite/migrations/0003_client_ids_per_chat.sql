-- Client ids are unique per chat and sender, as in the PostgreSQL store
-- (its migration 0011): the same id in another chat is another message.
-- SQLite cannot drop a table constraint, so the table is rebuilt.
CREATE TABLE messages_rebuilt (
    id            INTEGER PRIMARY KEY,
    chat_id       INTEGER NOT NULL,
    seq           INTEGER NOT NULL,
    sender_id     INTEGER NOT NULL,
    content       TEXT NOT NULL,
    metadata      TEXT NOT NULL DEFAULT '{}',
    client_msg_id TEXT,
    created_at    INTEGER NOT NULL,
    UNIQUE (chat_id, seq),
    UNIQUE (chat_id, sender_id, client_msg_id)
);
INSERT INTO messages_rebuilt
SELECT id, chat_id, seq, sender_id, content, metadata, client_msg_id, created_at FROM messages;
DROP TABLE messages;
ALTER TABLE messages_rebuilt RENAME TO messages;
