//! Redis Cluster's key slots: the slot a channel hashes to (CRC16/XMODEM of
//! its name, or of its `{hash tag}`, mod 16,384, as Redis computes
//! it), and which primary owns each slot, as `CLUSTER SLOTS` says. The
//! publisher groups a batch by owner (one pipeline per primary); the
//! subscriber groups subscriptions by slot (a command may not span slots).

use redis::Value;
use std::collections::HashMap;

/// Slots in a Redis Cluster.
pub(super) const SLOTS: usize = 16_384;

/// The slot of a key or shard channel.
pub(super) fn slot_of(name: &[u8]) -> u16 {
    let hashed = hash_tag(name).unwrap_or(name);
    crc16::State::<crc16::XMODEM>::calculate(hashed) % SLOTS as u16
}

/// What is between the first `{` and the next `}`, when that is not empty:
/// names with the same tag share a slot.
fn hash_tag(name: &[u8]) -> Option<&[u8]> {
    let open = name.iter().position(|b| *b == b'{')?;
    let rest = &name[open + 1..];
    let close = rest.iter().position(|b| *b == b'}')?;
    (close > 0).then(|| &rest[..close])
}

/// Groups `(channel, item)` pairs by the slot of the channel.
pub(super) fn by_slot<T>(
    items: impl IntoIterator<Item = (String, T)>,
) -> HashMap<u16, Vec<(String, T)>> {
    let mut groups: HashMap<u16, Vec<(String, T)>> = HashMap::new();
    for (channel, item) in items {
        groups
            .entry(slot_of(channel.as_bytes()))
            .or_default()
            .push((channel, item));
    }
    groups
}

/// Which primary owns each slot.
pub(super) struct SlotMap {
    /// Per slot, an index into `primaries` (`u16::MAX`: no owner).
    owners: Vec<u16>,
    /// `(host, port)` of each primary.
    pub primaries: Vec<(String, u16)>,
}

impl SlotMap {
    /// From a `CLUSTER SLOTS` answer; a primary announced without a host is
    /// on `default_host` (the node that answered). `None` when the answer is
    /// not in that form.
    pub fn parse(answer: &Value, default_host: &str) -> Option<Self> {
        let Value::Array(ranges) = answer else {
            return None;
        };
        let mut map = SlotMap {
            owners: vec![u16::MAX; SLOTS],
            primaries: Vec::new(),
        };
        for range in ranges {
            let Value::Array(fields) = range else {
                return None;
            };
            let (Some(Value::Int(start)), Some(Value::Int(end)), Some(Value::Array(primary))) =
                (fields.first(), fields.get(1), fields.get(2))
            else {
                return None;
            };
            let host = match primary.first() {
                Some(Value::BulkString(host)) if !host.is_empty() => {
                    String::from_utf8_lossy(host).into_owned()
                }
                _ => default_host.to_owned(),
            };
            let Some(Value::Int(port)) = primary.get(1) else {
                return None;
            };
            let owner = (host, u16::try_from(*port).ok()?);
            let index = match map.primaries.iter().position(|known| *known == owner) {
                Some(index) => index,
                None => {
                    map.primaries.push(owner);
                    map.primaries.len() - 1
                }
            };
            let (start, end) = (usize::try_from(*start).ok()?, usize::try_from(*end).ok()?);
            for slot in map.owners.get_mut(start..=end)? {
                *slot = index as u16;
            }
        }
        Some(map)
    }

    /// Whether every slot has an owner.
    pub fn is_complete(&self) -> bool {
        self.owners.iter().all(|owner| *owner != u16::MAX)
    }

    /// The index (in `primaries`) of the primary that owns `name`'s slot.
    pub fn owner_of(&self, name: &[u8]) -> Option<usize> {
        let owner = self.owners[slot_of(name) as usize];
        (owner != u16::MAX).then_some(owner as usize)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slots_are_those_redis_computes() {
        // `CLUSTER KEYSLOT` of these, from the Redis documentation and a server.
        assert_eq!(slot_of(b"somekey"), 11_058);
        assert_eq!(slot_of(b"foo"), 12_182);
        assert_eq!(slot_of(b"{user1000}.following"), slot_of(b"user1000"));
        assert_eq!(
            slot_of(b"{}x"),
            slot_of(b"{}x"),
            "an empty tag hashes the whole name"
        );
        // `CLUSTER KEYSLOT` of names with and without (valid) hash tags.
        for (name, slot) in [
            ("chat-1a2b:user:7", 13_064),
            ("a{b}c", 3_300),
            ("b", 3_300),
            ("{", 4_092),
            ("x}{y}", 12_222),
            ("{}x", 10_595),
        ] {
            assert_eq!(slot_of(name.as_bytes()), slot, "{name}");
        }
    }

    #[test]
    fn users_channels_spread_evenly_over_the_slots_and_batch_per_slot() {
        let channels =
            (0..30_000).map(|user| (crate::delivery::bus::channel("chat-1a2b", user), ()));
        let groups = by_slot(channels);
        // 30,000 users over 16,384 slots: most slots hold one or two.
        let largest = groups.values().map(Vec::len).max().unwrap();
        assert!(groups.len() > 13_000, "{} slots used", groups.len());
        assert!(largest <= 10, "a slot holds {largest} users");
        for (slot, group) in &groups {
            for (channel, ()) in group {
                assert_eq!(slot_of(channel.as_bytes()), *slot);
            }
        }
        // The three shards of a cluster of three primaries carry a third each.
        let mut thirds = [0usize; 3];
        for user in 0..30_000 {
            let channel = crate::delivery::bus::channel("chat-1a2b", user);
            thirds[(slot_of(channel.as_bytes()) as usize * 3) / SLOTS] += 1;
        }
        for share in thirds {
            assert!((9_000..11_000).contains(&share), "{thirds:?}");
        }
    }

    #[test]
    fn a_slot_map_names_each_slots_primary() {
        let range = |start: i64, end: i64, host: &str, port: i64| {
            Value::Array(vec![
                Value::Int(start),
                Value::Int(end),
                Value::Array(vec![Value::BulkString(host.into()), Value::Int(port)]),
            ])
        };
        let answer = Value::Array(vec![
            range(0, 5460, "10.0.0.1", 7000),
            range(5461, 10922, "", 7001),
            range(10923, 16383, "10.0.0.1", 7000),
        ]);
        let map = SlotMap::parse(&answer, "seed").unwrap();
        assert!(map.is_complete());
        assert_eq!(
            map.primaries,
            [("10.0.0.1".to_owned(), 7000), ("seed".to_owned(), 7001)]
        );
        assert_eq!(map.owner_of(b"somekey"), Some(0), "slot 11058");
        let partial = Value::Array(vec![range(0, 100, "h", 1)]);
        let map = SlotMap::parse(&partial, "seed").unwrap();
        assert!(!map.is_complete());
        assert_eq!(map.owner_of(b"somekey"), None);
    }
}
