//! A socket's outbox: the bounded queue of frames waiting for one socket, which
//! holds no memory while it is empty. tokio's `mpsc::channel` allocates a
//! 32-slot block up front (and at high connection counts most sockets are
//! idle); this queue grows only while frames wait and
//! gives a burst's memory back once it is drained.
//!
//! Rooms offer without waiting. A full outbox marks the socket overflowed and
//! wakes it (it then closes with a resumable code); a closed outbox (its
//! session ended) refuses everything. When the server shuts down, each outbox
//! is told to go away: its session sends what is queued, then closes with
//! 1001.

use super::Outgoing;
use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use tokio::sync::Notify;

/// Queue capacity kept after a burst is drained; more is given back.
const KEPT_CAPACITY: usize = 16;

/// One socket's queue of outgoing frames.
#[derive(Debug)]
pub struct Outbox {
    capacity: usize,
    state: Mutex<State>,
    /// Woken when the queue stops being empty or the outbox overflows.
    wake: Notify,
}

#[derive(Debug, Default)]
struct State {
    queue: VecDeque<Outgoing>,
    overflowed: bool,
    closed: bool,
    /// The server is shutting down: once the queue is empty, say so.
    going_away: bool,
    /// The bus follows this socket's user (a user socket waits for it
    /// before its `ready`).
    followed: bool,
    /// The socket's user was deactivated: close now, whatever is queued.
    signed_out: bool,
}

impl State {
    /// An alarm that closes the socket before anything queued is sent.
    fn urgent_alarm(&self) -> Option<Alarm> {
        if self.signed_out {
            Some(Alarm::SignedOut)
        } else {
            self.overflowed.then_some(Alarm::Overflowed)
        }
    }
}

/// What a waiting session gets from its outbox.
#[derive(Debug, PartialEq, Eq)]
pub enum Taken {
    Item(Outgoing),
    /// The socket must close.
    Alarm(Alarm),
}

/// Why a socket must close, whatever its outbox holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Alarm {
    /// A frame was refused for lack of room.
    Overflowed,
    /// The server is shutting down (from [`Outbox::take`]: once the queue is
    /// empty).
    GoingAway,
    /// The socket's user was deactivated.
    SignedOut,
}

impl Outbox {
    /// An empty outbox for at most `capacity` waiting frames.
    pub fn new(capacity: usize) -> Arc<Outbox> {
        Arc::new(Outbox {
            capacity: capacity.max(1),
            state: Mutex::new(State::default()),
            wake: Notify::new(),
        })
    }

    /// Queues a frame without waiting. Returns whether the socket can still
    /// receive: `false` once the outbox is full (it is then marked overflowed
    /// and its session woken) or closed.
    pub fn offer(&self, item: Outgoing) -> bool {
        let mut state = self.lock();
        if state.closed || state.overflowed || state.signed_out {
            return false;
        }
        if state.queue.len() >= self.capacity {
            state.overflowed = true;
            drop(state);
            self.wake.notify_one();
            return false;
        }
        let was_empty = state.queue.is_empty();
        state.queue.push_back(item);
        drop(state);
        if was_empty {
            self.wake.notify_one();
        }
        true
    }

    /// The next frame, waiting for one; `Overflowed` as soon as the outbox
    /// overflowed. Cancel-safe: a frame is taken only when this returns.
    pub async fn take(&self) -> Taken {
        self.take_unless_holding(false).await
    }

    /// [`Outbox::take`], or, while `holding` (a user socket before its first
    /// `sync`), only an alarm: its frames wait. One future for both, so a
    /// session's loop waits on the outbox with one branch whatever it holds.
    pub async fn take_unless_holding(&self, holding: bool) -> Taken {
        loop {
            let next = if holding {
                self.alarm().map(Taken::Alarm)
            } else {
                self.try_take_or_overflow()
            };
            match next {
                Some(taken) => return taken,
                None => self.wake.notified().await,
            }
        }
    }

    /// The next frame if one is waiting (and the outbox has not overflowed).
    pub fn try_take(&self) -> Option<Outgoing> {
        match self.try_take_or_overflow() {
            Some(Taken::Item(item)) => Some(item),
            _ => None,
        }
    }

    /// Whether the session must close whatever is queued: `Overflowed` (a
    /// frame was refused) or `GoingAway` (the server is shutting down).
    pub fn alarm(&self) -> Option<Alarm> {
        let state = self.lock();
        state
            .urgent_alarm()
            .or(state.going_away.then_some(Alarm::GoingAway))
    }

    /// The bus now follows the socket's user: every event published from
    /// here on reaches this outbox. A resync queued before (the new
    /// subscription's) asks about what came before the socket's `ready`, so
    /// it is dropped.
    pub fn mark_followed(&self) {
        let mut state = self.lock();
        state.followed = true;
        state.queue.retain(|item| !matches!(item, Outgoing::Resync));
        drop(state);
        self.wake.notify_one();
    }

    /// Waits until the bus follows the socket's user; an alarm ends the wait.
    pub async fn followed(&self) -> Result<(), Alarm> {
        loop {
            {
                let state = self.lock();
                if state.followed {
                    return Ok(());
                }
            }
            if let Some(alarm) = self.alarm() {
                return Err(alarm);
            }
            self.wake.notified().await;
        }
    }

    /// The session ended: drops what waits and refuses every later frame.
    pub fn close(&self) {
        let mut state = self.lock();
        state.closed = true;
        state.queue = VecDeque::new();
    }

    /// Tells the session to close at once: its user was deactivated. Nothing
    /// queued is sent, and nothing more is taken.
    pub fn sign_out(&self) {
        let mut state = self.lock();
        state.signed_out = true;
        state.queue = VecDeque::new();
        drop(state);
        self.wake.notify_one();
    }

    /// Tells the session to close once it has sent what is queued.
    pub fn go_away(&self) {
        self.lock().going_away = true;
        self.wake.notify_one();
    }

    fn try_take_or_overflow(&self) -> Option<Taken> {
        let mut state = self.lock();
        if let Some(alarm) = state.urgent_alarm() {
            return Some(Taken::Alarm(alarm));
        }
        let Some(item) = state.queue.pop_front() else {
            return state.going_away.then_some(Taken::Alarm(Alarm::GoingAway));
        };
        if state.queue.is_empty() && state.queue.capacity() > KEPT_CAPACITY {
            state.queue = VecDeque::new();
        }
        Some(Taken::Item(item))
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        crate::remembered::lock(&self.state)
    }

    #[cfg(test)]
    fn allocated_slots(&self) -> usize {
        self.lock().queue.capacity()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;
    use std::time::Duration;

    fn message(seq: i64) -> Outgoing {
        Outgoing::Message {
            chat: 1,
            seq,
            frame: Bytes::from(format!("m{seq}")),
        }
    }

    #[tokio::test]
    async fn frames_come_out_in_order_and_a_waiting_take_is_woken() {
        let outbox = Outbox::new(8);
        assert_eq!(outbox.allocated_slots(), 0, "an idle outbox holds nothing");
        let waiting = tokio::spawn({
            let outbox = outbox.clone();
            async move { outbox.take().await }
        });
        tokio::time::sleep(Duration::from_millis(20)).await;
        assert!(outbox.offer(message(1)));
        let first = tokio::time::timeout(Duration::from_secs(1), waiting).await;
        assert_eq!(first.unwrap().unwrap(), Taken::Item(message(1)));
        for seq in 2..=4 {
            assert!(outbox.offer(message(seq)));
        }
        assert_eq!(outbox.take().await, Taken::Item(message(2)));
        assert_eq!(outbox.try_take(), Some(message(3)));
        assert_eq!(outbox.try_take(), Some(message(4)));
        assert_eq!(outbox.try_take(), None);
    }

    #[tokio::test]
    async fn going_away_comes_after_what_is_queued_and_wakes_a_waiting_take() {
        let outbox = Outbox::new(8);
        let waiting = tokio::spawn({
            let outbox = outbox.clone();
            async move { outbox.take().await }
        });
        tokio::time::sleep(Duration::from_millis(20)).await;
        outbox.go_away();
        let woken = tokio::time::timeout(Duration::from_secs(1), waiting).await;
        assert_eq!(woken.unwrap().unwrap(), Taken::Alarm(Alarm::GoingAway));

        let outbox = Outbox::new(8);
        assert!(outbox.offer(message(1)));
        assert_eq!(outbox.alarm(), None);
        outbox.go_away();
        assert_eq!(outbox.alarm(), Some(Alarm::GoingAway));
        assert!(
            outbox.offer(message(2)),
            "still taking what is sent meanwhile"
        );
        assert_eq!(outbox.take().await, Taken::Item(message(1)));
        assert_eq!(outbox.try_take(), Some(message(2)));
        assert_eq!(outbox.try_take(), None, "a burst ends before going away");
        assert_eq!(outbox.take().await, Taken::Alarm(Alarm::GoingAway));
    }

    #[tokio::test]
    async fn a_full_outbox_overflows_and_says_so_before_anything_else() {
        let outbox = Outbox::new(2);
        assert!(outbox.offer(message(1)));
        assert!(outbox.offer(message(2)));
        assert!(!outbox.offer(message(3)), "no room");
        assert!(!outbox.offer(message(4)), "still refused");
        assert_eq!(outbox.alarm(), Some(Alarm::Overflowed));
        assert_eq!(outbox.take().await, Taken::Alarm(Alarm::Overflowed));
        assert_eq!(outbox.try_take(), None);
    }

    #[test]
    fn a_drained_burst_gives_its_memory_back() {
        let outbox = Outbox::new(1024);
        for seq in 1..=500 {
            assert!(outbox.offer(message(seq)));
        }
        assert!(outbox.allocated_slots() >= 500);
        for seq in 1..=500 {
            assert_eq!(outbox.try_take(), Some(message(seq)));
        }
        assert_eq!(outbox.allocated_slots(), 0);
    }

    #[tokio::test]
    async fn being_followed_wakes_the_wait_and_drops_an_earlier_resync() {
        let outbox = Outbox::new(8);
        assert!(outbox.offer(message(1)));
        assert!(outbox.offer(Outgoing::Resync));
        let waiting = tokio::spawn({
            let outbox = outbox.clone();
            async move { outbox.followed().await }
        });
        tokio::time::sleep(Duration::from_millis(20)).await;
        assert!(!waiting.is_finished(), "offers do not end the wait");
        outbox.mark_followed();
        let woken = tokio::time::timeout(Duration::from_secs(1), waiting).await;
        assert_eq!(woken.unwrap().unwrap(), Ok(()));
        assert_eq!(outbox.try_take(), Some(message(1)));
        assert_eq!(outbox.try_take(), None, "the resync before it is gone");
        assert!(outbox.offer(Outgoing::Resync));
        assert_eq!(outbox.try_take(), Some(Outgoing::Resync), "later ones stay");
    }

    #[test]
    fn a_closed_outbox_refuses_and_drops_what_waited() {
        let outbox = Outbox::new(4);
        assert!(outbox.offer(message(1)));
        outbox.close();
        assert_eq!(outbox.try_take(), None);
        assert!(!outbox.offer(message(2)));
        assert_eq!(outbox.allocated_slots(), 0);
    }
}
