//! The embedded store: one SQLite file (WAL mode, `synchronous=FULL`) in the data
//! directory, owned by a single thread, the only user of `rusqlite`.
//!
//! Requests reach the thread over a channel. Reads run one by one; writes that
//! queue up while the thread is busy are committed together in one transaction
//! (group commit: one fsync for the lot), each in its own savepoint, and nobody
//! hears "done" before that commit. One writer means `seq` assignment and
//! duplicate checks need no locks.

mod failed_logins;
mod import;
mod migrations;
mod queries;
mod thread;

pub use import::SqliteImport;

use super::{
    all_answered, dedupe_batch, expand_repeats, Appended, ChatAccess, ChatPosition, ChatProgress,
    ChatStanding, Credentials, FailedLogins, History, NewMessage, NewUser, SeqWindow,
    StandingsRead, StartedChat, Store, StoreError,
};
use crate::model::{pair_key, Chat, Message, Timestamp, User};
use async_trait::async_trait;
use queries::{
    access_of, append_one, chat_by_id, chat_from_row, messages_in, micros, user_at, CHAT_SELECT,
};
use rusqlite::{params, Connection, OptionalExtension};
use std::path::{Path, PathBuf};
use std::time::Duration;
use thread::StoreThread;
use time::OffsetDateTime;

/// The SQLite implementation of [`Store`].
pub struct SqliteStore {
    thread: StoreThread,
    path: PathBuf,
}

fn failed(error: rusqlite::Error) -> StoreError {
    StoreError::Failed(error.to_string())
}

impl SqliteStore {
    /// Opens (creating when needed) `DATA_DIR/chat.sqlite3` and starts its thread.
    pub fn open(data_dir: &Path) -> Result<Self, StoreError> {
        std::fs::create_dir_all(data_dir).map_err(|e| {
            StoreError::Unavailable(format!("cannot create {}: {e}", data_dir.display()))
        })?;
        let path = data_dir.join("chat.sqlite3");
        let mut conn = Connection::open(&path).map_err(failed)?;
        conn.execute_batch(
            "PRAGMA journal_mode = WAL; PRAGMA synchronous = FULL; PRAGMA foreign_keys = ON;",
        )
        .map_err(failed)?;
        migrations::migrate(&mut conn)?;
        let thread = StoreThread::start(conn)?;
        Ok(SqliteStore { thread, path })
    }

    /// Runs `work` on the store thread (in the group transaction when `write`).
    async fn call<T: Send + 'static>(
        &self,
        write: bool,
        work: impl FnOnce(&Connection) -> Result<T, StoreError> + Send + 'static,
    ) -> Result<T, StoreError> {
        self.thread.call(write, work).await
    }
}

#[async_trait]
impl Store for SqliteStore {
    async fn create_user(&self, user: NewUser) -> Result<User, StoreError> {
        self.call(true, move |conn| {
            let inserted = conn.query_row(
                "INSERT INTO users (email, password_hash, full_name, nickname, other_info, date_joined)
                 VALUES (?, ?, ?, ?, ?, ?) RETURNING id",
                params![user.email, user.password_hash, user.full_name, user.nickname, user.other_info,
                        micros(OffsetDateTime::now_utc())],
                |row| row.get(0),
            );
            match inserted {
                Ok(id) => Ok(User { id, email: user.email, full_name: user.full_name, nickname: user.nickname }),
                Err(rusqlite::Error::SqliteFailure(e, _)) if e.code == rusqlite::ErrorCode::ConstraintViolation => {
                    Err(StoreError::EmailTaken)
                }
                Err(e) => Err(failed(e)),
            }
        })
        .await
    }

    async fn credentials(&self, email: &str) -> Result<Option<Credentials>, StoreError> {
        let email = email.to_owned();
        self.call(false, move |conn| {
            conn.query_row(
                "SELECT id, email, full_name, nickname, password_hash, is_active FROM users
                 WHERE lower(email) = lower(?)",
                [email],
                |row| {
                    Ok(Credentials {
                        user: user_at(row, 0)?,
                        password_hash: row.get(4)?,
                        is_active: row.get(5)?,
                    })
                },
            )
            .optional()
            .map_err(failed)
        })
        .await
    }

    async fn user(&self, id: i64) -> Result<Option<User>, StoreError> {
        self.call(false, move |conn| {
            conn.query_row(
                "SELECT id, email, full_name, nickname FROM users WHERE id = ? AND is_active",
                [id],
                |row| user_at(row, 0),
            )
            .optional()
            .map_err(failed)
        })
        .await
    }

    async fn replace_password_hash(
        &self,
        user_id: i64,
        replaced: &str,
        hash: &str,
    ) -> Result<bool, StoreError> {
        let (replaced, hash) = (replaced.to_owned(), hash.to_owned());
        self.call(true, move |conn| {
            conn.execute(
                "UPDATE users SET password_hash = ?3 WHERE id = ?1 AND password_hash = ?2",
                params![user_id, replaced, hash],
            )
            .map(|changed| changed > 0)
            .map_err(failed)
        })
        .await
    }

    async fn inactive_users(&self) -> Result<Vec<i64>, StoreError> {
        self.call(false, move |conn| {
            let mut statement = conn
                .prepare_cached("SELECT id FROM users WHERE NOT is_active")
                .map_err(failed)?;
            let ids = statement.query_map([], |row| row.get(0)).map_err(failed)?;
            ids.collect::<Result<Vec<i64>, _>>().map_err(failed)
        })
        .await
    }

    async fn search_users(
        &self,
        query: &str,
        exclude: i64,
        limit: i64,
    ) -> Result<Vec<User>, StoreError> {
        let pattern = super::search_pattern(query);
        self.call(false, move |conn| {
            let mut statement = conn
                .prepare_cached(
                    "SELECT id, email, full_name, nickname FROM users
                     WHERE id <> ?1 AND is_active AND (email LIKE ?2 ESCAPE '\\' OR full_name LIKE ?2 ESCAPE '\\'
                           OR coalesce(nickname, '') LIKE ?2 ESCAPE '\\')
                     ORDER BY id LIMIT ?3",
                )
                .map_err(failed)?;
            let rows = statement.query_map(params![exclude, pattern, limit], |row| user_at(row, 0)).map_err(failed)?;
            rows.collect::<Result<_, _>>().map_err(failed)
        })
        .await
    }

    async fn start_chat(&self, a: &User, b: &User) -> Result<StartedChat, StoreError> {
        let key = pair_key(a.id, b.id);
        let (low, high) = (a.id.min(b.id), a.id.max(b.id));
        let a_id = a.id;
        self.call(true, move |conn| {
            let created = conn
                .execute(
                    "INSERT INTO chats (pair_key, user_low, user_high, created_at) VALUES (?, ?, ?, ?)
                     ON CONFLICT (pair_key) DO NOTHING",
                    params![key, low, high, micros(OffsetDateTime::now_utc())],
                )
                .map_err(failed)?
                == 1;
            let id: i64 = conn
                .query_row("SELECT id FROM chats WHERE pair_key = ?", [&key], |row| row.get(0))
                .map_err(failed)?;
            let chat = chat_by_id(conn, id, a_id)?
                .ok_or(StoreError::Inconsistent("a started chat is missing"))?;
            Ok(StartedChat { chat, created })
        })
        .await
    }

    async fn chat_between(&self, a: &User, b: &User) -> Result<Option<Chat>, StoreError> {
        let key = pair_key(a.id, b.id);
        let a_id = a.id;
        self.call(false, move |conn| {
            let id: Option<i64> = conn
                .query_row("SELECT id FROM chats WHERE pair_key = ?", [&key], |row| {
                    row.get(0)
                })
                .optional()
                .map_err(failed)?;
            match id {
                Some(id) => chat_by_id(conn, id, a_id),
                None => Ok(None),
            }
        })
        .await
    }

    async fn user_and_chat(
        &self,
        user_id: i64,
        chat_id: i64,
    ) -> Result<(Option<User>, Option<ChatAccess>), StoreError> {
        self.call(false, move |conn| {
            let sql = concat!(
                "SELECT u.id, u.email, u.full_name, u.nickname, ",
                queries::access_columns!(),
                " FROM (SELECT 1) AS one
                 LEFT JOIN users u ON u.id = ?1 AND u.is_active
                 LEFT JOIN chats c ON c.id = ?2"
            );
            conn.query_row(sql, params![user_id, chat_id], |row| {
                let user = match row.get::<_, Option<i64>>(0)? {
                    Some(_) => Some(user_at(row, 0)?),
                    None => None,
                };
                Ok((user, queries::access_at(row, 4)?))
            })
            .map_err(failed)
        })
        .await
    }

    async fn chats_progress(&self, chats: &[i64]) -> Result<Vec<Option<ChatProgress>>, StoreError> {
        let chats = chats.to_vec();
        self.call(false, move |conn| {
            chats
                .iter()
                .map(|&chat| queries::progress_of(conn, chat))
                .collect()
        })
        .await
    }

    async fn chat_standings(
        &self,
        reads: &[StandingsRead],
    ) -> Result<Vec<Vec<ChatStanding>>, StoreError> {
        let reads = reads.to_vec();
        self.call(false, move |conn| {
            reads
                .iter()
                .map(|&read| queries::standings_of(conn, read))
                .collect()
        })
        .await
    }

    async fn users_with_messages(&self, users: &[i64]) -> Result<Vec<bool>, StoreError> {
        let users = users.to_vec();
        self.call(false, move |conn| {
            let mut probe = conn
                .prepare_cached(
                    "SELECT EXISTS (SELECT 1 FROM chats
                     WHERE (user_low = ?1 OR user_high = ?1) AND last_seq > 0)",
                )
                .map_err(failed)?;
            users
                .iter()
                .map(|user| probe.query_row([user], |row| row.get(0)).map_err(failed))
                .collect()
        })
        .await
    }

    async fn chat(&self, chat_id: i64, reader: i64) -> Result<Option<Chat>, StoreError> {
        self.call(false, move |conn| {
            let chat = chat_by_id(conn, chat_id, reader)?;
            Ok(chat.filter(|chat| chat.participants.iter().any(|u| u.id == reader)))
        })
        .await
    }

    async fn chat_positions(
        &self,
        user_id: i64,
        chats: &[i64],
    ) -> Result<Vec<ChatPosition>, StoreError> {
        let mut chats = chats.to_vec();
        // Each chat once, however often it was named (as PostgreSQL answers).
        chats.sort_unstable();
        chats.dedup();
        self.call(false, move |conn| {
            let mut statement = conn
                .prepare_cached(
                    "SELECT id, CASE WHEN user_low = ?1 THEN user_high ELSE user_low END, last_seq
                     FROM chats WHERE id = ?2 AND ?1 IN (user_low, user_high)",
                )
                .map_err(failed)?;
            let mut found = Vec::with_capacity(chats.len());
            for chat in chats {
                let position = statement
                    .query_row(params![user_id, chat], |row| {
                        Ok(ChatPosition {
                            chat: row.get(0)?,
                            peer: row.get(1)?,
                            last_seq: row.get(2)?,
                        })
                    })
                    .optional()
                    .map_err(failed)?;
                found.extend(position);
            }
            Ok(found)
        })
        .await
    }

    async fn chats_of(&self, user_id: i64) -> Result<Vec<Chat>, StoreError> {
        self.call(false, move |conn| {
            let sql = format!(
                "{CHAT_SELECT} WHERE c.user_low = ?1 OR c.user_high = ?1 ORDER BY updated_at DESC, c.id DESC"
            );
            let mut statement = conn.prepare_cached(&sql).map_err(failed)?;
            let rows = statement.query_map([user_id], chat_from_row).map_err(failed)?;
            rows.collect::<Result<_, _>>().map_err(failed)
        })
        .await
    }

    async fn messages_between(
        &self,
        chat_id: i64,
        from_seq: i64,
        to_seq: i64,
        max_bytes: usize,
    ) -> Result<Vec<Message>, StoreError> {
        self.call(false, move |conn| {
            messages_in(conn, chat_id, (from_seq, to_seq), max_bytes)
        })
        .await
    }

    async fn history(
        &self,
        chat_id: i64,
        reader: i64,
        window: SeqWindow,
    ) -> Result<Option<History>, StoreError> {
        self.call(false, move |conn| {
            let Some(access) = access_of(conn, chat_id)? else {
                return Ok(None);
            };
            let messages = if access.includes(reader) {
                let range = window.range(access.last_seq);
                messages_in(conn, chat_id, (*range.start(), *range.end()), usize::MAX)?
            } else {
                Vec::new()
            };
            Ok(Some(History { access, messages }))
        })
        .await
    }

    async fn append_messages(&self, batch: &[NewMessage]) -> Result<Vec<Appended>, StoreError> {
        let batch = batch.to_vec();
        self.call(true, move |conn| {
            let (unique, slots) = dedupe_batch(&batch);
            let now = micros(Timestamp::now().0);
            let stored = unique
                .iter()
                .map(|message| append_one(conn, message, now).map(Some))
                .collect::<Result<Vec<_>, _>>()?;
            expand_repeats(all_answered(stored)?, &slots, &unique)
        })
        .await
    }

    async fn mark_read(&self, chat_id: i64, user_id: i64, seq: i64) -> Result<i64, StoreError> {
        self.call(true, move |conn| {
            conn.query_row(
                "INSERT INTO read_markers (chat_id, user_id, seq)
                 SELECT id, ?2, min(?3, last_seq) FROM chats
                 WHERE id = ?1 AND ?2 IN (user_low, user_high)
                 ON CONFLICT (chat_id, user_id) DO UPDATE SET seq = max(seq, excluded.seq)
                 RETURNING seq",
                params![chat_id, user_id, seq],
                |row| row.get(0),
            )
            .optional()
            .map(|marker| marker.unwrap_or(0))
            .map_err(failed)
        })
        .await
    }

    async fn blacklist_token(&self, jti: &str, expires_at: i64) -> Result<(), StoreError> {
        let jti = jti.to_owned();
        self.call(true, move |conn| {
            conn.execute(
                "INSERT INTO token_blacklist (jti, expires_at) VALUES (?, ?) ON CONFLICT DO NOTHING",
                params![jti, expires_at * 1_000_000],
            )
            .map(|_| ())
            .map_err(failed)
        })
        .await
    }

    async fn is_token_blacklisted(&self, jti: &str) -> Result<bool, StoreError> {
        let jti = jti.to_owned();
        self.call(false, move |conn| {
            conn.query_row("SELECT 1 FROM token_blacklist WHERE jti = ?", [jti], |_| {
                Ok(())
            })
            .optional()
            .map(|found| found.is_some())
            .map_err(failed)
        })
        .await
    }

    async fn failed_logins(&self, account: &str) -> Result<Option<FailedLogins>, StoreError> {
        let account = account.to_owned();
        let now = micros(OffsetDateTime::now_utc());
        self.call(false, move |conn| {
            failed_logins::counted(conn, &account, now)
        })
        .await
    }

    async fn count_failed_login(
        &self,
        account: &str,
        window: Duration,
    ) -> Result<FailedLogins, StoreError> {
        let account = account.to_owned();
        let now = micros(OffsetDateTime::now_utc());
        self.call(true, move |conn| {
            failed_logins::count(conn, &account, now, window)
        })
        .await
    }

    async fn ping(&self) -> Result<(), StoreError> {
        self.call(false, |conn| {
            conn.query_row("SELECT 1", [], |_| Ok(())).map_err(failed)
        })
        .await
    }

    fn describe(&self) -> String {
        format!("sqlite ({})", self.path.display())
    }
}
