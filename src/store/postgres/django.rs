//! The Django backend's database, read for `import-django` (its schema is in
//! DESIGN.md §8: `users_user`, `chat_chat`, `chat_chat_participants`,
//! `chat_message` and SimpleJWT's blacklist tables).
//!
//! Everything is read in one read-only `REPEATABLE READ` transaction, so the
//! counts, the chats and the messages of a run are one snapshot even while
//! Django keeps writing. Columns are cast to the types this server stores,
//! so a message can be copied into a PostgreSQL target in COPY's text form
//! without being parsed here (timestamps in UTC, ISO form).

use super::pool::classify;
use crate::store::import::{ImportToken, ImportUser, MessageSource, SourceMessage};
use crate::store::StoreError;
use async_trait::async_trait;
use bytes::Bytes;
use futures_util::stream::BoxStream;
use futures_util::{StreamExt, TryStreamExt};
use time::OffsetDateTime;
use tokio_postgres::{Client, Row};

/// The tables an import needs (the blacklist tables are optional).
const REQUIRED_TABLES: [&str; 4] = [
    "users_user",
    "chat_chat",
    "chat_chat_participants",
    "chat_message",
];

const USERS: &str = "SELECT id::bigint, email::text, password::text,
            coalesce(full_name, '')::text, coalesce(nickname, '')::text,
            coalesce(other_info, '{}'::jsonb)::jsonb::text, is_active,
            date_joined::timestamptz
     FROM users_user ORDER BY id";

const CHATS: &str = "SELECT c.id::bigint, c.pair_key::text, c.created_at::timestamptz,
            coalesce(array_agg(p.user_id::bigint ORDER BY p.user_id)
                         FILTER (WHERE p.user_id IS NOT NULL), '{}')
     FROM chat_chat c LEFT JOIN chat_chat_participants p ON p.chat_id = c.id
     GROUP BY c.id ORDER BY c.id";

/// Whether a message's sender takes part in its chat: only those are imported.
const SENT_BY_A_PARTICIPANT: &str = "EXISTS (SELECT 1 FROM chat_chat_participants p
                    WHERE p.chat_id = m.chat_id AND p.user_id = m.sender_id)";

const BLACKLIST_TABLES: &str = "SELECT to_regclass('token_blacklist_blacklistedtoken') IS NOT NULL
            AND to_regclass('token_blacklist_outstandingtoken') IS NOT NULL";

const LIVE_BLACKLISTED_TOKENS: &str = "SELECT o.jti::text, o.expires_at::timestamptz
     FROM token_blacklist_blacklistedtoken b
     JOIN token_blacklist_outstandingtoken o ON o.id = b.token_id
     WHERE o.expires_at > now() ORDER BY o.id";

/// The columns of an imported message, in the order a target's staging table
/// takes them.
const MESSAGE_COLUMNS: &str = "m.id::bigint, m.chat_id::bigint, m.sender_id::bigint,
            m.content::text, coalesce(m.metadata, '{}'::jsonb)::jsonb::text,
            m.created_at::timestamptz";

/// A chat as the source holds it, before it is checked.
#[derive(Debug, Clone)]
pub struct SourceChat {
    pub id: i64,
    pub pair_key: String,
    pub created_at: OffsetDateTime,
    /// Participant ids, ascending.
    pub participants: Vec<i64>,
}

/// An open, read-only snapshot of the Django backend's database.
pub struct DjangoSource {
    client: Client,
}

impl DjangoSource {
    /// Connects and opens the snapshot; refuses a database without the
    /// Django backend's tables.
    pub async fn open(url: &str) -> Result<Self, StoreError> {
        let source = super::pool::parse(url, "source URL")?;
        let (client, connection) = source.config.connect(source.tls).await.map_err(|e| {
            let why = super::pool::described(&e);
            StoreError::Unavailable(format!("cannot connect to the Django database: {why}"))
        })?;
        tokio::spawn(async move {
            if let Err(error) = connection.await {
                tracing::warn!(%error, "the Django database connection ended");
            }
        });
        client
            .batch_execute(
                "BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY;
                 SET LOCAL TimeZone = 'UTC'; SET LOCAL DateStyle = 'ISO';",
            )
            .await
            .map_err(classify)?;
        let source = DjangoSource { client };
        source.require_tables().await?;
        Ok(source)
    }

    async fn require_tables(&self) -> Result<(), StoreError> {
        for table in REQUIRED_TABLES {
            let row = self
                .client
                .query_one("SELECT to_regclass($1::text) IS NOT NULL", &[&table])
                .await
                .map_err(classify)?;
            if !row.get::<_, bool>(0) {
                return Err(StoreError::Failed(format!(
                    "the source has no table {table}: is it the Django backend's database?"
                )));
            }
        }
        Ok(())
    }

    /// Every user, by id.
    pub async fn users(&self) -> Result<Vec<ImportUser>, StoreError> {
        let rows = self.client.query(USERS, &[]).await.map_err(classify)?;
        Ok(rows.iter().map(user_from_row).collect())
    }

    /// Every chat with its participants, by id.
    pub async fn chats(&self) -> Result<Vec<SourceChat>, StoreError> {
        let rows = self.client.query(CHATS, &[]).await.map_err(classify)?;
        Ok(rows
            .iter()
            .map(|row| SourceChat {
                id: row.get(0),
                pair_key: row.get(1),
                created_at: row.get(2),
                participants: row.get(3),
            })
            .collect())
    }

    /// Per chat, how many messages were sent by one of its participants
    /// (`participants: true`, the importable ones) or by someone else.
    pub async fn message_counts(&self, participants: bool) -> Result<Vec<(i64, i64)>, StoreError> {
        let negation = if participants { "" } else { "NOT " };
        let sql = format!(
            "SELECT m.chat_id::bigint, count(*)::bigint FROM chat_message m
             WHERE {negation}{SENT_BY_A_PARTICIPANT} GROUP BY m.chat_id"
        );
        let rows = self.client.query(&sql, &[]).await.map_err(classify)?;
        Ok(rows.iter().map(|row| (row.get(0), row.get(1))).collect())
    }

    /// SimpleJWT's blacklisted refresh tokens that have not expired; `None`
    /// when the source has no blacklist tables.
    pub async fn live_blacklisted_tokens(&self) -> Result<Option<Vec<ImportToken>>, StoreError> {
        let present = self.client.query_one(BLACKLIST_TABLES, &[]).await;
        if !present.map_err(classify)?.get::<_, bool>(0) {
            return Ok(None);
        }
        let rows = self.client.query(LIVE_BLACKLISTED_TOKENS, &[]).await;
        let tokens = rows
            .map_err(classify)?
            .iter()
            .map(|row| ImportToken {
                jti: row.get(0),
                expires_at: row.get(1),
            })
            .collect();
        Ok(Some(tokens))
    }
}

#[async_trait]
impl MessageSource for DjangoSource {
    /// The importable messages of `chats` in COPY's text form (one line per
    /// message; columns as [`MESSAGE_COLUMNS`]), for a PostgreSQL target.
    async fn copy_messages(
        &self,
        chats: &[i64],
    ) -> Result<BoxStream<'_, Result<Bytes, StoreError>>, StoreError> {
        // COPY takes no parameters; the ids are numbers we format.
        let ids: Vec<String> = chats.iter().map(i64::to_string).collect();
        let sql = format!(
            "COPY (SELECT {MESSAGE_COLUMNS} FROM chat_message m
                   WHERE m.chat_id = ANY('{{{}}}'::bigint[]) AND {SENT_BY_A_PARTICIPANT})
             TO STDOUT",
            ids.join(",")
        );
        let stream = self.client.copy_out(&sql).await.map_err(classify)?;
        Ok(stream.map_err(classify).boxed())
    }

    /// The importable messages of `chats` as rows, by chat, then
    /// (`created_at`, `id`): each chat's messages in the order they are numbered.
    async fn messages(
        &self,
        chats: &[i64],
    ) -> Result<BoxStream<'_, Result<SourceMessage, StoreError>>, StoreError> {
        let sql = format!(
            "SELECT {MESSAGE_COLUMNS} FROM chat_message m
             WHERE m.chat_id = ANY($1::bigint[]) AND {SENT_BY_A_PARTICIPANT}
             ORDER BY m.chat_id, m.created_at, m.id"
        );
        let rows = self
            .client
            .query_raw(&sql, [chats])
            .await
            .map_err(classify)?;
        Ok(rows
            .map_err(classify)
            .map_ok(|row| message_from_row(&row))
            .boxed())
    }
}

fn user_from_row(row: &Row) -> ImportUser {
    let nickname: String = row.get(4);
    ImportUser {
        id: row.get(0),
        email: row.get(1),
        password_hash: row.get(2),
        full_name: row.get(3),
        nickname: (!nickname.is_empty()).then_some(nickname),
        other_info: row.get(5),
        is_active: row.get(6),
        date_joined: row.get(7),
    }
}

fn message_from_row(row: &Row) -> SourceMessage {
    SourceMessage {
        id: row.get(0),
        chat_id: row.get(1),
        sender_id: row.get(2),
        content: row.get(3),
        metadata: row.get(4),
        created_at: row.get(5),
    }
}
