//! Rate limits: token buckets kept in memory, per client address (register and
//! login, where argon2 makes every request expensive) and per user (sends, over
//! REST and WebSocket). Buckets live in a few mutex-guarded shards; a full bucket
//! is the same as no bucket, so idle ones are dropped when a shard grows.

use crate::remembered::lock;
use std::collections::HashMap;
use std::hash::{DefaultHasher, Hash, Hasher};
use std::sync::Mutex;
use std::time::{Duration, Instant};

const SHARDS: usize = 16;
/// Buckets a shard holds before it sweeps out the refilled ones.
const SWEEP_AT: usize = 4096;

#[derive(Debug, Clone, Copy)]
struct Bucket {
    tokens: f64,
    updated: Instant,
}

/// A shard's buckets and the size at which it next sweeps (doubling, so a flood
/// of distinct keys costs amortised O(1) per request).
#[derive(Default)]
struct Shard {
    buckets: HashMap<u64, Bucket>,
    sweep_at: usize,
}

/// One limit: `per_second` sustained, `burst` at once. A rate of 0 disables it.
pub struct RateLimiter {
    per_second: f64,
    burst: f64,
    shards: Vec<Mutex<Shard>>,
}

impl RateLimiter {
    pub fn new(per_second: f64, burst: f64) -> Self {
        RateLimiter {
            per_second,
            burst: burst.max(1.0),
            shards: (0..SHARDS)
                .map(|_| {
                    Mutex::new(Shard {
                        buckets: HashMap::new(),
                        sweep_at: SWEEP_AT,
                    })
                })
                .collect(),
        }
    }

    pub fn is_enabled(&self) -> bool {
        self.per_second > 0.0
    }

    /// Takes one token for `key`; when none is left, how long until one is.
    pub fn check(&self, key: impl Hash) -> Result<(), Duration> {
        self.check_at(key, Instant::now())
    }

    /// Whether `key` has a token left, without taking it (for limits that
    /// count only failures: the attempt is let through, and its failure
    /// then takes a token with [`RateLimiter::check`]).
    pub fn has_token(&self, key: impl Hash) -> Result<(), Duration> {
        self.visit(key, Instant::now(), false)
    }

    fn check_at(&self, key: impl Hash, now: Instant) -> Result<(), Duration> {
        self.visit(key, now, true)
    }

    /// Refills `key`'s bucket to `now`, then takes a token if `take`.
    fn visit(&self, key: impl Hash, now: Instant, take: bool) -> Result<(), Duration> {
        if !self.is_enabled() {
            return Ok(());
        }
        let mut hasher = DefaultHasher::new();
        key.hash(&mut hasher);
        let hash = hasher.finish();
        let mut shard = lock(&self.shards[hash as usize % SHARDS]);
        if shard.buckets.len() >= shard.sweep_at {
            self.sweep(&mut shard, now);
        }
        let bucket = shard.buckets.entry(hash).or_insert(Bucket {
            tokens: self.burst,
            updated: now,
        });
        let refill = now.saturating_duration_since(bucket.updated).as_secs_f64() * self.per_second;
        bucket.tokens = (bucket.tokens + refill).min(self.burst);
        bucket.updated = now;
        if bucket.tokens >= 1.0 {
            if take {
                bucket.tokens -= 1.0;
            }
            Ok(())
        } else {
            Err(Duration::from_secs_f64(
                (1.0 - bucket.tokens) / self.per_second,
            ))
        }
    }

    /// Drops buckets that have refilled completely (they are equivalent to none).
    fn sweep(&self, shard: &mut Shard, now: Instant) {
        let full_after = self.burst / self.per_second;
        shard
            .buckets
            .retain(|_, b| now.saturating_duration_since(b.updated).as_secs_f64() < full_after);
        shard.sweep_at = SWEEP_AT.max(shard.buckets.len() * 2);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bursts_then_refills_at_the_rate() {
        let limiter = RateLimiter::new(2.0, 3.0);
        let start = Instant::now();
        for _ in 0..3 {
            assert!(limiter.check_at("k", start).is_ok());
        }
        let wait = limiter.check_at("k", start).unwrap_err();
        assert!(
            wait > Duration::from_millis(400) && wait <= Duration::from_millis(500),
            "{wait:?}"
        );
        assert!(
            limiter.check_at("other", start).is_ok(),
            "keys are independent"
        );
        assert!(limiter
            .check_at("k", start + Duration::from_millis(500))
            .is_ok());
    }

    #[test]
    fn looking_takes_no_token() {
        let limiter = RateLimiter::new(1.0, 2.0);
        for _ in 0..10 {
            assert!(limiter.has_token("k").is_ok());
        }
        assert!(limiter.check("k").is_ok());
        assert!(limiter.check("k").is_ok());
        assert!(limiter.has_token("k").is_err(), "both taken");
    }

    #[test]
    fn a_zero_rate_disables_the_limit() {
        let limiter = RateLimiter::new(0.0, 1.0);
        for _ in 0..100 {
            assert!(limiter.check("k").is_ok());
        }
    }

    #[test]
    fn idle_buckets_are_swept() {
        let limiter = RateLimiter::new(1000.0, 1.0);
        let start = Instant::now();
        for key in 0..SWEEP_AT * SHARDS * 2 {
            let _ = limiter.check_at(key, start);
        }
        let later = start + Duration::from_secs(1);
        let _ = limiter.check_at("new", later);
        for key in 0..SWEEP_AT * SHARDS * 4 {
            let _ = limiter.check_at(key + 1_000_000, later);
        }
        let total: usize = limiter
            .shards
            .iter()
            .map(|s| s.lock().unwrap().buckets.len())
            .sum();
        assert!(
            total <= SWEEP_AT * SHARDS * 4 + SHARDS,
            "{total} buckets kept: the old ones were swept"
        );
    }
}

/// Caps how many of something each key holds at once (open WebSockets per
/// user, open connections per client address); a slot is given back when
/// dropped.
pub struct Slots<K> {
    max: usize,
    open: Mutex<HashMap<K, usize>>,
}

/// Open WebSockets per user.
pub type SocketSlots = Slots<i64>;
/// One open socket of a user.
pub type SocketSlot = Slot<i64>;

/// One of a key's slots.
pub struct Slot<K: Hash + Eq + Copy> {
    slots: std::sync::Arc<Slots<K>>,
    key: K,
}

impl<K: Hash + Eq + Copy> Slots<K> {
    /// `max` slots per key; 0 means no cap.
    pub fn new(max: usize) -> std::sync::Arc<Self> {
        std::sync::Arc::new(Slots {
            max,
            open: Mutex::new(HashMap::new()),
        })
    }

    /// A slot for one more of `key`, unless the key is at the cap.
    pub fn acquire(self: &std::sync::Arc<Self>, key: K) -> Option<Slot<K>> {
        let mut open = lock(&self.open);
        let count = open.entry(key).or_insert(0);
        if self.max > 0 && *count >= self.max {
            return None;
        }
        *count += 1;
        Some(Slot {
            slots: self.clone(),
            key,
        })
    }
}

impl<K: Hash + Eq + Copy> Drop for Slot<K> {
    fn drop(&mut self) {
        let mut open = lock(&self.slots.open);
        if let Some(count) = open.get_mut(&self.key) {
            *count -= 1;
            if *count == 0 {
                open.remove(&self.key);
            }
        }
    }
}

#[cfg(test)]
mod slot_tests {
    use super::*;

    #[test]
    fn slots_are_capped_and_given_back() {
        let slots = SocketSlots::new(2);
        let a = slots.acquire(1).unwrap();
        let _b = slots.acquire(1).unwrap();
        assert!(slots.acquire(1).is_none());
        assert!(slots.acquire(2).is_some(), "per user");
        drop(a);
        assert!(slots.acquire(1).is_some());
    }
}
