//! The Django import into PostgreSQL, in one transaction on a connection of
//! its own. Users, chats and tokens go in as arrays (one statement each);
//! messages are copied from the source in COPY's text form into a temporary
//! table without being parsed here, then numbered and stored by one
//! statement, which also moves each chat's `last_seq` and both read markers
//! (the history the Django backend served counts as read: it had no unread
//! counts to show).

use super::pool::classify;
use crate::store::import::{
    ImportCounts, ImportPlan, ImportProgress, ImportTarget, ImportUser, ImportedBefore,
    MessageSource,
};
use crate::store::StoreError;
use async_trait::async_trait;
use futures_util::{SinkExt, StreamExt};
use time::OffsetDateTime;
use tokio_postgres::types::ToSql;
use tokio_postgres::Client;

/// New users are added; a changed user is updated, except for a password
/// this server already rehashed to argon2id (a login here is newer than any
/// hash the Django backend held). `xmax = 0` marks a row inserted here.
const UPSERT_USERS: &str = "INSERT INTO users (id, email, password_hash, full_name, nickname,
                          other_info, is_active, date_joined)
     SELECT u.id, u.email, u.password_hash, u.full_name, u.nickname, u.other_info::jsonb,
            u.is_active, u.date_joined
     FROM unnest($1::bigint[], $2::text[], $3::text[], $4::text[], $5::text[], $6::text[],
                 $7::bool[], $8::timestamptz[])
          AS u(id, email, password_hash, full_name, nickname, other_info, is_active, date_joined)
     ON CONFLICT (id) DO UPDATE SET
         email = EXCLUDED.email, full_name = EXCLUDED.full_name, nickname = EXCLUDED.nickname,
         other_info = EXCLUDED.other_info, is_active = EXCLUDED.is_active,
         password_hash = CASE WHEN users.password_hash LIKE '$argon2id$%'
                              THEN users.password_hash ELSE EXCLUDED.password_hash END
     WHERE (users.email, users.full_name, users.nickname, users.other_info, users.is_active)
               IS DISTINCT FROM (EXCLUDED.email, EXCLUDED.full_name, EXCLUDED.nickname,
                                 EXCLUDED.other_info, EXCLUDED.is_active)
        OR (users.password_hash <> EXCLUDED.password_hash
            AND users.password_hash NOT LIKE '$argon2id$%')
     RETURNING xmax = 0";

/// New chats, each with its pair claimed in `chat_pairs` (a pair that
/// already has another chat fails the import, as its unique key says).
const INSERT_CHATS: &str = "WITH fresh AS (
         INSERT INTO chats (id, pair_key, user_low, user_high, created_at)
         SELECT * FROM unnest($1::bigint[], $2::text[], $3::bigint[], $4::bigint[],
                              $5::timestamptz[])
         ON CONFLICT (id) DO NOTHING RETURNING id, pair_key)
     INSERT INTO chat_pairs (pair_key, chat_id) SELECT pair_key, id FROM fresh
     RETURNING chat_id";

const STAGE_MESSAGES: &str = "CREATE TEMPORARY TABLE django_messages (
         id bigint, chat_id bigint, sender_id bigint, content text, metadata jsonb,
         created_at timestamptz) ON COMMIT DROP";

/// Messages not stored yet (a later run re-reads whole chats), numbered
/// after each chat's `last_seq` by (`created_at`, `id`).
const STORE_MESSAGES: &str = "WITH fresh AS (
         SELECT s.*, c.last_seq + row_number() OVER (PARTITION BY s.chat_id
                                                     ORDER BY s.created_at, s.id) AS seq
         FROM django_messages s JOIN chats c ON c.id = s.chat_id
         WHERE NOT EXISTS (SELECT 1 FROM messages m WHERE m.chat_id = s.chat_id AND m.id = s.id)
     ), inserted AS (
         INSERT INTO messages (id, chat_id, seq, sender_id, content, metadata, created_at)
         SELECT id, chat_id, seq, sender_id, content, metadata, created_at FROM fresh
         RETURNING chat_id
     ), per_chat AS (
         SELECT chat_id, count(*) AS added FROM inserted GROUP BY chat_id
     )
     UPDATE chats c SET last_seq = c.last_seq + p.added,
                        low_read_seq = c.last_seq + p.added,
                        high_read_seq = c.last_seq + p.added
     FROM per_chat p WHERE c.id = p.chat_id
     RETURNING p.added";

const COUNT_CHAT_MESSAGES: &str = "INSERT INTO django_imported_chats (chat_id, messages)
     SELECT * FROM unnest($1::bigint[], $2::bigint[])
     ON CONFLICT (chat_id) DO UPDATE SET messages = EXCLUDED.messages";

const INSERT_TOKENS: &str = "INSERT INTO token_blacklist (jti, expires_at)
     SELECT * FROM unnest($1::text[], $2::timestamptz[])
     ON CONFLICT (jti) DO NOTHING RETURNING jti";

/// Each id sequence moved past the ids kept from Django (never back).
const MOVE_SEQUENCES: &str = "
     SELECT setval('users_id_seq', GREATEST((SELECT max(id) FROM users),
                                            (SELECT last_value FROM users_id_seq)));
     SELECT setval('chats_id_seq', GREATEST((SELECT max(id) FROM chats),
                                            (SELECT last_value FROM chats_id_seq)));
     SELECT setval('messages_id_seq', GREATEST((SELECT max(id) FROM messages),
                                               (SELECT last_value FROM messages_id_seq)));";

const RECORD_RUN: &str = "INSERT INTO django_import_runs
         (users_added, users_updated, chats_added, messages_added, tokens_added)
     VALUES ($1, $2, $3, $4, $5)";

/// Bytes of COPY data sent on at once.
const COPY_CHUNK: usize = 256 * 1024;

/// Sends what is pending to the target's COPY and counts its rows (COPY's
/// text form escapes newlines inside values: one per row).
async fn pass_on(
    sink: &mut std::pin::Pin<&mut tokio_postgres::CopyInSink<bytes::Bytes>>,
    pending: &mut bytes::BytesMut,
    progress: &dyn ImportProgress,
) -> Result<(), StoreError> {
    if pending.is_empty() {
        return Ok(());
    }
    progress.advance(pending.iter().filter(|&&b| b == b'\n').count() as u64);
    let chunk = pending.split().freeze();
    sink.send(chunk).await.map_err(classify)
}

/// A connection for one import.
pub struct PgImport {
    client: Client,
}

impl PgImport {
    pub(super) fn new(client: Client) -> Self {
        PgImport { client }
    }

    async fn rows_of(
        &self,
        sql: &str,
        params: &[&(dyn ToSql + Sync)],
    ) -> Result<Vec<tokio_postgres::Row>, StoreError> {
        self.client.query(sql, params).await.map_err(classify)
    }

    async fn users(&self, plan: &ImportPlan, counts: &mut ImportCounts) -> Result<(), StoreError> {
        let users = &plan.users;
        let column =
            |get: fn(&ImportUser) -> &str| -> Vec<&str> { users.iter().map(get).collect() };
        let ids: Vec<i64> = users.iter().map(|u| u.id).collect();
        let emails = column(|u| &u.email);
        let hashes = column(|u| &u.password_hash);
        let names = column(|u| &u.full_name);
        let nicknames: Vec<Option<&str>> = users.iter().map(|u| u.nickname.as_deref()).collect();
        let infos = column(|u| &u.other_info);
        let active: Vec<bool> = users.iter().map(|u| u.is_active).collect();
        let joined: Vec<OffsetDateTime> = users.iter().map(|u| u.date_joined).collect();
        let params: [&(dyn ToSql + Sync); 8] = [
            &ids, &emails, &hashes, &names, &nicknames, &infos, &active, &joined,
        ];
        for row in self.rows_of(UPSERT_USERS, &params).await? {
            if row.get::<_, bool>(0) {
                counts.users_added += 1;
            } else {
                counts.users_updated += 1;
            }
        }
        Ok(())
    }

    async fn chats(&self, plan: &ImportPlan) -> Result<u64, StoreError> {
        let chats = &plan.chats;
        let ids: Vec<i64> = chats.iter().map(|c| c.id).collect();
        let keys: Vec<&str> = chats.iter().map(|c| c.pair_key.as_str()).collect();
        let lows: Vec<i64> = chats.iter().map(|c| c.user_low).collect();
        let highs: Vec<i64> = chats.iter().map(|c| c.user_high).collect();
        let created: Vec<OffsetDateTime> = chats.iter().map(|c| c.created_at).collect();
        let params: [&(dyn ToSql + Sync); 5] = [&ids, &keys, &lows, &highs, &created];
        Ok(self.rows_of(INSERT_CHATS, &params).await?.len() as u64)
    }

    /// Copies the messages of the plan's chats into the staging table; then
    /// stores the new ones. Returns how many were stored.
    async fn messages(
        &self,
        source: &dyn MessageSource,
        plan: &ImportPlan,
        progress: &dyn ImportProgress,
    ) -> Result<u64, StoreError> {
        if plan.message_chats.is_empty() {
            return Ok(0);
        }
        let chats: Vec<i64> = plan.message_chats.iter().map(|&(chat, _)| chat).collect();
        self.client
            .batch_execute(STAGE_MESSAGES)
            .await
            .map_err(classify)?;
        progress.phase("reading messages", Some(plan.messages_to_read()));
        let copied = source.copy_messages(&chats).await?;
        let sink = self
            .client
            .copy_in::<_, bytes::Bytes>("COPY django_messages FROM STDIN")
            .await
            .map_err(classify)?;
        futures_util::pin_mut!(copied, sink);
        // The source sends a row at a time: sent on in large chunks, each
        // one write (a send flushes).
        let mut pending = bytes::BytesMut::with_capacity(COPY_CHUNK + 4096);
        while let Some(row) = copied.next().await {
            pending.extend_from_slice(&row?);
            if pending.len() >= COPY_CHUNK {
                pass_on(&mut sink, &mut pending, progress).await?;
            }
        }
        pass_on(&mut sink, &mut pending, progress).await?;
        sink.as_mut().finish().await.map_err(classify)?;
        progress.phase("numbering and storing messages", None);
        self.client
            .batch_execute("ANALYZE django_messages")
            .await
            .map_err(classify)?;
        let added = self.rows_of(STORE_MESSAGES, &[]).await?;
        let added: i64 = added.iter().map(|row| row.get::<_, i64>(0)).sum();
        let counts: Vec<i64> = plan.message_chats.iter().map(|&(_, n)| n).collect();
        self.rows_of(COUNT_CHAT_MESSAGES, &[&chats, &counts])
            .await?;
        Ok(added as u64)
    }

    async fn tokens(&self, plan: &ImportPlan) -> Result<u64, StoreError> {
        let jtis: Vec<&str> = plan.tokens.iter().map(|t| t.jti.as_str()).collect();
        let expiries: Vec<OffsetDateTime> = plan.tokens.iter().map(|t| t.expires_at).collect();
        Ok(self
            .rows_of(INSERT_TOKENS, &[&jtis, &expiries])
            .await?
            .len() as u64)
    }

    async fn record(&self, counts: &ImportCounts) -> Result<(), StoreError> {
        let count = |n: u64| i64::try_from(n).unwrap_or(i64::MAX);
        let values = [
            count(counts.users_added),
            count(counts.users_updated),
            count(counts.chats_added),
            count(counts.messages_added),
            count(counts.tokens_added),
        ];
        let params: Vec<&(dyn ToSql + Sync)> =
            values.iter().map(|v| v as &(dyn ToSql + Sync)).collect();
        self.rows_of(RECORD_RUN, &params).await?;
        Ok(())
    }

    async fn run(
        &self,
        source: &dyn MessageSource,
        plan: &ImportPlan,
        progress: &dyn ImportProgress,
    ) -> Result<ImportCounts, StoreError> {
        let mut counts = ImportCounts::default();
        progress.phase("users", None);
        self.users(plan, &mut counts).await?;
        progress.phase("chats", None);
        counts.chats_added = self.chats(plan).await?;
        counts.messages_added = self.messages(source, plan, progress).await?;
        progress.phase("blacklisted tokens", None);
        counts.tokens_added = self.tokens(plan).await?;
        // `setval` is not undone by a rollback: a dry run leaves it alone.
        if !plan.dry_run {
            self.client
                .batch_execute(MOVE_SEQUENCES)
                .await
                .map_err(classify)?;
        }
        if !counts.changed_nothing() {
            self.record(&counts).await?;
        }
        Ok(counts)
    }
}

#[async_trait]
impl ImportTarget for PgImport {
    async fn imported_before(&mut self) -> Result<ImportedBefore, StoreError> {
        let totals = self
            .rows_of(
                "SELECT (SELECT count(*) FROM django_import_runs), (SELECT count(*) FROM users)",
                &[],
            )
            .await?;
        let per_chat = self
            .rows_of("SELECT chat_id, messages FROM django_imported_chats", &[])
            .await?;
        let totals = totals
            .first()
            .ok_or(StoreError::Inconsistent("no totals"))?;
        Ok(ImportedBefore {
            runs: totals.get(0),
            users: totals.get(1),
            messages_per_chat: per_chat.iter().map(|r| (r.get(0), r.get(1))).collect(),
        })
    }

    async fn import(
        &mut self,
        source: &dyn MessageSource,
        plan: &ImportPlan,
        progress: &dyn ImportProgress,
    ) -> Result<ImportCounts, StoreError> {
        // One import at a time; a big sort for the numbering stays in memory.
        self.client
            .batch_execute(
                "BEGIN; SET LOCAL TimeZone = 'UTC'; SET LOCAL DateStyle = 'ISO';
                 SET LOCAL work_mem = '256MB';
                 LOCK TABLE django_import_runs IN EXCLUSIVE MODE;",
            )
            .await
            .map_err(classify)?;
        let outcome = self.run(source, plan, progress).await;
        let end = if outcome.is_ok() && !plan.dry_run {
            "COMMIT"
        } else {
            "ROLLBACK"
        };
        self.client.batch_execute(end).await.map_err(classify)?;
        outcome
    }
}
