-- The common append path does only what a batch of new messages needs.
--
-- append_messages_new assumes no client id of the batch was used before (a retry
-- is rare: a client resending after a reconnect). It takes no separate lock
-- statement and no duplicate probe per message: each chat's counter UPDATE locks
-- its row (in chat id order, so concurrent batches from different nodes cannot
-- deadlock), and the (sender_id, client_msg_id) unique index refuses a reused id.
-- The server then runs the same batch through append_messages, which probes and
-- answers retries with the stored original. Either way the batch is one
-- transaction, so a refused batch stores nothing and leaves no gap in seq.
--
-- client_msg_id compares bytewise (COLLATE "C"): an id is an opaque token, and
-- the database's default collation made every index comparison a strcoll call.
ALTER TABLE messages ALTER COLUMN client_msg_id TYPE TEXT COLLATE "C";

CREATE FUNCTION append_messages_new(
    p_chat BIGINT[], p_sender BIGINT[], p_content TEXT[], p_metadata TEXT[], p_cmid TEXT[]
) RETURNS TABLE (
    ord INT, outcome SMALLINT, msg_id BIGINT, msg_seq BIGINT, msg_content TEXT,
    msg_metadata TEXT, msg_created TIMESTAMPTZ
) LANGUAGE plpgsql AS $$
DECLARE
    v_chats BIGINT[] := '{}';
    v_bases BIGINT[] := '{}';
    v_chat BIGINT;
    v_count BIGINT;
    v_base BIGINT;
BEGIN
    FOR v_chat, v_count IN
        SELECT u.chat, count(*) FROM unnest(p_chat) AS u(chat) GROUP BY u.chat ORDER BY u.chat
    LOOP
        UPDATE chats SET last_seq = last_seq + v_count
        WHERE id = v_chat RETURNING last_seq - v_count INTO v_base;
        IF NOT FOUND THEN
            RAISE foreign_key_violation USING MESSAGE = format('chat %s does not exist', v_chat);
        END IF;
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
    ), inserted AS (
        INSERT INTO messages (chat_id, seq, sender_id, content, metadata, client_msg_id,
                              created_at)
        SELECT f.chat, f.seq, f.sender, f.content, f.metadata::jsonb, f.cmid, now()
        FROM fresh f
        RETURNING id, chat_id, seq, created_at
    )
    SELECT f.ord, 0::SMALLINT, ins.id, ins.seq, NULL::TEXT, NULL::TEXT, ins.created_at
    FROM fresh f JOIN inserted ins ON ins.chat_id = f.chat AND ins.seq = f.seq;
END;
$$;
