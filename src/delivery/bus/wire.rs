//! The wire form of a message between nodes, and who may have sent it:
//! `MAC node chat seq frame`, the MAC (32 bytes, HMAC-SHA-256 under a key
//! derived from `SECRET_KEY`) over everything after it. A node delivers only
//! events a node of its own deployment signed, and only on the channel of the
//! chat they name: anything else on a Redis channel (a forged payload, another
//! deployment's event, an event replayed onto another chat's channel) is
//! dropped and counted, never delivered.

use super::Published;
use crate::digest::{Signer, MAC_BYTES};
use bytes::Bytes;

/// What the key of bus events is derived for (see [`Signer::derived`]).
const PURPOSE: &str = "chat-server bus events v1";

/// A node's signer and name on the bus.
#[derive(Clone)]
pub struct Wire {
    signer: Signer,
    node: String,
}

/// What a payload on a chat's channel turned out to be.
#[derive(Debug, PartialEq, Eq)]
pub enum Received {
    /// A message from another node of this deployment, for this chat.
    Message { seq: i64, frame: Bytes },
    /// This node's own message, back from Redis (or one claiming to be).
    Own,
    /// Not signed by this deployment (forged, foreign, corrupted).
    Unsigned,
    /// Signed, but for another chat than the channel's.
    WrongChat,
    /// Signed, but not in the wire form.
    Malformed,
}

impl Wire {
    pub fn new(secret: &str, node: String) -> Self {
        Wire {
            signer: Signer::derived(secret.as_bytes(), PURPOSE),
            node,
        }
    }

    /// A committed message, signed.
    pub fn encode(&self, message: &Published) -> Vec<u8> {
        let mut out = Vec::with_capacity(MAC_BYTES + self.node.len() + 48 + message.frame.len());
        out.extend_from_slice(&[0; MAC_BYTES]);
        out.extend_from_slice(self.node.as_bytes());
        out.push(b' ');
        out.extend_from_slice(message.chat.to_string().as_bytes());
        out.push(b' ');
        out.extend_from_slice(message.seq.to_string().as_bytes());
        out.push(b' ');
        out.extend_from_slice(&message.frame);
        let mac = self.signer.mac(&[&out[MAC_BYTES..]]);
        out[..MAC_BYTES].copy_from_slice(&mac);
        out
    }

    /// Reads a payload that arrived on `channel_chat`'s channel.
    pub fn decode(&self, channel_chat: i64, payload: &[u8]) -> Received {
        if payload.len() < MAC_BYTES {
            return Received::Unsigned;
        }
        let (mac, signed) = payload.split_at(MAC_BYTES);
        // This node's own events come back from Redis on every chat it
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
        let Some((_, chat, seq, frame)) = split(signed) else {
            return Received::Malformed;
        };
        if chat != channel_chat {
            Received::WrongChat
        } else {
            Received::Message {
                seq,
                frame: Bytes::copy_from_slice(frame),
            }
        }
    }
}

/// `node chat seq frame` → its parts.
fn split(signed: &[u8]) -> Option<(&[u8], i64, i64, &[u8])> {
    let mut parts = signed.splitn(4, |b| *b == b' ');
    let node = parts.next()?;
    let mut number = || -> Option<i64> { std::str::from_utf8(parts.next()?).ok()?.parse().ok() };
    let (chat, seq) = (number()?, number()?);
    Some((node, chat, seq, parts.next()?))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn message(chat: i64, seq: i64) -> Published {
        Published {
            chat,
            seq,
            frame: Bytes::from_static(br#"{"type":"message","data":{"a":"b c"}}"#),
        }
    }

    #[test]
    fn a_signed_message_round_trips_between_nodes_of_one_deployment() {
        let (a, b) = (Wire::new("s", "n1".into()), Wire::new("s", "n2".into()));
        let sent = message(7, 42);
        let wire = a.encode(&sent);
        assert_eq!(
            b.decode(7, &wire),
            Received::Message {
                seq: 42,
                frame: sent.frame.clone()
            }
        );
        assert_eq!(a.decode(7, &wire), Received::Own);
        let mut forged_as_ours = wire.clone();
        *forged_as_ours.last_mut().unwrap() ^= 1;
        assert_eq!(
            a.decode(7, &forged_as_ours),
            Received::Own,
            "dropped unread"
        );
    }

    #[test]
    fn forged_foreign_moved_or_broken_events_are_not_delivered() {
        let (sender, ours) = (Wire::new("s", "n1".into()), Wire::new("s", "n2".into()));
        let theirs = Wire::new("another deployment's secret", "n9".into());
        let wire = sender.encode(&message(7, 1));
        assert_eq!(
            ours.decode(8, &wire),
            Received::WrongChat,
            "replayed elsewhere"
        );
        let foreign = theirs.encode(&message(7, 1));
        assert_eq!(ours.decode(7, &foreign), Received::Unsigned);
        let mut tampered = wire.clone();
        *tampered.last_mut().unwrap() ^= 1;
        assert_eq!(ours.decode(7, &tampered), Received::Unsigned);
        let plain = b"n2 1 {\"type\":\"message\",\"data\":{}}";
        assert_eq!(
            ours.decode(7, plain),
            Received::Unsigned,
            "v1's unsigned form"
        );
        assert_eq!(ours.decode(7, b""), Received::Unsigned);
        let signer = Signer::derived(b"s", PURPOSE);
        let mut odd = signer.mac(&[b"n1 7 x {}"]).to_vec();
        odd.extend_from_slice(b"n1 7 x {}");
        assert_eq!(ours.decode(7, &odd), Received::Malformed);
    }
}
