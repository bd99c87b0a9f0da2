//! Every statement the PostgreSQL store runs, as SQL text, and the set of them
//! prepared on each new connection. The row shapes they return are read in
//! [`super::rows`].

use super::append;
use tokio_postgres::{Client, Statement};

/// User search, sent as a one-shot statement (one round trip, planned for
/// its own pattern; see migration 0006): a prepared statement's generic plan
/// walks every user in id order when the pattern is rare.
pub const SEARCH_USERS: &str = "SELECT id, email, full_name, nickname FROM users
     WHERE id <> $1 AND is_active AND (email ILIKE $2 OR full_name ILIKE $2
           OR coalesce(nickname, '') ILIKE $2)
     ORDER BY id LIMIT $3";

const INSERT_USER: &str =
    "INSERT INTO users (email, password_hash, full_name, nickname, other_info)
     VALUES ($1, $2, $3, $4, $5::text::jsonb) RETURNING id";

const CREDENTIALS: &str = "SELECT id, email, full_name, nickname, password_hash, is_active
     FROM users WHERE lower(email) = lower($1)";

const USER: &str = "SELECT id, email, full_name, nickname FROM users WHERE id = $1 AND is_active";

/// Run one-shot (rare: a login rehashing a Django hash).
pub const REPLACE_PASSWORD_HASH: &str =
    "UPDATE users SET password_hash = $3 WHERE id = $1 AND password_hash = $2 RETURNING 1";

/// Run one-shot, every `INACTIVE_USERS_POLL_SECS`; served by the partial
/// index of migration 0009.
pub const INACTIVE_USERS: &str = "SELECT id FROM users WHERE NOT is_active";

/// A chat for a pair that has none: the pair is claimed in `chat_pairs`
/// (one chat per pair; a concurrent start of the same pair waits for this one
/// and claims nothing), and the chat row gets the claimed id. No row when the
/// pair already has a chat.
const INSERT_CHAT: &str = "WITH claimed AS (
         INSERT INTO chat_pairs (pair_key, chat_id) VALUES ($1, nextval('chats_id_seq'))
         ON CONFLICT (pair_key) DO NOTHING RETURNING chat_id)
     INSERT INTO chats (id, pair_key, user_low, user_high)
     SELECT chat_id, $1, $2, $3 FROM claimed RETURNING id";

const CHAT_ID_BY_PAIR: &str = "SELECT chat_id FROM chat_pairs WHERE pair_key = $1";

const USERS_AND_CHATS: &str = "SELECT q.ord::INT, u.id, u.email, u.full_name, u.nickname,
            c.user_low, c.user_high, c.last_seq, c.low_read_seq, c.high_read_seq
     FROM unnest($1::BIGINT[], $2::BIGINT[]) WITH ORDINALITY AS q(user_id, chat_id, ord)
     LEFT JOIN users u ON u.id = q.user_id AND u.is_active
     LEFT JOIN chats c ON c.id = q.chat_id";

/// Of the chats `$1`, in order (ord): both participants, `last_seq`, both
/// read markers, when the chat was created, and whether each marker names
/// its owner's own message (a primary-key probe each, skipped for a marker
/// of 0, which names none). The probes are scalar subqueries so that each
/// stays a probe: an `EXISTS` may be planned as one hash over all of
/// `messages`.
const CHATS_PROGRESS: &str = "SELECT q.ord::INT, c.user_low, c.user_high, c.last_seq,
            c.low_read_seq, c.high_read_seq, c.created_at,
            CASE WHEN c.low_read_seq > 0 THEN coalesce((SELECT m.sender_id = c.user_low
                FROM messages m WHERE m.chat_id = c.id AND m.seq = c.low_read_seq), false)
                ELSE false END,
            CASE WHEN c.high_read_seq > 0 THEN coalesce((SELECT m.sender_id = c.user_high
                FROM messages m WHERE m.chat_id = c.id AND m.seq = c.high_read_seq), false)
                ELSE false END
     FROM unnest($1::BIGINT[]) WITH ORDINALITY AS q(chat_id, ord)
     JOIN chats c ON c.id = q.chat_id";

/// Of each user of `$1` (in order: ord), the chats that hold messages or
/// were created at or after `$2` (unix microseconds), at most `$3` of them:
/// id, the other participant, `last_seq`, the user's and the other's read
/// markers, and the last message's sender when a marker is at it (a
/// primary-key probe, as in [`CHATS_PROGRESS`]; else 0). Each user's chats
/// are two index scans, one per side (a user never chats with themselves).
const CHAT_STANDINGS: &str = "SELECT q.ord::INT, c.id,
            CASE WHEN c.user_low = q.user_id THEN c.user_high ELSE c.user_low END,
            c.last_seq,
            CASE WHEN c.user_low = q.user_id THEN c.low_read_seq ELSE c.high_read_seq END,
            CASE WHEN c.user_low = q.user_id THEN c.high_read_seq ELSE c.low_read_seq END,
            CASE WHEN c.last_seq > 0 AND c.last_seq IN (c.low_read_seq, c.high_read_seq)
                THEN coalesce((SELECT m.sender_id FROM messages m
                               WHERE m.chat_id = c.id AND m.seq = c.last_seq), 0)
                ELSE 0 END
     FROM unnest($1::BIGINT[], $2::BIGINT[], $3::BIGINT[])
          WITH ORDINALITY AS q(user_id, since, most, ord)
     CROSS JOIN LATERAL (
         SELECT * FROM (
             SELECT id, user_low, user_high, created_at, last_seq, low_read_seq, high_read_seq
             FROM chats WHERE user_low = q.user_id
             UNION ALL
             SELECT id, user_low, user_high, created_at, last_seq, low_read_seq, high_read_seq
             FROM chats WHERE user_high = q.user_id AND user_low <> q.user_id) both_sides
         WHERE last_seq > 0
            OR created_at >= 'epoch'::timestamptz + q.since * interval '1 microsecond'
         LIMIT q.most) c";

/// Of the users in `$1`, the places (from 1) of those with a chat that holds
/// a message: each probe stops at the first such chat of the user's.
const USERS_WITH_MESSAGES: &str = "SELECT q.ord::INT
     FROM unnest($1::BIGINT[]) WITH ORDINALITY AS q(user_id, ord)
     WHERE EXISTS (SELECT 1 FROM chats WHERE user_low = q.user_id AND last_seq > 0)
        OR EXISTS (SELECT 1 FROM chats WHERE user_high = q.user_id AND last_seq > 0)";

/// Columns of a chat row with both participants, its last message, and where
/// the reader (`$reader`) and the other participant stand in it; see [`super::rows::chat_from_row`] for
/// their positions.
macro_rules! chat_select {
    (reader: $reader:literal, where: $where:literal) => {
        concat!(
            "SELECT c.id, c.created_at, coalesce(m.created_at, c.created_at) AS updated_at,
                ua.id, ua.email, ua.full_name, ua.nickname,
                ub.id, ub.email, ub.full_name, ub.nickname,
                m.id, m.seq, m.content, m.metadata::text, m.client_msg_id, m.created_at,
                m.sender_id, c.last_seq,
                CASE WHEN c.user_low = ",
            $reader,
            " THEN c.low_read_seq ELSE c.high_read_seq END,
                CASE WHEN c.user_low = ",
            $reader,
            " THEN c.high_read_seq ELSE c.low_read_seq END
             FROM chats c
             JOIN users ua ON ua.id = c.user_low
             JOIN users ub ON ub.id = c.user_high
             LEFT JOIN messages m ON m.chat_id = c.id AND m.seq = c.last_seq
             WHERE ",
            $where
        )
    };
}

const CHAT_BY_ID: &str = chat_select!(reader: "$2", where: "c.id = $1");

/// The chat of a pair key (`$1`), as `$2` sees it: no row when the pair has
/// none.
const CHAT_BY_PAIR: &str = chat_select!(
    reader: "$2",
    where: "c.id = (SELECT chat_id FROM chat_pairs WHERE pair_key = $1)"
);

const CHATS_OF: &str = chat_select!(
    reader: "$1",
    where: "c.user_low = $1 OR c.user_high = $1 ORDER BY updated_at DESC, c.id DESC"
);

/// Of the chats each read names, those its user takes part in: the read's
/// place (`ord`, from 1), id, the other participant, `last_seq`. Each named
/// chat (`$1` ord, `$2` user, `$3` chat) is probed by its key: for reads
/// naming a few.
const POSITIONS_PROBED: &str = "SELECT p.ord, c.id,
            CASE WHEN c.user_low = p.user_id THEN c.user_high ELSE c.user_low END, c.last_seq
     FROM unnest($1::INT[], $2::BIGINT[], $3::BIGINT[]) AS p(ord, user_id, chat_id)
     JOIN chats c ON c.id = p.chat_id AND p.user_id IN (c.user_low, c.user_high)";

/// [`POSITIONS_PROBED`] for reads naming many (a first `sync` names most of
/// its user's chats): each read's user (`$3`, in read order) has their chats
/// read through the two indexes, kept when the read names them (`$1` ord,
/// `$2` chat, hashed; `id + 0` keeps the primary key out of the plan, which
/// would otherwise probe once per named chat, at about six times the buffer
/// reads).
const POSITIONS_SCANNED: &str = "SELECT q.ord::INT, c.id,
            CASE WHEN c.user_low = q.user_id THEN c.user_high ELSE c.user_low END, c.last_seq
     FROM unnest($3::BIGINT[]) WITH ORDINALITY AS q(user_id, ord)
     CROSS JOIN LATERAL (
         SELECT id, user_low, user_high, last_seq FROM chats WHERE user_low = q.user_id
         UNION ALL
         SELECT id, user_low, user_high, last_seq FROM chats WHERE user_high = q.user_id) c
     WHERE (q.ord::INT, c.id + 0) IN (SELECT * FROM unnest($1::INT[], $2::BIGINT[]))";

/// The messages of many catch-up reads (`$1` chats, `$2` first and `$3` last
/// seqs; ord in the last column): a read's message is sent while the read's
/// messages before it hold fewer than `$4` bytes of content and metadata,
/// and, past each read's first message, while the whole answer's do, so one
/// statement's answer stays near one read's. What is cut is a suffix of a
/// read's messages.
const MESSAGES_BETWEEN_MANY: &str = "SELECT m.id, m.seq, m.content, m.metadata, m.client_msg_id,
            m.created_at, u.id, u.email, u.full_name, u.nickname, m.ord::INT
     FROM (SELECT q.ord, r.*,
                  coalesce(sum(r.size) OVER (PARTITION BY q.ord ORDER BY r.seq
                      ROWS BETWEEN UNBOUNDED PRECEDING AND 1 PRECEDING), 0) AS before,
                  coalesce(sum(r.size) OVER (ORDER BY q.ord, r.seq
                      ROWS BETWEEN UNBOUNDED PRECEDING AND 1 PRECEDING), 0) AS all_before,
                  row_number() OVER (PARTITION BY q.ord ORDER BY r.seq) AS nth
           FROM unnest($1::BIGINT[], $2::BIGINT[], $3::BIGINT[])
                WITH ORDINALITY AS q(chat, from_seq, to_seq, ord)
           CROSS JOIN LATERAL (
               SELECT id, seq, content, metadata::text AS metadata, client_msg_id,
                      created_at, sender_id,
                      octet_length(content) + octet_length(metadata::text) AS size
               FROM messages WHERE chat_id = q.chat AND seq BETWEEN q.from_seq AND q.to_seq
           ) r) m
     JOIN users u ON u.id = m.sender_id
     WHERE m.before < $4 AND (m.nth = 1 OR m.all_before < $4)
     ORDER BY m.ord, m.seq";

/// A history read, from its chat row `c` and its parameters (named by the
/// caller: `$2` for the one-read statement, `q.skip` for the batch): the
/// window of [`crate::store::SeqWindow::range`] over the chat's `last_seq`
/// (`w.upto`, `r.start`), then the reader's messages in it that the node does
/// not already hold (`held_first..=held_last`; only a run at the window's
/// start is skipped). The one place PostgreSQL is told the window's
/// arithmetic; `$tail` closes the messages subquery.
macro_rules! history_window {
    (skip: $skip:literal, size: $size:literal, cap: $cap:literal, floor: $floor:literal,
     oldest: $oldest:literal, reader: $reader:literal, held_first: $held_first:literal,
     held_last: $held_last:literal, tail: $tail:literal) => {
        concat!(
            "CROSS JOIN LATERAL (
                 SELECT CASE WHEN ",
            $oldest,
            "
                             THEN LEAST(c.last_seq, (c.last_seq - 1) % ",
            $size,
            " + 1)
                             ELSE LEAST(",
            $cap,
            ", c.last_seq - ",
            $skip,
            ") END AS upto
             ) AS w
             CROSS JOIN LATERAL (SELECT GREATEST(",
            $floor,
            ", w.upto - ",
            $size,
            " + 1) AS start) AS r
             LEFT JOIN LATERAL (
                 SELECT * FROM messages m
                 WHERE m.chat_id = c.id AND ",
            $reader,
            " IN (c.user_low, c.user_high)
                   AND m.seq BETWEEN CASE WHEN ",
            $held_first,
            " <= r.start
                                          THEN GREATEST(r.start, ",
            $held_last,
            " + 1)
                                          ELSE r.start END
                                 AND w.upto ",
            $tail,
            "
             ) AS m ON true"
        )
    };
}

/// Columns of a history row: ord, both participants, `last_seq`, a message
/// or NULLs, then both read markers (see [`super::rows::history_from_rows`]).
macro_rules! history_select {
    ($ord:literal) => {
        concat!(
            "SELECT ",
            $ord,
            ", lo.id, lo.email, lo.full_name, lo.nickname,
                    hi.id, hi.email, hi.full_name, hi.nickname, c.last_seq,
                    m.id, m.seq, m.content, m.metadata::text, m.client_msg_id,
                    m.created_at, m.sender_id, c.low_read_seq, c.high_read_seq "
        )
    };
}

const HISTORY: &str = concat!(
    history_select!("1::INT"),
    "FROM chats c
     JOIN users lo ON lo.id = c.user_low
     JOIN users hi ON hi.id = c.user_high ",
    history_window!(skip: "$2", size: "$3", cap: "$4", floor: "$5", oldest: "$6",
                    reader: "$7", held_first: "$8::BIGINT", held_last: "$9::BIGINT", tail: ""),
    " WHERE c.id = $1"
);

/// `OFFSET 0` keeps the messages subquery a subquery: flattened into the join,
/// its seq bounds became a filter over every message of the chat instead of
/// index conditions.
const HISTORIES: &str = concat!(
    history_select!("q.ord::INT"),
    "FROM unnest($1::BIGINT[], $2::BIGINT[], $3::BIGINT[], $4::BIGINT[],
                 $5::BIGINT[], $6::BOOL[], $7::BIGINT[], $8::BIGINT[], $9::BIGINT[])
          WITH ORDINALITY
          AS q(chat, skip, size, cap, floor, oldest, reader, held_first, held_last, ord)
     JOIN chats c ON c.id = q.chat
     JOIN users lo ON lo.id = c.user_low
     JOIN users hi ON hi.id = c.user_high ",
    history_window!(skip: "q.skip", size: "q.size", cap: "q.cap", floor: "q.floor",
                    oldest: "q.oldest", reader: "q.reader", held_first: "q.held_first",
                    held_last: "q.held_last", tail: "OFFSET 0")
);

const BLACKLIST_TOKEN: &str = "INSERT INTO token_blacklist (jti, expires_at)
     VALUES ($1, to_timestamp($2::float8)) ON CONFLICT (jti) DO NOTHING";

const IS_BLACKLISTED: &str = "SELECT 1 FROM token_blacklist WHERE jti = $1";

/// The failed logins counted against an account in its open window, and
/// the seconds the window has left.
const FAILED_LOGINS: &str = "SELECT failures, extract(epoch FROM window_ends - now())::float8
     FROM login_failures WHERE account = $1 AND window_ends > now()";

/// Counts a failed login in the account's open window, or in a new one of
/// `$2` seconds. Windows closed for a minute are swept on the way, at most 16
/// (more than the one row a failure adds) and none another node holds: no
/// sweep waits for another, so two nodes' sweeps cannot deadlock.
const COUNT_FAILED_LOGIN: &str = "WITH swept AS (
         DELETE FROM login_failures WHERE account IN (
             SELECT account FROM login_failures
             WHERE window_ends < now() - interval '1 minute' AND account <> $1
             LIMIT 16 FOR UPDATE SKIP LOCKED))
     INSERT INTO login_failures AS f (account, failures, window_ends)
     VALUES ($1, 1, now() + make_interval(secs => $2))
     ON CONFLICT (account) DO UPDATE SET
         failures = CASE WHEN f.window_ends > now() THEN f.failures + 1 ELSE 1 END,
         window_ends = CASE WHEN f.window_ends > now() THEN f.window_ends
                            ELSE excluded.window_ends END
     RETURNING failures, extract(epoch FROM window_ends - now())::float8";

/// A participant's marker lives in the chat's row (migration 0007).
const MARK_READ: &str = "UPDATE chats
     SET low_read_seq = CASE WHEN user_low = $2
                             THEN GREATEST(low_read_seq, LEAST($3, last_seq))
                             ELSE low_read_seq END,
         high_read_seq = CASE WHEN user_high = $2
                              THEN GREATEST(high_read_seq, LEAST($3, last_seq))
                              ELSE high_read_seq END
     WHERE id = $1 AND $2 IN (user_low, user_high)
     RETURNING CASE WHEN user_low = $2 THEN low_read_seq ELSE high_read_seq END";

/// Where the primary's WAL ends now: every transaction committed before this
/// statement has its commit record before this position.
const WAL_POSITION: &str = "SELECT pg_current_wal_lsn()::text";

/// Whether this standby has replayed the WAL up to `$1` (false on a primary,
/// which replays nothing).
const REPLAYED_THROUGH: &str =
    "SELECT coalesce(pg_last_wal_replay_lsn() >= $1::text::pg_lsn, false)";

/// Every statement the store runs, prepared on each new connection.
pub struct Statements {
    pub insert_user: Statement,
    pub credentials: Statement,
    pub user: Statement,
    pub insert_chat: Statement,
    pub chat_id_by_pair: Statement,
    pub users_and_chats: Statement,
    pub chats_progress: Statement,
    pub chat_standings: Statement,
    pub users_with_messages: Statement,
    pub chat_by_id: Statement,
    pub chat_by_pair: Statement,
    pub chats_of: Statement,
    pub positions_probed: Statement,
    pub positions_scanned: Statement,
    pub messages_between_many: Statement,
    pub history: Statement,
    pub histories: Statement,
    pub append_messages: Statement,
    pub append_new_messages: Statement,
    pub blacklist_token: Statement,
    pub is_blacklisted: Statement,
    pub failed_logins: Statement,
    pub count_failed_login: Statement,
    pub mark_read: Statement,
    pub wal_position: Statement,
    pub replayed_through: Statement,
}

impl Statements {
    pub async fn prepare(client: &Client) -> Result<Self, tokio_postgres::Error> {
        Ok(Statements {
            insert_user: client.prepare(INSERT_USER).await?,
            credentials: client.prepare(CREDENTIALS).await?,
            user: client.prepare(USER).await?,
            insert_chat: client.prepare(INSERT_CHAT).await?,
            chat_id_by_pair: client.prepare(CHAT_ID_BY_PAIR).await?,
            users_and_chats: client.prepare(USERS_AND_CHATS).await?,
            chats_progress: client.prepare(CHATS_PROGRESS).await?,
            chat_standings: client.prepare(CHAT_STANDINGS).await?,
            users_with_messages: client.prepare(USERS_WITH_MESSAGES).await?,
            chat_by_id: client.prepare(CHAT_BY_ID).await?,
            chat_by_pair: client.prepare(CHAT_BY_PAIR).await?,
            chats_of: client.prepare(CHATS_OF).await?,
            positions_probed: client.prepare(POSITIONS_PROBED).await?,
            positions_scanned: client.prepare(POSITIONS_SCANNED).await?,
            messages_between_many: client.prepare(MESSAGES_BETWEEN_MANY).await?,
            history: client.prepare(HISTORY).await?,
            histories: client.prepare(HISTORIES).await?,
            append_messages: client.prepare(append::APPEND_CHECKED).await?,
            append_new_messages: client.prepare(append::APPEND_NEW_MESSAGES).await?,
            blacklist_token: client.prepare(BLACKLIST_TOKEN).await?,
            is_blacklisted: client.prepare(IS_BLACKLISTED).await?,
            failed_logins: client.prepare(FAILED_LOGINS).await?,
            count_failed_login: client.prepare(COUNT_FAILED_LOGIN).await?,
            mark_read: client.prepare(MARK_READ).await?,
            wal_position: client.prepare(WAL_POSITION).await?,
            replayed_through: client.prepare(REPLAYED_THROUGH).await?,
        })
    }
}
