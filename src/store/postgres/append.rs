//! Appending a batch of messages: the lean statement for the common batch
//! (every client id new) and the checked `append_messages` function for the
//! rest, and how their rows map back to the batch.

use super::pool::PreparedConnection;
use super::rows::{ord_index, outcome_from_row, timestamp};
use crate::store::{Appended, Assigned, NewMessage};
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
/// The same UPDATE moves each sender's read marker to their newest message
/// (`$9`..`$12`: per chat, up to two senders and the place of their last
/// message), so sending costs no extra row write for it.
pub(super) const APPEND_NEW_MESSAGES: &str = "
WITH moved AS (
    UPDATE chats c SET last_seq = c.last_seq + d.n,
        low_read_seq = GREATEST(c.low_read_seq, CASE c.user_low
            WHEN d.sa THEN c.last_seq + d.na WHEN d.sb THEN c.last_seq + d.nb ELSE 0 END),
        high_read_seq = GREATEST(c.high_read_seq, CASE c.user_high
            WHEN d.sa THEN c.last_seq + d.na WHEN d.sb THEN c.last_seq + d.nb ELSE 0 END)
    FROM unnest($6::BIGINT[], $7::BIGINT[], $9::BIGINT[], $10::BIGINT[], $11::BIGINT[],
                $12::BIGINT[]) AS d(chat, n, sa, na, sb, nb)
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
) -> Result<Vec<Option<Appended>>, tokio_postgres::Error> {
    let chats: Vec<i64> = batch.iter().map(|m| m.chat_id).collect();
    let senders: Vec<i64> = batch.iter().map(|m| m.sender.id).collect();
    let contents: Vec<&str> = batch.iter().map(|m| m.content.as_str()).collect();
    let metadata: Vec<&str> = batch.iter().map(|m| m.metadata.as_str()).collect();
    let client_ids: Vec<Option<&str>> = batch.iter().map(|m| m.client_msg_id.as_deref()).collect();
    let statements = &conn.statements;
    match path {
        AppendPath::New => {
            let runs = ChatRuns::of(&chats, &senders);
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
                        &runs.senders.first,
                        &runs.senders.first_last,
                        &runs.senders.second,
                        &runs.senders.second_last,
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
            let mut outcomes: Vec<Option<Appended>> = vec![None; batch.len()];
            // A row out of range leaves its message unanswered, which the
            // caller reports instead of storing half a batch silently.
            for row in rows {
                if let Some(index) = ord_index(&row, batch.len()) {
                    outcomes[index] = Some(outcome_from_row(&row, batch[index]));
                }
            }
            Ok(outcomes)
        }
    }
}

/// A batch seen chat by chat: each chat once (ascending) with its message
/// count, each message's place among its chat's messages (from 1), and the
/// batch indexes sorted by chat, then by place (chat slot `s` starts at
/// `starts[s]`), and who sent in each chat.
#[derive(Debug, PartialEq, Eq)]
struct ChatRuns {
    chats: Vec<i64>,
    counts: Vec<i64>,
    nth: Vec<i64>,
    by_chat: Vec<usize>,
    starts: Vec<usize>,
    senders: ChatSenders,
}

/// Per chat slot, its (at most two) senders in the batch and the place of
/// each one's last message (0 and 0 for a second sender that is not there).
#[derive(Debug, Default, PartialEq, Eq)]
struct ChatSenders {
    first: Vec<i64>,
    first_last: Vec<i64>,
    second: Vec<i64>,
    second_last: Vec<i64>,
}

impl ChatSenders {
    fn of(runs: &ChatRuns, message_senders: &[i64]) -> Self {
        let mut senders = ChatSenders::default();
        for slot in 0..runs.chats.len() {
            let (mut first, mut second) = ((0, 0), (0, 0));
            for place in 0..runs.counts[slot] {
                let Some(i) = runs.message_at(slot, place) else {
                    continue;
                };
                let sender = message_senders[i];
                if first.0 == 0 || first.0 == sender {
                    first = (sender, place + 1);
                } else {
                    // A chat has two participants: any other sender is the second.
                    second = (sender, place + 1);
                }
            }
            senders.first.push(first.0);
            senders.first_last.push(first.1);
            senders.second.push(second.0);
            senders.second_last.push(second.1);
        }
        senders
    }
}

impl ChatRuns {
    fn of(message_chats: &[i64], message_senders: &[i64]) -> Self {
        let mut by_chat: Vec<usize> = (0..message_chats.len()).collect();
        by_chat.sort_unstable_by_key(|&i| (message_chats[i], i));
        let (mut chats, mut counts, mut starts) = (Vec::new(), Vec::new(), Vec::new());
        let mut nth = vec![0; message_chats.len()];
        for (position, &i) in by_chat.iter().enumerate() {
            if chats.last() != Some(&message_chats[i]) {
                chats.push(message_chats[i]);
                counts.push(0);
                starts.push(position);
            }
            let count = counts.last_mut().expect("pushed above");
            *count += 1;
            nth[i] = *count;
        }
        let mut runs = ChatRuns {
            chats,
            counts,
            nth,
            by_chat,
            starts,
            senders: ChatSenders::default(),
        };
        runs.senders = ChatSenders::of(&runs, message_senders);
        runs
    }

    /// The batch index of the message at `place` (from 0) in chat slot `slot`.
    fn message_at(&self, slot: usize, place: i64) -> Option<usize> {
        let count = self.counts[slot];
        let place = usize::try_from(place).ok().filter(|_| place < count)?;
        Some(self.by_chat[self.starts[slot] + place])
    }
}

/// Matches the lean statement's rows (id, chat, seq, created_at; in no
/// particular order) to the batch: a chat's messages took consecutive seqs in
/// batch order, so its lowest seq is its first message.
fn created_outcomes(batch: &[&NewMessage], runs: &ChatRuns, rows: &[Row]) -> Vec<Option<Appended>> {
    // Each row's chat slot and seq, read once.
    let mut placed: Vec<(usize, i64, &Row)> = Vec::with_capacity(rows.len());
    placed.extend(rows.iter().filter_map(|row| {
        let slot = runs.chats.binary_search(&row.get::<_, i64>(1)).ok()?;
        Some((slot, row.get(2), row))
    }));
    let mut first_seq = vec![i64::MAX; runs.chats.len()];
    for &(slot, seq, _) in &placed {
        first_seq[slot] = first_seq[slot].min(seq);
    }
    let mut outcomes: Vec<Option<Appended>> = vec![None; batch.len()];
    for (slot, seq, row) in placed {
        if let Some(i) = runs.message_at(slot, seq - first_seq[slot]) {
            outcomes[i] = Some(Appended::Created(Assigned {
                id: row.get(0),
                seq,
                created_at: timestamp(row, 3),
            }));
        }
    }
    outcomes
}

#[cfg(test)]
mod tests {
    use super::{ChatRuns, ChatSenders};

    #[test]
    fn chat_runs_count_each_chat_once_and_number_its_messages_in_order() {
        let runs = ChatRuns::of(&[9, 4, 9, 9, 7, 4], &[1, 2, 3, 1, 5, 6]);
        assert_eq!(runs.chats, vec![4, 7, 9]);
        assert_eq!(runs.counts, vec![2, 1, 3]);
        assert_eq!(runs.nth, vec![1, 1, 2, 3, 1, 2]);
        assert_eq!(runs.by_chat, vec![1, 5, 4, 0, 2, 3]);
        assert_eq!(runs.starts, vec![0, 2, 3]);
        assert_eq!(runs.message_at(2, 0), Some(0), "chat 9's first");
        assert_eq!(runs.message_at(2, 2), Some(3), "chat 9's third");
        assert_eq!(runs.message_at(0, 1), Some(5), "chat 4's second");
        assert_eq!(runs.message_at(1, 1), None, "chat 7 has one");
        assert_eq!(runs.message_at(1, -1), None);
        assert_eq!(runs.senders.first, vec![2, 5, 1], "chat 4: 2 then 6");
        assert_eq!(
            runs.senders.first_last,
            vec![1, 1, 3],
            "1 sent chat 9's 3rd"
        );
        assert_eq!(runs.senders.second, vec![6, 0, 3]);
        assert_eq!(runs.senders.second_last, vec![2, 0, 2]);
        assert_eq!(
            ChatRuns::of(&[], &[]),
            ChatRuns {
                chats: vec![],
                counts: vec![],
                nth: vec![],
                by_chat: vec![],
                starts: vec![],
                senders: ChatSenders::default(),
            }
        );
    }
}
