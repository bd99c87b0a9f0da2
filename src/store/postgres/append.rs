//! Appending a batch of messages: the lean statement for the common batch
//! (every client id new) and the checked `append_messages` function for the
//! rest, and how their rows map back to the batch.

use super::{outcome_from_row, timestamp, PreparedConnection};
use crate::model::Message;
use crate::store::{AppendOutcome, NewMessage};
use std::collections::HashMap;
use tokio_postgres::Row;

/// The lean append, for a batch whose client ids are all new (the common case),
/// as one statement: no lock pass, no duplicate probe, no PL/pgSQL. The caller
/// sends each chat once with its message count (`$6`, `$7`, ascending by chat
/// id) and each message's place among its chat's messages (`$8`, from 1): each
/// counter moves once (the UPDATE locks the row; one node's lanes never share a
/// chat, and a deadlock between two nodes' batches is detected by PostgreSQL
/// and retried) and message `nth` takes `seq = base + nth`.
/// A reused client id fails the statement on the unique index, so nothing is
/// stored and the caller retries through `append_messages`, which answers it.
/// A chat that does not exist gets a NULL seq, which fails the whole statement.
pub(super) const APPEND_NEW_MESSAGES: &str = "
WITH moved AS (
    UPDATE chats c SET last_seq = c.last_seq + d.n
    FROM unnest($6::BIGINT[], $7::BIGINT[]) AS d(chat, n)
    WHERE c.id = d.chat
    RETURNING c.id AS chat, c.last_seq - d.n AS base
)
INSERT INTO messages (chat_id, seq, sender_id, content, metadata, client_msg_id, created_at)
SELECT i.chat, m.base + i.nth, i.sender, i.content, i.metadata::jsonb, i.cmid, now()
FROM unnest($1::BIGINT[], $2::BIGINT[], $3::TEXT[], $4::TEXT[], $5::TEXT[], $8::BIGINT[])
     AS i(chat, sender, content, metadata, cmid, nth)
LEFT JOIN moved m ON m.chat = i.chat
RETURNING id, chat_id, seq, created_at";

/// The checked append: probes each client id and answers a retry with the
/// stored original. Rows: ord, outcome, id, seq, content, metadata, created_at.
pub(super) const APPEND_CHECKED: &str = "SELECT * FROM append_messages($1, $2, $3, $4, $5)";

/// Which append a batch goes through.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum AppendPath {
    /// [`APPEND_NEW_MESSAGES`]: assumes every client id is new; a reused one
    /// fails the whole batch with a unique violation (nothing stored).
    New,
    /// [`APPEND_CHECKED`]: probes each client id.
    Checked,
}

/// Runs an append for a batch whose client ids are distinct; `None` for a
/// message that got no row back.
pub(super) async fn append_on(
    conn: &PreparedConnection,
    path: AppendPath,
    batch: &[&NewMessage],
) -> Result<Vec<Option<AppendOutcome>>, tokio_postgres::Error> {
    let chats: Vec<i64> = batch.iter().map(|m| m.chat_id).collect();
    let senders: Vec<i64> = batch.iter().map(|m| m.sender.id).collect();
    let contents: Vec<&str> = batch.iter().map(|m| m.content.as_str()).collect();
    let metadata: Vec<&str> = batch.iter().map(|m| m.metadata.as_str()).collect();
    let client_ids: Vec<Option<&str>> = batch.iter().map(|m| m.client_msg_id.as_deref()).collect();
    let statements = &conn.statements;
    match path {
        AppendPath::New => {
            let runs = ChatRuns::of(&chats);
            let rows = conn
                .client
                .query(
                    &statements.append_new_messages,
                    &[
                        &chats,
                        &senders,
                        &contents,
                        &metadata,
                        &client_ids,
                        &runs.chats,
                        &runs.counts,
                        &runs.nth,
                    ],
                )
                .await?;
            Ok(created_outcomes(batch, &runs, &rows))
        }
        AppendPath::Checked => {
            let rows = conn
                .client
                .query(
                    &statements.append_messages,
                    &[&chats, &senders, &contents, &metadata, &client_ids],
                )
                .await?;
            let mut outcomes: Vec<Option<AppendOutcome>> = vec![None; batch.len()];
            for row in rows {
                let index = row.get::<_, i32>(0) as usize - 1;
                outcomes[index] = Some(outcome_from_row(&row, batch[index]));
            }
            Ok(outcomes)
        }
    }
}

/// A batch seen chat by chat: each chat once (ascending) with its message
/// count, and each message's place among its chat's messages, from 1.
#[derive(Debug, PartialEq, Eq)]
struct ChatRuns {
    chats: Vec<i64>,
    counts: Vec<i64>,
    nth: Vec<i64>,
}

impl ChatRuns {
    fn of(message_chats: &[i64]) -> Self {
        let mut seen: HashMap<i64, i64> = HashMap::new();
        let nth = message_chats
            .iter()
            .map(|chat| {
                let count = seen.entry(*chat).or_default();
                *count += 1;
                *count
            })
            .collect();
        let mut totals: Vec<(i64, i64)> = seen.into_iter().collect();
        totals.sort_unstable();
        let (chats, counts) = totals.into_iter().unzip();
        ChatRuns { chats, counts, nth }
    }
}

/// Matches the lean statement's rows (id, chat, seq, created_at; in no
/// particular order) to the batch: a chat's messages took consecutive seqs in
/// batch order, so its lowest seq is its first message.
fn created_outcomes(
    batch: &[&NewMessage],
    runs: &ChatRuns,
    rows: &[Row],
) -> Vec<Option<AppendOutcome>> {
    let mut first_seq: HashMap<i64, i64> = HashMap::with_capacity(runs.chats.len());
    for row in rows {
        let seq = first_seq.entry(row.get(1)).or_insert(i64::MAX);
        *seq = (*seq).min(row.get(2));
    }
    let index: HashMap<(i64, i64), usize> = batch
        .iter()
        .zip(&runs.nth)
        .enumerate()
        .map(|(i, (message, nth))| ((message.chat_id, *nth), i))
        .collect();
    let mut outcomes: Vec<Option<AppendOutcome>> = vec![None; batch.len()];
    for row in rows {
        let (chat, seq): (i64, i64) = (row.get(1), row.get(2));
        let nth = seq - first_seq[&chat] + 1;
        if let Some(&i) = index.get(&(chat, nth)) {
            outcomes[i] = Some(AppendOutcome::Created(created(batch[i], row)));
        }
    }
    outcomes
}

fn created(request: &NewMessage, row: &Row) -> Message {
    Message {
        id: row.get(0),
        chat: request.chat_id,
        seq: row.get(2),
        sender: request.sender.clone(),
        content: request.content.clone(),
        metadata: crate::model::metadata_from_text(request.metadata.clone()),
        client_msg_id: request.client_msg_id.clone(),
        created_at: timestamp(row, 3),
    }
}

#[cfg(test)]
mod tests {
    use super::ChatRuns;

    #[test]
    fn chat_runs_count_each_chat_once_and_number_its_messages_in_order() {
        let runs = ChatRuns::of(&[9, 4, 9, 9, 7, 4]);
        assert_eq!(runs.chats, vec![4, 7, 9]);
        assert_eq!(runs.counts, vec![2, 1, 3]);
        assert_eq!(runs.nth, vec![1, 1, 2, 3, 1, 2]);
        assert_eq!(
            ChatRuns::of(&[]),
            ChatRuns {
                chats: vec![],
                counts: vec![],
                nth: vec![]
            }
        );
    }
}
