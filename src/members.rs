//! This node's memory of confirmed memberships, for REST sends: `(user, chat)`
//! → the user, once the store has said the user takes part in the chat. A
//! chat's participants never change and the API changes no user, so a confirmed
//! membership stays true; a send that finds one skips the membership query and
//! goes straight to the writer. Outsiders and unknown chats are never
//! remembered (they are asked each time), and a send the store refuses forgets
//! its membership (a user or chat deleted directly in the database).
//!
//! Bounded: when full, everything is forgotten at once (one lock, no per-entry
//! bookkeeping; the next sends ask the store again).

use crate::model::User;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};

/// Memberships remembered before the map starts over.
pub const CAPACITY: usize = 65_536;

/// Confirmed `(user id, chat id)` memberships and the user.
#[derive(Default)]
pub struct Members {
    known: Mutex<HashMap<(i64, i64), Arc<User>>>,
}

impl Members {
    /// The user, if their membership of the chat was confirmed before.
    pub fn get(&self, user_id: i64, chat_id: i64) -> Option<Arc<User>> {
        self.lock().get(&(user_id, chat_id)).cloned()
    }

    /// Remembers a membership the store confirmed.
    pub fn remember(&self, chat_id: i64, user: Arc<User>) {
        let mut known = self.lock();
        if known.len() >= CAPACITY {
            known.clear();
        }
        known.insert((user.id, chat_id), user);
    }

    /// Forgets a membership; whether it was remembered.
    pub fn forget(&self, user_id: i64, chat_id: i64) -> bool {
        self.lock().remove(&(user_id, chat_id)).is_some()
    }

    /// A poisoned lock only means a panic elsewhere between two plain map
    /// operations; the map is still whole.
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<(i64, i64), Arc<User>>> {
        self.known
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn user(id: i64) -> Arc<User> {
        Arc::new(User {
            id,
            email: format!("u{id}@example.com"),
            full_name: format!("U {id}"),
            nickname: None,
        })
    }

    #[test]
    fn a_membership_is_known_only_for_its_user_and_chat() {
        let members = Members::default();
        assert!(members.get(1, 10).is_none());
        members.remember(10, user(1));
        assert_eq!(members.get(1, 10).unwrap().email, "u1@example.com");
        assert!(members.get(1, 11).is_none(), "another chat");
        assert!(members.get(2, 10).is_none(), "another user");
        assert!(members.forget(1, 10));
        assert!(members.get(1, 10).is_none(), "forgotten");
        assert!(!members.forget(1, 10));
    }

    #[test]
    fn a_full_map_starts_over() {
        let members = Members::default();
        for chat in 0..CAPACITY as i64 {
            members.remember(chat, user(1));
        }
        assert!(members.get(1, 0).is_some());
        members.remember(-1, user(2));
        assert!(members.get(1, 0).is_none(), "forgotten when full");
        assert!(members.get(2, -1).is_some());
    }
}
