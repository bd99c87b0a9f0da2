//! Rate limits: token buckets kept in memory, per client address (register and
//! login, where argon2 makes every request expensive), per user (sends over
//! REST and WebSocket, chats started, searches, syncs) and per account (failed
//! logins). Buckets live in a few mutex-guarded shards; a full bucket is the
//! same as no bucket, so idle ones are dropped when a shard grows. The
//! per-address and per-user limits are kept by every node of a deployment
//! together ([`shared`]).

pub mod shared;

use crate::remembered::lock;
use std::collections::HashMap;
use std::hash::{DefaultHasher, Hash, Hasher};
use std::net::IpAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};

const SHARDS: usize = 16;
/// Buckets a shard holds before it sweeps out the refilled ones.
const SWEEP_AT: usize = 4096;
/// Keys a shard notes as let through between two reports at the most (past
/// that, a flood of distinct users or addresses goes unreported, never
/// unlimited: each node still limits what it lets through).
const NOTED_MAX: usize = 65_536;

#[derive(Debug, Clone, Copy)]
struct Bucket {
    /// Below zero when other nodes let the key through more than this
    /// node's bucket held (see [`RateLimiter::charge`]).
    tokens: f64,
    updated: Instant,
    /// Tokens taken since the last report (a shared limit's only).
    unreported: u32,
}

/// A shard's buckets and the size at which it next sweeps (doubling, so a flood
/// of distinct keys costs amortised O(1) per request).
#[derive(Default)]
struct Shard {
    buckets: HashMap<u64, Bucket>,
    sweep_at: usize,
    /// The keys with tokens taken since the last report (each once; the
    /// count is their bucket's).
    noted: Vec<Key>,
}

/// One limit: `per_second` sustained, `burst` at once. A rate of 0 disables it.
pub struct RateLimiter {
    per_second: f64,
    burst: f64,
    /// Whether [`RateLimiter::check_user`] and [`RateLimiter::check_address`]
    /// note the keys they let through, for the other nodes (set by
    /// [`shared::SharedLimits`]).
    noting: AtomicBool,
    shards: Vec<Mutex<Shard>>,
}

impl RateLimiter {
    pub fn new(per_second: f64, burst: f64) -> Self {
        RateLimiter {
            per_second,
            burst: burst.max(1.0),
            noting: AtomicBool::new(false),
            shards: (0..SHARDS)
                .map(|_| {
                    Mutex::new(Shard {
                        sweep_at: SWEEP_AT,
                        ..Shard::default()
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
        self.visit_now(key, Visit::Take)
    }

    /// [`RateLimiter::check`] for a per-user limit: the token taken is
    /// noted for the other nodes' buckets when the limit is shared.
    pub fn check_user(&self, user: i64) -> Result<(), Duration> {
        self.visit_now(user, Visit::TakeFor(Key::User(user)))
    }

    /// [`RateLimiter::check_user`] for a per-address limit.
    pub fn check_address(&self, address: IpAddr) -> Result<(), Duration> {
        self.visit_now(address, Visit::TakeFor(Key::Address(address)))
    }

    /// Whether `key` has a token left, without taking it (for limits that
    /// count only failures: the attempt is let through, and its failure
    /// then takes a token with [`RateLimiter::check`]).
    pub fn has_token(&self, key: impl Hash) -> Result<(), Duration> {
        self.visit_now(key, Visit::Look)
    }

    /// Takes `tokens` that another node let `key` have from this node's
    /// bucket: it may go below zero (that node's tokens are this key's
    /// too), down to minus one burst, so no one waits more than twice a
    /// burst's refill.
    pub fn charge(&self, key: Key, tokens: u32) {
        if !self.is_enabled() {
            return;
        }
        let hash = key.bucket_hash();
        let mut shard = self.shard(hash);
        let bucket = self.refilled(&mut shard, hash, Instant::now());
        bucket.tokens = (bucket.tokens - f64::from(tokens)).max(-self.burst);
    }

    /// The keys let through since the last call, with the tokens each took
    /// (what this node reports to the others).
    fn take_noted(&self) -> Vec<(Key, u32)> {
        let mut all = Vec::new();
        for shard in &self.shards {
            let shard = &mut *lock(shard);
            for key in shard.noted.drain(..) {
                if let Some(bucket) = shard.buckets.get_mut(&key.bucket_hash()) {
                    all.push((key, std::mem::take(&mut bucket.unreported)));
                }
            }
        }
        all
    }

    #[cfg(test)]
    fn check_at(&self, key: impl Hash, now: Instant) -> Result<(), Duration> {
        self.visit(hash_of(key), now, Visit::Take)
    }

    /// [`RateLimiter::visit`] of `key`'s bucket now; nothing (not even the
    /// hash) when the limit is off.
    fn visit_now(&self, key: impl Hash, visit: Visit) -> Result<(), Duration> {
        if !self.is_enabled() {
            return Ok(());
        }
        self.visit(hash_of(key), Instant::now(), visit)
    }

    /// Refills the bucket of `hash` to `now`, then takes a token as `visit` says.
    fn visit(&self, hash: u64, now: Instant, visit: Visit) -> Result<(), Duration> {
        let mut shard = self.shard(hash);
        let room_to_note = shard.noted.len() < NOTED_MAX;
        let bucket = self.refilled(&mut shard, hash, now);
        if bucket.tokens < 1.0 {
            return Err(Duration::from_secs_f64(
                (1.0 - bucket.tokens) / self.per_second,
            ));
        }
        if let Visit::Look = visit {
            return Ok(());
        }
        bucket.tokens -= 1.0;
        if let Visit::TakeFor(key) = visit {
            if self.noting.load(Ordering::Relaxed) {
                if bucket.unreported > 0 {
                    bucket.unreported = bucket.unreported.saturating_add(1);
                } else if room_to_note {
                    bucket.unreported = 1;
                    shard.noted.push(key);
                }
            }
        }
        Ok(())
    }

    fn shard(&self, hash: u64) -> MutexGuard<'_, Shard> {
        lock(&self.shards[hash as usize % SHARDS])
    }

    /// The bucket of `hash`, refilled to `now` (a shard that has grown is
    /// swept first).
    fn refilled<'a>(&self, shard: &'a mut Shard, hash: u64, now: Instant) -> &'a mut Bucket {
        if shard.buckets.len() >= shard.sweep_at {
            self.sweep(shard, now);
        }
        let bucket = shard.buckets.entry(hash).or_insert(Bucket {
            tokens: self.burst,
            updated: now,
            unreported: 0,
        });
        let refill = now.saturating_duration_since(bucket.updated).as_secs_f64() * self.per_second;
        bucket.tokens = (bucket.tokens + refill).min(self.burst);
        bucket.updated = now;
        bucket
    }

    /// Drops buckets that have refilled completely (they are equivalent to
    /// none) and hold nothing to report; one in debt to other nodes stays
    /// until it has refilled.
    fn sweep(&self, shard: &mut Shard, now: Instant) {
        shard.buckets.retain(|_, b| {
            let refill = now.saturating_duration_since(b.updated).as_secs_f64() * self.per_second;
            b.unreported > 0 || b.tokens + refill < self.burst
        });
        shard.sweep_at = SWEEP_AT.max(shard.buckets.len() * 2);
    }
}

/// What a visit to a bucket does with a token it finds.
#[derive(Clone, Copy)]
enum Visit {
    Look,
    Take,
    /// Takes it, noting the key for the other nodes.
    TakeFor(Key),
}

/// The key of a shared limit's bucket, as the nodes name it to each other.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Key {
    User(i64),
    Address(IpAddr),
}

impl Key {
    /// Its bucket's hash: the hash of the user or address it wraps, as
    /// [`RateLimiter::check_user`] and [`RateLimiter::check_address`] take it.
    fn bucket_hash(self) -> u64 {
        match self {
            Key::User(user) => hash_of(user),
            Key::Address(address) => hash_of(address),
        }
    }
}

impl std::fmt::Display for Key {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Key::User(user) => user.fmt(f),
            Key::Address(address) => address.fmt(f),
        }
    }
}

impl std::str::FromStr for Key {
    type Err = ();

    /// A user id, or else an address (no address reads as a number).
    fn from_str(text: &str) -> Result<Self, ()> {
        match text.parse() {
            Ok(user) => Ok(Key::User(user)),
            Err(_) => text.parse().map(Key::Address).map_err(|_| ()),
        }
    }
}

fn hash_of(key: impl Hash) -> u64 {
    let mut hasher = DefaultHasher::new();
    key.hash(&mut hasher);
    hasher.finish()
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
