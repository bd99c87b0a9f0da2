//! Where a socket stands in each chat it delivers: the next `seq` it must
//! send, the chat's other participant (who its sends, read markers and typing
//! go to), and what it has told the client. A per-chat socket has one cursor,
//! held inline; a user socket has one per chat of its user, in a vector sorted
//! by chat id: 32 bytes a chat, with none of a hash map's spare slots (the
//! idle user socket's memory budget is 64 bytes a chat).

use crate::store::ChatPosition;

/// The chat existed when the socket's `ready` was sent: its messages up to
/// then are history, and it gets no `chat` event (the chat list read after
/// `ready` has it).
pub(super) const EXISTED_AT_READY: u8 = 1;
/// The client knows of the chat: a `chat` event was sent, or the client named
/// it in a `sync`.
pub(super) const ANNOUNCED: u8 = 2;
/// A message of the chat was sent on this socket (a later `sync` may no
/// longer move its cursor).
pub(super) const DELIVERED: u8 = 4;

/// One chat's cursor.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Cursor {
    pub(super) chat: i64,
    /// The next message this socket must send.
    pub(super) next_seq: i64,
    /// The other participant; 0 while unknown.
    pub(super) peer: i64,
    pub(super) flags: u8,
}

impl Cursor {
    pub(super) fn has(&self, flag: u8) -> bool {
        self.flags & flag != 0
    }
}

/// The cursors of one socket.
#[derive(Debug)]
pub(super) enum Cursors {
    /// A per-chat socket's one chat.
    One(Cursor),
    /// A user socket's chats, sorted by chat id.
    Many(Vec<Cursor>),
}

impl Cursors {
    /// A user socket's cursors at `ready`: each chat live from its `last_seq`.
    pub(super) fn at_ready(positions: &[ChatPosition]) -> Self {
        let mut cursors: Vec<Cursor> = positions
            .iter()
            .map(|position| Cursor {
                chat: position.chat,
                next_seq: position.last_seq.saturating_add(1),
                peer: position.peer,
                flags: EXISTED_AT_READY,
            })
            .collect();
        cursors.sort_unstable_by_key(|cursor| cursor.chat);
        cursors.shrink_to_fit();
        Cursors::Many(cursors)
    }

    pub(super) fn get(&self, chat: i64) -> Option<&Cursor> {
        match self {
            Cursors::One(cursor) => (cursor.chat == chat).then_some(cursor),
            Cursors::Many(cursors) => {
                let at = cursors.binary_search_by_key(&chat, |c| c.chat).ok()?;
                Some(&cursors[at])
            }
        }
    }

    pub(super) fn get_mut(&mut self, chat: i64) -> Option<&mut Cursor> {
        match self {
            Cursors::One(cursor) => (cursor.chat == chat).then_some(cursor),
            Cursors::Many(cursors) => {
                let at = cursors.binary_search_by_key(&chat, |c| c.chat).ok()?;
                Some(&mut cursors[at])
            }
        }
    }

    /// Adds a chat the socket did not know (created after `ready`); a
    /// per-chat socket knows only its own. Whether it was added.
    pub(super) fn add(&mut self, cursor: Cursor) -> bool {
        let Cursors::Many(cursors) = self else {
            return false;
        };
        match cursors.binary_search_by_key(&cursor.chat, |c| c.chat) {
            Ok(_) => false,
            Err(at) => {
                cursors.insert(at, cursor);
                true
            }
        }
    }

    /// A per-chat socket's chat.
    pub(super) fn only_chat(&self) -> Option<i64> {
        match self {
            Cursors::One(cursor) => Some(cursor.chat),
            Cursors::Many(_) => None,
        }
    }

    /// Whether this is a user socket's (every chat of its user).
    pub(super) fn all_chats(&self) -> bool {
        matches!(self, Cursors::Many(_))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_user_sockets_cursors_start_after_each_chats_last_message_and_stay_sorted() {
        let positions = [
            ChatPosition {
                chat: 9,
                peer: 2,
                last_seq: 4,
            },
            ChatPosition {
                chat: 3,
                peer: 5,
                last_seq: 0,
            },
        ];
        let mut cursors = Cursors::at_ready(&positions);
        assert_eq!(cursors.get(9).map(|c| c.next_seq), Some(5));
        assert_eq!(cursors.get(3).map(|c| (c.next_seq, c.peer)), Some((1, 5)));
        assert!(cursors.get(4).is_none());
        let new = Cursor {
            chat: 4,
            next_seq: 1,
            peer: 7,
            flags: 0,
        };
        assert!(cursors.add(new));
        assert!(!cursors.add(new), "already there");
        let Cursors::Many(list) = &cursors else {
            panic!()
        };
        assert_eq!(list.iter().map(|c| c.chat).collect::<Vec<_>>(), [3, 4, 9]);
        cursors.get_mut(4).unwrap().flags |= DELIVERED;
        assert!(cursors.get(4).unwrap().has(DELIVERED));
        assert!(cursors.all_chats());
    }

    #[test]
    fn a_per_chat_socket_knows_its_chat_only() {
        let one = Cursor {
            chat: 5,
            next_seq: 3,
            peer: 8,
            flags: EXISTED_AT_READY | ANNOUNCED,
        };
        let mut cursors = Cursors::One(one);
        assert_eq!(cursors.get(5), Some(&one));
        assert!(cursors.get(6).is_none());
        assert!(!cursors.add(Cursor { chat: 6, ..one }));
        assert!(!cursors.all_chats());
        assert_eq!(std::mem::size_of::<Cursor>(), 32);
    }
}
