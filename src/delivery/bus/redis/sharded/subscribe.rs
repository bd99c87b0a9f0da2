//! The cluster subscriber: a connection of its own to each primary, all
//! pushing to one channel; `SSUBSCRIBE` per slot on its owner's connection;
//! every channel again (and a catch-up) on fresh connections once the
//! cluster has settled after any of them dropped.

use super::super::slots::{self, SlotMap};
use super::super::{absorb, confirm, follow, heartbeat, next_backoff, subscribed};
use super::super::{Listener, Subscriptions};
use super::super::{ANSWER_TIMEOUT, MIN_BACKOFF};
use super::{connect, Seeds};
use crate::delivery::bus::Interest;
use futures_util::future::join_all;
use redis::aio::MultiplexedConnection;
use redis::{AsyncConnectionConfig, Client, ProtocolVersion, PushInfo, PushKind, Value};
use std::collections::HashSet;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use tokio::sync::mpsc;

/// SSUBSCRIBE and SUNSUBSCRIBE, one command per slot on the connection to
/// the slot's primary, all at once.
struct ShardedSubscriptions {
    map: SlotMap,
    /// Per primary of `map` (the same index): how it is reached (asked for
    /// the slot map next time) and the connection that follows its channels.
    primaries: Vec<Client>,
    connections: Vec<MultiplexedConnection>,
}

impl ShardedSubscriptions {
    async fn per_slot(&self, command: &str, channels: Vec<String>) -> bool {
        let groups = slots::by_slot(channels.into_iter().map(|channel| (channel, ())));
        let commands = groups.into_values().map(|group| {
            let owner = self.map.owner_of(group[0].0.as_bytes());
            let connection = owner.and_then(|owner| self.connections.get(owner).cloned());
            let mut command = redis::cmd(command);
            for (channel, ()) in group {
                command.arg(channel);
            }
            async move {
                let Some(mut connection) = connection else {
                    return false;
                };
                command.exec_async(&mut connection).await.is_ok()
            }
        });
        join_all(commands).await.into_iter().all(|ok| ok)
    }
}

impl Subscriptions for ShardedSubscriptions {
    async fn subscribe(&mut self, channels: Vec<String>) -> bool {
        self.per_slot("SSUBSCRIBE", channels).await
    }

    async fn unsubscribe(&mut self, channels: Vec<String>) -> bool {
        self.per_slot("SUNSUBSCRIBE", channels).await
    }

    /// Every primary's connection at once (each within its response
    /// timeout, [`ANSWER_TIMEOUT`]).
    async fn answer(&mut self) -> bool {
        let pings = self.connections.iter().map(|connection| {
            let mut connection = connection.clone();
            async move { redis::cmd("PING").exec_async(&mut connection).await.is_ok() }
        });
        join_all(pings).await.into_iter().all(|ok| ok)
    }
}

/// What a push from the cluster means to the subscriber.
enum Pushed {
    /// An event on a channel.
    Message { channel: String, payload: Vec<u8> },
    /// A connection closed: subscribe again.
    Lost,
    /// A channel is no longer followed: our own SUNSUBSCRIBE, or its shard
    /// dropped it (its slot moved, or its primary became a replica).
    Unsubscribed(String),
    /// Anything else (subscription confirmations).
    Other,
}

fn sort(push: PushInfo) -> Pushed {
    let mut data = push.data.into_iter();
    let text = |value: Option<Value>| match value {
        Some(Value::BulkString(bytes)) => Some(bytes),
        _ => None,
    };
    let channel = text(data.next()).map(|name| String::from_utf8_lossy(&name).into_owned());
    match (push.kind, channel) {
        (PushKind::SMessage, Some(channel)) => match text(data.next()) {
            Some(payload) => Pushed::Message { channel, payload },
            None => Pushed::Other,
        },
        (PushKind::SUnsubscribe, Some(channel)) => Pushed::Unsubscribed(channel),
        (PushKind::Disconnection, _) => Pushed::Lost,
        _ => Pushed::Other,
    }
}

/// Follows the watched users' channels on their shards and hands other
/// nodes' events to the rooms. Every (re)subscription of all channels is
/// followed by a catch-up from the store.
pub(in crate::delivery::bus) async fn subscribe_loop(
    seeds: Seeds,
    listener: Listener,
    mut interest: mpsc::UnboundedReceiver<Interest>,
    healthy: Arc<AtomicBool>,
) {
    let mut watched: HashSet<i64> = HashSet::new();
    let mut backoff = MIN_BACKOFF;
    let mut known: Vec<Client> = Vec::new();
    loop {
        confirm(&listener.rooms, absorb(&mut interest, &mut watched)).await;
        let followed = follow_all(&seeds, &known, &listener, &watched).await;
        let Some((mut subscriptions, mut pushes)) = followed else {
            healthy.store(false, Ordering::Relaxed);
            tracing::warn!(
                ?backoff,
                "redis cluster not settled or not answering; retrying"
            );
            tokio::time::sleep(backoff).await;
            backoff = next_backoff(backoff);
            continue;
        };
        backoff = MIN_BACKOFF;
        subscribed(&listener, &watched, &healthy).await;
        let mut heartbeat = heartbeat();
        loop {
            tokio::select! {
                push = pushes.recv() => match push.map(sort) {
                    Some(Pushed::Message { channel, payload }) => {
                        listener.heard(&watched, &channel, &payload).await
                    }
                    Some(Pushed::Unsubscribed(channel)) => {
                        if listener.still_wanted(&watched, &channel) {
                            break;
                        }
                    }
                    Some(Pushed::Lost) | None => break,
                    Some(Pushed::Other) => {}
                },
                _ = heartbeat.tick() => {
                    if !Subscriptions::answer(&mut subscriptions).await {
                        tracing::warn!(?ANSWER_TIMEOUT, "a redis cluster primary did not answer a ping");
                        break;
                    }
                }
                change = interest.recv() => {
                    let Some(change) = change else { return };
                    if !follow(change, &mut interest, &mut watched, &mut subscriptions, &listener).await {
                        break;
                    }
                }
            }
        }
        known = subscriptions.primaries;
        healthy.store(false, Ordering::Relaxed);
        tracing::warn!("redis cluster subscription lost; subscribing again");
    }
}

/// Fresh connections to the primaries of a settled cluster, following
/// every channel; none while the cluster is not settled (some slot without a
/// primary, some primary refusing a connection) or a subscription failed.
async fn follow_all(
    seeds: &Seeds,
    known: &[Client],
    listener: &Listener,
    watched: &HashSet<i64>,
) -> Option<(ShardedSubscriptions, mpsc::UnboundedReceiver<PushInfo>)> {
    let cluster = seeds.cluster(known).await?;
    let (pushes, received) = mpsc::unbounded_channel();
    let opening = cluster.primaries.iter().map(|node| {
        let config = AsyncConnectionConfig::new()
            .set_push_sender(pushes.clone())
            .set_response_timeout(Some(ANSWER_TIMEOUT));
        let resp3 = node.get_connection_info().clone();
        let settings = resp3.redis_settings().clone();
        let resp3 = resp3.set_redis_settings(settings.set_protocol(ProtocolVersion::RESP3));
        async move {
            let node = Client::open(resp3).ok()?;
            connect(&node, config).await.ok()
        }
    });
    let connections = join_all(opening)
        .await
        .into_iter()
        .collect::<Option<Vec<_>>>()?;
    let mut subscriptions = ShardedSubscriptions {
        map: cluster.map,
        primaries: cluster.primaries,
        connections,
    };
    let channels = listener.all_channels(watched);
    Subscriptions::subscribe(&mut subscriptions, channels)
        .await
        .then_some((subscriptions, received))
}
