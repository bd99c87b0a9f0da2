//! Redis pub/sub, the only user of the `redis` crate: a publisher that pipelines
//! each committed batch into one round trip (a payload per recipient), and a
//! subscriber that follows the room map's interest (users), reconnects with
//! backoff, re-subscribes, and asks every watched user's sockets to catch up
//! from the store after anything it may have missed. A subscription only
//! listens, so a connection that died without a word (Redis dropped it
//! behind a partition, or hangs) would look like a quiet one: the subscriber
//! pings every [`HEARTBEAT_EVERY`], and takes anything Redis leaves
//! unanswered for [`ANSWER_TIMEOUT`] (a connection, a subscription, a ping)
//! as a lost connection, so a Redis that hangs or a host that vanished
//! costs seconds, not the kernel's minutes of retries. This file is one
//! Redis's subscriber, [`publish`] its publisher; [`sharded`] is a Redis
//! Cluster, with the same interest handling and delivery.

mod publish;
pub(super) mod sharded;
mod slots;
pub(super) mod tls;

pub(super) use publish::publish_loop;

use super::missed::named_in;
use super::{user_of, Envelope, Interest, Received, Wire};
use crate::delivery::rooms::{ConnId, Rooms};
use crate::metrics::Metrics;
use crate::ratelimit::shared::SharedLimits;
use futures_util::StreamExt;
use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::mpsc;

const MIN_BACKOFF: Duration = Duration::from_millis(100);
const MAX_BACKOFF: Duration = Duration::from_secs(5);
/// Events published in one pipeline at most.
const PIPELINE_MAX: usize = 4096;
/// Interest changes applied with one SUBSCRIBE/UNSUBSCRIBE at most.
const FOLLOW_MAX: usize = 1024;
/// How often a subscriber asks Redis whether its connection still works.
const HEARTBEAT_EVERY: Duration = Duration::from_secs(5);
/// How long a subscriber waits for Redis to answer (a connection, a
/// subscription, a ping) before it takes the connection for lost
/// (generous: a false alarm costs every watched user a catch-up).
const ANSWER_TIMEOUT: Duration = Duration::from_secs(5);

/// The ticks of a subscriber's heartbeat, the first one period from now.
fn heartbeat() -> tokio::time::Interval {
    let first = tokio::time::Instant::now() + HEARTBEAT_EVERY;
    let mut ticks = tokio::time::interval_at(first, HEARTBEAT_EVERY);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    ticks
}

fn next_backoff(backoff: Duration) -> Duration {
    (backoff * 2).min(MAX_BACKOFF)
}

/// `first` and whatever else is queued already, up to [`PIPELINE_MAX`] events:
/// one pipeline's worth.
fn gathered(mut batch: Vec<Envelope>, queue: &mut mpsc::Receiver<Vec<Envelope>>) -> Vec<Envelope> {
    while batch.len() < PIPELINE_MAX {
        match queue.try_recv() {
            Ok(more) => batch.extend(more),
            Err(_) => break,
        }
    }
    batch
}

/// What a subscriber hands heard events to, and how it reads them.
pub(super) struct Listener {
    pub wire: Wire,
    pub prefix: String,
    /// The deployment's lost and usage channels, named once (every payload
    /// heard is compared with them).
    pub lost_channel: String,
    pub usage_channel: String,
    pub rooms: Rooms,
    /// Takes the usage the other nodes report (see [`super::Kind::Usage`]).
    pub limits: Arc<SharedLimits>,
    pub metrics: Arc<Metrics>,
}

impl Listener {
    /// A payload heard on `channel`: another node's event for one of this
    /// node's users, a notice that events were dropped (the users it names
    /// catch up), or another node's usage report.
    async fn heard(&self, watched: &HashSet<i64>, channel: &str, payload: &[u8]) {
        if channel == self.usage_channel {
            for report in self.wire.decode(0, payload) {
                if let Received::Event(report) = report {
                    if report.kind == super::Kind::Usage {
                        self.limits.charge(&report.frame);
                        self.metrics.bus_usage_reports.inc();
                    }
                }
            }
            return;
        }
        if channel == self.lost_channel {
            for notice in self.wire.decode(0, payload) {
                match notice {
                    Received::Event(notice) if notice.kind == super::Kind::Lost => {
                        catch_up_after(&self.rooms, watched, &notice).await
                    }
                    // A notice in a newer form: it may name anyone.
                    Received::Unreadable => {
                        self.metrics.bus_unreadable.inc();
                        resync_all(&self.rooms, watched).await
                    }
                    _ => {}
                }
            }
            return;
        }
        deliver(self, channel, payload).await
    }

    fn channels(&self, users: &[i64]) -> Vec<String> {
        users
            .iter()
            .map(|u| super::channel(&self.prefix, *u))
            .collect()
    }

    /// Whether this node still follows `channel` (a watched user's, the
    /// lost channel or the usage channel).
    fn still_wanted(&self, watched: &HashSet<i64>, channel: &str) -> bool {
        channel == self.lost_channel
            || channel == self.usage_channel
            || user_of(&self.prefix, channel).is_some_and(|user| watched.contains(&user))
    }

    /// Every watched user's channel, the lost channel and the usage channel.
    fn all_channels(&self, watched: &HashSet<i64>) -> Vec<String> {
        let mut channels: Vec<String> = watched
            .iter()
            .map(|user| super::channel(&self.prefix, *user))
            .collect();
        channels.push(self.lost_channel.clone());
        channels.push(self.usage_channel.clone());
        channels
    }
}

/// How a subscriber tells Redis which channels it follows: classic
/// SUBSCRIBE on one Redis, SSUBSCRIBE per slot on a cluster. False when the
/// connection failed.
trait Subscriptions {
    async fn subscribe(&mut self, channels: Vec<String>) -> bool;
    async fn unsubscribe(&mut self, channels: Vec<String>) -> bool;
    /// Whether every connection answers a ping within [`ANSWER_TIMEOUT`].
    async fn answer(&mut self) -> bool;
}

impl Subscriptions for redis::aio::PubSubSink {
    async fn answer(&mut self) -> bool {
        answered(self.ping::<redis::Value>()).await.is_ok()
    }

    async fn subscribe(&mut self, channels: Vec<String>) -> bool {
        let subscribing = redis::aio::PubSubSink::subscribe(self, channels);
        answered(subscribing).await.is_ok()
    }

    async fn unsubscribe(&mut self, channels: Vec<String>) -> bool {
        let unsubscribing = redis::aio::PubSubSink::unsubscribe(self, channels);
        answered(unsubscribing).await.is_ok()
    }
}

/// What Redis answered within [`ANSWER_TIMEOUT`]; an error when it did not.
async fn answered<T>(
    asked: impl std::future::Future<Output = redis::RedisResult<T>>,
) -> Result<T, String> {
    match tokio::time::timeout(ANSWER_TIMEOUT, asked).await {
        Ok(answer) => answer.map_err(|error| error.to_string()),
        Err(_) => Err(format!("no answer within {ANSWER_TIMEOUT:?}")),
    }
}

/// Subscribes to the watched users and hands other nodes' events to the rooms.
pub(super) async fn subscribe_loop(
    client: redis::Client,
    listener: Listener,
    mut interest: mpsc::UnboundedReceiver<Interest>,
    healthy: Arc<AtomicBool>,
) {
    let mut watched: HashSet<i64> = HashSet::new();
    let mut backoff = MIN_BACKOFF;
    let rooms = &listener.rooms;
    loop {
        let connected = answered(client.get_async_pubsub()).await;
        confirm(rooms, absorb(&mut interest, &mut watched)).await;
        let followed = match connected {
            Ok(pubsub) => follow_everyone(pubsub, &listener, &watched).await,
            Err(error) => Err(error),
        };
        let (mut sink, mut stream) = match followed {
            Ok(following) => following,
            Err(error) => {
                healthy.store(false, Ordering::Relaxed);
                tracing::warn!(%error, ?backoff, "redis unavailable; local delivery continues");
                tokio::time::sleep(backoff).await;
                backoff = next_backoff(backoff);
                continue;
            }
        };
        backoff = MIN_BACKOFF;
        subscribed(&listener, &watched, &healthy).await;
        let mut heartbeat = heartbeat();
        loop {
            tokio::select! {
                message = stream.next() => match message {
                    Some(message) => {
                        let channel = message.get_channel_name();
                        listener.heard(&watched, channel, message.get_payload_bytes()).await
                    }
                    None => break,
                },
                _ = heartbeat.tick() => {
                    if !Subscriptions::answer(&mut sink).await {
                        tracing::warn!(?ANSWER_TIMEOUT, "redis did not answer a ping");
                        break;
                    }
                }
                change = interest.recv() => {
                    let Some(change) = change else { return };
                    if !follow(change, &mut interest, &mut watched, &mut sink, &listener).await {
                        break;
                    }
                }
            }
        }
        healthy.store(false, Ordering::Relaxed);
        tracing::warn!("redis subscription lost; reconnecting");
    }
}

/// `pubsub` following every watched user's channel and the lost channel,
/// split into its commands and its messages.
async fn follow_everyone(
    pubsub: redis::aio::PubSub,
    listener: &Listener,
    watched: &HashSet<i64>,
) -> Result<(redis::aio::PubSubSink, redis::aio::PubSubStream), String> {
    let (mut sink, stream) = pubsub.split();
    match Subscriptions::subscribe(&mut sink, listener.all_channels(watched)).await {
        true => Ok((sink, stream)),
        false => Err("the subscription failed or was not answered".to_owned()),
    }
}

/// Every channel is followed again: the bus is healthy, and the watched users
/// catch up from the store with anything published while it was not.
async fn subscribed(listener: &Listener, watched: &HashSet<i64>, healthy: &AtomicBool) {
    listener.metrics.bus_subscriptions.set(watched.len() as i64);
    healthy.store(true, Ordering::Relaxed);
    listener.metrics.bus_reconnects.inc();
    tracing::info!(users = watched.len(), "redis subscription ready");
    resync_all(&listener.rooms, watched).await;
}

/// Asks every watched user's sockets to catch up from the store.
async fn resync_all(rooms: &Rooms, watched: &HashSet<i64>) {
    for user in watched {
        rooms.resync(*user).await;
    }
}

/// Asks the sockets of the watched users a lost notice names (or of every
/// watched user, when it names no one) to catch up from the store.
async fn catch_up_after(rooms: &Rooms, watched: &HashSet<i64>, notice: &Envelope) {
    match named_in(notice) {
        Some(users) => {
            let ours: Vec<i64> = users.into_iter().filter(|u| watched.contains(u)).collect();
            tracing::warn!(
                users = ours.len(),
                "another node dropped bus events; catching up"
            );
            for user in ours {
                rooms.resync(user).await;
            }
        }
        None => {
            tracing::warn!("another node dropped bus events for everyone; catching up");
            resync_all(rooms, watched).await;
        }
    }
}

/// Tells user sockets that their user is followed.
async fn confirm(rooms: &Rooms, confirms: impl IntoIterator<Item = (i64, ConnId)>) {
    for (user, conn) in confirms {
        rooms.confirm(user, conn).await;
    }
}

/// Applies queued interest changes without touching Redis (while
/// disconnected); returns the user sockets to confirm at once (the catch-up
/// after the reconnect covers what they miss meanwhile).
fn absorb(
    interest: &mut mpsc::UnboundedReceiver<Interest>,
    watched: &mut HashSet<i64>,
) -> Vec<(i64, ConnId)> {
    let mut confirms = Vec::new();
    while let Ok(change) = interest.try_recv() {
        match change {
            Interest::Watch(user) => {
                watched.insert(user);
            }
            Interest::Unwatch(user) => {
                watched.remove(&user);
            }
            Interest::Confirm { user, conn } => confirms.push((user, conn)),
        }
    }
    confirms
}

/// Applies an interest change and every other one already queued (up to
/// `FOLLOW_MAX`) with one SUBSCRIBE and one UNSUBSCRIBE, so a connect storm
/// costs a round trip per batch of new users, not per user; then asks each
/// newly watched user's sockets to catch up, and tells the user sockets
/// waiting for it that the bus follows their user. False when the
/// connection failed.
async fn follow(
    first: Interest,
    interest: &mut mpsc::UnboundedReceiver<Interest>,
    watched: &mut HashSet<i64>,
    subscriptions: &mut impl Subscriptions,
    listener: &Listener,
) -> bool {
    let mut changes = vec![first];
    while changes.len() < FOLLOW_MAX {
        match interest.try_recv() {
            Ok(change) => changes.push(change),
            Err(_) => break,
        }
    }
    let mut confirms: HashMap<i64, Vec<ConnId>> = HashMap::new();
    for change in &changes {
        if let Interest::Confirm { user, conn } = change {
            confirms.entry(*user).or_default().push(*conn);
        }
    }
    let net = NetInterest::of(changes, watched);
    let applied = (net.subscribe.is_empty()
        || subscriptions
            .subscribe(listener.channels(&net.subscribe))
            .await)
        && (net.unsubscribe.is_empty()
            || subscriptions
                .unsubscribe(listener.channels(&net.unsubscribe))
                .await);
    if !applied {
        // As while disconnected (see `absorb`): the user sockets waiting
        // send `ready` now, and the catch-up after the reconnect covers what
        // they miss meanwhile.
        confirm(&listener.rooms, each_socket(confirms)).await;
        return false;
    }
    listener.metrics.bus_subscriptions.set(watched.len() as i64);
    // Events published before the subscription took effect are in the
    // store; user sockets send `ready` now: from here every event reaches
    // them.
    for user in net.resync {
        let followed = confirms.remove(&user).unwrap_or_default();
        listener.rooms.resync_confirming(user, followed).await;
    }
    confirm(&listener.rooms, each_socket(confirms)).await;
    true
}

/// Each (user, socket) of sockets grouped by user.
fn each_socket(by_user: HashMap<i64, Vec<ConnId>>) -> impl Iterator<Item = (i64, ConnId)> {
    by_user
        .into_iter()
        .flat_map(|(user, conns)| conns.into_iter().map(move |conn| (user, conn)))
}

/// What a run of interest changes amounts to, each user's last change winning.
#[derive(Debug, Default, PartialEq, Eq)]
struct NetInterest {
    subscribe: Vec<i64>,
    unsubscribe: Vec<i64>,
    /// Every user whose last change was a watch: their room is new, and may
    /// have read where their chats stand before the subscription took effect.
    resync: Vec<i64>,
}

impl NetInterest {
    /// Applies `changes` to `watched` and says what Redis must be told.
    fn of(changes: Vec<Interest>, watched: &mut HashSet<i64>) -> Self {
        let mut last: Vec<(i64, bool)> = Vec::with_capacity(changes.len());
        let mut seen = HashSet::with_capacity(changes.len());
        for change in changes.into_iter().rev() {
            let (user, watch) = match change {
                Interest::Watch(user) => (user, true),
                Interest::Unwatch(user) => (user, false),
                Interest::Confirm { .. } => continue,
            };
            if seen.insert(user) {
                last.push((user, watch));
            }
        }
        let mut net = NetInterest::default();
        for (user, watch) in last.into_iter().rev() {
            if watch {
                if watched.insert(user) {
                    net.subscribe.push(user);
                }
                net.resync.push(user);
            } else if watched.remove(&user) {
                net.unsubscribe.push(user);
            }
        }
        net
    }
}

/// Another node's events: deliver them, in order, to the local sockets of the
/// channel's user, each one a node of this deployment signed for that user.
/// A signed record this node cannot read then sends those sockets to the
/// store (see [`super::wire`]), after the events that came with it.
async fn deliver(listener: &Listener, channel: &str, payload: &[u8]) {
    let Some(user) = user_of(&listener.prefix, channel) else {
        return;
    };
    let mut events = Vec::new();
    let mut unreadable = false;
    for received in listener.wire.decode(user, payload) {
        match received {
            Received::Event(event) => events.push((user, event.for_user(user))),
            Received::Own | Received::Droppable => {}
            Received::Unreadable => unreadable = true,
            refused @ (Received::Unsigned | Received::WrongUser) => {
                listener.metrics.bus_refused.inc();
                tracing::warn!(channel, ?refused, "bus event refused");
            }
        }
    }
    if !events.is_empty() {
        listener.metrics.bus_received.inc_by(events.len() as u64);
        listener.rooms.deliver(events).await
    }
    if unreadable {
        listener.metrics.bus_unreadable.inc();
        tracing::warn!(channel, "a bus event this node cannot read; catching up");
        listener.rooms.resync(user).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use Interest::{Unwatch, Watch};

    #[test]
    fn a_run_of_changes_comes_down_to_each_chats_last() {
        let mut watched: HashSet<i64> = [1, 2].into_iter().collect();
        let changes = vec![
            Watch(3),
            Unwatch(1),
            Watch(4),
            Unwatch(4),
            Watch(5),
            Watch(1),
        ];
        let net = NetInterest::of(changes, &mut watched);
        assert_eq!(
            net,
            NetInterest {
                subscribe: vec![3, 5],
                unsubscribe: vec![],
                resync: vec![3, 5, 1],
            },
            "1 left and rejoined: still subscribed, but their room is new"
        );
        assert_eq!(watched, [1, 2, 3, 5].into_iter().collect());

        let net = NetInterest::of(vec![Unwatch(2), Unwatch(9)], &mut watched);
        assert_eq!(net.unsubscribe, vec![2], "9 was never watched");
        assert!(net.subscribe.is_empty() && net.resync.is_empty());
        assert_eq!(watched, [1, 3, 5].into_iter().collect());
    }
}
