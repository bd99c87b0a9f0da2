//! The cluster subscriber: `SSUBSCRIBE` per slot on a connection of its own,
//! every channel again (and a catch-up) on a fresh connection once the
//! cluster has settled after a disconnection.

use super::super::slots::{self, SlotMap};
use super::super::{absorb, confirm, follow, subscribed, Listener, Subscriptions};
use super::{next_backoff, seed_host, subscriber, MIN_BACKOFF};
use crate::delivery::bus::Interest;
use futures_util::future::join_all;
use redis::cluster_async::ClusterConnection;
use redis::{ConnectionAddr, ConnectionInfo, IntoConnectionInfo, PushInfo, PushKind, Value};
use std::collections::HashSet;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::mpsc;

/// SSUBSCRIBE and SUNSUBSCRIBE, one command per slot, all at once.
struct ShardedSubscriptions(ClusterConnection);

impl ShardedSubscriptions {
    async fn per_slot(&self, command: &str, channels: Vec<String>) -> bool {
        let groups = slots::by_slot(channels.into_iter().map(|channel| (channel, ())));
        let commands = groups.into_values().map(|group| {
            let mut connection = self.0.clone();
            let mut command = redis::cmd(command);
            for (channel, ()) in group {
                command.arg(channel);
            }
            async move { command.exec_async(&mut connection).await.is_ok() }
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
    urls: Vec<String>,
    listener: Listener,
    mut interest: mpsc::UnboundedReceiver<Interest>,
    healthy: Arc<AtomicBool>,
) {
    let mut watched: HashSet<i64> = HashSet::new();
    let mut backoff = MIN_BACKOFF;
    loop {
        confirm(&listener.rooms, absorb(&mut interest, &mut watched)).await;
        let Some((mut subscriptions, mut pushes)) = follow_all(&urls, &listener, &watched).await
        else {
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
                change = interest.recv() => {
                    let Some(change) = change else { return };
                    if !follow(change, &mut interest, &mut watched, &mut subscriptions, &listener).await {
                        break;
                    }
                }
            }
        }
        healthy.store(false, Ordering::Relaxed);
        tracing::warn!("redis cluster subscription lost; subscribing again");
    }
}

/// A fresh connection to a settled cluster, following every channel; none
/// while the cluster is not settled or a subscription failed.
async fn follow_all(
    urls: &[String],
    listener: &Listener,
    watched: &HashSet<i64>,
) -> Option<(ShardedSubscriptions, mpsc::UnboundedReceiver<PushInfo>)> {
    if !settled(urls).await {
        return None;
    }
    let (client, pushes) = subscriber(urls).ok()?;
    let connection = client.get_async_connection().await.ok()?;
    let mut subscriptions = ShardedSubscriptions(connection);
    let channels = listener.all_channels(watched);
    Subscriptions::subscribe(&mut subscriptions, channels)
        .await
        .then_some((subscriptions, pushes))
}

/// How long a node may take to answer while the topology is checked.
const SETTLE_TIMEOUT: Duration = Duration::from_secs(1);

/// Whether the cluster has settled: a node (a configured one, the first
/// that answers) maps every slot, and every primary it names answers. While
/// a dead primary's replica is not yet promoted, the map still names the
/// dead primary, so this is false.
async fn settled(urls: &[String]) -> bool {
    for url in urls {
        let Ok(seed) = url.as_str().into_connection_info() else {
            continue;
        };
        let Some(answer) = ask(&seed, redis::cmd("CLUSTER").arg("SLOTS")).await else {
            continue;
        };
        let Some(map) = SlotMap::parse(&answer, &seed_host(&seed)) else {
            return false;
        };
        if !map.is_complete() {
            return false;
        }
        for (host, port) in &map.primaries {
            let node = seed.clone().set_addr(like(seed.addr(), host, *port));
            if ask(&node, &redis::cmd("PING")).await.is_none() {
                return false;
            }
        }
        return true;
    }
    false
}

/// `host:port`, reached the way `seed` is (over TLS or not).
fn like(seed: &ConnectionAddr, host: &str, port: u16) -> ConnectionAddr {
    match seed {
        ConnectionAddr::TcpTls {
            insecure,
            tls_params,
            ..
        } => ConnectionAddr::TcpTls {
            host: host.to_owned(),
            port,
            insecure: *insecure,
            tls_params: tls_params.clone(),
        },
        _ => ConnectionAddr::Tcp(host.to_owned(), port),
    }
}

/// One command on a connection of its own, within [`SETTLE_TIMEOUT`].
async fn ask(node: &ConnectionInfo, command: &redis::Cmd) -> Option<Value> {
    let client = redis::Client::open(node.clone()).ok()?;
    let asked = async {
        let mut connection = client.get_multiplexed_async_connection().await.ok()?;
        command.query_async::<Value>(&mut connection).await.ok()
    };
    tokio::time::timeout(SETTLE_TIMEOUT, asked).await.ok()?
}
