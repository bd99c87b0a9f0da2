-- What `chat-server import-django` brought in. A run is one transaction: its
-- row exists only if everything it imported does. Per chat, how many of the
-- Django backend's messages were imported, so a later run reads again only
-- the chats where Django holds more.
CREATE TABLE django_import_runs (
    id             BIGSERIAL PRIMARY KEY,
    finished_at    TIMESTAMPTZ NOT NULL DEFAULT now(),
    users_added    BIGINT NOT NULL,
    users_updated  BIGINT NOT NULL,
    chats_added    BIGINT NOT NULL,
    messages_added BIGINT NOT NULL,
    tokens_added   BIGINT NOT NULL
);

CREATE TABLE django_imported_chats (
    chat_id  BIGINT PRIMARY KEY,
    messages BIGINT NOT NULL
);
