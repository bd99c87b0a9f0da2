//! The embedded store: one SQLite file (WAL mode, `synchronous=FULL`) in the data
//! directory, owned by a single thread, the only user of `rusqlite`.
//!
//! Requests reach the thread over a channel. Reads run one by one; writes that
//! queue up while the thread is busy are committed together in one transaction
//! (group commit: one fsync for the lot), each in its own savepoint, and nobody
//! hears "done" before that commit. One writer means `seq` assignment and
//! duplicate checks need no locks.

use super::{
    all_answered, dedupe_batch, expand_repeats, Appended, Assigned, ChatAccess, Credentials,
    History, NewMessage, NewUser, SeqWindow, StartedChat, Store, StoreError,
};
use crate::model::{metadata_from_text, pair_key, Chat, Message, Timestamp, User};
use async_trait::async_trait;
use rusqlite::{params, Connection, OptionalExtension, Row};
use std::path::{Path, PathBuf};
use std::sync::mpsc;
use time::OffsetDateTime;
use tokio::sync::oneshot;

/// Sends a job's answer once its transaction's fate is known.
type Finish = Box<dyn FnOnce(bool) + Send>;

/// Runs a job's SQL: whether it succeeded, and how to answer.
type Work = Box<dyn FnOnce(&Connection) -> (bool, Finish) + Send>;

struct Job {
    write: bool,
    run: Work,
}

/// Writes committed together at most.
const GROUP_MAX: usize = 1024;

const MIGRATIONS: &[(i64, &str)] = &[(1, include_str!("migrations/0001_init.sql"))];

/// The SQLite implementation of [`Store`].
pub struct SqliteStore {
    jobs: mpsc::Sender<Job>,
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
        migrate(&mut conn)?;
        let (jobs, queue) = mpsc::channel();
        std::thread::Builder::new()
            .name("chat-store".into())
            .spawn(move || serve(conn, queue))
            .map_err(|e| StoreError::Unavailable(format!("cannot start the store thread: {e}")))?;
        Ok(SqliteStore { jobs, path })
    }

    /// Runs `work` on the store thread (in the group transaction when `write`).
    async fn call<T: Send + 'static>(
        &self,
        write: bool,
        work: impl FnOnce(&Connection) -> Result<T, StoreError> + Send + 'static,
    ) -> Result<T, StoreError> {
        let (tx, rx) = oneshot::channel();
        let run = Box::new(move |conn: &Connection| -> (bool, Finish) {
            let result = work(conn);
            let ok = result.is_ok();
            let finish: Finish = Box::new(move |committed| {
                let _ = tx.send(if committed {
                    result
                } else {
                    Err(StoreError::Unavailable(
                        "the transaction did not commit".into(),
                    ))
                });
            });
            (ok, finish)
        });
        let gone = || StoreError::Unavailable("the store thread has stopped".into());
        self.jobs.send(Job { write, run }).map_err(|_| gone())?;
        rx.await.map_err(|_| gone())?
    }
}

fn migrate(conn: &mut Connection) -> Result<(), StoreError> {
    conn.execute_batch(
        "CREATE TABLE IF NOT EXISTS schema_migrations (version INTEGER PRIMARY KEY)",
    )
    .map_err(failed)?;
    for (version, sql) in MIGRATIONS {
        let applied: bool = conn
            .query_row(
                "SELECT 1 FROM schema_migrations WHERE version = ?",
                [version],
                |_| Ok(()),
            )
            .optional()
            .map_err(failed)?
            .is_some();
        if applied {
            continue;
        }
        let tx = conn.transaction().map_err(failed)?;
        tx.execute_batch(sql).map_err(failed)?;
        tx.execute(
            "INSERT INTO schema_migrations (version) VALUES (?)",
            [version],
        )
        .map_err(failed)?;
        tx.commit().map_err(failed)?;
        tracing::info!(version, "applied sqlite migration");
    }
    Ok(())
}

/// The store thread: reads one by one, queued writes in one transaction.
fn serve(conn: Connection, queue: mpsc::Receiver<Job>) {
    while let Ok(first) = queue.recv() {
        if !first.write {
            let (_, finish) = (first.run)(&conn);
            finish(true);
            continue;
        }
        let (mut writes, mut reads) = (vec![first], Vec::new());
        while writes.len() < GROUP_MAX {
            match queue.try_recv() {
                Ok(job) if job.write => writes.push(job),
                Ok(job) => reads.push(job),
                Err(_) => break,
            }
        }
        commit_group(&conn, writes);
        for job in reads {
            let (_, finish) = (job.run)(&conn);
            finish(true);
        }
    }
}

/// Runs writes in one transaction, each in a savepoint (a failed one leaves no
/// trace); answers them after the commit.
fn commit_group(conn: &Connection, writes: Vec<Job>) {
    let began = conn.execute_batch("BEGIN IMMEDIATE").is_ok();
    let mut finishes = Vec::with_capacity(writes.len());
    for job in writes {
        let _ = conn.execute_batch("SAVEPOINT job");
        let (ok, finish) = (job.run)(conn);
        if !ok {
            let _ = conn.execute_batch("ROLLBACK TO job");
        }
        let _ = conn.execute_batch("RELEASE job");
        finishes.push(finish);
    }
    let committed = began && conn.execute_batch("COMMIT").is_ok();
    if !committed {
        let _ = conn.execute_batch("ROLLBACK");
    }
    for finish in finishes {
        finish(committed);
    }
}

fn micros(t: OffsetDateTime) -> i64 {
    (t.unix_timestamp_nanos() / 1000) as i64
}

fn timestamp(micros: i64) -> Timestamp {
    let t = OffsetDateTime::from_unix_timestamp_nanos(micros as i128 * 1000)
        .unwrap_or(OffsetDateTime::UNIX_EPOCH);
    Timestamp(t)
}

fn user_at(row: &Row<'_>, first: usize) -> rusqlite::Result<User> {
    Ok(User {
        id: row.get(first)?,
        email: row.get(first + 1)?,
        full_name: row.get(first + 2)?,
        nickname: row.get(first + 3)?,
    })
}

const CHAT_SELECT: &str =
    "SELECT c.id, c.created_at, coalesce(m.created_at, c.created_at) AS updated_at,
        ua.id, ua.email, ua.full_name, ua.nickname, ub.id, ub.email, ub.full_name, ub.nickname,
        m.id, m.seq, m.content, m.metadata, m.client_msg_id, m.created_at, m.sender_id
    FROM chats c
    JOIN users ua ON ua.id = c.user_low
    JOIN users ub ON ub.id = c.user_high
    LEFT JOIN messages m ON m.chat_id = c.id AND m.seq = c.last_seq";

fn chat_from_row(row: &Row<'_>) -> rusqlite::Result<Chat> {
    let participants = [user_at(row, 3)?, user_at(row, 7)?];
    let id: i64 = row.get(0)?;
    let last_message = match row.get::<_, Option<i64>>(11)? {
        None => None,
        Some(message_id) => {
            let sender_id: i64 = row.get(17)?;
            let sender = participants
                .iter()
                .find(|u| u.id == sender_id)
                .unwrap_or(&participants[0]);
            Some(Message {
                id: message_id,
                chat: id,
                seq: row.get(12)?,
                sender: sender.clone(),
                content: row.get(13)?,
                metadata: metadata_from_text(row.get(14)?),
                client_msg_id: row.get(15)?,
                created_at: timestamp(row.get(16)?),
            })
        }
    };
    Ok(Chat {
        id,
        created_at: timestamp(row.get(1)?),
        updated_at: timestamp(row.get(2)?),
        participants,
        last_message,
    })
}

fn chat_by_id(conn: &Connection, chat_id: i64) -> Result<Chat, StoreError> {
    let sql = format!("{CHAT_SELECT} WHERE c.id = ?");
    conn.query_row(&sql, [chat_id], chat_from_row)
        .map_err(failed)
}

/// A chat's participants and `last_seq`; `None` when there is no such chat.
fn access_of(conn: &Connection, chat_id: i64) -> Result<Option<ChatAccess>, StoreError> {
    conn.query_row(
        "SELECT user_low, user_high, last_seq FROM chats WHERE id = ?",
        [chat_id],
        |row| {
            Ok(ChatAccess {
                participants: [row.get(0)?, row.get(1)?],
                last_seq: row.get(2)?,
            })
        },
    )
    .optional()
    .map_err(failed)
}

/// A chat's messages with `from_seq <= seq <= to_seq`, ascending.
/// See [`Store::messages_between`]: rows are read one at a time, so no more
/// than `max_bytes` (plus one message) is ever held.
fn messages_in(
    conn: &Connection,
    chat_id: i64,
    (from_seq, to_seq): (i64, i64),
    max_bytes: usize,
) -> Result<Vec<Message>, StoreError> {
    let mut statement = conn
        .prepare_cached(
            "SELECT m.id, m.seq, m.content, m.metadata, m.client_msg_id, m.created_at,
                    u.id, u.email, u.full_name, u.nickname
             FROM messages m JOIN users u ON u.id = m.sender_id
             WHERE m.chat_id = ? AND m.seq BETWEEN ? AND ? ORDER BY m.seq",
        )
        .map_err(failed)?;
    let rows = statement
        .query_map(params![chat_id, from_seq, to_seq], |row| {
            Ok(Message {
                id: row.get(0)?,
                chat: chat_id,
                seq: row.get(1)?,
                content: row.get(2)?,
                metadata: metadata_from_text(row.get(3)?),
                client_msg_id: row.get(4)?,
                created_at: timestamp(row.get(5)?),
                sender: user_at(row, 6)?,
            })
        })
        .map_err(failed)?;
    let (mut messages, mut bytes) = (Vec::new(), 0usize);
    for row in rows {
        let message = row.map_err(failed)?;
        bytes += message.content.len() + message.metadata.get().len();
        messages.push(message);
        if bytes >= max_bytes {
            break;
        }
    }
    Ok(messages)
}

/// Appends one message whose client id is not repeated in its batch.
fn append_one(conn: &Connection, message: &NewMessage, now: i64) -> Result<Appended, StoreError> {
    if let Some(client_id) = &message.client_msg_id {
        let existing = conn
            .prepare_cached(
                "SELECT id, chat_id, seq, content, metadata, created_at FROM messages
                 WHERE sender_id = ? AND client_msg_id = ?",
            )
            .map_err(failed)?
            .query_row(params![message.sender.id, client_id], |row| {
                Ok((
                    row.get::<_, i64>(1)?,
                    Message {
                        id: row.get(0)?,
                        chat: row.get(1)?,
                        seq: row.get(2)?,
                        sender: message.sender.clone(),
                        content: row.get(3)?,
                        metadata: metadata_from_text(row.get(4)?),
                        client_msg_id: Some(client_id.clone()),
                        created_at: timestamp(row.get(5)?),
                    },
                ))
            })
            .optional()
            .map_err(failed)?;
        match existing {
            Some((chat, original)) if chat == message.chat_id => {
                return Ok(Appended::Duplicate(original))
            }
            Some(_) => return Ok(Appended::ClientIdConflict),
            None => {}
        }
    }
    let seq: i64 = conn
        .prepare_cached("UPDATE chats SET last_seq = last_seq + 1 WHERE id = ? RETURNING last_seq")
        .map_err(failed)?
        .query_row([message.chat_id], |row| row.get(0))
        .map_err(failed)?;
    let id: i64 = conn
        .prepare_cached(
            "INSERT INTO messages (chat_id, seq, sender_id, content, metadata, client_msg_id, created_at)
             VALUES (?, ?, ?, ?, ?, ?, ?) RETURNING id",
        )
        .map_err(failed)?
        .query_row(
            params![
                message.chat_id,
                seq,
                message.sender.id,
                message.content,
                message.metadata,
                message.client_msg_id,
                now
            ],
            |row| row.get(0),
        )
        .map_err(failed)?;
    Ok(Appended::Created(Assigned {
        id,
        seq,
        created_at: timestamp(now),
    }))
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
                "SELECT id, email, full_name, nickname FROM users WHERE id = ?",
                [id],
                |row| user_at(row, 0),
            )
            .optional()
            .map_err(failed)
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
            Ok(StartedChat { chat: chat_by_id(conn, id)?, created })
        })
        .await
    }

    async fn user_and_chat(
        &self,
        user_id: i64,
        chat_id: i64,
    ) -> Result<(Option<User>, Option<ChatAccess>), StoreError> {
        self.call(false, move |conn| {
            conn.query_row(
                "SELECT u.id, u.email, u.full_name, u.nickname, c.user_low, c.user_high, c.last_seq
                 FROM (SELECT 1) AS one
                 LEFT JOIN users u ON u.id = ?1
                 LEFT JOIN chats c ON c.id = ?2",
                params![user_id, chat_id],
                |row| {
                    let user = match row.get::<_, Option<i64>>(0)? {
                        Some(_) => Some(user_at(row, 0)?),
                        None => None,
                    };
                    let access = match row.get::<_, Option<i64>>(4)? {
                        Some(low) => Some(ChatAccess {
                            participants: [low, row.get(5)?],
                            last_seq: row.get(6)?,
                        }),
                        None => None,
                    };
                    Ok((user, access))
                },
            )
            .map_err(failed)
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
                 SELECT id, ?2, min(?3, last_seq) FROM chats WHERE id = ?1
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
