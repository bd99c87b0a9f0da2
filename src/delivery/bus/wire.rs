//! The wire form of events between nodes, and who may have sent them. A
//! payload on a channel is one or more records, each one event:
//! `length MAC node kind chat seq low high frame`, `length` (4 bytes, big
//! endian) counting what follows it, the MAC (32 bytes, HMAC-SHA-256 under a
//! key derived from `SECRET_KEY`) over everything after it; `kind` is one
//! letter (`m` message, `c` chat, `r` read, `t` typing, `l` lost, `U` usage) and `low
//! high` the chat's participants. An event is signed once; a committed batch
//! is published as one payload per recipient carrying all of that user's
//! events in order, so a burst to one user costs Redis one command, not one
//! per event. A node delivers only events a node of its own deployment
//! signed, and only on the channel of a user they are for: anything else on a
//! Redis channel (a forged payload, another deployment's event, an event
//! replayed onto another user's channel) is dropped and counted, never
//! delivered.
//!
//! How the form may change without losing events in a rolling upgrade: the
//! key, the `length MAC node kind` prefix and the layout of each known kind
//! stay; a new layout takes a new kind letter. A node that meets a signed
//! record it cannot read (a newer node's, or a fault) cannot tell what it
//! carried, so the channel's user catches up from the store, as after a lost
//! notice; a new kind whose events may be dropped, as typing may, takes an
//! upper-case letter, and a node that does not know it ignores it.

use super::{Envelope, Kind};
use crate::digest::{Signer, MAC_BYTES};
use bytes::Bytes;
use std::collections::HashMap;

/// What the key of bus events is derived for (see [`Signer::derived`]). It
/// stays when the form grows (see the module note): nodes of the next form
/// must still recognise each other's records as their deployment's.
pub const PURPOSE: &str = "chat-server bus events v3";

/// Bytes of a record's length.
const LENGTH_BYTES: usize = 4;

/// A user's payload takes no more records once it holds this many bytes; the
/// user's later events of the batch start another payload.
const PAYLOAD_BYTES: usize = 64 * 1024;

/// A node's signer and name on the bus.
#[derive(Clone)]
pub struct Wire {
    signer: Signer,
    node: String,
}

/// What a payload on a user's channel turned out to be.
#[derive(Debug, PartialEq, Eq)]
pub enum Received {
    /// An event from another node of this deployment, for this user.
    Event(Envelope),
    /// This node's own event, back from Redis (or one claiming to be).
    Own,
    /// Not signed by this deployment (forged, foreign, corrupted).
    Unsigned,
    /// Signed, but for other users than the channel's.
    WrongUser,
    /// Signed, but not in a form this node reads (a newer node's in a
    /// rolling upgrade, or a fault): it may have carried a stored event for
    /// the channel's user, whose sockets catch up from the store.
    Unreadable,
    /// Signed, of a kind this node does not know whose upper-case letter
    /// says it may be dropped.
    Droppable,
}

impl Kind {
    fn letter(self) -> u8 {
        match self {
            Kind::Message => b'm',
            Kind::Chat => b'c',
            Kind::Read => b'r',
            Kind::Typing => b't',
            Kind::Lost => b'l',
            Kind::Usage => b'U',
        }
    }

    fn of_letter(letter: &[u8]) -> Option<Kind> {
        Some(match letter {
            b"m" => Kind::Message,
            b"c" => Kind::Chat,
            b"r" => Kind::Read,
            b"t" => Kind::Typing,
            b"l" => Kind::Lost,
            b"U" => Kind::Usage,
            _ => return None,
        })
    }
}

impl Wire {
    pub fn new(secret: &str, node: String) -> Self {
        Wire {
            signer: Signer::derived(secret.as_bytes(), PURPOSE),
            node,
        }
    }

    /// An event as one record, signed (once, whatever the channels it goes
    /// to); a payload of its own as it is.
    pub fn encode(&self, event: &Envelope) -> Vec<u8> {
        const SIGNED_AT: usize = LENGTH_BYTES + MAC_BYTES;
        let mut out = Vec::with_capacity(SIGNED_AT + self.node.len() + 96 + event.frame.len());
        out.extend_from_slice(&[0; SIGNED_AT]);
        out.extend_from_slice(self.node.as_bytes());
        out.push(b' ');
        out.push(event.kind.letter());
        for number in [event.chat, event.seq, event.audience[0], event.audience[1]] {
            out.push(b' ');
            out.extend_from_slice(number.to_string().as_bytes());
        }
        out.push(b' ');
        out.extend_from_slice(&event.frame);
        let mac = self.signer.mac(&[&out[SIGNED_AT..]]);
        out[LENGTH_BYTES..SIGNED_AT].copy_from_slice(&mac);
        let length = u32::try_from(out.len() - LENGTH_BYTES).expect("an event under 4 GiB");
        out[..LENGTH_BYTES].copy_from_slice(&length.to_be_bytes());
        out
    }

    /// A batch's payloads: each event encoded once, and each recipient's
    /// events in one payload (more past [`PAYLOAD_BYTES`]), in batch order.
    /// A user's payloads come out in order too, so published in this order
    /// on one connection their events arrive in it.
    pub fn payloads(&self, batch: &[Envelope]) -> Vec<(i64, Vec<u8>)> {
        let mut payloads: Vec<(i64, Vec<u8>)> = Vec::new();
        let mut open: HashMap<i64, usize> = HashMap::new();
        for event in batch {
            let record = self.encode(event);
            for user in event.recipients() {
                match open.get(&user) {
                    Some(&at) if payloads[at].1.len() + record.len() <= PAYLOAD_BYTES => {
                        payloads[at].1.extend_from_slice(&record)
                    }
                    _ => {
                        open.insert(user, payloads.len());
                        payloads.push((user, record.clone()));
                    }
                }
            }
        }
        payloads
    }

    /// Reads a payload that arrived on `channel_user`'s channel: what each
    /// of its records is, in order (a record cut short ends it, unsigned).
    pub fn decode(&self, channel_user: i64, payload: &[u8]) -> Vec<Received> {
        let mut records = Vec::with_capacity(1);
        let mut rest = payload;
        while let Some((record, after)) = next_record(rest) {
            records.push(self.decode_record(channel_user, record));
            rest = after;
        }
        if !rest.is_empty() || records.is_empty() {
            records.push(Received::Unsigned);
        }
        records
    }

    /// One record (its length taken off).
    fn decode_record(&self, channel_user: i64, payload: &[u8]) -> Received {
        if payload.len() < MAC_BYTES {
            return Received::Unsigned;
        }
        let (mac, signed) = payload.split_at(MAC_BYTES);
        // This node's own events come back from Redis on every user it
        // watches: they are dropped before the MAC is checked, which costs
        // as much as the rest of a delivery. (An event that only claims to be
        // ours is dropped too: never delivered, whoever sent it.)
        if signed
            .strip_prefix(self.node.as_bytes())
            .is_some_and(|rest| rest.first() == Some(&b' '))
        {
            return Received::Own;
        }
        if !self.signer.verify(signed, mac) {
            return Received::Unsigned;
        }
        let Some(event) = split(signed) else {
            return match kind_letter(signed) {
                Some(letter) if letter.is_ascii_uppercase() => Received::Droppable,
                _ => Received::Unreadable,
            };
        };
        if event.audience.contains(&channel_user) {
            let only = (event.kind == Kind::Typing).then_some(channel_user);
            Received::Event(Envelope { only, ..event })
        } else {
            Received::WrongUser
        }
    }
}

/// The first record of `bytes` (without its length) and what follows it;
/// none when `bytes` is empty or the record is cut short.
fn next_record(bytes: &[u8]) -> Option<(&[u8], &[u8])> {
    let (length, rest) = bytes.split_first_chunk::<LENGTH_BYTES>()?;
    let length = u32::from_be_bytes(*length) as usize;
    (rest.len() >= length).then(|| rest.split_at(length))
}

/// The kind letter of a signed record, whatever follows it.
fn kind_letter(signed: &[u8]) -> Option<u8> {
    match signed.split(|b| *b == b' ').nth(1)? {
        [letter] => Some(*letter),
        _ => None,
    }
}

/// `node kind chat seq low high frame` → the event it carries.
fn split(signed: &[u8]) -> Option<Envelope> {
    let mut parts = signed.splitn(7, |b| *b == b' ');
    let _node = parts.next()?;
    let kind = Kind::of_letter(parts.next()?)?;
    let mut number = || -> Option<i64> { std::str::from_utf8(parts.next()?).ok()?.parse().ok() };
    let (chat, seq, low, high) = (number()?, number()?, number()?, number()?);
    Some(Envelope {
        kind,
        chat,
        seq,
        audience: [low, high],
        only: None,
        frame: Bytes::copy_from_slice(parts.next()?),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn message(chat: i64, seq: i64) -> Envelope {
        Envelope {
            kind: Kind::Message,
            chat,
            seq,
            audience: [3, 4],
            only: None,
            frame: Bytes::from_static(br#"{"type":"message","data":{"a":"b c"}}"#),
        }
    }

    /// What a payload of one record is.
    fn one(received: Vec<Received>) -> Received {
        assert_eq!(received.len(), 1, "{received:?}");
        received.into_iter().next().unwrap()
    }

    #[test]
    fn a_signed_event_round_trips_between_nodes_of_one_deployment() {
        let (a, b) = (Wire::new("s", "n1".into()), Wire::new("s", "n2".into()));
        let sent = message(7, 42);
        let wire = a.encode(&sent);
        assert_eq!(one(b.decode(4, &wire)), Received::Event(sent.clone()));
        assert_eq!(one(b.decode(3, &wire)), Received::Event(sent.clone()));
        assert_eq!(one(a.decode(4, &wire)), Received::Own);
        let mut forged_as_ours = wire.clone();
        *forged_as_ours.last_mut().unwrap() ^= 1;
        assert_eq!(
            one(a.decode(4, &forged_as_ours)),
            Received::Own,
            "dropped unread"
        );
        for kind in [Kind::Chat, Kind::Read, Kind::Lost] {
            let event = Envelope {
                kind,
                seq: 0,
                ..sent.clone()
            };
            assert_eq!(one(b.decode(3, &a.encode(&event))), Received::Event(event));
        }
        let typing = Envelope {
            kind: Kind::Typing,
            only: Some(4),
            ..sent
        };
        assert_eq!(
            one(b.decode(4, &a.encode(&typing))),
            Received::Event(typing)
        );
    }

    #[test]
    fn a_batch_is_one_payload_per_recipient_with_its_events_in_order() {
        let (a, b) = (Wire::new("s", "n1".into()), Wire::new("s", "n2".into()));
        let elsewhere = Envelope {
            audience: [5, 6],
            ..message(8, 1)
        };
        let typing = Envelope {
            kind: Kind::Typing,
            seq: 0,
            only: Some(4),
            ..message(7, 0)
        };
        let batch = [
            message(7, 1),
            elsewhere.clone(),
            message(7, 2),
            typing.clone(),
        ];
        let payloads = a.payloads(&batch);
        let users: Vec<i64> = payloads.iter().map(|(user, _)| *user).collect();
        assert_eq!(users, vec![3, 4, 5, 6], "one payload per recipient");
        let events = |user: i64| -> Vec<Received> {
            let (_, payload) = payloads.iter().find(|(u, _)| *u == user).unwrap();
            b.decode(user, payload)
        };
        assert_eq!(
            events(3),
            vec![
                Received::Event(message(7, 1)),
                Received::Event(message(7, 2))
            ]
        );
        assert_eq!(
            events(4),
            vec![
                Received::Event(message(7, 1)),
                Received::Event(message(7, 2)),
                Received::Event(typing)
            ],
            "typing only to the one it is for"
        );
        assert_eq!(events(6), vec![Received::Event(elsewhere)]);
    }

    #[test]
    fn a_users_payload_is_split_past_its_size_and_keeps_the_order() {
        let (a, b) = (Wire::new("s", "n1".into()), Wire::new("s", "n2".into()));
        let big = |seq| Envelope {
            frame: Bytes::from(vec![b'x'; 20 * 1024]),
            ..message(7, seq)
        };
        let batch: Vec<Envelope> = (1..=7).map(big).collect();
        let to_bob: Vec<Vec<u8>> = a
            .payloads(&batch)
            .into_iter()
            .filter(|(user, _)| *user == 4)
            .map(|(_, payload)| payload)
            .collect();
        assert_eq!(
            to_bob.len(),
            3,
            "3 + 3 + 1 events of 20 KiB under 64 KiB each"
        );
        assert!(to_bob.iter().all(|payload| payload.len() <= PAYLOAD_BYTES));
        let seqs: Vec<i64> = to_bob
            .iter()
            .flat_map(|payload| b.decode(4, payload))
            .map(|received| match received {
                Received::Event(event) => event.seq,
                other => panic!("{other:?}"),
            })
            .collect();
        assert_eq!(seqs, (1..=7).collect::<Vec<_>>());
    }

    #[test]
    fn forged_foreign_moved_or_broken_events_are_not_delivered() {
        let (sender, ours) = (Wire::new("s", "n1".into()), Wire::new("s", "n2".into()));
        let theirs = Wire::new("another deployment's secret", "n9".into());
        let wire = sender.encode(&message(7, 1));
        assert_eq!(
            one(ours.decode(8, &wire)),
            Received::WrongUser,
            "replayed onto another user's channel"
        );
        let foreign = theirs.encode(&message(7, 1));
        assert_eq!(one(ours.decode(3, &foreign)), Received::Unsigned);
        let mut tampered = wire.clone();
        *tampered.last_mut().unwrap() ^= 1;
        assert_eq!(one(ours.decode(3, &tampered)), Received::Unsigned);
        let plain = b"n2 m 7 1 3 4 {\"type\":\"message\",\"data\":{}}";
        assert_eq!(one(ours.decode(3, plain)), Received::Unsigned, "unsigned");
        assert_eq!(one(ours.decode(3, b"")), Received::Unsigned);
    }

    /// A record signed with the deployment's key, whatever its body.
    fn signed(body: &[u8]) -> Vec<u8> {
        let signer = Signer::derived(b"s", PURPOSE);
        let mut record = ((MAC_BYTES + body.len()) as u32).to_be_bytes().to_vec();
        record.extend_from_slice(&signer.mac(&[body]));
        record.extend_from_slice(body);
        record
    }

    #[test]
    fn a_signed_record_this_node_cannot_read_sends_its_user_to_the_store() {
        let ours = Wire::new("s", "n2".into());
        let newer = [
            &b"n1 z 7 1 3 4 {}"[..],
            b"n1 zz 7 1 3 4 {}",
            b"n1 m 7 x 3 4 {}",
        ];
        for body in newer.into_iter().chain([&b"n1 m 7 1 3"[..], b"n1"]) {
            let received = one(ours.decode(3, &signed(body)));
            assert_eq!(received, Received::Unreadable, "{body:?}");
        }
        for body in [&b"n1 P 7 0 3 4 {}"[..], b"n1 Q"] {
            let received = one(ours.decode(3, &signed(body)));
            assert_eq!(received, Received::Droppable, "{body:?}");
        }
        let payload = [signed(b"n1 P 7 0 3 4 {}"), signed(b"n1 z 7 1 3 4 {}")].concat();
        assert_eq!(
            ours.decode(3, &payload),
            vec![Received::Droppable, Received::Unreadable]
        );
    }

    #[test]
    fn a_payload_is_read_record_by_record_up_to_one_cut_short() {
        let (sender, ours) = (Wire::new("s", "n1".into()), Wire::new("s", "n2".into()));
        let theirs = Wire::new("another deployment's secret", "n9".into());
        let genuine = sender.encode(&message(7, 1));
        let payload = [
            genuine.clone(),
            theirs.encode(&message(7, 2)),
            genuine[..genuine.len() - 1].to_vec(),
        ]
        .concat();
        assert_eq!(
            ours.decode(3, &payload),
            vec![
                Received::Event(message(7, 1)),
                Received::Unsigned,
                Received::Unsigned
            ],
            "each record on its own; the cut-short one ends the payload"
        );
    }
}
