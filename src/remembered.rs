//! Small in-memory maps a node keeps to skip repeated work (confirmed
//! memberships, verified tokens), and the one way this crate takes a std mutex.
//!
//! A [`Remembered`] is bounded: when full it is emptied at once (one lock, no
//! per-entry bookkeeping; the next lookups do the work again).

use std::borrow::Borrow;
use std::collections::HashMap;
use std::hash::Hash;
use std::sync::{Mutex, MutexGuard};

/// Locks a mutex, also after a panic elsewhere: every critical section in this
/// crate is a plain map or queue operation, so the data is still whole.
pub fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// A bounded key → value map behind one lock.
pub struct Remembered<K, V> {
    entries: Mutex<HashMap<K, V>>,
    capacity: usize,
}

impl<K: Hash + Eq, V: Clone> Remembered<K, V> {
    /// A memo that starts over once it holds `capacity` entries.
    pub fn new(capacity: usize) -> Self {
        Remembered {
            entries: Mutex::new(HashMap::new()),
            capacity: capacity.max(1),
        }
    }

    pub fn get<Q>(&self, key: &Q) -> Option<V>
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        self.read(key, V::clone)
    }

    /// What `read` makes of the entry, under the lock (no copy of the value).
    pub fn read<Q, R>(&self, key: &Q, read: impl FnOnce(&V) -> R) -> Option<R>
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        lock(&self.entries).get(key).map(read)
    }

    pub fn insert(&self, key: K, value: V) {
        let mut entries = lock(&self.entries);
        if entries.len() >= self.capacity {
            entries.clear();
        }
        entries.insert(key, value);
    }

    /// Forgets an entry; whether there was one.
    pub fn remove<Q>(&self, key: &Q) -> bool
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        lock(&self.entries).remove(key).is_some()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_full_memo_starts_over() {
        let memo = Remembered::new(3);
        for key in 0..3 {
            memo.insert(key, key * 10);
        }
        assert_eq!(memo.get(&2), Some(20));
        memo.insert(3, 30);
        assert_eq!(memo.get(&0), None, "forgotten when full");
        assert_eq!(memo.get(&3), Some(30));
        assert!(memo.remove(&3));
        assert!(!memo.remove(&3));
    }
}
