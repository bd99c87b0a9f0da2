//! The wire form of an event between nodes, and who may have sent it:
//! `MAC node kind chat seq low high frame`, the MAC (32 bytes, HMAC-SHA-256
//! under a key derived from `SECRET_KEY`) over everything after it; `kind` is
//! one letter (`m` message, `c` chat, `r` read, `t` typing, `l` lost) and `low high` the
//! chat's participants. A node delivers only events a node of its own
//! deployment signed, and only on the channel of a user they are for:
//! anything else on a Redis channel (a forged payload, another deployment's
//! event, an event replayed onto another user's channel) is dropped and
//! counted, never delivered.

use super::{Envelope, Kind};
use crate::digest::{Signer, MAC_BYTES};
use bytes::Bytes;

/// What the key of bus events is derived for (see [`Signer::derived`]).
const PURPOSE: &str = "chat-server bus events v2";

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
    /// Signed, but not in the wire form.
    Malformed,
}

impl Kind {
    fn letter(self) -> u8 {
        match self {
            Kind::Message => b'm',
            Kind::Chat => b'c',
            Kind::Read => b'r',
            Kind::Typing => b't',
            Kind::Lost => b'l',
        }
    }

    fn of_letter(letter: &[u8]) -> Option<Kind> {
        Some(match letter {
            b"m" => Kind::Message,
            b"c" => Kind::Chat,
            b"r" => Kind::Read,
            b"t" => Kind::Typing,
            b"l" => Kind::Lost,
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

    /// An event, signed (once, whatever the channels it goes to).
    pub fn encode(&self, event: &Envelope) -> Vec<u8> {
        let mut out = Vec::with_capacity(MAC_BYTES + self.node.len() + 96 + event.frame.len());
        out.extend_from_slice(&[0; MAC_BYTES]);
        out.extend_from_slice(self.node.as_bytes());
        out.push(b' ');
        out.push(event.kind.letter());
        for number in [event.chat, event.seq, event.audience[0], event.audience[1]] {
            out.push(b' ');
            out.extend_from_slice(number.to_string().as_bytes());
        }
        out.push(b' ');
        out.extend_from_slice(&event.frame);
        let mac = self.signer.mac(&[&out[MAC_BYTES..]]);
        out[..MAC_BYTES].copy_from_slice(&mac);
        out
    }

    /// Reads a payload that arrived on `channel_user`'s channel.
    pub fn decode(&self, channel_user: i64, payload: &[u8]) -> Received {
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
            return Received::Malformed;
        };
        if event.audience.contains(&channel_user) {
            let only = (event.kind == Kind::Typing).then_some(channel_user);
            Received::Event(Envelope { only, ..event })
        } else {
            Received::WrongUser
        }
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

    #[test]
    fn a_signed_event_round_trips_between_nodes_of_one_deployment() {
        let (a, b) = (Wire::new("s", "n1".into()), Wire::new("s", "n2".into()));
        let sent = message(7, 42);
        let wire = a.encode(&sent);
        assert_eq!(b.decode(4, &wire), Received::Event(sent.clone()));
        assert_eq!(b.decode(3, &wire), Received::Event(sent.clone()));
        assert_eq!(a.decode(4, &wire), Received::Own);
        let mut forged_as_ours = wire.clone();
        *forged_as_ours.last_mut().unwrap() ^= 1;
        assert_eq!(
            a.decode(4, &forged_as_ours),
            Received::Own,
            "dropped unread"
        );
        for kind in [Kind::Chat, Kind::Read, Kind::Lost] {
            let event = Envelope {
                kind,
                seq: 0,
                ..sent.clone()
            };
            assert_eq!(b.decode(3, &a.encode(&event)), Received::Event(event));
        }
        let typing = Envelope {
            kind: Kind::Typing,
            only: Some(4),
            ..sent
        };
        assert_eq!(b.decode(4, &a.encode(&typing)), Received::Event(typing));
    }

    #[test]
    fn forged_foreign_moved_or_broken_events_are_not_delivered() {
        let (sender, ours) = (Wire::new("s", "n1".into()), Wire::new("s", "n2".into()));
        let theirs = Wire::new("another deployment's secret", "n9".into());
        let wire = sender.encode(&message(7, 1));
        assert_eq!(
            ours.decode(8, &wire),
            Received::WrongUser,
            "replayed onto another user's channel"
        );
        let foreign = theirs.encode(&message(7, 1));
        assert_eq!(ours.decode(3, &foreign), Received::Unsigned);
        let mut tampered = wire.clone();
        *tampered.last_mut().unwrap() ^= 1;
        assert_eq!(ours.decode(3, &tampered), Received::Unsigned);
        let plain = b"n2 m 7 1 3 4 {\"type\":\"message\",\"data\":{}}";
        assert_eq!(ours.decode(3, plain), Received::Unsigned, "unsigned");
        assert_eq!(ours.decode(3, b""), Received::Unsigned);
        let signer = Signer::derived(b"s", PURPOSE);
        for body in [&b"n1 m 7 x 3 4 {}"[..], b"n1 z 7 1 3 4 {}", b"n1 m 7 1 3"] {
            let mut odd = signer.mac(&[body]).to_vec();
            odd.extend_from_slice(body);
            assert_eq!(ours.decode(3, &odd), Received::Malformed, "{body:?}");
        }
    }
}
