//! A Redis Cluster: sharded pub/sub. A channel lives on the shard that owns
//! its slot (CRC16 of the whole name, so users' channels spread evenly over
//! the 16,384 slots), and `SPUBLISH` reaches only that shard, where classic
//! `PUBLISH` copies every event to every node of the cluster. A batch of
//! publishes goes out as one pipeline per primary (each command checked on
//! its own: a slot that moved is answered `MOVED` and retried after the slot
//! map is read again); subscriptions are batched per slot (a command may not
//! span slots), and the batches of one round go out together.
//!
//! redis-rs routes each command to its slot's primary and follows the
//! cluster's topology. This subscriber does not trust a subscription to
//! survive a topology change (redis-rs resubscribes on its own, but a
//! subscription made during a failover was seen to vanish when the promoted
//! replica's connection was replaced). On a disconnection (a shard's primary
//! died) or a shard taking its channels away (`SUNSUBSCRIBE` from the
//! server), it waits until the cluster has settled (every slot's primary
//! answers), opens a fresh connection, subscribes to every channel again,
//! and every watched user catches up from the store, as after a single
//! Redis's reconnect.

use super::slots::{self, SlotMap};
use super::{absorb, confirm, follow, next_backoff, subscribed, Listener, Subscriptions};
use super::{MIN_BACKOFF, PIPELINE_MAX};
use crate::delivery::bus::{Envelope, Interest, Wire};
use crate::metrics::Metrics;
use futures_util::future::join_all;
use redis::cluster::{ClusterClient, ClusterClientBuilder};
use redis::cluster_async::ClusterConnection;
use redis::cluster_routing::{RoutingInfo, SingleNodeRoutingInfo};
use redis::{ConnectionAddr, ConnectionInfo, IntoConnectionInfo, PushInfo, PushKind, Value};
use std::collections::HashSet;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::mpsc;

/// The publisher's client, and the host of the first configured node (where
/// a primary the cluster announces without a host lives).
pub(in crate::delivery::bus) fn publisher(
    urls: &[String],
) -> Result<(ClusterClient, String), String> {
    let invalid = |e: redis::RedisError| format!("invalid REDIS_CLUSTER_URLS: {e}");
    let client = ClusterClientBuilder::new(urls.to_vec())
        .build()
        .map_err(invalid)?;
    let first = urls.first().ok_or("REDIS_CLUSTER_URLS names no node")?;
    let seed = first.as_str().into_connection_info().map_err(invalid)?;
    Ok((client, seed_host(&seed)))
}

/// A subscriber's client, with the channel its pushes (messages,
/// subscription changes, disconnections) arrive on.
fn subscriber(
    urls: &[String],
) -> redis::RedisResult<(ClusterClient, mpsc::UnboundedReceiver<PushInfo>)> {
    let (pushes, received) = mpsc::unbounded_channel();
    let client = ClusterClientBuilder::new(urls.to_vec())
        .use_protocol(redis::ProtocolVersion::RESP3)
        .push_sender(pushes)
        .build()?;
    Ok((client, received))
}

/// A connection, retried with backoff until the cluster answers.
async fn connect(client: &ClusterClient) -> ClusterConnection {
    let mut backoff = MIN_BACKOFF;
    loop {
        match client.get_async_connection().await {
            Ok(connection) => return connection,
            Err(error) => {
                tracing::warn!(%error, ?backoff, "redis cluster unavailable; retrying");
                tokio::time::sleep(backoff).await;
                backoff = next_backoff(backoff);
            }
        }
    }
}

/// Publishes batches in order. Each batch goes out as one pipeline per slot,
/// all at once; the slots that failed are retried with backoff (later
/// batches wait), so a channel's events keep their order.
pub(in crate::delivery::bus) async fn publish_loop(
    client: ClusterClient,
    seed_host: String,
    wire: Wire,
    prefix: String,
    mut queue: mpsc::Receiver<Vec<Envelope>>,
    dropped: Arc<AtomicBool>,
    metrics: Arc<Metrics>,
) {
    let mut connection = connect(&client).await;
    let mut map: Option<SlotMap> = None;
    while let Some(mut batch) = queue.recv().await {
        while batch.len() < PIPELINE_MAX {
            match queue.try_recv() {
                Ok(more) => batch.extend(more),
                Err(_) => break,
            }
        }
        let mut pending = spublishes(&wire, &prefix, &batch, &dropped);
        let mut backoff = MIN_BACKOFF;
        loop {
            if map.is_none() {
                map = read_slot_map(&mut connection, &seed_host).await;
            }
            if let Some(owners) = &map {
                pending = publish_round(&connection, owners, pending).await;
            }
            if pending.is_empty() {
                break;
            }
            // Something failed or moved: read the slot map again first.
            map = None;
            tracing::warn!(
                events = pending.len(),
                ?backoff,
                "redis cluster publish failed; retrying"
            );
            tokio::time::sleep(backoff).await;
            backoff = next_backoff(backoff);
        }
        metrics.bus_published.inc_by(batch.len() as u64);
    }
}

/// Which primary owns each slot, asked of any node; `None` while the
/// cluster does not answer or some slot has no owner.
async fn read_slot_map(connection: &mut ClusterConnection, default_host: &str) -> Option<SlotMap> {
    let mut command = redis::cmd("CLUSTER");
    command.arg("SLOTS");
    let routing = RoutingInfo::SingleNode(SingleNodeRoutingInfo::Random);
    let answer = connection.route_command(command, routing).await.ok()?;
    SlotMap::parse(&answer, default_host).filter(SlotMap::is_complete)
}

/// The `(channel, payload)` pairs of a batch: each event signed once and sent
/// to each recipient's channel, and the lost notice when events were dropped.
fn spublishes(
    wire: &Wire,
    prefix: &str,
    batch: &[Envelope],
    dropped: &AtomicBool,
) -> Vec<(String, Arc<Vec<u8>>)> {
    let mut out = Vec::with_capacity(batch.len() * 2 + 1);
    for event in batch {
        let payload = Arc::new(wire.encode(event));
        for user in event.recipients() {
            out.push((crate::delivery::bus::channel(prefix, user), payload.clone()));
        }
    }
    if dropped.swap(false, Ordering::Relaxed) {
        let notice = Arc::new(wire.encode(&Envelope::lost()));
        out.push((crate::delivery::bus::lost_channel(prefix), notice));
    }
    out
}

/// A `(channel, payload)` pair to publish.
type Publish = (String, Arc<Vec<u8>>);

/// One pipeline per primary, all at once; returns the publishes that failed
/// (their primary did not answer, or their slot is no longer its).
async fn publish_round(
    connection: &ClusterConnection,
    map: &SlotMap,
    publishes: Vec<Publish>,
) -> Vec<Publish> {
    let mut failed = Vec::new();
    let mut per_primary: Vec<Vec<Publish>> = vec![Vec::new(); map.primaries.len()];
    for publish in publishes {
        match map.owner_of(publish.0.as_bytes()) {
            Some(owner) => per_primary[owner].push(publish),
            None => failed.push(publish),
        }
    }
    let rounds = per_primary
        .into_iter()
        .zip(&map.primaries)
        .filter(|(group, _)| !group.is_empty())
        .map(|(group, (host, port))| {
            let mut connection = connection.clone();
            let address = SingleNodeRoutingInfo::ByAddress {
                host: host.clone(),
                port: *port,
            };
            async move {
                let mut pipe = redis::pipe();
                for (channel, payload) in &group {
                    pipe.cmd("SPUBLISH").arg(channel).arg(&payload[..]);
                }
                let answers = connection
                    .route_pipeline(pipe, 0, group.len(), address)
                    .await;
                match answers {
                    Ok(answers) if answers.len() == group.len() => group
                        .into_iter()
                        .zip(answers)
                        .filter(|(_, answer)| matches!(answer, Value::ServerError(_)))
                        .map(|(publish, _)| publish)
                        .collect(),
                    _ => group,
                }
            }
        });
    for refused in join_all(rounds).await {
        failed.extend(refused);
    }
    failed
}

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
            let node = seed
                .clone()
                .set_addr(ConnectionAddr::Tcp(host.clone(), *port));
            if ask(&node, &redis::cmd("PING")).await.is_none() {
                return false;
            }
        }
        return true;
    }
    false
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

fn seed_host(seed: &ConnectionInfo) -> String {
    match seed.addr() {
        ConnectionAddr::Tcp(host, _) => host.clone(),
        ConnectionAddr::TcpTls { host, .. } => host.clone(),
        _ => "127.0.0.1".into(),
    }
}
