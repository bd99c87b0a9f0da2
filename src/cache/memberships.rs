//! This node's memory of confirmed memberships, for REST sends: `(user, chat)`
//! → the user and the chat's participants, once the store has said the user takes part in the chat. A
//! chat's participants never change and the API changes no user, so a confirmed
//! membership stays true; a send that finds one skips the membership query and
//! goes straight to the writer. Outsiders and unknown chats are never
//! remembered (they are asked each time), and a send the store refuses forgets
//! its membership (a user or chat deleted directly in the database).
//!
//! Bounded ([`CAPACITY`]): when full, everything is forgotten at once and the
//! next sends ask the store again.

use crate::model::User;
use crate::remembered::Remembered;
use std::sync::Arc;

/// Memberships remembered before the map starts over.
pub const CAPACITY: usize = 65_536;

/// A confirmed membership: the user, and the participants of the chat.
#[derive(Debug)]
pub struct Member {
    pub user: Arc<User>,
    pub participants: [i64; 2],
}

/// Confirmed `(user id, chat id)` memberships.
pub struct Memberships {
    known: Remembered<(i64, i64), Arc<Member>>,
}

impl Default for Memberships {
    fn default() -> Self {
        Memberships {
            known: Remembered::new(CAPACITY),
        }
    }
}

impl Memberships {
    /// The membership, if it was confirmed before.
    pub fn get(&self, user_id: i64, chat_id: i64) -> Option<Arc<Member>> {
        self.known.get(&(user_id, chat_id))
    }

    /// Remembers a membership the store confirmed.
    pub fn remember(&self, chat_id: i64, member: Arc<Member>) {
        self.known.insert((member.user.id, chat_id), member);
    }

    /// Forgets a membership; whether it was remembered.
    pub fn forget(&self, user_id: i64, chat_id: i64) -> bool {
        self.known.remove(&(user_id, chat_id))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn user(id: i64) -> Arc<Member> {
        let user = User {
            id,
            email: format!("u{id}@example.com"),
            full_name: format!("U {id}"),
            nickname: None,
        };
        Arc::new(Member {
            user: Arc::new(user),
            participants: [id, id + 1],
        })
    }

    #[test]
    fn a_membership_is_known_only_for_its_user_and_chat() {
        let members = Memberships::default();
        assert!(members.get(1, 10).is_none());
        members.remember(10, user(1));
        assert_eq!(members.get(1, 10).unwrap().user.email, "u1@example.com");
        assert!(members.get(1, 11).is_none(), "another chat");
        assert!(members.get(2, 10).is_none(), "another user");
        assert!(members.forget(1, 10));
        assert!(members.get(1, 10).is_none(), "forgotten");
        assert!(!members.forget(1, 10));
    }

    #[test]
    fn a_full_map_starts_over() {
        let members = Memberships::default();
        for chat in 0..CAPACITY as i64 {
            members.remember(chat, user(1));
        }
        assert!(members.get(1, 0).is_some());
        members.remember(-1, user(2));
        assert!(members.get(1, 0).is_none(), "forgotten when full");
        assert!(members.get(2, -1).is_some());
    }
}
