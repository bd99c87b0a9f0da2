//! Who missed what a full publish queue dropped. The lost notice that the
//! other nodes hear names the users the dropped events were for, and only
//! their sockets catch up from the store (see [`crate::ws`]'s resync).
//! Naming no one would send every client of the deployment back at once, in
//! the very overload that filled the queue. Past [`NAMED_MAX`] users the
//! notice names no one, which every node reads as everyone (as a notice from
//! a node that names no one always was). Typing and usage reports are never
//! noted: they may be dropped (DESIGN §4), and no store holds them to catch
//! up from.

use super::{Envelope, Kind};
use bytes::Bytes;
use std::collections::HashSet;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;

/// Users one notice names at the most; more, and it names everyone.
const NAMED_MAX: usize = 1024;

impl Envelope {
    /// The notice of [`Kind::Lost`] for the deployment's lost channel,
    /// naming `users` (a comma-separated list as its frame); naming no one,
    /// it is for everyone.
    pub fn lost_for(users: &[i64]) -> Self {
        let list: Vec<String> = users.iter().map(i64::to_string).collect();
        Envelope {
            kind: Kind::Lost,
            chat: 0,
            seq: 0,
            audience: [0, 0],
            only: None,
            frame: Bytes::from(list.join(",")),
        }
    }
}

/// The users the dropped events were for, since the last notice.
#[derive(Default)]
pub(super) struct Missed {
    /// Set whenever something is noted: what the publisher checks per batch.
    noted: AtomicBool,
    users: Mutex<Named>,
}

#[derive(Default)]
struct Named {
    users: HashSet<i64>,
    everyone: bool,
}

impl Missed {
    /// Notes the recipients of `dropped` events (typing aside).
    pub(super) fn note(&self, dropped: &[Envelope]) {
        let recipients = dropped
            .iter()
            .filter(|event| !event.kind.may_be_dropped())
            .flat_map(Envelope::recipients);
        self.note_users(recipients);
    }

    /// Notes `users`, whose events Redis may not have published.
    pub(super) fn note_users(&self, users: impl IntoIterator<Item = i64>) {
        let mut users = users.into_iter().peekable();
        if users.peek().is_some() {
            self.add(Some(users));
        }
    }

    /// The notice of what was noted since the last one, if anything was.
    pub(super) fn take(&self) -> Option<Envelope> {
        if !self.noted.swap(false, Ordering::Acquire) {
            return None;
        }
        let named = std::mem::take(&mut *self.named());
        if named.everyone {
            return Some(Envelope::lost_for(&[]));
        }
        let mut users: Vec<i64> = named.users.into_iter().collect();
        if users.is_empty() {
            return None; // taken with an earlier notice
        }
        users.sort_unstable();
        Some(Envelope::lost_for(&users))
    }

    /// Notes again the users of a notice that could not be published.
    pub(super) fn restore(&self, notice: &Envelope) {
        self.add(named_in(notice));
    }

    /// Adds `users` (`None`: everyone) to what the next notice names.
    fn add(&self, users: Option<impl IntoIterator<Item = i64>>) {
        let mut named = self.named();
        match users {
            Some(users) => named.users.extend(users),
            None => named.everyone = true,
        }
        if named.users.len() > NAMED_MAX {
            named.everyone = true;
        }
        if named.everyone {
            named.users = HashSet::new();
        }
        drop(named);
        self.noted.store(true, Ordering::Release);
    }

    fn named(&self) -> std::sync::MutexGuard<'_, Named> {
        // A panic while noting leaves a set of users: still usable.
        self.users.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// The users a lost notice names; `None` for everyone (a notice naming no
/// one, or one this node cannot read).
pub(super) fn named_in(notice: &Envelope) -> Option<Vec<i64>> {
    if notice.frame.is_empty() {
        return None;
    }
    let text = std::str::from_utf8(&notice.frame).ok()?;
    text.split(',').map(|user| user.parse().ok()).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event(kind: Kind, audience: [i64; 2]) -> Envelope {
        Envelope {
            kind,
            chat: 9,
            seq: 1,
            audience,
            only: None,
            frame: Bytes::from_static(b"{}"),
        }
    }

    #[test]
    fn a_notice_names_the_users_of_the_dropped_events_once() {
        let missed = Missed::default();
        assert!(missed.take().is_none(), "nothing dropped");
        missed.note(&[event(Kind::Message, [3, 8]), event(Kind::Read, [3, 5])]);
        let notice = missed.take().expect("a notice");
        assert_eq!(notice.kind, Kind::Lost);
        assert_eq!(named_in(&notice), Some(vec![3, 5, 8]));
        assert!(missed.take().is_none(), "taken");
    }

    #[test]
    fn dropped_typing_is_no_loss() {
        let missed = Missed::default();
        let typing = Envelope {
            only: Some(4),
            ..event(Kind::Typing, [2, 4])
        };
        missed.note(&[typing]);
        assert!(missed.take().is_none());
    }

    #[test]
    fn past_the_bound_a_notice_names_everyone() {
        let missed = Missed::default();
        let many: Vec<Envelope> = (0..NAMED_MAX as i64)
            .map(|n| event(Kind::Message, [2 * n, 2 * n + 1]))
            .collect();
        missed.note(&many);
        let notice = missed.take().unwrap();
        assert!(notice.frame.is_empty(), "the old form: everyone");
        assert_eq!(named_in(&notice), None);
    }

    #[test]
    fn a_notice_not_published_is_noted_again() {
        let missed = Missed::default();
        missed.note(&[event(Kind::Chat, [1, 2])]);
        let notice = missed.take().unwrap();
        missed.note(&[event(Kind::Message, [2, 7])]);
        missed.restore(&notice);
        assert_eq!(named_in(&missed.take().unwrap()), Some(vec![1, 2, 7]));
        missed.restore(&Envelope::lost_for(&[]));
        assert_eq!(named_in(&missed.take().unwrap()), None, "everyone");
    }

    #[test]
    fn an_unreadable_list_means_everyone() {
        let garbled = Envelope {
            frame: Bytes::from_static(b"3,x"),
            ..Envelope::lost_for(&[3])
        };
        assert_eq!(named_in(&garbled), None);
    }
}
