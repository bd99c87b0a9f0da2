-- Every key the hot path uses leads with the chat, so that messages and
-- chats (which hold the read markers) can be distributed by chat on Citus,
-- colocated, without changing a statement:
--
-- * A client id is unique per chat and sender, (chat_id, sender_id,
--   client_msg_id), where it was unique per sender across chats. A retry goes
--   to the chat it was sent to; the same id in another chat is another
--   message (it was refused before). A distributed table cannot enforce a
--   unique key that leaves out its distribution column.
-- * One chat per pair of users moves from a unique key on chats (pair_key) to
--   chat_pairs, keyed by the pair: chats keeps only keys that lead with its id.
--   Only starting a chat reads or writes chat_pairs.
ALTER TABLE messages DROP CONSTRAINT messages_sender_id_client_msg_id_key;
ALTER TABLE messages ADD CONSTRAINT messages_client_id_key
    UNIQUE (chat_id, sender_id, client_msg_id);

CREATE TABLE chat_pairs (
    pair_key CHAR(64) PRIMARY KEY,
    chat_id  BIGINT NOT NULL
);
INSERT INTO chat_pairs (pair_key, chat_id) SELECT pair_key, id FROM chats;
ALTER TABLE chats DROP CONSTRAINT chats_pair_key_key;

-- The checked append probes and answers retried client ids by the new key.
CREATE OR REPLACE FUNCTION append_messages(
    p_chat BIGINT[], p_sender BIGINT[], p_content TEXT[], p_metadata TEXT[], p_cmid TEXT[]
) RETURNS TABLE (
    ord INT, outcome SMALLINT, msg_id BIGINT, msg_seq BIGINT, msg_content TEXT,
    msg_metadata TEXT, msg_created TIMESTAMPTZ
) LANGUAGE plpgsql AS $$
DECLARE
    v_dup_ords INT[];
    v_chats BIGINT[] := '{}';
    v_bases BIGINT[] := '{}';
    v_chat BIGINT;
    v_count BIGINT;
    v_base BIGINT;
BEGIN
    -- Lock the chats in id order (no deadlocks between batches or nodes).
    PERFORM 1
    FROM (SELECT DISTINCT unnest(p_chat) AS id ORDER BY 1) AS wanted
    CROSS JOIN LATERAL (SELECT 1 FROM chats c WHERE c.id = wanted.id FOR UPDATE OF c) AS locked;

    -- Retried client ids (a new statement: it sees batches that committed meanwhile).
    SELECT coalesce(array_agg(i.ord::INT), '{}') INTO v_dup_ords
    FROM unnest(p_chat, p_sender, p_cmid) WITH ORDINALITY AS i(chat, sender, cmid, ord)
    CROSS JOIN LATERAL (
        SELECT 1 FROM messages m
        WHERE m.chat_id = i.chat AND m.sender_id = i.sender AND m.client_msg_id = i.cmid
        LIMIT 1  -- an index probe per message, never a (hash) join over messages
    ) AS hit
    WHERE i.cmid IS NOT NULL;

    -- Move each chat's counter once, by how many new messages it gets.
    FOR v_chat, v_count IN
        SELECT u.chat, count(*) FROM unnest(p_chat) WITH ORDINALITY AS u(chat, ord)
        WHERE u.ord <> ALL (v_dup_ords) GROUP BY u.chat
    LOOP
        UPDATE chats SET last_seq = last_seq + v_count
        WHERE id = v_chat RETURNING last_seq - v_count INTO v_base;
        v_chats := v_chats || v_chat;
        v_bases := v_bases || v_base;
    END LOOP;

    RETURN QUERY
    WITH fresh AS (
        SELECT u.ord::INT AS ord, u.chat, u.sender, u.content, u.metadata, u.cmid,
               b.base + row_number() OVER (PARTITION BY u.chat ORDER BY u.ord) AS seq
        FROM unnest(p_chat, p_sender, p_content, p_metadata, p_cmid)
             WITH ORDINALITY AS u(chat, sender, content, metadata, cmid, ord)
        JOIN unnest(v_chats, v_bases) AS b(chat, base) ON b.chat = u.chat
        WHERE u.ord <> ALL (v_dup_ords)
    ), inserted AS (
        INSERT INTO messages (chat_id, seq, sender_id, content, metadata, client_msg_id,
                              created_at)
        SELECT f.chat, f.seq, f.sender, f.content, f.metadata::jsonb, f.cmid, now()
        FROM fresh f
        RETURNING id, chat_id, seq, created_at
    )
    SELECT f.ord, 0::SMALLINT, ins.id, ins.seq, NULL::TEXT, NULL::TEXT, ins.created_at
    FROM fresh f JOIN inserted ins ON ins.chat_id = f.chat AND ins.seq = f.seq
    UNION ALL
    SELECT d.ord, 1::SMALLINT, m.id, m.seq, m.content, m.metadata::TEXT, m.created_at
    FROM unnest(v_dup_ords) AS d(ord)
    CROSS JOIN LATERAL (
        SELECT * FROM messages
        WHERE chat_id = p_chat[d.ord] AND sender_id = p_sender[d.ord]
          AND client_msg_id = p_cmid[d.ord]
        LIMIT 1  -- a probe of the client-id key, never a join over messages
    ) AS m;
    -- What a sender sent, and what came before it, they have read: each
    -- sender's marker moves to their newest new message (chats are locked; the
    -- new messages of a chat are exactly those past its base).
    UPDATE chats c
    SET low_read_seq = GREATEST(c.low_read_seq, coalesce(s.low_max, 0)),
        high_read_seq = GREATEST(c.high_read_seq, coalesce(s.high_max, 0))
    FROM (
        SELECT b.chat,
               max(m.seq) FILTER (WHERE m.sender_id = ch.user_low) AS low_max,
               max(m.seq) FILTER (WHERE m.sender_id = ch.user_high) AS high_max
        FROM unnest(v_chats, v_bases) AS b(chat, base)
        JOIN chats ch ON ch.id = b.chat
        JOIN messages m ON m.chat_id = b.chat AND m.seq > b.base
        GROUP BY b.chat
    ) AS s
    WHERE c.id = s.chat;
END;
$$;
