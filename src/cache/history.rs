//! This node's cache of stored messages' JSON, kept per chat as one run of
//! consecutive `seq`s (the newest ones read). Stored messages never change, so a
//! cached message never goes stale: a history read still asks the store for the
//! chat (`last_seq`, participants) and for the messages the run lacks, and takes
//! the rest from here. Other nodes' sends need no invalidation: they only add
//! `seq`s above the run, which the store returns.
//!
//! Bounded by bytes: each of [`SHARDS`] shards owns an equal share of the budget
//! and drops whole chats, oldest cached first, when it is over. Shards are picked
//! by chat id and locked only to copy a few `Bytes` handles in or out.

use crate::remembered::lock;
use crate::store::SeqRun;
use bytes::Bytes;
use std::collections::{HashMap, VecDeque};
use std::ops::RangeInclusive;
use std::sync::Mutex;

/// Independent locks; a handful per core is plenty for critical sections this short.
pub const SHARDS: usize = 32;

/// Bytes charged per cached message on top of its JSON (handle and bookkeeping).
const PER_MESSAGE_OVERHEAD: usize = 48;

/// The cache; with a budget of 0 it holds nothing and costs nothing.
pub struct HistoryCache {
    shards: Box<[Mutex<Shard>]>,
    shard_budget: usize,
    run_max: usize,
}

/// The chats of one shard and the order they were cached in (for eviction).
#[derive(Default)]
struct Shard {
    runs: HashMap<i64, Run>,
    cached_order: VecDeque<i64>,
    bytes: usize,
}

/// One chat's messages `first..first + messages.len()`, encoded.
struct Run {
    first: i64,
    messages: VecDeque<Bytes>,
    bytes: usize,
}

impl HistoryCache {
    /// A cache of about `budget_bytes`, keeping at most `run_max` messages per
    /// chat (the largest page, so the newest page of any size can be served).
    pub fn new(budget_bytes: usize, run_max: usize) -> Self {
        let shards = if budget_bytes == 0 || run_max == 0 {
            Vec::new()
        } else {
            (0..SHARDS).map(|_| Mutex::new(Shard::default())).collect()
        };
        HistoryCache {
            shards: shards.into_boxed_slice(),
            shard_budget: budget_bytes / SHARDS,
            run_max,
        }
    }

    /// The `seq`s cached for the chat ([`SeqRun::EMPTY`] when none).
    pub fn held(&self, chat_id: i64) -> SeqRun {
        let Some(shard) = self.shard(chat_id) else {
            return SeqRun::EMPTY;
        };
        let shard = lock(shard);
        shard.runs.get(&chat_id).map_or(SeqRun::EMPTY, Run::span)
    }

    /// Every message of `seqs`, or `None` unless all of them are cached.
    pub fn take(&self, chat_id: i64, seqs: RangeInclusive<i64>) -> Option<Vec<Bytes>> {
        if seqs.is_empty() {
            return Some(Vec::new());
        }
        let shard = lock(self.shard(chat_id)?);
        let run = shard.runs.get(&chat_id)?;
        let span = run.span();
        if *seqs.start() < span.first || *seqs.end() > span.last {
            return None;
        }
        let skip = usize::try_from(seqs.start() - span.first).ok()?;
        let count = usize::try_from(seqs.end() - seqs.start() + 1).ok()?;
        Some(
            run.messages
                .iter()
                .skip(skip)
                .take(count)
                .cloned()
                .collect(),
        )
    }

    /// Adds consecutive messages starting at `first_seq`. They join the chat's
    /// run when they touch or overlap it; a run they do not touch is replaced
    /// when they are newer and kept when they are older. The run keeps its
    /// newest `run_max` messages.
    pub fn remember(&self, chat_id: i64, first_seq: i64, messages: &[Bytes]) {
        if messages.is_empty() {
            return;
        }
        let Some(shard) = self.shard(chat_id) else {
            return;
        };
        let mut shard = lock(shard);
        let shard = &mut *shard;
        let before = shard.runs.get(&chat_id).map_or(0, |run| run.bytes);
        match shard.runs.get_mut(&chat_id) {
            Some(run) => run.merge(first_seq, messages),
            None => {
                shard.runs.insert(chat_id, Run::new(first_seq, messages));
                shard.cached_order.push_back(chat_id);
            }
        }
        let run = shard.runs.get_mut(&chat_id).expect("inserted above");
        run.keep_newest(self.run_max);
        shard.bytes = shard.bytes - before + run.bytes;
        shard.evict_to(self.shard_budget, chat_id);
    }

    fn shard(&self, chat_id: i64) -> Option<&Mutex<Shard>> {
        if self.shards.is_empty() {
            return None;
        }
        self.shards
            .get(chat_id.rem_euclid(self.shards.len() as i64) as usize)
    }
}

impl Shard {
    /// Drops the longest-cached chats until the shard fits `budget`, never
    /// `keep` (the chat just added, which may alone exceed a small share).
    fn evict_to(&mut self, budget: usize, keep: i64) {
        let mut candidates = self.cached_order.len();
        while self.bytes > budget && candidates > 0 {
            candidates -= 1;
            let Some(chat_id) = self.cached_order.pop_front() else {
                break;
            };
            if chat_id == keep {
                self.cached_order.push_back(chat_id);
                continue;
            }
            if let Some(run) = self.runs.remove(&chat_id) {
                self.bytes -= run.bytes;
            }
        }
    }
}

impl Run {
    fn new(first: i64, messages: &[Bytes]) -> Run {
        let mut run = Run {
            first,
            messages: VecDeque::with_capacity(messages.len()),
            bytes: 0,
        };
        for message in messages {
            run.push_back(message.clone());
        }
        run
    }

    fn span(&self) -> SeqRun {
        SeqRun {
            first: self.first,
            last: self.first + self.messages.len() as i64 - 1,
        }
    }

    fn merge(&mut self, first: i64, messages: &[Bytes]) {
        let span = self.span();
        let last = first + messages.len() as i64 - 1;
        if first > span.last + 1 {
            *self = Run::new(first, messages);
            return;
        }
        if last < span.first - 1 {
            return;
        }
        // Older messages go in front, newest first; newer ones at the back.
        let older = (span.first - first).clamp(0, messages.len() as i64) as usize;
        for message in messages[..older].iter().rev() {
            self.push_front(message.clone());
        }
        let newer_from = (span.last + 1 - first).clamp(0, messages.len() as i64) as usize;
        for message in &messages[newer_from..] {
            self.push_back(message.clone());
        }
    }

    fn keep_newest(&mut self, run_max: usize) {
        while self.messages.len() > run_max {
            if let Some(dropped) = self.messages.pop_front() {
                self.bytes -= charge(&dropped);
                self.first += 1;
            }
        }
    }

    fn push_front(&mut self, message: Bytes) {
        self.bytes += charge(&message);
        self.messages.push_front(message);
        self.first -= 1;
    }

    fn push_back(&mut self, message: Bytes) {
        self.bytes += charge(&message);
        self.messages.push_back(message);
    }
}

fn charge(message: &Bytes) -> usize {
    message.len() + PER_MESSAGE_OVERHEAD
}

#[cfg(test)]
mod tests {
    use super::*;

    fn messages(seqs: RangeInclusive<i64>) -> Vec<Bytes> {
        seqs.map(|seq| Bytes::from(format!("m{seq}"))).collect()
    }

    fn cache() -> HistoryCache {
        HistoryCache::new(1 << 20, 100)
    }

    #[test]
    fn a_run_serves_exactly_what_it_holds() {
        let cache = cache();
        assert_eq!(cache.held(7), SeqRun::EMPTY);
        cache.remember(7, 11, &messages(11..=20));
        assert_eq!(
            cache.held(7),
            SeqRun {
                first: 11,
                last: 20
            }
        );
        assert_eq!(cache.take(7, 12..=14), Some(messages(12..=14)));
        assert_eq!(cache.take(7, 10..=14), None, "10 was never cached");
        assert_eq!(cache.take(7, 19..=21), None, "21 was never cached");
        assert_eq!(cache.take(8, 12..=14), None, "another chat");
        assert_eq!(cache.take(7, RangeInclusive::new(5, 4)), Some(Vec::new()));
    }

    #[test]
    fn touching_and_overlapping_messages_join_the_run() {
        let cache = cache();
        cache.remember(1, 11, &messages(11..=20));
        cache.remember(1, 21, &messages(21..=22));
        cache.remember(1, 5, &messages(5..=12));
        assert_eq!(cache.held(1), SeqRun { first: 5, last: 22 });
        assert_eq!(cache.take(1, 5..=22), Some(messages(5..=22)));
        cache.remember(1, 1, &messages(1..=30));
        assert_eq!(cache.take(1, 1..=30), Some(messages(1..=30)));
    }

    #[test]
    fn a_detached_newer_block_replaces_the_run_and_an_older_one_is_ignored() {
        let cache = cache();
        cache.remember(1, 11, &messages(11..=20));
        cache.remember(1, 1, &messages(1..=5));
        assert_eq!(
            cache.held(1),
            SeqRun {
                first: 11,
                last: 20
            }
        );
        cache.remember(1, 40, &messages(40..=45));
        assert_eq!(
            cache.held(1),
            SeqRun {
                first: 40,
                last: 45
            }
        );
        assert_eq!(cache.take(1, 40..=45), Some(messages(40..=45)));
    }

    #[test]
    fn a_run_keeps_its_newest_messages() {
        let cache = HistoryCache::new(1 << 20, 10);
        cache.remember(1, 1, &messages(1..=25));
        assert_eq!(
            cache.held(1),
            SeqRun {
                first: 16,
                last: 25
            }
        );
        cache.remember(1, 26, &messages(26..=27));
        assert_eq!(
            cache.held(1),
            SeqRun {
                first: 18,
                last: 27
            }
        );
        assert_eq!(cache.take(1, 18..=27), Some(messages(18..=27)));
    }

    #[test]
    fn the_budget_drops_the_longest_cached_chats() {
        // One shard's share holds about three of these runs.
        let per_run = 10 * (2 + PER_MESSAGE_OVERHEAD);
        let cache = HistoryCache::new(SHARDS * (3 * per_run + per_run / 2), 100);
        let chats: Vec<i64> = (0..5).map(|n| n * SHARDS as i64).collect();
        for &chat in &chats {
            cache.remember(chat, 1, &messages(1..=10));
        }
        let kept: Vec<bool> = chats
            .iter()
            .map(|&c| cache.held(c) != SeqRun::EMPTY)
            .collect();
        assert_eq!(kept, [false, false, true, true, true]);
        let shard = lock(cache.shard(0).unwrap());
        let counted: usize = shard.runs.values().map(|run| run.bytes).sum();
        assert_eq!(shard.bytes, counted);
        assert!(shard.bytes <= cache.shard_budget);
    }

    #[test]
    fn a_zero_budget_caches_nothing() {
        let cache = HistoryCache::new(0, 100);
        cache.remember(1, 1, &messages(1..=3));
        assert_eq!(cache.held(1), SeqRun::EMPTY);
        assert_eq!(cache.take(1, 1..=1), None);
    }
}
