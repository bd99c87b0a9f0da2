-- append_messages, rewritten so every lookup is an index probe and no statement
-- scans a table.
--
-- The first version let the planner (with the generic plan a function's statements
-- get after a few calls) hash-join the whole messages table to find retried
-- client ids and seq-scan chats, whose heap fills with dead versions of the rows
-- every batch updates: cost grew with the tables, and a chat load test fell from
-- 18,000 to 7,400 messages/s over three runs (see BENCHMARKS.md). Now: locks and
-- lookups go through lateral probes of the primary keys and of
-- (sender_id, client_msg_id), each chat's counter is moved by its own
-- primary-key UPDATE, and new rows are inserted from the arrays in one INSERT.
--
-- Messages no longer carry foreign keys: the server only stores a message after
-- checking its chat exists and its sender takes part in it, and nothing deletes
-- chats or users; the two checks per row cost more than the insert itself.
--
-- For a new message the content and metadata are not sent back (the caller has
-- them); for a retried client id the stored original is.
ALTER TABLE messages DROP CONSTRAINT IF EXISTS messages_chat_id_fkey;
ALTER TABLE messages DROP CONSTRAINT IF EXISTS messages_sender_id_fkey;

CREATE OR REPLACE FUNCTION append_messages(
    p_chat BIGINT[], p_sender BIGINT[], p_content TEXT[], p_metadata TEXT[], p_cmid TEXT[]
) RETURNS TABLE (
    ord INT, outcome SMALLINT, msg_id BIGINT, msg_seq BIGINT, msg_content TEXT,
    msg_metadata TEXT, msg_created TIMESTAMPTZ
) LANGUAGE plpgsql AS $$
DECLARE
    v_dup_ords INT[];
    v_dup_ids BIGINT[];
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
    SELECT coalesce(array_agg(i.ord::INT), '{}'), coalesce(array_agg(m.id), '{}')
      INTO v_dup_ords, v_dup_ids
    FROM unnest(p_sender, p_cmid) WITH ORDINALITY AS i(sender, cmid, ord)
    CROSS JOIN LATERAL (
        SELECT m.id FROM messages m WHERE m.sender_id = i.sender AND m.client_msg_id = i.cmid
        LIMIT 1  -- keeps the planner from flattening this into a hash join over messages
    ) AS m
    WHERE i.cmid IS NOT NULL;

    -- Move each chat's counter once, by how many new messages it gets.
    FOR v_chat, v_count IN
        SELECT u.chat, count(*) FROM unnest(p_chat) WITH ORDINALITY AS u(chat, ord)
        WHERE u.ord <> ALL (v_dup_ords) GROUP BY u.chat
    LOOP
        UPDATE chats SET last_seq = last_seq + v_count, updated_at = now()
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
    SELECT d.ord, (CASE WHEN m.chat_id = p_chat[d.ord] THEN 1 ELSE 2 END)::SMALLINT, m.id,
           m.seq, m.content, m.metadata::TEXT, m.created_at
    FROM unnest(v_dup_ords, v_dup_ids) AS d(ord, id)
    CROSS JOIN LATERAL (SELECT * FROM messages WHERE messages.id = d.id LIMIT 1) AS m;
END;
$$;
