//! The PostgreSQL store: a bb8 pool of tokio-postgres connections, each with every
//! statement prepared once when it connects. The only module that speaks SQL to
//! PostgreSQL (migrations aside).

mod append;
pub mod migrations;

use super::{
    dedupe_batch, Appended, Assigned, ChatAccess, Credentials, History, HistoryRead, NewMessage,
    NewUser, SeqRun, SeqWindow, StartedChat, Store, StoreError, UserAndChat,
};
use crate::config::DatabaseConfig;
use crate::model::{metadata_from_text, pair_key, Chat, Message, Timestamp, User};
use append::{append_on, AppendPath};
use async_trait::async_trait;
use bb8_postgres::PostgresConnectionManager;
use std::time::Duration;
use time::OffsetDateTime;
use tokio_postgres::error::SqlState;
use tokio_postgres::types::Type;
use tokio_postgres::{NoTls, Row, Statement};

/// User search, sent as a one-shot statement (one round trip, planned for
/// its own pattern; see migration 0006): a prepared statement's generic plan
/// walks every user in id order when the pattern is rare.
pub const SEARCH_USERS: &str = "SELECT id, email, full_name, nickname FROM users
     WHERE id <> $1 AND is_active AND (email ILIKE $2 OR full_name ILIKE $2
           OR coalesce(nickname, '') ILIKE $2)
     ORDER BY id LIMIT $3";

/// Columns of a chat row with both participants and its last message; see
/// [`chat_from_row`] for their positions.
macro_rules! chat_select {
    ($where:literal) => {
        concat!(
            "SELECT c.id, c.created_at, coalesce(m.created_at, c.created_at) AS updated_at,
                ua.id, ua.email, ua.full_name, ua.nickname,
                ub.id, ub.email, ub.full_name, ub.nickname,
                m.id, m.seq, m.content, m.metadata::text, m.client_msg_id, m.created_at,
                m.sender_id
             FROM chats c
             JOIN users ua ON ua.id = c.user_low
             JOIN users ub ON ub.id = c.user_high
             LEFT JOIN messages m ON m.chat_id = c.id AND m.seq = c.last_seq
             WHERE ",
            $where
        )
    };
}

/// Every statement the store runs, prepared on each new connection.
pub struct Statements {
    insert_user: Statement,
    credentials: Statement,
    user: Statement,
    insert_chat: Statement,
    chat_id_by_pair: Statement,
    users_and_chats: Statement,
    chat_by_id: Statement,
    chats_of: Statement,
    messages_between: Statement,
    history: Statement,
    histories: Statement,
    append_messages: Statement,
    append_new_messages: Statement,
    blacklist_token: Statement,
    is_blacklisted: Statement,
    mark_read: Statement,
}

impl Statements {
    async fn prepare(client: &tokio_postgres::Client) -> Result<Self, tokio_postgres::Error> {
        Ok(Statements {
            insert_user: client
                .prepare(
                    "INSERT INTO users (email, password_hash, full_name, nickname, other_info)
                     VALUES ($1, $2, $3, $4, $5::text::jsonb) RETURNING id",
                )
                .await?,
            credentials: client
                .prepare(
                    "SELECT id, email, full_name, nickname, password_hash, is_active
                     FROM users WHERE lower(email) = lower($1)",
                )
                .await?,
            user: client
                .prepare("SELECT id, email, full_name, nickname FROM users WHERE id = $1")
                .await?,
            insert_chat: client
                .prepare(
                    "INSERT INTO chats (pair_key, user_low, user_high) VALUES ($1, $2, $3)
                     ON CONFLICT (pair_key) DO NOTHING RETURNING id",
                )
                .await?,
            chat_id_by_pair: client
                .prepare("SELECT id FROM chats WHERE pair_key = $1")
                .await?,
            users_and_chats: client
                .prepare(
                    "SELECT q.ord::INT, u.id, u.email, u.full_name, u.nickname,
                            c.user_low, c.user_high, c.last_seq
                     FROM unnest($1::BIGINT[], $2::BIGINT[])
                          WITH ORDINALITY AS q(user_id, chat_id, ord)
                     LEFT JOIN users u ON u.id = q.user_id
                     LEFT JOIN chats c ON c.id = q.chat_id",
                )
                .await?,
            chat_by_id: client.prepare(chat_select!("c.id = $1")).await?,
            chats_of: client
                .prepare(chat_select!(
                    "c.user_low = $1 OR c.user_high = $1 ORDER BY updated_at DESC, c.id DESC"
                ))
                .await?,
            messages_between: client
                .prepare(
                    // A row is sent while the messages before it hold
                    // fewer than $4 bytes of content and metadata.
                    "SELECT m.id, m.seq, m.content, m.metadata, m.client_msg_id,
                            m.created_at, u.id, u.email, u.full_name, u.nickname
                     FROM (SELECT id, seq, content, metadata::text AS metadata, client_msg_id,
                                  created_at, sender_id,
                                  coalesce(sum(octet_length(content) + octet_length(metadata::text))
                                      OVER (ORDER BY seq ROWS BETWEEN UNBOUNDED PRECEDING
                                                         AND 1 PRECEDING), 0) AS before
                           FROM messages WHERE chat_id = $1 AND seq BETWEEN $2 AND $3) m
                     JOIN users u ON u.id = m.sender_id
                     WHERE m.before < $4 ORDER BY m.seq",
                )
                .await?,
            history: client
                .prepare(
                    "SELECT 1::INT, lo.id, lo.email, lo.full_name, lo.nickname,
                            hi.id, hi.email, hi.full_name, hi.nickname, c.last_seq,
                            m.id, m.seq, m.content, m.metadata::text, m.client_msg_id,
                            m.created_at, m.sender_id
                     FROM chats c
                     JOIN users lo ON lo.id = c.user_low
                     JOIN users hi ON hi.id = c.user_high
                     CROSS JOIN LATERAL (
                         SELECT CASE WHEN $6 THEN LEAST(c.last_seq, (c.last_seq - 1) % $3 + 1)
                                     ELSE LEAST($4, c.last_seq - $2) END AS upto
                     ) AS w
                     CROSS JOIN LATERAL (SELECT GREATEST($5, w.upto - $3 + 1) AS start) AS r
                     LEFT JOIN LATERAL (
                         SELECT * FROM messages m
                         WHERE m.chat_id = c.id AND $7 IN (c.user_low, c.user_high)
                           AND m.seq BETWEEN CASE WHEN $8::BIGINT <= r.start
                                                  THEN GREATEST(r.start, $9::BIGINT + 1)
                                                  ELSE r.start END
                                         AND w.upto
                     ) AS m ON true
                     WHERE c.id = $1",
                )
                .await?,
            // `OFFSET 0` keeps the messages subquery a subquery: flattened into the
            // join, its seq bounds became a filter over every message of the chat
            // instead of index conditions (7x slower at 1,000 messages per chat).
            histories: client
                .prepare(
                    "SELECT q.ord::INT, lo.id, lo.email, lo.full_name, lo.nickname,
                            hi.id, hi.email, hi.full_name, hi.nickname, c.last_seq,
                            m.id, m.seq, m.content, m.metadata::text, m.client_msg_id,
                            m.created_at, m.sender_id
                     FROM unnest($1::BIGINT[], $2::BIGINT[], $3::BIGINT[], $4::BIGINT[],
                                 $5::BIGINT[], $6::BOOL[], $7::BIGINT[], $8::BIGINT[],
                                 $9::BIGINT[])
                          WITH ORDINALITY
                          AS q(chat, skip, size, cap, floor, oldest, reader, held_first,
                               held_last, ord)
                     JOIN chats c ON c.id = q.chat
                     JOIN users lo ON lo.id = c.user_low
                     JOIN users hi ON hi.id = c.user_high
                     CROSS JOIN LATERAL (
                         SELECT CASE WHEN q.oldest
                                     THEN LEAST(c.last_seq, (c.last_seq - 1) % q.size + 1)
                                     ELSE LEAST(q.cap, c.last_seq - q.skip) END AS upto
                     ) AS w
                     CROSS JOIN LATERAL (
                         SELECT GREATEST(q.floor, w.upto - q.size + 1) AS start
                     ) AS r
                     LEFT JOIN LATERAL (
                         SELECT * FROM messages m
                         WHERE m.chat_id = c.id AND q.reader IN (c.user_low, c.user_high)
                           AND m.seq BETWEEN CASE WHEN q.held_first <= r.start
                                                  THEN GREATEST(r.start, q.held_last + 1)
                                                  ELSE r.start END
                                         AND w.upto
                         OFFSET 0
                     ) AS m ON true",
                )
                .await?,
            append_messages: client.prepare(append::APPEND_CHECKED).await?,
            append_new_messages: client.prepare(append::APPEND_NEW_MESSAGES).await?,
            blacklist_token: client
                .prepare(
                    "INSERT INTO token_blacklist (jti, expires_at)
                     VALUES ($1, to_timestamp($2::float8)) ON CONFLICT (jti) DO NOTHING",
                )
                .await?,
            is_blacklisted: client
                .prepare("SELECT 1 FROM token_blacklist WHERE jti = $1")
                .await?,
            mark_read: client
                .prepare(
                    "INSERT INTO read_markers AS r (chat_id, user_id, seq)
                     SELECT c.id, $2, LEAST($3, c.last_seq) FROM chats c WHERE c.id = $1
                     ON CONFLICT (chat_id, user_id) DO UPDATE
                       SET seq = GREATEST(r.seq, EXCLUDED.seq), updated_at = now()
                     RETURNING seq",
                )
                .await?,
        })
    }
}

/// A pooled connection and its prepared statements.
pub struct PreparedConnection {
    client: tokio_postgres::Client,
    statements: Statements,
}

/// bb8 manager: bb8-postgres connects, then every statement is prepared once.
pub struct PreparedManager {
    inner: PostgresConnectionManager<NoTls>,
}

impl bb8::ManageConnection for PreparedManager {
    type Connection = PreparedConnection;
    type Error = tokio_postgres::Error;

    async fn connect(&self) -> Result<Self::Connection, Self::Error> {
        let client = self.inner.connect().await?;
        let statements = Statements::prepare(&client).await?;
        Ok(PreparedConnection { client, statements })
    }

    async fn is_valid(&self, conn: &mut Self::Connection) -> Result<(), Self::Error> {
        self.inner.is_valid(&mut conn.client).await
    }

    fn has_broken(&self, conn: &mut Self::Connection) -> bool {
        conn.client.is_closed()
    }
}

type Pool = bb8::Pool<PreparedManager>;
type Conn<'a> = bb8::PooledConnection<'a, PreparedManager>;

/// Attempts per batch: the lean path, then the checked path up to three times
/// (a reused client id, a unique-key race between nodes, a deadlock).
const APPEND_ATTEMPTS: usize = 4;

/// The PostgreSQL implementation of [`Store`].
pub struct PgStore {
    pool: Pool,
}

impl PgStore {
    /// Connects (creating the database when it does not exist yet), applies pending
    /// migrations and builds the pool.
    pub async fn connect(config: &DatabaseConfig) -> Result<Self, StoreError> {
        let pg_config: tokio_postgres::Config = config
            .url
            .parse()
            .map_err(|e| StoreError::Unavailable(format!("bad database URL: {e}")))?;
        create_database_if_missing(&pg_config).await?;
        let mut client = connect_once(&pg_config).await?;
        migrations::run(&mut client).await?;
        let manager = PreparedManager {
            inner: PostgresConnectionManager::new(pg_config, NoTls),
        };
        let pool = bb8::Pool::builder()
            .max_size(config.pool_size.max(1))
            // Short: a request that waits longer for the database does so in
            // `PatientStore`, which asks the pool again (up to `DB_RETRY_SECS`).
            .connection_timeout(Duration::from_secs(1))
            .test_on_check_out(false)
            .build_unchecked(manager);
        Ok(PgStore { pool })
    }

    /// One history read through the one-read statement.
    async fn one_history(&self, read: &HistoryRead) -> Result<Option<History>, StoreError> {
        let conn = self.conn().await?;
        let SeqWindow {
            skip,
            size,
            cap,
            floor,
            oldest_page,
        } = read.window;
        let rows = conn
            .client
            .query(
                &conn.statements.history,
                &[
                    &read.chat_id,
                    &skip,
                    &size,
                    &cap,
                    &floor,
                    &oldest_page,
                    &read.reader,
                    &read.held.first,
                    &read.held.last,
                ],
            )
            .await
            .map_err(classify)?;
        Ok(history_from_rows(&rows, read.chat_id))
    }

    /// A pooled connection that is still open. After the database restarted,
    /// the pool holds connections it closed: one of them would fail its
    /// statement before sending it, so it is passed over here (dropped, and so
    /// discarded by the pool, see `has_broken`), which keeps "a statement
    /// failed on a dead connection" meaning "its outcome is unknown".
    async fn conn(&self) -> Result<Conn<'_>, StoreError> {
        loop {
            let conn = self.pool.get().await.map_err(|e| match e {
                // No statement of ours was sent: nothing happened.
                bb8::RunError::User(e) => StoreError::Unavailable(e.to_string()),
                bb8::RunError::TimedOut => {
                    StoreError::Unavailable("timed out waiting for a database connection".into())
                }
            })?;
            if !conn.client.is_closed() {
                return Ok(conn);
            }
        }
    }

    async fn chat_by_id(&self, chat_id: i64) -> Result<Chat, StoreError> {
        let conn = self.conn().await?;
        let row = conn
            .client
            .query_one(&conn.statements.chat_by_id, &[&chat_id])
            .await
            .map_err(classify)?;
        Ok(chat_from_row(&row))
    }
}

/// Connection-level failures of a statement mean its outcome is unknown
/// (`Interrupted`, 503); the rest are real errors.
fn classify(error: tokio_postgres::Error) -> StoreError {
    let transient = error.is_closed()
        || error.code().is_some_and(|code| {
            code.code().starts_with("08")
                || *code == SqlState::ADMIN_SHUTDOWN
                || *code == SqlState::CANNOT_CONNECT_NOW
                || *code == SqlState::TOO_MANY_CONNECTIONS
        })
        || error.as_db_error().is_none() && error.code().is_none();
    if transient {
        StoreError::Interrupted(error.to_string())
    } else {
        StoreError::Database(error)
    }
}

fn is_retryable_race(error: &tokio_postgres::Error) -> bool {
    error.code().is_some_and(|code| {
        *code == SqlState::UNIQUE_VIOLATION
            || *code == SqlState::T_R_DEADLOCK_DETECTED
            || *code == SqlState::T_R_SERIALIZATION_FAILURE
    })
}

async fn connect_once(
    config: &tokio_postgres::Config,
) -> Result<tokio_postgres::Client, StoreError> {
    let (client, connection) = config.connect(NoTls).await.map_err(classify_connect)?;
    tokio::spawn(async move {
        if let Err(e) = connection.await {
            tracing::warn!(error = %e, "migration connection ended");
        }
    });
    Ok(client)
}

fn classify_connect(error: tokio_postgres::Error) -> StoreError {
    StoreError::Unavailable(format!("cannot connect to PostgreSQL: {error}"))
}

/// A fresh machine has PostgreSQL but not our database: create it, as `createdb` would.
async fn create_database_if_missing(config: &tokio_postgres::Config) -> Result<(), StoreError> {
    let Err(error) = config.connect(NoTls).await else {
        return Ok(());
    };
    if error.code() != Some(&SqlState::INVALID_CATALOG_NAME) {
        return Err(classify_connect(error));
    }
    let name = config
        .get_dbname()
        .unwrap_or("chat_db")
        .replace('"', "\"\"");
    let mut admin = config.clone();
    admin.dbname("postgres");
    let client = connect_once(&admin).await?;
    match client
        .batch_execute(&format!("CREATE DATABASE \"{name}\""))
        .await
    {
        Ok(()) => {
            tracing::info!(database = %name, "created database");
            Ok(())
        }
        Err(e) if e.code() == Some(&SqlState::DUPLICATE_DATABASE) => Ok(()),
        Err(e) => Err(classify_connect(e)),
    }
}

fn user_at(row: &Row, first: usize) -> User {
    User {
        id: row.get(first),
        email: row.get(first + 1),
        full_name: row.get(first + 2),
        nickname: row.get(first + 3),
    }
}

fn timestamp(row: &Row, index: usize) -> Timestamp {
    Timestamp(row.get::<_, OffsetDateTime>(index))
}

/// The 0-based position in a request of `len` items that a row answers, from
/// the 1-based `ord` in its first column (`WITH ORDINALITY`); `None` when out of
/// range.
fn ord_index(row: &Row, len: usize) -> Option<usize> {
    usize::try_from(row.get::<_, i32>(0))
        .ok()?
        .checked_sub(1)
        .filter(|index| *index < len)
}

/// A message's sender: one of its chat's two participants.
fn sender_among(participants: &[User; 2], sender_id: i64) -> User {
    participants
        .iter()
        .find(|u| u.id == sender_id)
        .unwrap_or(&participants[0])
        .clone()
}

fn chat_from_row(row: &Row) -> Chat {
    let participants = [user_at(row, 3), user_at(row, 7)];
    let id: i64 = row.get(0);
    let last_message = row.get::<_, Option<i64>>(11).map(|message_id| Message {
        id: message_id,
        chat: id,
        seq: row.get(12),
        sender: sender_among(&participants, row.get(17)),
        content: row.get(13),
        metadata: metadata_from_text(row.get(14)),
        client_msg_id: row.get(15),
        created_at: timestamp(row, 16),
    });
    Chat {
        id,
        participants,
        created_at: timestamp(row, 1),
        updated_at: timestamp(row, 2),
        last_message,
    }
}

fn message_from_row(row: &Row, chat_id: i64) -> Message {
    Message {
        id: row.get(0),
        chat: chat_id,
        seq: row.get(1),
        content: row.get(2),
        metadata: metadata_from_text(row.get(3)),
        client_msg_id: row.get(4),
        created_at: timestamp(row, 5),
        sender: user_at(row, 6),
    }
}

/// One read's rows of the `histories` statement (ord, both participants,
/// `last_seq`, then a message or NULLs); `None` when there are none (no chat).
fn history_from_rows(rows: &[Row], chat_id: i64) -> Option<History> {
    let first = rows.first()?;
    let participants = [user_at(first, 1), user_at(first, 5)];
    let mut messages: Vec<Message> = rows
        .iter()
        .filter(|row| row.get::<_, Option<i64>>(10).is_some())
        .map(|row| Message {
            id: row.get(10),
            chat: chat_id,
            seq: row.get(11),
            content: row.get(12),
            metadata: metadata_from_text(row.get(13)),
            client_msg_id: row.get(14),
            created_at: timestamp(row, 15),
            sender: sender_among(&participants, row.get(16)),
        })
        .collect();
    // The rows come in heap order; sorting 25 values here is cheaper than a Sort node.
    messages.sort_unstable_by_key(|message| message.seq);
    Some(History {
        access: ChatAccess {
            participants: [participants[0].id, participants[1].id],
            last_seq: first.get(9),
        },
        messages,
    })
}

/// Columns: ord, outcome, id, seq, content, metadata, created_at. Content and
/// metadata come back only for a retried client id (the stored original).
fn outcome_from_row(row: &Row, request: &NewMessage) -> Appended {
    let assigned = Assigned {
        id: row.get(2),
        seq: row.get(3),
        created_at: timestamp(row, 6),
    };
    match row.get::<_, i16>(1) {
        0 => Appended::Created(assigned),
        1 => {
            let mut original = request.clone();
            if let Some(content) = row.get::<_, Option<String>>(4) {
                original.content = content;
            }
            if let Some(metadata) = row.get::<_, Option<String>>(5) {
                original.metadata = metadata;
            }
            Appended::Duplicate(original.stored(assigned))
        }
        _ => Appended::ClientIdConflict,
    }
}

#[async_trait]
impl Store for PgStore {
    async fn create_user(&self, user: NewUser) -> Result<User, StoreError> {
        let conn = self.conn().await?;
        let params: [&(dyn tokio_postgres::types::ToSql + Sync); 5] = [
            &user.email,
            &user.password_hash,
            &user.full_name,
            &user.nickname,
            &user.other_info,
        ];
        match conn
            .client
            .query_one(&conn.statements.insert_user, &params)
            .await
        {
            Ok(row) => Ok(User {
                id: row.get(0),
                email: user.email,
                full_name: user.full_name,
                nickname: user.nickname,
            }),
            Err(e) if e.code() == Some(&SqlState::UNIQUE_VIOLATION) => Err(StoreError::EmailTaken),
            Err(e) => Err(classify(e)),
        }
    }

    async fn credentials(&self, email: &str) -> Result<Option<Credentials>, StoreError> {
        let conn = self.conn().await?;
        let row = conn
            .client
            .query_opt(&conn.statements.credentials, &[&email])
            .await
            .map_err(classify)?;
        Ok(row.map(|row| Credentials {
            user: user_at(&row, 0),
            password_hash: row.get(4),
            is_active: row.get(5),
        }))
    }

    async fn user(&self, id: i64) -> Result<Option<User>, StoreError> {
        let conn = self.conn().await?;
        let row = conn
            .client
            .query_opt(&conn.statements.user, &[&id])
            .await
            .map_err(classify)?;
        Ok(row.map(|row| user_at(&row, 0)))
    }

    async fn search_users(
        &self,
        query: &str,
        exclude: i64,
        limit: i64,
    ) -> Result<Vec<User>, StoreError> {
        let pattern = super::search_pattern(query);
        let conn = self.conn().await?;
        let rows = conn
            .client
            .query_typed(
                SEARCH_USERS,
                &[
                    (&exclude, Type::INT8),
                    (&pattern, Type::TEXT),
                    (&limit, Type::INT8),
                ],
            )
            .await
            .map_err(classify)?;
        Ok(rows.iter().map(|row| user_at(row, 0)).collect())
    }

    async fn start_chat(&self, a: &User, b: &User) -> Result<StartedChat, StoreError> {
        let key = pair_key(a.id, b.id);
        let (low, high) = (a.id.min(b.id), a.id.max(b.id));
        let (chat_id, created) = {
            let conn = self.conn().await?;
            let inserted = conn
                .client
                .query_opt(&conn.statements.insert_chat, &[&key, &low, &high])
                .await
                .map_err(classify)?;
            match inserted {
                Some(row) => (row.get::<_, i64>(0), true),
                None => {
                    let row = conn
                        .client
                        .query_one(&conn.statements.chat_id_by_pair, &[&key])
                        .await
                        .map_err(classify)?;
                    (row.get(0), false)
                }
            }
        };
        Ok(StartedChat {
            chat: self.chat_by_id(chat_id).await?,
            created,
        })
    }

    async fn user_and_chat(&self, user_id: i64, chat_id: i64) -> Result<UserAndChat, StoreError> {
        let mut found = self.users_and_chats(&[(user_id, chat_id)]).await?;
        found
            .pop()
            .ok_or(StoreError::Inconsistent("a lookup got no answer"))
    }

    async fn users_and_chats(&self, pairs: &[(i64, i64)]) -> Result<Vec<UserAndChat>, StoreError> {
        let (users, chats): (Vec<i64>, Vec<i64>) = pairs.iter().copied().unzip();
        let conn = self.conn().await?;
        let rows = conn
            .client
            .query(&conn.statements.users_and_chats, &[&users, &chats])
            .await
            .map_err(classify)?;
        let mut found = vec![(None, None); pairs.len()];
        for row in rows {
            let slot = ord_index(&row, pairs.len())
                .and_then(|index| found.get_mut(index))
                .ok_or(StoreError::Inconsistent("a lookup row out of range"))?;
            let user = row.get::<_, Option<i64>>(1).map(|_| user_at(&row, 1));
            let access = row.get::<_, Option<i64>>(5).map(|low| ChatAccess {
                participants: [low, row.get(6)],
                last_seq: row.get(7),
            });
            *slot = (user, access);
        }
        Ok(found)
    }

    async fn chats_of(&self, user_id: i64) -> Result<Vec<Chat>, StoreError> {
        let conn = self.conn().await?;
        let rows = conn
            .client
            .query(&conn.statements.chats_of, &[&user_id])
            .await
            .map_err(classify)?;
        Ok(rows.iter().map(chat_from_row).collect())
    }

    async fn messages_between(
        &self,
        chat_id: i64,
        from_seq: i64,
        to_seq: i64,
        max_bytes: usize,
    ) -> Result<Vec<Message>, StoreError> {
        let max_bytes = i64::try_from(max_bytes).unwrap_or(i64::MAX);
        let conn = self.conn().await?;
        let rows = conn
            .client
            .query(
                &conn.statements.messages_between,
                &[&chat_id, &from_seq, &to_seq, &max_bytes],
            )
            .await
            .map_err(classify)?;
        Ok(rows
            .iter()
            .map(|row| message_from_row(row, chat_id))
            .collect())
    }

    async fn history(
        &self,
        chat_id: i64,
        reader: i64,
        window: SeqWindow,
    ) -> Result<Option<History>, StoreError> {
        let read = HistoryRead {
            chat_id,
            reader,
            window,
            held: SeqRun::EMPTY,
        };
        self.one_history(&read).await
    }

    /// A lone read runs the one-read statement (planned for its parameters:
    /// through the batch statement it took twice as long); more run the batch
    /// statement.
    async fn histories(&self, reads: &[HistoryRead]) -> Result<Vec<Option<History>>, StoreError> {
        if let [read] = reads {
            return Ok(vec![self.one_history(read).await?]);
        }
        let column = |f: fn(&HistoryRead) -> i64| reads.iter().map(f).collect::<Vec<i64>>();
        let chats = column(|r| r.chat_id);
        let skips = column(|r| r.window.skip);
        let sizes = column(|r| r.window.size);
        let caps = column(|r| r.window.cap);
        let floors = column(|r| r.window.floor);
        let readers = column(|r| r.reader);
        let held_firsts = column(|r| r.held.first);
        let held_lasts = column(|r| r.held.last);
        let oldest: Vec<bool> = reads.iter().map(|r| r.window.oldest_page).collect();
        let conn = self.conn().await?;
        let rows = conn
            .client
            .query(
                &conn.statements.histories,
                &[
                    &chats,
                    &skips,
                    &sizes,
                    &caps,
                    &floors,
                    &oldest,
                    &readers,
                    &held_firsts,
                    &held_lasts,
                ],
            )
            .await
            .map_err(classify)?;
        let mut per_read: Vec<Vec<Row>> = (0..reads.len()).map(|_| Vec::new()).collect();
        for row in rows {
            let rows_of_read = ord_index(&row, reads.len())
                .and_then(|index| per_read.get_mut(index))
                .ok_or(StoreError::Inconsistent("a history row out of range"))?;
            rows_of_read.push(row);
        }
        Ok(per_read
            .iter()
            .zip(reads)
            .map(|(rows, read)| history_from_rows(rows, read.chat_id))
            .collect())
    }

    async fn append_messages(&self, batch: &[NewMessage]) -> Result<Vec<Appended>, StoreError> {
        let (unique, slots) = dedupe_batch(batch);
        // New messages take the lean path; when a client id turns out to be reused
        // (or a concurrent batch raced), the checked path answers it.
        let mut attempt = 0;
        let stored = loop {
            attempt += 1;
            let path = if attempt == 1 {
                AppendPath::New
            } else {
                AppendPath::Checked
            };
            let conn = self.conn().await?;
            match append_on(&conn, path, &unique).await {
                Ok(outcomes) => break super::all_answered(outcomes)?,
                Err(e) if attempt < APPEND_ATTEMPTS && is_retryable_race(&e) => continue,
                Err(e) => return Err(classify(e)),
            }
        };
        super::expand_repeats(stored, &slots, &unique)
    }

    async fn mark_read(&self, chat_id: i64, user_id: i64, seq: i64) -> Result<i64, StoreError> {
        let conn = self.conn().await?;
        let row = conn
            .client
            .query_opt(&conn.statements.mark_read, &[&chat_id, &user_id, &seq])
            .await
            .map_err(classify)?;
        Ok(row.map_or(0, |row| row.get(0)))
    }

    async fn blacklist_token(&self, jti: &str, expires_at: i64) -> Result<(), StoreError> {
        let conn = self.conn().await?;
        conn.client
            .execute(
                &conn.statements.blacklist_token,
                &[&jti, &(expires_at as f64)],
            )
            .await
            .map_err(classify)?;
        Ok(())
    }

    async fn is_token_blacklisted(&self, jti: &str) -> Result<bool, StoreError> {
        let conn = self.conn().await?;
        let row = conn
            .client
            .query_opt(&conn.statements.is_blacklisted, &[&jti])
            .await
            .map_err(classify)?;
        Ok(row.is_some())
    }

    async fn ping(&self) -> Result<(), StoreError> {
        let conn = self.conn().await?;
        conn.client.simple_query("").await.map_err(classify)?;
        Ok(())
    }

    fn describe(&self) -> String {
        "postgres".into()
    }
}
