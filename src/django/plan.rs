//! What a run can import, decided from the source and from what earlier runs
//! brought in, and what it cannot, with the reason ([`Problems`]). Pure
//! functions over what was read, so every rule is unit-tested.

use crate::auth::password::HashFormat;
use crate::store::import::{ImportChat, ImportPlan, ImportToken, ImportUser, ImportedBefore};
use crate::store::postgres::django::SourceChat;
use std::collections::{BTreeMap, HashMap};

/// What the source holds that this server cannot take as it is.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Problems {
    /// Emails that differ only in case: the lowercase email and its users
    /// `(id, email)`. Emails are unique without case here, so nothing is
    /// written while any remain.
    pub email_conflicts: Vec<(String, Vec<(i64, String)>)>,
    /// Chats skipped because they do not have exactly two participants:
    /// `(chat, participants)`.
    pub chats_not_two: Vec<(i64, usize)>,
    /// Chats skipped because their `pair_key` is not the one of their two
    /// participants.
    pub chats_bad_pair_key: Vec<i64>,
    /// Messages of the skipped chats.
    pub messages_of_skipped_chats: i64,
    /// Messages skipped because their sender is not a participant of their
    /// chat: `(chat, count)`.
    pub messages_of_outsiders: Vec<(i64, i64)>,
    /// Users imported with a password hash no login here can match (a
    /// format this server does not verify): `(id, format's name)`. They need
    /// a new password.
    pub unverifiable_hashes: Vec<(i64, String)>,
    /// Users with Django's unusable password (`!...`): imported, and no
    /// password matches, as in Django.
    pub unusable_passwords: usize,
}

impl Problems {
    /// Whether anything must be resolved before a run may write.
    pub fn blocks_writing(&self) -> bool {
        !self.email_conflicts.is_empty()
    }
}

/// Everything read from the source for one run.
#[derive(Debug, Clone, Default)]
pub struct SourceData {
    pub users: Vec<ImportUser>,
    pub chats: Vec<SourceChat>,
    /// Per chat, messages sent by a participant.
    pub importable_messages: Vec<(i64, i64)>,
    /// Per chat, messages sent by someone else.
    pub outsider_messages: Vec<(i64, i64)>,
    pub tokens: Vec<ImportToken>,
}

/// The run's plan and the problems found on the way.
pub fn plan(source: SourceData, before: &ImportedBefore, dry_run: bool) -> (ImportPlan, Problems) {
    let mut problems = Problems {
        email_conflicts: email_conflicts(&source.users),
        ..Problems::default()
    };
    note_hashes(&source.users, &mut problems);
    let chats = checked_chats(source.chats, &mut problems);
    let importable: HashMap<i64, i64> = source.importable_messages.iter().copied().collect();
    let outsiders: HashMap<i64, i64> = source.outsider_messages.iter().copied().collect();
    let imported = |chat: &i64| chat_has(&chats, *chat);
    problems.messages_of_skipped_chats = importable
        .iter()
        .chain(&outsiders)
        .filter(|(chat, _)| !imported(chat))
        .map(|(_, count)| count)
        .sum();
    let mut outsiders: Vec<(i64, i64)> =
        outsiders.into_iter().filter(|(c, _)| imported(c)).collect();
    outsiders.sort_unstable();
    problems.messages_of_outsiders = outsiders;
    let message_chats = chats_to_read(&chats, &importable, before);
    let plan = ImportPlan {
        users: source.users,
        chats,
        message_chats,
        tokens: source.tokens,
        dry_run,
    };
    (plan, problems)
}

/// Users whose emails are equal without case, grouped by the lowercase email.
fn email_conflicts(users: &[ImportUser]) -> Vec<(String, Vec<(i64, String)>)> {
    let mut by_email: BTreeMap<String, Vec<(i64, String)>> = BTreeMap::new();
    for user in users {
        let users = by_email.entry(user.email.to_lowercase()).or_default();
        users.push((user.id, user.email.clone()));
    }
    by_email
        .into_iter()
        .filter(|(_, users)| users.len() > 1)
        .collect()
}

fn note_hashes(users: &[ImportUser], problems: &mut Problems) {
    for user in users {
        match HashFormat::of(&user.password_hash) {
            HashFormat::Unusable => problems.unusable_passwords += 1,
            HashFormat::Unknown => {
                let name = user.password_hash.split('$').next().unwrap_or("");
                let name = if name.is_empty() { "(empty)" } else { name };
                problems
                    .unverifiable_hashes
                    .push((user.id, name.chars().take(40).collect()));
            }
            _ => {}
        }
    }
}

/// The chats with exactly two participants and their pair's key; the others
/// go to `problems`.
fn checked_chats(chats: Vec<SourceChat>, problems: &mut Problems) -> Vec<ImportChat> {
    let mut checked = Vec::with_capacity(chats.len());
    for chat in chats {
        let &[low, high] = chat.participants.as_slice() else {
            problems
                .chats_not_two
                .push((chat.id, chat.participants.len()));
            continue;
        };
        if chat.pair_key != crate::model::pair_key(low, high) {
            problems.chats_bad_pair_key.push(chat.id);
            continue;
        }
        checked.push(ImportChat {
            id: chat.id,
            pair_key: chat.pair_key,
            user_low: low,
            user_high: high,
            created_at: chat.created_at,
        });
    }
    checked
}

/// `chats` is sorted by id (the source reads it so).
fn chat_has(chats: &[ImportChat], id: i64) -> bool {
    chats.binary_search_by_key(&id, |c| c.id).is_ok()
}

/// The imported chats whose importable messages in the source differ from
/// what earlier runs counted, with the source's count.
fn chats_to_read(
    chats: &[ImportChat],
    importable: &HashMap<i64, i64>,
    before: &ImportedBefore,
) -> Vec<(i64, i64)> {
    chats
        .iter()
        .filter_map(|chat| {
            let in_source = importable.get(&chat.id).copied().unwrap_or(0);
            let counted = before.messages_per_chat.get(&chat.id).copied().unwrap_or(0);
            (in_source != counted).then_some((chat.id, in_source))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use time::OffsetDateTime;

    fn user(id: i64, email: &str, hash: &str) -> ImportUser {
        ImportUser {
            id,
            email: email.into(),
            password_hash: hash.into(),
            full_name: format!("User {id}"),
            nickname: None,
            other_info: "{}".into(),
            is_active: true,
            date_joined: OffsetDateTime::UNIX_EPOCH,
        }
    }

    fn chat(id: i64, participants: &[i64]) -> SourceChat {
        let key = match participants {
            [a, b] => crate::model::pair_key(*a, *b),
            _ => "0".repeat(64),
        };
        SourceChat {
            id,
            pair_key: key,
            created_at: OffsetDateTime::UNIX_EPOCH,
            participants: participants.to_vec(),
        }
    }

    const PBKDF2: &str = "pbkdf2_sha256$1000$salt$gmOJXqKrGk/VeTzQos7TbUSoYrYQmlV/xLiHrPxLfko=";

    #[test]
    fn emails_equal_without_case_block_writing_and_are_listed_together() {
        let users = vec![
            user(1, "Ann@example.com", PBKDF2),
            user(2, "bob@example.com", PBKDF2),
            user(3, "ann@example.com", PBKDF2),
        ];
        let source = SourceData {
            users,
            ..Default::default()
        };
        let (_, problems) = plan(source, &ImportedBefore::default(), false);
        assert!(problems.blocks_writing());
        let both = vec![(1, "Ann@example.com".into()), (3, "ann@example.com".into())];
        assert_eq!(
            problems.email_conflicts,
            vec![("ann@example.com".into(), both)]
        );
    }

    #[test]
    fn chats_without_two_participants_or_their_pair_key_are_skipped_with_their_messages() {
        let mut wrong_key = chat(3, &[1, 2]);
        wrong_key.pair_key = crate::model::pair_key(1, 9);
        let source = SourceData {
            users: vec![user(1, "a@x.io", PBKDF2), user(2, "b@x.io", PBKDF2)],
            chats: vec![chat(1, &[1, 2]), chat(2, &[1]), wrong_key, chat(4, &[])],
            importable_messages: vec![(1, 10), (2, 4), (3, 5)],
            outsider_messages: vec![(1, 2), (2, 1)],
            tokens: vec![],
        };
        let (plan, problems) = plan(source, &ImportedBefore::default(), false);
        assert!(!problems.blocks_writing());
        assert_eq!(plan.chats.iter().map(|c| c.id).collect::<Vec<_>>(), vec![1]);
        assert_eq!(problems.chats_not_two, vec![(2, 1), (4, 0)]);
        assert_eq!(problems.chats_bad_pair_key, vec![3]);
        assert_eq!(problems.messages_of_skipped_chats, 4 + 5 + 1);
        assert_eq!(problems.messages_of_outsiders, vec![(1, 2)]);
        assert_eq!(plan.message_chats, vec![(1, 10)]);
        assert_eq!(plan.messages_to_read(), 10);
    }

    #[test]
    fn a_later_run_reads_only_the_chats_where_the_source_holds_more() {
        let source = SourceData {
            chats: vec![chat(1, &[1, 2]), chat(2, &[1, 3]), chat(3, &[2, 3])],
            importable_messages: vec![(1, 10), (2, 7)],
            ..Default::default()
        };
        let before = ImportedBefore {
            runs: 1,
            users: 3,
            messages_per_chat: [(1, 10), (2, 5)].into_iter().collect(),
        };
        let (plan, _) = plan(source, &before, false);
        assert_eq!(plan.message_chats, vec![(2, 7)]);
        assert_eq!(
            plan.chats.len(),
            3,
            "chats are offered every run; stored ones stay"
        );
    }

    #[test]
    fn unknown_hash_formats_are_named_and_unusable_passwords_counted() {
        let users = vec![
            user(1, "a@x.io", PBKDF2),
            user(2, "b@x.io", "bcrypt_sha256$$2b$12$abc"),
            user(3, "c@x.io", "!unusable"),
            user(
                4,
                "d@x.io",
                "argon2$argon2id$v=19$m=102400,t=2,p=8$c2FsdA$aGFzaA",
            ),
            user(5, "e@x.io", ""),
        ];
        let source = SourceData {
            users,
            ..Default::default()
        };
        let (_, problems) = plan(source, &ImportedBefore::default(), true);
        assert_eq!(
            problems.unverifiable_hashes,
            vec![(2, "bcrypt_sha256".into()), (5, "(empty)".into())]
        );
        assert_eq!(problems.unusable_passwords, 1);
    }
}
