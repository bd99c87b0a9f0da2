//! Where a socket stands in each chat it delivers: the next `seq` it must
//! send, the chat's other participant (who its sends, read markers and typing
//! go to), what it has told the client, and the read markers its client
//! knows of. A per-chat socket has one cursor, held inline. A user socket
//! starts with none: a chat gets a cursor when the socket first meets it (its
//! first message, its `chat` event, a `sync` that names it, a send to it), in
//! a vector sorted by chat id, 40 bytes a chat.
//! So a connect costs nothing per chat of the user, and an idle user socket
//! holds no more than a per-chat one.

use crate::store::ChatAccess;

/// `next_seq` is known: the socket has sent from it, or a `sync` set it. A
/// chat's first message after `ready` sets it (everything stored after
/// `ready` reaches the socket, in order per chat).
pub(super) const PLACED: u8 = 1;
/// The client knows of the chat: a `chat` event was sent, or the client named
/// it in a `sync`.
pub(super) const ANNOUNCED: u8 = 2;
/// A message of the chat was sent on this socket (a later `sync` may no
/// longer move its cursor).
pub(super) const DELIVERED: u8 = 4;
/// A per-chat socket resumed from `after_seq`: its client is told the read
/// markers once the messages it missed are sent.
pub(super) const RESUMED: u8 = 8;

/// One chat's cursor.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Cursor {
    pub(super) chat: i64,
    /// The next message this socket must send.
    pub(super) next_seq: i64,
    /// The other participant; 0 while unknown.
    pub(super) peer: i64,
    /// How far the client knows each participant has read.
    pub(super) known: KnownMarkers,
    pub(super) flags: u8,
}

impl Cursor {
    /// A cursor whose client is known to know no read marker.
    pub(super) fn new(chat: i64, next_seq: i64, peer: i64, flags: u8) -> Self {
        Cursor {
            chat,
            next_seq,
            peer,
            known: KnownMarkers::default(),
            flags,
        }
    }

    pub(super) fn has(&self, flag: u8) -> bool {
        self.flags & flag != 0
    }
}

/// How far a socket's client knows each participant of a chat has read: for
/// a per-chat socket the markers the handshake read (none for a client that
/// resumed; a user socket's client is known to know none at first), raised
/// by the markers a resync told or found at their owner's own message, and
/// by each message a participant sent that the store replayed to the socket
/// (its sender has read it). A resync tells only markers past these, so a
/// socket caught up again and again (a bus that keeps reconnecting, a node
/// whose publishes overflow) is told each marker once, not every chat's
/// markers each time.
///
/// Live `read` events and live messages pass by without raising them (the
/// session does not open their frames), nor do the client's own `read`s, so
/// a resync may tell a marker the client already knows: a monotonic marker
/// makes that harmless. For the same reason a marker is kept in 32 bits
/// ([`KnownSeq`]), so a cursor takes 40 bytes, not 48.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub(super) struct KnownMarkers {
    mine: KnownSeq,
    peer: KnownSeq,
}

/// A read marker the client is known to know, in 32 bits. A marker past
/// `u32::MAX` (a chat of over four billion messages) is kept as none: the
/// cursor may know less than the client, never more, so the worst it costs
/// is telling the client a marker again.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
struct KnownSeq(u32);

impl KnownSeq {
    fn of(seq: i64) -> Self {
        KnownSeq(u32::try_from(seq).unwrap_or(0))
    }

    fn seq(self) -> i64 {
        i64::from(self.0)
    }
}

impl KnownMarkers {
    /// The markers stored in `access`: `me`'s and the other participant's.
    pub(super) fn stored_in(access: &ChatAccess, me: i64) -> Self {
        let mut known = KnownMarkers::default();
        for (user, seq) in access.markers() {
            match user == me {
                true => known.mine = KnownSeq::of(seq),
                false => known.peer = KnownSeq::of(seq),
            }
        }
        known
    }

    /// The marker known for `user` (`me` or `peer`); `None` for anyone else.
    fn of(&mut self, (me, peer): (i64, i64), user: i64) -> Option<&mut KnownSeq> {
        match user {
            _ if user == me => Some(&mut self.mine),
            _ if user == peer => Some(&mut self.peer),
            _ => None,
        }
    }

    /// `user`'s marker is known to be at least `seq`; whether that is past
    /// what was known.
    fn raise(&mut self, participants: (i64, i64), user: i64, seq: i64) -> bool {
        let Some(marker) = self.of(participants, user).filter(|k| seq > k.seq()) else {
            return false;
        };
        *marker = KnownSeq::of(seq);
        true
    }

    /// Of the markers stored now (`(user, seq)` pairs), those past what is
    /// known, which are known from now on.
    fn learn(&mut self, participants: (i64, i64), stored: [(i64, i64); 2]) -> Vec<(i64, i64)> {
        stored
            .into_iter()
            .filter(|&(user, seq)| self.raise(participants, user, seq))
            .collect()
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

    /// Room for `more` chats a `sync` names, in one allocation of just that
    /// size, where adding them one by one would leave up to twice the room.
    pub(super) fn make_room(&mut self, more: usize) {
        if let Cursors::Many(cursors) = self {
            cursors.reserve_exact(more);
        }
    }

    /// A per-chat socket's chat.
    pub(super) fn only_chat(&self) -> Option<i64> {
        match self {
            Cursors::One(cursor) => Some(cursor.chat),
            Cursors::Many(_) => None,
        }
    }

    /// The client knows that `user` has read `chat` through `seq` (`user` is
    /// `me` or the chat's peer; anyone else is ignored, as is a chat without
    /// a cursor).
    pub(super) fn raise_known_marker(&mut self, chat: i64, me: i64, user: i64, seq: i64) {
        let Some(cursor) = self.get_mut(chat) else {
            return;
        };
        cursor.known.raise((me, cursor.peer), user, seq);
    }

    /// Whether any of `chat`'s read markers stored now (`(user, seq)` pairs)
    /// is past what the client knows.
    pub(super) fn markers_moved(&self, chat: i64, me: i64, stored: [(i64, i64); 2]) -> bool {
        let Some(cursor) = self.get(chat) else {
            return false;
        };
        // A copy learns them: what the client knows stays as it is.
        let mut known = cursor.known;
        !known.learn((me, cursor.peer), stored).is_empty()
    }

    /// Of `chat`'s read markers stored now (`(user, seq)` pairs), those past
    /// what the client knows, which it knows from now on.
    pub(super) fn markers_to_tell(
        &mut self,
        chat: i64,
        me: i64,
        stored: [(i64, i64); 2],
    ) -> Vec<(i64, i64)> {
        let Some(cursor) = self.get_mut(chat) else {
            return Vec::new();
        };
        cursor.known.learn((me, cursor.peer), stored)
    }

    /// Whether the socket knows its client's position in any chat.
    pub(super) fn any_placed(&self) -> bool {
        match self {
            Cursors::One(cursor) => cursor.has(PLACED),
            Cursors::Many(cursors) => cursors.iter().any(|c| c.has(PLACED)),
        }
    }

    /// How many chats the socket has a cursor in.
    pub(super) fn len(&self) -> usize {
        match self {
            Cursors::One(_) => 1,
            Cursors::Many(cursors) => cursors.len(),
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
    fn a_user_sockets_cursors_are_added_as_it_meets_chats_and_stay_sorted() {
        let mut cursors = Cursors::Many(Vec::new());
        assert!(cursors.get(4).is_none());
        for chat in [9, 3, 4] {
            let cursor = Cursor::new(chat, 1, 7, 0);
            assert!(cursors.add(cursor));
            assert!(!cursors.add(cursor), "already there");
        }
        let Cursors::Many(list) = &cursors else {
            panic!()
        };
        assert_eq!(list.iter().map(|c| c.chat).collect::<Vec<_>>(), [3, 4, 9]);
        assert!(!cursors.any_placed(), "met, but no position known");
        cursors.get_mut(4).unwrap().flags |= DELIVERED;
        assert!(cursors.get(4).unwrap().has(DELIVERED));
        cursors.get_mut(3).unwrap().flags |= PLACED;
        assert!(cursors.any_placed());
        assert!(!cursors.get(9).unwrap().has(DELIVERED | PLACED));
        assert!(cursors.all_chats());
        assert!(
            cursors.markers_to_tell(5, 8, [(8, 1), (7, 1)]).is_empty(),
            "no such chat"
        );
        assert_eq!(std::mem::size_of::<Cursor>(), 40);
    }

    #[test]
    fn a_sync_makes_room_for_the_chats_it_names_at_once() {
        let mut cursors = Cursors::Many(Vec::new());
        cursors.make_room(100);
        for chat in 0..100 {
            cursors.add(Cursor::new(chat, 1, 7, PLACED));
        }
        let Cursors::Many(list) = &cursors else {
            panic!()
        };
        assert_eq!(list.capacity(), 100, "added one by one, it would be 128");
    }

    #[test]
    fn a_user_socket_knows_the_markers_it_told_in_each_chat() {
        let mut cursors = Cursors::Many(Vec::new());
        cursors.add(Cursor::new(3, 1, 7, PLACED));
        cursors.add(Cursor::new(4, 1, 9, PLACED));
        // User 8's socket: peer 7 in chat 3, peer 9 in chat 4.
        assert!(
            cursors.markers_moved(3, 8, [(7, 2), (8, 1)]),
            "none known yet"
        );
        assert_eq!(
            cursors.markers_to_tell(3, 8, [(7, 2), (8, 1)]),
            [(7, 2), (8, 1)]
        );
        assert!(!cursors.markers_moved(3, 8, [(7, 2), (8, 1)]));
        assert!(
            cursors.markers_to_tell(3, 8, [(7, 2), (8, 1)]).is_empty(),
            "told"
        );
        assert_eq!(
            cursors.markers_to_tell(4, 8, [(9, 2), (8, 1)]),
            [(9, 2), (8, 1)]
        );
        cursors.raise_known_marker(3, 8, 7, 5);
        assert_eq!(
            cursors.markers_to_tell(3, 8, [(7, 6), (8, 3)]),
            [(7, 6), (8, 3)]
        );
        assert!(cursors.markers_to_tell(3, 8, [(7, 5), (8, 3)]).is_empty());
        assert!(
            cursors.markers_to_tell(3, 8, [(9, 9), (8, 3)]).is_empty(),
            "no outsider"
        );
    }

    #[test]
    fn a_per_chat_socket_knows_its_chat_only() {
        let access = ChatAccess {
            participants: [7, 8],
            last_seq: 3,
            read_seqs: [2, 0],
        };
        let known = KnownMarkers::stored_in(&access, 7);
        assert_eq!((known.mine.seq(), known.peer.seq()), (2, 0));
        let theirs = KnownMarkers::stored_in(&access, 8);
        assert_eq!((theirs.mine.seq(), theirs.peer.seq()), (0, 2));
        let one = Cursor {
            known,
            ..Cursor::new(5, 3, 8, PLACED | ANNOUNCED)
        };
        let mut cursors = Cursors::One(one);
        assert_eq!(cursors.get(5), Some(&one));
        assert!(cursors.get(6).is_none());
        assert!(!cursors.add(Cursor { chat: 6, ..one }));
        assert!(!cursors.all_chats());
        // Markers as stored, in either order: mine (user 7), the peer's (8).
        let tell = |cursors: &mut Cursors, stored| cursors.markers_to_tell(5, 7, stored);
        assert!(!cursors.markers_moved(5, 7, [(7, 2), (8, 0)]));
        assert!(cursors.markers_moved(5, 7, [(8, 1), (7, 2)]));
        assert!(
            !cursors.markers_moved(6, 7, [(8, 1), (7, 2)]),
            "not its chat"
        );
        assert!(tell(&mut cursors, [(7, 2), (8, 0)]).is_empty(), "known");
        assert_eq!(tell(&mut cursors, [(8, 1), (7, 3)]), [(8, 1), (7, 3)]);
        cursors.raise_known_marker(5, 7, 8, 4);
        cursors.raise_known_marker(5, 7, 9, 9);
        assert!(tell(&mut cursors, [(7, 3), (8, 4)]).is_empty(), "raised");
        assert_eq!(tell(&mut cursors, [(7, 3), (8, 5)]), [(8, 5)]);
        assert!(tell(&mut cursors, [(9, 9), (8, 5)]).is_empty(), "told");
    }

    #[test]
    fn a_marker_past_32_bits_is_told_again_never_skipped() {
        let huge = i64::from(u32::MAX) + 5;
        let mut cursors = Cursors::Many(vec![Cursor::new(5, 1, 8, PLACED)]);
        let tell = |cursors: &mut Cursors, stored| cursors.markers_to_tell(5, 7, stored);
        assert_eq!(tell(&mut cursors, [(8, huge), (7, 3)]), [(8, huge), (7, 3)]);
        assert_eq!(
            tell(&mut cursors, [(8, huge), (7, 3)]),
            [(8, huge)],
            "kept as none"
        );
        cursors.raise_known_marker(5, 7, 8, huge);
        assert!(cursors.markers_moved(5, 7, [(8, huge), (7, 3)]));
        assert!(
            !cursors.markers_moved(5, 7, [(8, 0), (7, 3)]),
            "mine fits: kept"
        );
    }
}
