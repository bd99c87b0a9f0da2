//! What every backend does around an append: a batch may repeat a
//! `(chat, sender, client_msg_id)`, which is stored once and answered for
//! every repeat, and every message of a batch gets an answer or the batch
//! fails.

use super::{Appended, NewMessage, StoreError};
use crate::fast_maps::{map_with_capacity, FastMap};
use std::collections::hash_map::Entry;

/// Where each message of a batch gets its outcome: from its own append, or (for a
/// repeat of an earlier `(chat, sender, client_msg_id)` in the same batch) from
/// the first.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Slot {
    First(usize),
    Repeat(usize),
}

/// Splits a batch into messages to append (distinct client ids) and, for every
/// input, the slot its outcome comes from.
pub(crate) fn dedupe_batch(batch: &[NewMessage]) -> (Vec<&NewMessage>, Vec<Slot>) {
    let mut unique: Vec<&NewMessage> = Vec::with_capacity(batch.len());
    let mut seen: FastMap<(i64, i64, &str), usize> = map_with_capacity(batch.len());
    let slots = batch
        .iter()
        .map(|message| {
            if let Some(id) = message.client_msg_id.as_deref() {
                // One lookup per message: the entry is found or made at once.
                match seen.entry((message.chat_id, message.sender.id, id)) {
                    Entry::Occupied(first) => return Slot::Repeat(*first.get()),
                    Entry::Vacant(slot) => {
                        slot.insert(unique.len());
                    }
                }
            }
            unique.push(message);
            Slot::First(unique.len() - 1)
        })
        .collect();
    (unique, slots)
}

/// What the store says of the whole batch: a repeat of a message created in
/// this batch is a duplicate of it (a copy of that message, built from `unique`,
/// the messages appended); every other answer moves to its slot.
pub(crate) fn expand_repeats(
    stored: Vec<Appended>,
    slots: &[Slot],
    unique: &[&NewMessage],
) -> Result<Vec<Appended>, StoreError> {
    let repeats: Vec<Option<Appended>> = slots
        .iter()
        .map(|slot| match *slot {
            Slot::First(_) => None,
            Slot::Repeat(i) => stored
                .get(i)
                .zip(unique.get(i))
                .map(|(said, first)| match said {
                    Appended::Created(assigned) => {
                        Appended::Duplicate(Box::new((*first).clone().stored(*assigned)))
                    }
                    other => other.clone(),
                }),
        })
        .collect();
    let mut stored: Vec<Option<Appended>> = stored.into_iter().map(Some).collect();
    // Sized up front: collected through `Option`, the vector grew by doubling.
    let mut outcomes = Vec::with_capacity(slots.len());
    for (slot, repeat) in slots.iter().zip(repeats) {
        let outcome = match *slot {
            Slot::First(i) => stored.get_mut(i).and_then(Option::take),
            Slot::Repeat(_) => repeat,
        };
        outcomes.push(outcome.ok_or(StoreError::Inconsistent("a batch message got no outcome"))?);
    }
    Ok(outcomes)
}

/// Every appended message must have an answer; a missing one is reported, not hidden.
pub(crate) fn all_answered(said: Vec<Option<Appended>>) -> Result<Vec<Appended>, StoreError> {
    said.into_iter()
        .map(|o| o.ok_or(StoreError::Inconsistent("a batch message got no outcome")))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{Timestamp, User};
    use crate::store::{outcomes, AppendOutcome, Assigned};

    fn new_message(sender: i64, client_msg_id: Option<&str>) -> NewMessage {
        NewMessage {
            chat_id: 1,
            sender: std::sync::Arc::new(User {
                id: sender,
                email: format!("{sender}@example.com"),
                full_name: String::new(),
                nickname: None,
            }),
            content: format!("from {sender} as {client_msg_id:?}"),
            metadata: "{}".into(),
            client_msg_id: client_msg_id.map(str::to_owned),
        }
    }

    fn stored(seq: i64) -> Appended {
        Appended::Created(Assigned {
            id: seq,
            seq,
            created_at: Timestamp::now(),
        })
    }

    fn seq_and_kind(outcome: &AppendOutcome) -> (i64, &'static str) {
        match outcome {
            AppendOutcome::Created(m) => (m.seq, "created"),
            AppendOutcome::Duplicate(m) => (m.seq, "duplicate"),
        }
    }

    #[test]
    fn a_client_id_repeated_within_a_batch_is_stored_once_and_answered_as_a_duplicate() {
        let batch = [
            new_message(7, Some("a")),
            new_message(8, Some("a")), // another sender's "a" is another message
            new_message(7, Some("a")),
            new_message(7, None),
            new_message(7, None),
        ];
        let (unique, slots) = dedupe_batch(&batch);
        assert_eq!(unique.len(), 4);
        assert_eq!(
            slots,
            [
                Slot::First(0),
                Slot::First(1),
                Slot::Repeat(0),
                Slot::First(2),
                Slot::First(3)
            ]
        );
        let said: Vec<Appended> = (1..=unique.len() as i64).map(stored).collect();
        let answered = outcomes(
            expand_repeats(said, &slots, &unique).unwrap(),
            batch.to_vec(),
        );
        let kinds: Vec<_> = answered.iter().map(seq_and_kind).collect();
        assert_eq!(
            kinds,
            [
                (1, "created"),
                (2, "created"),
                (1, "duplicate"),
                (3, "created"),
                (4, "created")
            ]
        );
        let (AppendOutcome::Created(first), AppendOutcome::Duplicate(repeat)) =
            (&answered[0], &answered[2])
        else {
            panic!("{answered:?}")
        };
        assert_eq!(
            (&repeat.content, &repeat.client_msg_id, repeat.id),
            (&first.content, &first.client_msg_id, first.id),
            "the repeat is answered with the message its first was stored as"
        );
    }

    #[test]
    fn the_same_client_id_in_another_chat_within_a_batch_is_another_message() {
        let mut elsewhere = new_message(7, Some("a"));
        elsewhere.chat_id = 2;
        let batch = [new_message(7, Some("a")), elsewhere];
        let (unique, slots) = dedupe_batch(&batch);
        assert_eq!(unique.len(), 2, "client ids are per chat");
        assert_eq!(slots, [Slot::First(0), Slot::First(1)]);
        let answered = outcomes(
            expand_repeats(vec![stored(1), stored(1)], &slots, &unique).unwrap(),
            batch.to_vec(),
        );
        let kinds: Vec<_> = answered.iter().map(seq_and_kind).collect();
        assert_eq!(kinds, [(1, "created"), (1, "created")]);
    }

    #[test]
    fn a_missing_outcome_is_an_error_not_a_shorter_answer() {
        let batch = [new_message(7, Some("a")), new_message(7, Some("b"))];
        let (unique, slots) = dedupe_batch(&batch);
        let only_first = vec![stored(1)];
        assert!(matches!(
            expand_repeats(only_first, &slots, &unique),
            Err(StoreError::Inconsistent(_))
        ));
    }
}
