-- Users, one-to-one chats, messages with a gap-free per-chat seq, refresh-token blacklist.

CREATE TABLE users (
    id            BIGSERIAL PRIMARY KEY,
    email         TEXT NOT NULL,
    password_hash TEXT NOT NULL,
    full_name     VARCHAR(255) NOT NULL,
    nickname      VARCHAR(100),
    other_info    JSONB NOT NULL DEFAULT '{}',
    is_active     BOOLEAN NOT NULL DEFAULT TRUE,
    date_joined   TIMESTAMPTZ NOT NULL DEFAULT now()
);
CREATE UNIQUE INDEX users_email_lower ON users (lower(email));

-- A chat between user_low < user_high; pair_key is the original's SHA-256 of the pair.
-- last_seq is the highest seq stored in the chat (= its message count).
CREATE TABLE chats (
    id         BIGSERIAL PRIMARY KEY,
    pair_key   CHAR(64) NOT NULL UNIQUE,
    user_low   BIGINT NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    user_high  BIGINT NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    last_seq   BIGINT NOT NULL DEFAULT 0,
    created_at TIMESTAMPTZ NOT NULL DEFAULT now(),
    updated_at TIMESTAMPTZ NOT NULL DEFAULT now(),
    CHECK (user_low < user_high)
);
CREATE INDEX chats_user_low_activity ON chats (user_low, updated_at DESC);
CREATE INDEX chats_user_high_activity ON chats (user_high, updated_at DESC);

CREATE TABLE messages (
    id            BIGSERIAL PRIMARY KEY,
    chat_id       BIGINT NOT NULL REFERENCES chats(id) ON DELETE CASCADE,
    seq           BIGINT NOT NULL,
    sender_id     BIGINT NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    content       TEXT NOT NULL,
    metadata      JSONB NOT NULL DEFAULT '{}',
    client_msg_id TEXT,
    created_at    TIMESTAMPTZ NOT NULL DEFAULT now(),
    UNIQUE (chat_id, seq),
    UNIQUE (sender_id, client_msg_id)
);

CREATE TABLE token_blacklist (
    jti        TEXT PRIMARY KEY,
    expires_at TIMESTAMPTZ NOT NULL
);
CREATE INDEX token_blacklist_expiry ON token_blacklist (expires_at);

-- Appends a batch of messages in one statement (one round trip, its own transaction).
-- Chats are locked in id order (no deadlocks between batches), retried client ids are
-- answered with the stored original, and each chat's seq continues gap-free.
-- outcome: 0 created, 1 duplicate (same chat), 2 client id used in another chat.
-- The caller removes repeats of one (sender, client_msg_id) within a batch.
CREATE FUNCTION append_messages(
    p_chat BIGINT[], p_sender BIGINT[], p_content TEXT[], p_metadata TEXT[], p_cmid TEXT[]
) RETURNS TABLE (
    ord INT, outcome SMALLINT, msg_id BIGINT, msg_seq BIGINT, msg_content TEXT,
    msg_metadata TEXT, msg_created TIMESTAMPTZ
) LANGUAGE plpgsql AS $$
BEGIN
    PERFORM 1 FROM chats WHERE id = ANY(p_chat) ORDER BY id FOR UPDATE;

    -- A new statement, so it sees every batch that committed while we waited.
    RETURN QUERY
    WITH input AS (
        SELECT i.ord::INT AS ord, i.chat, i.sender, i.content, i.metadata, i.cmid,
               m.id AS existing_id, m.chat_id AS existing_chat
        FROM unnest(p_chat, p_sender, p_content, p_metadata, p_cmid)
             WITH ORDINALITY AS i(chat, sender, content, metadata, cmid, ord)
        LEFT JOIN messages m ON i.cmid IS NOT NULL AND m.sender_id = i.sender
                            AND m.client_msg_id = i.cmid
    ), fresh AS (
        SELECT x.*, row_number() OVER (PARTITION BY x.chat ORDER BY x.ord) AS rn
        FROM input x WHERE x.existing_id IS NULL
    ), bumped AS (
        UPDATE chats c SET last_seq = c.last_seq + n.cnt, updated_at = now()
        FROM (SELECT f.chat, count(*) AS cnt FROM fresh f GROUP BY f.chat) n
        WHERE c.id = n.chat
        RETURNING c.id, c.last_seq - n.cnt AS base
    ), inserted AS (
        INSERT INTO messages (chat_id, seq, sender_id, content, metadata, client_msg_id,
                              created_at)
        SELECT f.chat, b.base + f.rn, f.sender, f.content, f.metadata::jsonb, f.cmid, now()
        FROM fresh f JOIN bumped b ON b.id = f.chat
        RETURNING id, chat_id, seq, content, metadata, created_at
    )
    SELECT f.ord, 0::SMALLINT, ins.id, ins.seq, ins.content, ins.metadata::TEXT,
           ins.created_at
    FROM fresh f JOIN bumped b ON b.id = f.chat
    JOIN inserted ins ON ins.chat_id = f.chat AND ins.seq = b.base + f.rn
    UNION ALL
    SELECT x.ord, (CASE WHEN x.existing_chat = x.chat THEN 1 ELSE 2 END)::SMALLINT, m.id,
           m.seq, m.content, m.metadata::TEXT, m.created_at
    FROM input x JOIN messages m ON m.id = x.existing_id;
END;
$$;
