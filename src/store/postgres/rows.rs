//! Rows of the PostgreSQL store's statements read into the store's values.
//! Column positions are those of the statements in [`super::statements`].

use crate::model::{metadata_from_text, Chat, Message, Timestamp, User};
use crate::store::{
    sender_among, Appended, Assigned, ChatAccess, ChatStanding, FailedLogins, History, NewMessage,
};
use std::sync::Arc;
use std::time::Duration;
use time::OffsetDateTime;
use tokio_postgres::Row;

pub fn user_at(row: &Row, first: usize) -> User {
    User {
        id: row.get(first),
        email: row.get(first + 1),
        full_name: row.get(first + 2),
        nickname: row.get(first + 3),
    }
}

pub fn timestamp(row: &Row, index: usize) -> Timestamp {
    Timestamp(row.get::<_, OffsetDateTime>(index))
}

/// A login-failure window: its count and the seconds it has left.
pub fn failed_logins_from_row(row: &Row) -> FailedLogins {
    FailedLogins {
        count: u32::try_from(row.get::<_, i32>(0)).unwrap_or(0),
        window_left: Duration::try_from_secs_f64(row.get(1)).unwrap_or_default(),
    }
}

/// The 0-based position in a request of `len` items that a row answers, from
/// the 1-based `ord` in its first column (`WITH ORDINALITY`); `None` when out of
/// range.
pub fn ord_index(row: &Row, len: usize) -> Option<usize> {
    ord_index_at(row, 0, len)
}

/// [`ord_index`] from the `ord` in column `column`.
pub fn ord_index_at(row: &Row, column: usize, len: usize) -> Option<usize> {
    usize::try_from(row.get::<_, i32>(column))
        .ok()?
        .checked_sub(1)
        .filter(|index| *index < len)
}

/// A row of `CHAT_STANDINGS` (after its `ord`).
pub fn standing_from_row(row: &Row) -> ChatStanding {
    ChatStanding {
        chat: row.get(1),
        peer: row.get(2),
        last_seq: row.get(3),
        read_seq: row.get(4),
        peer_read_seq: row.get(5),
        last_sender: row.get(6),
    }
}

pub fn chat_from_row(row: &Row) -> Chat {
    let participants = [user_at(row, 3), user_at(row, 7)];
    let id: i64 = row.get(0);
    let last_message = row.get::<_, Option<i64>>(11).map(|message_id| Message {
        id: message_id,
        chat: id,
        seq: row.get(12),
        sender: Arc::new(sender_among(&participants, row.get(17)).clone()),
        content: row.get(13),
        metadata: metadata_from_text(row.get(14)),
        client_msg_id: row.get(15),
        created_at: timestamp(row, 16),
    });
    let (last_seq, read_seq): (i64, i64) = (row.get(18), row.get(19));
    Chat {
        id,
        participants,
        created_at: timestamp(row, 1),
        updated_at: timestamp(row, 2),
        last_message,
        last_seq,
        read_seq,
        unread_count: Chat::unread(last_seq, read_seq),
        peer_read_seq: row.get(20),
    }
}

pub fn message_from_row(row: &Row, chat_id: i64) -> Message {
    Message {
        id: row.get(0),
        chat: chat_id,
        seq: row.get(1),
        content: row.get(2),
        metadata: metadata_from_text(row.get(3)),
        client_msg_id: row.get(4),
        created_at: timestamp(row, 5),
        sender: Arc::new(user_at(row, 6)),
    }
}

/// One read's rows of the `histories` statement (ord, both participants,
/// `last_seq`, a message or NULLs, both read markers); `None` when there are
/// none (no chat).
pub fn history_from_rows(rows: &[Row], chat_id: i64) -> Option<History> {
    let first = rows.first()?;
    let participants = [Arc::new(user_at(first, 1)), Arc::new(user_at(first, 5))];
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
            sender: sender_among(&participants, row.get(16)).clone(),
        })
        .collect();
    // The rows come in heap order; sorting 25 values here is cheaper than a Sort node.
    messages.sort_unstable_by_key(|message| message.seq);
    Some(History {
        access: ChatAccess {
            participants: [participants[0].id, participants[1].id],
            last_seq: first.get(9),
            read_seqs: [first.get(17), first.get(18)],
        },
        messages,
    })
}

/// Columns: ord, outcome, id, seq, content, metadata, created_at. Content and
/// metadata come back only for a retried client id (the stored original).
pub fn outcome_from_row(row: &Row, request: &NewMessage) -> Appended {
    let assigned = Assigned {
        id: row.get(2),
        seq: row.get(3),
        created_at: timestamp(row, 6),
    };
    if row.get::<_, i16>(1) == 0 {
        return Appended::Created(assigned);
    }
    let mut original = request.clone();
    if let Some(content) = row.get::<_, Option<String>>(4) {
        original.content = content;
    }
    if let Some(metadata) = row.get::<_, Option<String>>(5) {
        original.metadata = metadata;
    }
    Appended::Duplicate(Box::new(original.stored(assigned)))
}
