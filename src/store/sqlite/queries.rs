//! The embedded store's SQL, run on the store thread: rows read into values,
//! and the queries more than one operation shares (a chat with its
//! participants and last message, a chat's access, a range of messages, one
//! append).

use super::failed;
use crate::model::{metadata_from_text, Chat, Message, Timestamp, User};
use crate::store::{
    sender_among, Appended, Assigned, ChatAccess, ChatProgress, ChatStanding, NewMessage,
    StandingsRead, StoreError,
};
use rusqlite::{params, Connection, OptionalExtension, Row};
use std::sync::Arc;
use time::OffsetDateTime;

pub fn micros(t: OffsetDateTime) -> i64 {
    (t.unix_timestamp_nanos() / 1000) as i64
}

pub fn timestamp(micros: i64) -> Timestamp {
    let t = OffsetDateTime::from_unix_timestamp_nanos(micros as i128 * 1000)
        .unwrap_or(OffsetDateTime::UNIX_EPOCH);
    Timestamp(t)
}

pub fn user_at(row: &Row<'_>, first: usize) -> rusqlite::Result<User> {
    Ok(User {
        id: row.get(first)?,
        email: row.get(first + 1)?,
        full_name: row.get(first + 2)?,
        nickname: row.get(first + 3)?,
    })
}

/// A chat with both participants, its last message and where the reader
/// (`?1`) and the other participant stand in it.
pub const CHAT_SELECT: &str =
    "SELECT c.id, c.created_at, coalesce(m.created_at, c.created_at) AS updated_at,
        ua.id, ua.email, ua.full_name, ua.nickname, ub.id, ub.email, ub.full_name, ub.nickname,
        m.id, m.seq, m.content, m.metadata, m.client_msg_id, m.created_at, m.sender_id,
        c.last_seq, coalesce(r.seq, 0), coalesce(p.seq, 0)
    FROM chats c
    JOIN users ua ON ua.id = c.user_low
    JOIN users ub ON ub.id = c.user_high
    LEFT JOIN messages m ON m.chat_id = c.id AND m.seq = c.last_seq
    LEFT JOIN read_markers r ON r.chat_id = c.id AND r.user_id = ?1
    LEFT JOIN read_markers p ON p.chat_id = c.id
        AND p.user_id = CASE WHEN c.user_low = ?1 THEN c.user_high ELSE c.user_low END";

pub fn chat_from_row(row: &Row<'_>) -> rusqlite::Result<Chat> {
    let participants = [user_at(row, 3)?, user_at(row, 7)?];
    let id: i64 = row.get(0)?;
    let last_message = match row.get::<_, Option<i64>>(11)? {
        None => None,
        Some(message_id) => {
            let sender = sender_among(&participants, row.get(17)?);
            Some(Message {
                id: message_id,
                chat: id,
                seq: row.get(12)?,
                sender: Arc::new(sender.clone()),
                content: row.get(13)?,
                metadata: metadata_from_text(row.get(14)?),
                client_msg_id: row.get(15)?,
                created_at: timestamp(row.get(16)?),
            })
        }
    };
    let (last_seq, read_seq): (i64, i64) = (row.get(18)?, row.get(19)?);
    Ok(Chat {
        id,
        created_at: timestamp(row.get(1)?),
        updated_at: timestamp(row.get(2)?),
        participants,
        last_message,
        last_seq,
        read_seq,
        unread_count: Chat::unread(last_seq, read_seq),
        peer_read_seq: row.get(20)?,
    })
}

/// The chat as `reader` sees it; `None` when there is no such chat.
pub fn chat_by_id(
    conn: &Connection,
    chat_id: i64,
    reader: i64,
) -> Result<Option<Chat>, StoreError> {
    let sql = format!("{CHAT_SELECT} WHERE c.id = ?2");
    conn.query_row(&sql, [reader, chat_id], chat_from_row)
        .optional()
        .map_err(failed)
}

/// The columns of [`access_at`] for the chat `c`: participants, `last_seq`
/// and their read markers (joined from `read_markers`, by primary key). A
/// literal, so statements built with it are too (nothing formatted per call).
macro_rules! access_columns {
    () => {
        "c.user_low, c.user_high, c.last_seq,
         (SELECT seq FROM read_markers WHERE chat_id = c.id AND user_id = c.user_low),
         (SELECT seq FROM read_markers WHERE chat_id = c.id AND user_id = c.user_high)"
    };
}
pub(super) use access_columns;

/// A chat's [`access_columns`] from column `at` on; `None` for NULLs (no chat).
pub fn access_at(row: &Row, at: usize) -> rusqlite::Result<Option<ChatAccess>> {
    let Some(low) = row.get::<_, Option<i64>>(at)? else {
        return Ok(None);
    };
    let marker = |offset: usize| -> rusqlite::Result<i64> {
        Ok(row.get::<_, Option<i64>>(at + offset)?.unwrap_or(0))
    };
    Ok(Some(ChatAccess {
        participants: [low, row.get(at + 1)?],
        last_seq: row.get(at + 2)?,
        read_seqs: [marker(3)?, marker(4)?],
    }))
}

/// A chat's participants, `last_seq` and read markers; `None` when there is
/// no such chat.
pub fn access_of(conn: &Connection, chat_id: i64) -> Result<Option<ChatAccess>, StoreError> {
    let sql = concat!("SELECT ", access_columns!(), " FROM chats c WHERE c.id = ?");
    conn.query_row(sql, [chat_id], |row| access_at(row, 0))
        .optional()
        .map(Option::flatten)
        .map_err(failed)
}

/// A chat's [`ChatProgress`]; `None` when there is no such chat.
pub fn progress_of(conn: &Connection, chat_id: i64) -> Result<Option<ChatProgress>, StoreError> {
    let sql = concat!(
        "SELECT ",
        access_columns!(),
        ", c.created_at FROM chats c WHERE c.id = ?"
    );
    let found = conn
        .query_row(sql, [chat_id], |row| {
            Ok(access_at(row, 0)?.zip(row.get::<_, Option<i64>>(5)?))
        })
        .optional()
        .map_err(failed)?
        .flatten();
    let Some((access, created_at)) = found else {
        return Ok(None);
    };
    let own_message = |at: usize| -> Result<bool, StoreError> {
        conn.query_row(
            "SELECT EXISTS (SELECT 1 FROM messages WHERE chat_id = ?1 AND seq = ?2
                              AND sender_id = ?3)",
            params![chat_id, access.read_seqs[at], access.participants[at]],
            |row| row.get(0),
        )
        .map_err(failed)
    };
    Ok(Some(ChatProgress {
        access,
        marker_at_own_message: [own_message(0)?, own_message(1)?],
        created_at: timestamp(created_at),
    }))
}

/// The [`ChatStanding`] of each chat of `read.user` that holds messages or
/// was created at or after `read.created_since`, at most
/// [`StandingsRead::answer_limit`] of them.
pub fn standings_of(
    conn: &Connection,
    read: StandingsRead,
) -> Result<Vec<ChatStanding>, StoreError> {
    let mut statement = conn
        .prepare_cached(
            "SELECT c.id, CASE WHEN c.user_low = ?1 THEN c.user_high ELSE c.user_low END,
                    c.last_seq, coalesce(r.seq, 0), coalesce(p.seq, 0),
                    coalesce((SELECT m.sender_id FROM messages m
                              WHERE m.chat_id = c.id AND m.seq = c.last_seq), 0)
             FROM chats c
             LEFT JOIN read_markers r ON r.chat_id = c.id AND r.user_id = ?1
             LEFT JOIN read_markers p ON p.chat_id = c.id
                 AND p.user_id = CASE WHEN c.user_low = ?1 THEN c.user_high ELSE c.user_low END
             WHERE (c.user_low = ?1 OR c.user_high = ?1)
               AND (c.last_seq > 0 OR c.created_at >= ?2)
             LIMIT ?3",
        )
        .map_err(failed)?;
    let most = i64::try_from(read.answer_limit()).unwrap_or(i64::MAX);
    let rows = statement
        .query_map(params![read.user, read.created_since, most], |row| {
            Ok(ChatStanding {
                chat: row.get(0)?,
                peer: row.get(1)?,
                last_seq: row.get(2)?,
                read_seq: row.get(3)?,
                peer_read_seq: row.get(4)?,
                last_sender: row.get(5)?,
            })
        })
        .map_err(failed)?;
    rows.collect::<Result<_, _>>().map_err(failed)
}

/// A chat's messages with `from_seq <= seq <= to_seq`, ascending.
/// See [`crate::store::Store::messages_between`]: rows are read one at a time, so no more
/// than `max_bytes` (plus one message) is ever held.
pub fn messages_in(
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
                sender: Arc::new(user_at(row, 6)?),
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
pub fn append_one(
    conn: &Connection,
    message: &NewMessage,
    now: i64,
) -> Result<Appended, StoreError> {
    if let Some(client_id) = &message.client_msg_id {
        let existing = conn
            .prepare_cached(
                "SELECT id, chat_id, seq, content, metadata, created_at FROM messages
                 WHERE chat_id = ? AND sender_id = ? AND client_msg_id = ?",
            )
            .map_err(failed)?
            .query_row(
                params![message.chat_id, message.sender.id, client_id],
                |row| {
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
                },
            )
            .optional()
            .map_err(failed)?;
        if let Some((_, original)) = existing {
            return Ok(Appended::Duplicate(Box::new(original)));
        }
    }
    let seq: i64 = conn
        .prepare_cached("UPDATE chats SET last_seq = last_seq + 1 WHERE id = ? RETURNING last_seq")
        .map_err(failed)?
        .query_row([message.chat_id], |row| row.get(0))
        .map_err(failed)?;
    // What the sender sent, and what came before it, they have read.
    conn.prepare_cached(
        "INSERT INTO read_markers (chat_id, user_id, seq) VALUES (?1, ?2, ?3)
         ON CONFLICT (chat_id, user_id) DO UPDATE SET seq = max(seq, excluded.seq)",
    )
    .map_err(failed)?
    .execute(params![message.chat_id, message.sender.id, seq])
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
