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

mod publish;
mod subscribe;

pub(in crate::delivery::bus) use publish::publish_loop;
pub(in crate::delivery::bus) use subscribe::subscribe_loop;

use super::{next_backoff, MIN_BACKOFF};
use redis::cluster::{ClusterClient, ClusterClientBuilder};
use redis::cluster_async::ClusterConnection;
use redis::{ConnectionAddr, ConnectionInfo, IntoConnectionInfo, PushInfo};
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

fn seed_host(seed: &ConnectionInfo) -> String {
    match seed.addr() {
        ConnectionAddr::Tcp(host, _) => host.clone(),
        ConnectionAddr::TcpTls { host, .. } => host.clone(),
        _ => "127.0.0.1".into(),
    }
}
