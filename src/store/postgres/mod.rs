//! The PostgreSQL store: the only module that speaks SQL to PostgreSQL. Its
//! parts: [`pool`] (connections, each with every statement prepared once, and
//! driver errors sorted), [`statements`] (the SQL), [`rows`] (rows read into
//! values), [`append`] (the group-commit append), [`standbys`] (reads from
//! standbys that have caught up), [`tls`] (what `sslmode` asks for) and
//! [`migrations`].

mod append;
pub mod django;
mod import;
pub mod migrations;
mod pool;
mod rows;
mod standbys;
mod statements;
mod tls;

pub use import::PgImport;
pub use statements::SEARCH_USERS;
use statements::{INACTIVE_USERS, REPLACE_PASSWORD_HASH};

use super::{
    dedupe_batch, Appended, ChatAccess, ChatPosition, ChatProgress, ChatStanding, Credentials,
    FailedLogins, History, HistoryRead, NewMessage, NewUser, PositionsRead, ReplayRead, SeqRun,
    SeqWindow, StandingsRead, StartedChat, Store, StoreError, UserAndChat,
};
use crate::config::DatabaseConfig;
use crate::metrics::Metrics;
use crate::model::{pair_key, Chat, Message, User};
use append::{append_on, AppendPath};
use async_trait::async_trait;
use pool::{checkout, classify, is_retryable_race, Conn, Pool, Retirements};
use rows::{
    chat_from_row, failed_logins_from_row, history_from_rows, message_from_row, ord_index,
    ord_index_at, standing_from_row, timestamp, user_at,
};
use standbys::{Read, Standbys};
use statements::Statements;
use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;
use tokio_postgres::error::SqlState;
use tokio_postgres::types::{ToSql, Type};
use tokio_postgres::{Row, Statement};

/// Attempts per batch: the lean path, then the checked path up to three times
/// (a reused client id, a unique-key race between nodes, a deadlock).
const APPEND_ATTEMPTS: usize = 4;

/// A statement's parameters.
pub(super) type Params<'a> = [&'a (dyn ToSql + Sync)];

/// The PostgreSQL implementation of [`Store`].
pub struct PgStore {
    pool: Pool,
    standbys: Option<Standbys>,
    retirements: Retirements,
}

impl PgStore {
    /// Connects (creating the database when it does not exist yet), applies pending
    /// migrations and builds the pool, and the standbys' pools when configured.
    pub async fn connect(
        config: &DatabaseConfig,
        metrics: Arc<Metrics>,
    ) -> Result<Self, StoreError> {
        let retirements = Retirements::default();
        Ok(PgStore {
            pool: pool::open(config, retirements.clone()).await?,
            standbys: Standbys::open(&config.read_urls, config.pool_size, metrics, &retirements)?,
            retirements,
        })
    }

    /// A connection of its own for `import-django`, on a database created
    /// and migrated when needed.
    pub async fn open_import(config: &DatabaseConfig) -> Result<PgImport, StoreError> {
        Ok(PgImport::new(pool::migrated_client(config).await?))
    }

    async fn conn(&self) -> Result<Conn<'_>, StoreError> {
        checkout(&self.pool).await
    }

    /// Where the primary's WAL ends now.
    async fn wal_position(&self) -> Result<String, StoreError> {
        let conn = self.conn().await?;
        let row = conn
            .client
            .query_one(&conn.statements.wal_position, &[])
            .await
            .map_err(classify)?;
        Ok(row.get(0))
    }

    /// Runs one prepared read that must see every transaction committed
    /// before it began: on a standby that has replayed that far, else on the
    /// primary. Every row.
    async fn read_rows(
        &self,
        statement: fn(&Statements) -> &Statement,
        params: &Params<'_>,
    ) -> Result<Vec<Row>, StoreError> {
        self.read_caught_up(Read::Prepared(statement, params)).await
    }

    /// Runs `read` on a standby that has replayed every transaction
    /// committed before it began, else on the primary.
    async fn read_caught_up(&self, read: Read<'_>) -> Result<Vec<Row>, StoreError> {
        if let Some(standbys) = &self.standbys {
            let position = self.wal_position().await?;
            if let Some(rows) = standbys.read(&position, &read).await {
                return Ok(rows);
            }
        }
        let conn = self.conn().await?;
        read.on(&conn).await.map_err(classify)
    }

    /// Runs one prepared statement on a pooled connection: every row.
    async fn rows(
        &self,
        statement: impl Fn(&Statements) -> &Statement,
        params: &Params<'_>,
    ) -> Result<Vec<Row>, StoreError> {
        let conn = self.conn().await?;
        let statement = statement(&conn.statements);
        conn.client.query(statement, params).await.map_err(classify)
    }

    /// Runs one prepared statement that reads by a unique key: its row, if any.
    async fn row(
        &self,
        statement: impl Fn(&Statements) -> &Statement,
        params: &Params<'_>,
    ) -> Result<Option<Row>, StoreError> {
        Ok(self.rows(statement, params).await?.into_iter().next())
    }

    /// One history read through the one-read statement.
    async fn one_history(&self, read: &HistoryRead) -> Result<Option<History>, StoreError> {
        let SeqWindow {
            skip,
            size,
            cap,
            floor,
            oldest_page,
        } = read.window;
        let params: [&(dyn ToSql + Sync); 9] = [
            &read.chat_id,
            &skip,
            &size,
            &cap,
            &floor,
            &oldest_page,
            &read.reader,
            &read.held.first,
            &read.held.last,
        ];
        let rows = self.read_rows(|s| &s.history, &params).await?;
        Ok(history_from_rows(&rows, read.chat_id))
    }

    async fn chat_by_id(&self, chat_id: i64, reader: i64) -> Result<Chat, StoreError> {
        let conn = self.conn().await?;
        let row = conn
            .client
            .query_one(&conn.statements.chat_by_id, &[&chat_id, &reader])
            .await
            .map_err(classify)?;
        Ok(chat_from_row(&row))
    }

    /// The chat of a pair: the one inserted, or the one already there.
    async fn chat_of_pair(
        &self,
        key: &str,
        low: i64,
        high: i64,
    ) -> Result<(i64, bool), StoreError> {
        let conn = self.conn().await?;
        let statements = &conn.statements;
        let inserted = conn
            .client
            .query_opt(&statements.insert_chat, &[&key, &low, &high])
            .await
            .map_err(classify)?;
        if let Some(row) = inserted {
            return Ok((row.get(0), true));
        }
        let row = conn
            .client
            .query_one(&statements.chat_id_by_pair, &[&key])
            .await
            .map_err(classify)?;
        Ok((row.get(0), false))
    }
}

/// The chats some reads name, flattened: each read's place among them (from
/// 1), its user, and each chat it names once.
struct NamedChats {
    ords: Vec<i32>,
    users: Vec<i64>,
    chats: Vec<i64>,
}

impl NamedChats {
    fn of(reads: &[PositionsRead], some: &[usize]) -> Self {
        let mut named = NamedChats {
            ords: Vec::new(),
            users: Vec::new(),
            chats: Vec::new(),
        };
        let mut seen = HashSet::new();
        for (place, &at) in some.iter().enumerate() {
            let ord = i32::try_from(place + 1).unwrap_or(i32::MAX);
            seen.clear();
            for &chat in &reads[at].chats {
                if seen.insert(chat) {
                    named.ords.push(ord);
                    named.users.push(reads[at].user);
                    named.chats.push(chat);
                }
            }
        }
        named
    }
}

/// Catch-up reads one statement answers at most: each read keeps its first
/// message whatever the statement's byte budget (see
/// `MESSAGES_BETWEEN_MANY`), so this bounds the statement's answer to the
/// budget and this many messages.
const REPLAYS_PER_STATEMENT: usize = 64;

/// Rows one batched read's statement returns at most (a read is never
/// split): a connection keeps a buffer the size of the largest result it
/// received, so a batch of 256 syncs naming 1,000 chats each, or of 256
/// resyncs of users with 1,000 chats each, must not come back whole.
const ROWS_PER_STATEMENT: usize = 4096;

/// `some` (places among a batch's reads) cut into runs of reads whose
/// answers hold, together, at most [`ROWS_PER_STATEMENT`] rows (or a single
/// read holding more); `rows_of(place)` is the most one read's answer holds.
fn statements_of(rows_of: impl Fn(usize) -> usize, some: &[usize]) -> Vec<&[usize]> {
    let mut runs = Vec::new();
    let (mut start, mut rows): (usize, usize) = (0, 0);
    for (place, &at) in some.iter().enumerate() {
        let more = rows_of(at);
        if place > start && rows.saturating_add(more) > ROWS_PER_STATEMENT {
            runs.push(&some[start..place]);
            (start, rows) = (place, 0);
        }
        rows = rows.saturating_add(more);
    }
    if start < some.len() {
        runs.push(&some[start..]);
    }
    runs
}

/// Each position row (ord, chat, peer, `last_seq`) into the answer of the
/// read it belongs to: `some[ord - 1]`.
fn place_positions(
    rows: &[Row],
    some: &[usize],
    found: &mut [Vec<ChatPosition>],
) -> Result<(), StoreError> {
    for row in rows {
        let slot = ord_index(row, some.len())
            .and_then(|place| found.get_mut(some[place]))
            .ok_or(StoreError::Inconsistent("a position row out of range"))?;
        slot.push(ChatPosition {
            chat: row.get(1),
            peer: row.get(2),
            last_seq: row.get(3),
        });
    }
    Ok(())
}

/// Up to this many chats, a `sync`'s positions are read by probing each
/// (`POSITIONS_PROBED`); past it, through the user's own chats
/// (`POSITIONS_SCANNED`), which reads every chat of the user once.
const FEW_NAMED_CHATS: usize = 16;

#[async_trait]
impl Store for PgStore {
    async fn create_user(&self, user: NewUser) -> Result<User, StoreError> {
        let params: [&(dyn ToSql + Sync); 5] = [
            &user.email,
            &user.password_hash,
            &user.full_name,
            &user.nickname,
            &user.other_info,
        ];
        let conn = self.conn().await?;
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
        let row = self.row(|s| &s.credentials, &[&email]).await?;
        Ok(row.map(|row| Credentials {
            user: user_at(&row, 0),
            password_hash: row.get(4),
            is_active: row.get(5),
        }))
    }

    async fn user(&self, id: i64) -> Result<Option<User>, StoreError> {
        let row = self.row(|s| &s.user, &[&id]).await?;
        Ok(row.map(|row| user_at(&row, 0)))
    }

    async fn replace_password_hash(
        &self,
        user_id: i64,
        replaced: &str,
        hash: &str,
    ) -> Result<bool, StoreError> {
        let conn = self.conn().await?;
        let params: [(&(dyn ToSql + Sync), Type); 3] = [
            (&user_id, Type::INT8),
            (&replaced, Type::TEXT),
            (&hash, Type::TEXT),
        ];
        let rows = conn.client.query_typed(REPLACE_PASSWORD_HASH, &params);
        Ok(!rows.await.map_err(classify)?.is_empty())
    }

    async fn inactive_users(&self) -> Result<Vec<i64>, StoreError> {
        let conn = self.conn().await?;
        let rows = conn.client.query_typed(INACTIVE_USERS, &[]).await;
        Ok(rows
            .map_err(classify)?
            .iter()
            .map(|row| row.get(0))
            .collect())
    }

    async fn search_users(
        &self,
        query: &str,
        exclude: i64,
        limit: i64,
    ) -> Result<Vec<User>, StoreError> {
        let pattern = super::search_pattern(query);
        let params: [(&(dyn ToSql + Sync), Type); 3] = [
            (&exclude, Type::INT8),
            (&pattern, Type::TEXT),
            (&limit, Type::INT8),
        ];
        let rows = self
            .read_caught_up(Read::Typed(SEARCH_USERS, &params))
            .await?;
        Ok(rows.iter().map(|row| user_at(row, 0)).collect())
    }

    async fn start_chat(&self, a: &User, b: &User) -> Result<StartedChat, StoreError> {
        let key = pair_key(a.id, b.id);
        let (low, high) = (a.id.min(b.id), a.id.max(b.id));
        let (chat_id, created) = self.chat_of_pair(&key, low, high).await?;
        Ok(StartedChat {
            chat: self.chat_by_id(chat_id, a.id).await?,
            created,
        })
    }

    async fn chat_between(&self, a: &User, b: &User) -> Result<Option<Chat>, StoreError> {
        let key = pair_key(a.id, b.id);
        let row = self.row(|s| &s.chat_by_pair, &[&key, &a.id]).await?;
        Ok(row.as_ref().map(chat_from_row))
    }

    async fn user_and_chat(&self, user_id: i64, chat_id: i64) -> Result<UserAndChat, StoreError> {
        let mut found = self.users_and_chats(&[(user_id, chat_id)]).await?;
        found
            .pop()
            .ok_or(StoreError::Inconsistent("a lookup got no answer"))
    }

    async fn users_and_chats(&self, pairs: &[(i64, i64)]) -> Result<Vec<UserAndChat>, StoreError> {
        let (users, chats): (Vec<i64>, Vec<i64>) = pairs.iter().copied().unzip();
        let rows = self.rows(|s| &s.users_and_chats, &[&users, &chats]).await?;
        let mut found = vec![(None, None); pairs.len()];
        for row in rows {
            let slot = ord_index(&row, pairs.len())
                .and_then(|index| found.get_mut(index))
                .ok_or(StoreError::Inconsistent("a lookup row out of range"))?;
            let user = row.get::<_, Option<i64>>(1).map(|_| user_at(&row, 1));
            let access = row.get::<_, Option<i64>>(5).map(|low| ChatAccess {
                participants: [low, row.get(6)],
                last_seq: row.get(7),
                read_seqs: [row.get(8), row.get(9)],
            });
            *slot = (user, access);
        }
        Ok(found)
    }

    async fn chats_progress(&self, chats: &[i64]) -> Result<Vec<Option<ChatProgress>>, StoreError> {
        let rows = self.rows(|s| &s.chats_progress, &[&chats]).await?;
        let mut found = vec![None; chats.len()];
        for row in rows {
            let slot = ord_index(&row, chats.len())
                .and_then(|index| found.get_mut(index))
                .ok_or(StoreError::Inconsistent("a progress row out of range"))?;
            *slot = Some(ChatProgress {
                access: ChatAccess {
                    participants: [row.get(1), row.get(2)],
                    last_seq: row.get(3),
                    read_seqs: [row.get(4), row.get(5)],
                },
                created_at: timestamp(&row, 6),
                marker_at_own_message: [row.get(7), row.get(8)],
            });
        }
        Ok(found)
    }

    async fn chat_standings(
        &self,
        reads: &[StandingsRead],
    ) -> Result<Vec<Vec<ChatStanding>>, StoreError> {
        let mut found = vec![Vec::new(); reads.len()];
        let all: Vec<usize> = (0..reads.len()).collect();
        for some in statements_of(|at| reads[at].answer_limit(), &all) {
            let users: Vec<i64> = some.iter().map(|&at| reads[at].user).collect();
            let since: Vec<i64> = some.iter().map(|&at| reads[at].created_since).collect();
            let most: Vec<i64> = some
                .iter()
                .map(|&at| i64::try_from(reads[at].answer_limit()).unwrap_or(i64::MAX))
                .collect();
            let rows = self
                .read_rows(|s| &s.chat_standings, &[&users, &since, &most])
                .await?;
            for row in rows {
                let slot = ord_index(&row, some.len())
                    .and_then(|place| found.get_mut(some[place]))
                    .ok_or(StoreError::Inconsistent("a standing row out of range"))?;
                slot.push(standing_from_row(&row));
            }
        }
        Ok(found)
    }

    async fn users_with_messages(&self, users: &[i64]) -> Result<Vec<bool>, StoreError> {
        let rows = self
            .read_rows(|s| &s.users_with_messages, &[&users])
            .await?;
        let mut found = vec![false; users.len()];
        for row in rows {
            let slot = ord_index(&row, users.len())
                .and_then(|index| found.get_mut(index))
                .ok_or(StoreError::Inconsistent("a user row out of range"))?;
            *slot = true;
        }
        Ok(found)
    }

    async fn chat(&self, chat_id: i64, reader: i64) -> Result<Option<Chat>, StoreError> {
        let row = self.row(|s| &s.chat_by_id, &[&chat_id, &reader]).await?;
        Ok(row
            .map(|row| chat_from_row(&row))
            .filter(|chat| chat.participants.iter().any(|u| u.id == reader)))
    }

    /// One read through [`Store::positions_of_many`]'s statements.
    async fn chat_positions(
        &self,
        user_id: i64,
        chats: &[i64],
    ) -> Result<Vec<ChatPosition>, StoreError> {
        let read = PositionsRead {
            user: user_id,
            chats: chats.to_vec(),
        };
        let mut found = self.positions_of_many(&[read]).await?;
        Ok(found.pop().unwrap_or_default())
    }

    /// Reads naming few chats probe them, all in one statement; reads naming
    /// many go through their users' own chats, in another (see
    /// [`FEW_NAMED_CHATS`]).
    async fn positions_of_many(
        &self,
        reads: &[PositionsRead],
    ) -> Result<Vec<Vec<ChatPosition>>, StoreError> {
        let mut found: Vec<Vec<ChatPosition>> = reads
            .iter()
            .map(|read| Vec::with_capacity(read.chats.len()))
            .collect();
        let (few, many): (Vec<usize>, Vec<usize>) =
            (0..reads.len()).partition(|&at| reads[at].chats.len() <= FEW_NAMED_CHATS);
        for some in statements_of(|at| reads[at].chats.len(), &few) {
            let named = NamedChats::of(reads, some);
            let params: [&(dyn ToSql + Sync); 3] = [&named.ords, &named.users, &named.chats];
            let rows = self.rows(|s| &s.positions_probed, &params).await?;
            place_positions(&rows, some, &mut found)?;
        }
        for some in statements_of(|at| reads[at].chats.len(), &many) {
            let named = NamedChats::of(reads, some);
            let users: Vec<i64> = some.iter().map(|&at| reads[at].user).collect();
            let params: [&(dyn ToSql + Sync); 3] = [&named.ords, &named.chats, &users];
            let rows = self.rows(|s| &s.positions_scanned, &params).await?;
            place_positions(&rows, some, &mut found)?;
        }
        Ok(found)
    }

    async fn chats_of(&self, user_id: i64) -> Result<Vec<Chat>, StoreError> {
        let rows = self.read_rows(|s| &s.chats_of, &[&user_id]).await?;
        Ok(rows.iter().map(chat_from_row).collect())
    }

    /// One read through [`Store::messages_between_many`]'s statement.
    async fn messages_between(
        &self,
        chat_id: i64,
        from_seq: i64,
        to_seq: i64,
        max_bytes: usize,
    ) -> Result<Vec<Message>, StoreError> {
        let read = ReplayRead {
            chat: chat_id,
            from_seq,
            to_seq,
        };
        let mut found = self.messages_between_many(&[read], max_bytes).await?;
        Ok(found.pop().unwrap_or_default())
    }

    async fn messages_between_many(
        &self,
        reads: &[ReplayRead],
        max_bytes: usize,
    ) -> Result<Vec<Vec<Message>>, StoreError> {
        let max_bytes = i64::try_from(max_bytes).unwrap_or(i64::MAX);
        let mut found = vec![Vec::new(); reads.len()];
        // Each read's first message is kept however large: a statement of at
        // most this many reads holds `max_bytes` and that many messages.
        for (nth, some) in reads.chunks(REPLAYS_PER_STATEMENT).enumerate() {
            let first = nth * REPLAYS_PER_STATEMENT;
            let chats: Vec<i64> = some.iter().map(|read| read.chat).collect();
            let froms: Vec<i64> = some.iter().map(|read| read.from_seq).collect();
            let tos: Vec<i64> = some.iter().map(|read| read.to_seq).collect();
            let params: [&(dyn ToSql + Sync); 4] = [&chats, &froms, &tos, &max_bytes];
            let rows = self
                .read_rows(|s| &s.messages_between_many, &params)
                .await?;
            for row in &rows {
                let place = ord_index_at(row, 10, some.len())
                    .ok_or(StoreError::Inconsistent("a replay row out of range"))?;
                found[first + place].push(message_from_row(row, some[place].chat));
            }
        }
        Ok(found)
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

    /// A lone read runs the one-read statement (planned for its parameters,
    /// where the batch statement's generic plan is slower for one read); more run the batch
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
        let params: [&(dyn ToSql + Sync); 9] = [
            &chats,
            &skips,
            &sizes,
            &caps,
            &floors,
            &oldest,
            &readers,
            &held_firsts,
            &held_lasts,
        ];
        let rows = self.read_rows(|s| &s.histories, &params).await?;
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
        let row = self
            .row(|s| &s.mark_read, &[&chat_id, &user_id, &seq])
            .await?;
        Ok(row.map_or(0, |row| row.get(0)))
    }

    async fn blacklist_token(&self, jti: &str, expires_at: i64) -> Result<(), StoreError> {
        let expires_at = expires_at as f64;
        self.rows(|s| &s.blacklist_token, &[&jti, &expires_at])
            .await?;
        Ok(())
    }

    async fn is_token_blacklisted(&self, jti: &str) -> Result<bool, StoreError> {
        let row = self.row(|s| &s.is_blacklisted, &[&jti]).await?;
        Ok(row.is_some())
    }

    async fn failed_logins(&self, account: &str) -> Result<Option<FailedLogins>, StoreError> {
        let row = self.row(|s| &s.failed_logins, &[&account]).await?;
        Ok(row.as_ref().map(failed_logins_from_row))
    }

    async fn count_failed_login(
        &self,
        account: &str,
        window: Duration,
    ) -> Result<FailedLogins, StoreError> {
        let seconds = window.as_secs_f64();
        let row = self
            .row(|s| &s.count_failed_login, &[&account, &seconds])
            .await?;
        let row = row.ok_or(StoreError::Inconsistent(
            "counting a failed login returned no row",
        ))?;
        Ok(failed_logins_from_row(&row))
    }

    async fn ping(&self) -> Result<(), StoreError> {
        let conn = self.conn().await?;
        conn.client.simple_query("").await.map_err(classify)?;
        Ok(())
    }

    fn retire_connections(&self) {
        self.retirements.retire_all();
    }

    fn describe(&self) -> String {
        match &self.standbys {
            Some(standbys) => format!("postgres, reads from {} standbys", standbys.count()),
            None => "postgres".into(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn naming(counts: &[usize]) -> Vec<PositionsRead> {
        counts
            .iter()
            .map(|&count| PositionsRead {
                user: 1,
                chats: (0..count as i64).collect(),
            })
            .collect()
    }

    #[test]
    fn positions_statements_hold_whole_reads_up_to_their_size() {
        let reads = naming(&[1000, 3000, 200, 1000, 4096, 10]);
        let all: Vec<usize> = (0..reads.len()).collect();
        let named = |at: usize| reads[at].chats.len();
        let runs = statements_of(named, &all);
        assert_eq!(runs, [&[0, 1][..], &[2, 3][..], &[4][..], &[5][..]]);
        let some = [1, 5, 2];
        assert_eq!(statements_of(named, &some), [&[1, 5, 2][..]]);
        assert!(statements_of(named, &[]).is_empty());
        assert_eq!(statements_of(|_| usize::MAX, &[0, 1]), [&[0][..], &[1][..]]);
    }

    #[test]
    fn named_chats_are_flattened_with_their_reads_place_and_each_chat_once() {
        let reads = [
            PositionsRead {
                user: 7,
                chats: vec![3, 4, 3],
            },
            PositionsRead {
                user: 8,
                chats: vec![5],
            },
            PositionsRead {
                user: 9,
                chats: vec![6],
            },
        ];
        let named = NamedChats::of(&reads, &[2, 0]);
        assert_eq!(named.ords, [1, 2, 2]);
        assert_eq!(named.users, [9, 7, 7]);
        assert_eq!(named.chats, [6, 3, 4]);
    }
}
