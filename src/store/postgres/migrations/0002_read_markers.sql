-- Read markers: the highest seq each participant has read in each chat (monotonic).
CREATE TABLE read_markers (
    chat_id    BIGINT NOT NULL REFERENCES chats(id) ON DELETE CASCADE,
    user_id    BIGINT NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    seq        BIGINT NOT NULL,
    updated_at TIMESTAMPTZ NOT NULL DEFAULT now(),
    PRIMARY KEY (chat_id, user_id)
);
