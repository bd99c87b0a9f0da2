-- The store ceiling's scratch table: the columns, key, unique index and
-- collation of `messages` as the server's migrations leave it (sql/postgres/),
-- so its inserts cost what a stored message's insert costs. A server test
-- (tests/api/store_ceiling_table.rs) fails when the two part ways.
DROP TABLE IF EXISTS loadtest_store_ceiling;
CREATE TABLE loadtest_store_ceiling (
    id            BIGSERIAL,
    chat_id       BIGINT NOT NULL,
    seq           BIGINT NOT NULL,
    sender_id     BIGINT NOT NULL,
    content       TEXT NOT NULL,
    metadata      JSONB NOT NULL DEFAULT '{}',
    client_msg_id TEXT COLLATE "C",
    created_at    TIMESTAMPTZ NOT NULL DEFAULT now(),
    PRIMARY KEY (chat_id, seq),
    UNIQUE (chat_id, sender_id, client_msg_id)
);
