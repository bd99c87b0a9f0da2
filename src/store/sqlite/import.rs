//! The Django import into the embedded store, in one `IMMEDIATE` transaction
//! on a connection of its own (on a blocking thread). Messages arrive in
//! batches, by chat and then in the order they are numbered; each chat's
//! already imported ids are skipped, the rest numbered after its `last_seq`,
//! and both participants' read markers moved to the new end (the history the
//! Django backend served counts as read).

use super::queries::micros;
use super::{failed, SqliteStore};
use crate::store::import::{
    ImportChat, ImportCounts, ImportPlan, ImportProgress, ImportTarget, ImportToken, ImportUser,
    ImportedBefore, MessageSource, SourceMessage,
};
use crate::store::StoreError;
use async_trait::async_trait;
use futures_util::StreamExt;
use rusqlite::{params, Connection, OptionalExtension, TransactionBehavior};
use std::collections::HashSet;
use std::path::{Path, PathBuf};
use tokio::sync::mpsc;

/// Messages handed to the writing thread at once.
const BATCH: usize = 2_000;

/// The embedded store, opened for an import.
pub struct SqliteImport {
    path: PathBuf,
}

impl SqliteImport {
    /// Opens (creating and migrating) the store in `data_dir`.
    pub fn open(data_dir: &Path) -> Result<Self, StoreError> {
        let store = SqliteStore::open(data_dir)?;
        Ok(SqliteImport { path: store.path })
    }
}

fn connect(path: &Path) -> Result<Connection, StoreError> {
    let conn = Connection::open(path).map_err(failed)?;
    conn.busy_timeout(std::time::Duration::from_secs(30))
        .map_err(failed)?;
    Ok(conn)
}

async fn blocking<T: Send + 'static>(
    work: impl FnOnce() -> Result<T, StoreError> + Send + 'static,
) -> Result<T, StoreError> {
    tokio::task::spawn_blocking(work)
        .await
        .map_err(|e| StoreError::Failed(format!("the import thread failed: {e}")))?
}

#[async_trait]
impl ImportTarget for SqliteImport {
    async fn imported_before(&mut self) -> Result<ImportedBefore, StoreError> {
        let path = self.path.clone();
        blocking(move || {
            let conn = connect(&path)?;
            let count = |sql: &str| conn.query_row(sql, [], |row| row.get(0)).map_err(failed);
            let runs = count("SELECT count(*) FROM django_import_runs")?;
            let users = count("SELECT count(*) FROM users")?;
            let mut statement = conn
                .prepare("SELECT chat_id, messages FROM django_imported_chats")
                .map_err(failed)?;
            let per_chat = statement
                .query_map([], |row| Ok((row.get(0)?, row.get(1)?)))
                .map_err(failed)?
                .collect::<Result<_, _>>()
                .map_err(failed)?;
            Ok(ImportedBefore {
                runs,
                users,
                messages_per_chat: per_chat,
            })
        })
        .await
    }

    async fn import(
        &mut self,
        source: &dyn MessageSource,
        plan: &ImportPlan,
        progress: &dyn ImportProgress,
    ) -> Result<ImportCounts, StoreError> {
        let (batches, received) = mpsc::channel::<Fed>(4);
        let (path, owned) = (self.path.clone(), plan.clone());
        let writer = tokio::task::spawn_blocking(move || write_all(&path, &owned, received));
        progress.phase(
            "reading and storing messages",
            Some(plan.messages_to_read()),
        );
        // Without `Fed::End` (a failed read) the writer rolls back.
        let fed = feed(source, plan, &batches, progress).await;
        if fed.is_ok() {
            let _ = batches.send(Fed::End).await;
        }
        drop(batches);
        let written = writer
            .await
            .map_err(|e| StoreError::Failed(format!("the import thread failed: {e}")))?;
        fed?;
        written
    }
}

/// What the reading side hands the writer.
enum Fed {
    Batch(Vec<SourceMessage>),
    /// Every message was read.
    End,
}

/// Streams the plan's messages to the writer in batches.
async fn feed(
    source: &dyn MessageSource,
    plan: &ImportPlan,
    batches: &mpsc::Sender<Fed>,
    progress: &dyn ImportProgress,
) -> Result<(), StoreError> {
    let chats: Vec<i64> = plan.message_chats.iter().map(|&(chat, _)| chat).collect();
    if chats.is_empty() {
        return Ok(());
    }
    let messages = source.messages(&chats).await?;
    let mut chunks = std::pin::pin!(messages.chunks(BATCH));
    while let Some(chunk) = chunks.next().await {
        let batch = chunk.into_iter().collect::<Result<Vec<_>, _>>()?;
        progress.advance(batch.len() as u64);
        if batches.send(Fed::Batch(batch)).await.is_err() {
            break; // the writer failed; its error is the one reported
        }
    }
    Ok(())
}

/// The whole import on one connection: committed unless it failed or the
/// plan is a dry run (then rolled back).
fn write_all(
    path: &Path,
    plan: &ImportPlan,
    messages: mpsc::Receiver<Fed>,
) -> Result<ImportCounts, StoreError> {
    let mut conn = connect(path)?;
    let tx = conn
        .transaction_with_behavior(TransactionBehavior::Immediate)
        .map_err(failed)?;
    let mut counts = ImportCounts::default();
    for user in &plan.users {
        upsert_user(&tx, user, &mut counts)?;
    }
    for chat in &plan.chats {
        counts.chats_added += insert_chat(&tx, chat)?;
    }
    counts.messages_added = store_messages(&tx, messages)?;
    for &(chat, count) in &plan.message_chats {
        tx.execute(
            "INSERT INTO django_imported_chats (chat_id, messages) VALUES (?1, ?2)
             ON CONFLICT (chat_id) DO UPDATE SET messages = excluded.messages",
            params![chat, count],
        )
        .map_err(failed)?;
    }
    for token in &plan.tokens {
        counts.tokens_added += insert_token(&tx, token)?;
    }
    if !counts.changed_nothing() {
        record_run(&tx, &counts)?;
    }
    if plan.dry_run {
        tx.rollback().map_err(failed)?;
    } else {
        tx.commit().map_err(failed)?;
    }
    Ok(counts)
}

/// The user's stored fields that an import may change.
type UserFields = (String, String, String, Option<String>, String, bool);

fn upsert_user(
    conn: &Connection,
    user: &ImportUser,
    counts: &mut ImportCounts,
) -> Result<(), StoreError> {
    let stored: Option<UserFields> = conn
        .query_row(
            "SELECT email, password_hash, full_name, nickname, other_info, is_active
             FROM users WHERE id = ?1",
            [user.id],
            |r| {
                Ok((
                    r.get(0)?,
                    r.get(1)?,
                    r.get(2)?,
                    r.get(3)?,
                    r.get(4)?,
                    r.get(5)?,
                ))
            },
        )
        .optional()
        .map_err(failed)?;
    // A password this server already rehashed is newer than Django's.
    let hash = match &stored {
        Some((_, ours, ..)) if ours.starts_with("$argon2id$") => ours.clone(),
        _ => user.password_hash.clone(),
    };
    let wanted: UserFields = (
        user.email.clone(),
        hash,
        user.full_name.clone(),
        user.nickname.clone(),
        user.other_info.clone(),
        user.is_active,
    );
    match stored {
        Some(stored) if stored == wanted => return Ok(()),
        Some(_) => counts.users_updated += 1,
        None => counts.users_added += 1,
    }
    let (email, hash, full_name, nickname, other_info, is_active) = wanted;
    conn.execute(
        "INSERT INTO users (id, email, password_hash, full_name, nickname, other_info,
                            is_active, date_joined)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)
         ON CONFLICT (id) DO UPDATE SET email = excluded.email,
             password_hash = excluded.password_hash, full_name = excluded.full_name,
             nickname = excluded.nickname, other_info = excluded.other_info,
             is_active = excluded.is_active",
        params![
            user.id,
            email,
            hash,
            full_name,
            nickname,
            other_info,
            is_active,
            micros(user.date_joined)
        ],
    )
    .map_err(failed)?;
    Ok(())
}

fn insert_chat(conn: &Connection, chat: &ImportChat) -> Result<u64, StoreError> {
    let added = conn
        .execute(
            "INSERT INTO chats (id, pair_key, user_low, user_high, created_at)
             VALUES (?1, ?2, ?3, ?4, ?5) ON CONFLICT (id) DO NOTHING",
            params![
                chat.id,
                chat.pair_key,
                chat.user_low,
                chat.user_high,
                micros(chat.created_at)
            ],
        )
        .map_err(failed)?;
    Ok(added as u64)
}

fn insert_token(conn: &Connection, token: &ImportToken) -> Result<u64, StoreError> {
    let added = conn
        .execute(
            "INSERT INTO token_blacklist (jti, expires_at) VALUES (?1, ?2)
             ON CONFLICT DO NOTHING",
            params![token.jti, micros(token.expires_at)],
        )
        .map_err(failed)?;
    Ok(added as u64)
}

fn record_run(conn: &Connection, counts: &ImportCounts) -> Result<(), StoreError> {
    let count = |n: u64| i64::try_from(n).unwrap_or(i64::MAX);
    conn.execute(
        "INSERT INTO django_import_runs (finished_at, users_added, users_updated, chats_added,
                                         messages_added, tokens_added)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
        params![
            micros(time::OffsetDateTime::now_utc()),
            count(counts.users_added),
            count(counts.users_updated),
            count(counts.chats_added),
            count(counts.messages_added),
            count(counts.tokens_added)
        ],
    )
    .map_err(failed)?;
    Ok(())
}

/// Where the chat being written stands.
struct ChatInProgress {
    id: i64,
    last_seq: i64,
    added: i64,
    stored_ids: HashSet<i64>,
}

/// Stores the messages not stored yet, each chat numbered on from its
/// `last_seq`; returns how many. Fails when the feed stops before its end.
fn store_messages(conn: &Connection, mut fed: mpsc::Receiver<Fed>) -> Result<u64, StoreError> {
    let mut current: Option<ChatInProgress> = None;
    let mut added = 0u64;
    loop {
        let batch = match fed.blocking_recv() {
            Some(Fed::Batch(batch)) => batch,
            Some(Fed::End) => break,
            None => return Err(StoreError::Failed("reading the messages failed".into())),
        };
        for message in batch {
            if current.as_ref().is_none_or(|c| c.id != message.chat_id) {
                if let Some(done) = current.take() {
                    added += finish_chat(conn, &done)?;
                }
                current = Some(start_chat(conn, message.chat_id)?);
            }
            let chat = current
                .as_mut()
                .ok_or(StoreError::Inconsistent("no chat"))?;
            if chat.stored_ids.contains(&message.id) {
                continue;
            }
            chat.added += 1;
            conn.execute(
                "INSERT INTO messages (id, chat_id, seq, sender_id, content, metadata,
                                       client_msg_id, created_at)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, NULL, ?7)",
                params![
                    message.id,
                    message.chat_id,
                    chat.last_seq + chat.added,
                    message.sender_id,
                    message.content,
                    message.metadata,
                    micros(message.created_at)
                ],
            )
            .map_err(failed)?;
        }
    }
    if let Some(done) = current {
        added += finish_chat(conn, &done)?;
    }
    Ok(added)
}

fn start_chat(conn: &Connection, id: i64) -> Result<ChatInProgress, StoreError> {
    let last_seq = conn
        .query_row("SELECT last_seq FROM chats WHERE id = ?1", [id], |r| {
            r.get(0)
        })
        .map_err(failed)?;
    let mut statement = conn
        .prepare_cached("SELECT id FROM messages WHERE chat_id = ?1")
        .map_err(failed)?;
    let stored_ids = statement
        .query_map([id], |r| r.get(0))
        .map_err(failed)?
        .collect::<Result<_, _>>()
        .map_err(failed)?;
    Ok(ChatInProgress {
        id,
        last_seq,
        added: 0,
        stored_ids,
    })
}

/// Moves the chat's `last_seq` and both read markers to its new end.
fn finish_chat(conn: &Connection, chat: &ChatInProgress) -> Result<u64, StoreError> {
    if chat.added == 0 {
        return Ok(0);
    }
    let end = chat.last_seq + chat.added;
    conn.execute(
        "UPDATE chats SET last_seq = ?2 WHERE id = ?1",
        params![chat.id, end],
    )
    .map_err(failed)?;
    for participant in ["user_low", "user_high"] {
        let sql = format!(
            "INSERT INTO read_markers (chat_id, user_id, seq)
             SELECT id, {participant}, ?2 FROM chats WHERE id = ?1
             ON CONFLICT (chat_id, user_id) DO UPDATE SET seq = max(seq, excluded.seq)"
        );
        conn.execute(&sql, params![chat.id, end]).map_err(failed)?;
    }
    Ok(chat.added as u64)
}
