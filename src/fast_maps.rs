//! Hash maps on the message path, hashed with foldhash (the hasher hashbrown
//! uses by default) instead of std's SipHash, which cost about 150
//! instructions a lookup there (BENCHMARKS.md). Only for keys no client
//! chooses (server-assigned user ids) or maps a batch bounds (a batch's
//! client ids, at most `WRITER_BATCH_MAX`): SipHash's resistance to chosen
//! collisions buys nothing there. Each map's hasher is still seeded at
//! random. The only user of `foldhash`.

/// A `HashMap` hashed with foldhash.
pub type FastMap<K, V> = std::collections::HashMap<K, V, foldhash::fast::RandomState>;

/// An empty [`FastMap`] with room for `capacity` entries.
pub fn map_with_capacity<K, V>(capacity: usize) -> FastMap<K, V> {
    FastMap::with_capacity_and_hasher(capacity, Default::default())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_fast_map_is_a_map() {
        let mut map: FastMap<(i64, &str), usize> = map_with_capacity(2);
        assert!(map.capacity() >= 2);
        assert_eq!(map.insert((7, "a"), 1), None);
        assert_eq!(map.insert((7, "a"), 2), Some(1));
        assert_eq!(map.get(&(7, "b")), None);
        assert_eq!(map.len(), 1);
    }

    #[test]
    fn each_map_hashes_with_a_seed_of_its_own() {
        use std::hash::BuildHasher;
        // Two maps place a key apart (equal hashes: a chance of 2^-64), so
        // keys that collide in one map do not collide in every map.
        let (one, other): (FastMap<i64, ()>, FastMap<i64, ()>) =
            (map_with_capacity(1), map_with_capacity(1));
        let key = 42_i64;
        assert_ne!(one.hasher().hash_one(key), other.hasher().hash_one(key));
    }
}
