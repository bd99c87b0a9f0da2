//! The cluster publisher: each batch as one pipeline of `SPUBLISH` per
//! primary, the owners read from `CLUSTER SLOTS`; what failed or moved is
//! retried after the map is read again, before later batches.

use super::super::gathered;
use super::super::slots::SlotMap;
use super::{connect, next_backoff, MIN_BACKOFF};
use crate::delivery::bus::missed::Missed;
use crate::delivery::bus::{Envelope, Wire};
use crate::metrics::Metrics;
use futures_util::future::join_all;
use redis::cluster::ClusterClient;
use redis::cluster_async::ClusterConnection;
use redis::cluster_routing::{RoutingInfo, SingleNodeRoutingInfo};
use redis::Value;
use std::sync::Arc;
use tokio::sync::mpsc;

/// Publishes batches in order. Each batch goes out as one pipeline per primary,
/// all at once; the publishes that failed are retried with backoff (later
/// batches wait), so a channel's events keep their order.
pub(in crate::delivery::bus) async fn publish_loop(
    client: ClusterClient,
    seed_host: String,
    wire: Wire,
    prefix: String,
    mut queue: mpsc::Receiver<Vec<Envelope>>,
    missed: Arc<Missed>,
    metrics: Arc<Metrics>,
) {
    let mut connection = connect(&client).await;
    let mut map: Option<SlotMap> = None;
    while let Some(first) = queue.recv().await {
        let batch = gathered(first, &mut queue);
        let mut pending = spublishes(&wire, &prefix, &batch, &missed);
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

/// The `(channel, payload)` pairs of a batch: each event signed once, a
/// payload per recipient (see [`Wire::payloads`]), and the lost notice when
/// events were dropped (retried with the rest until published).
fn spublishes(wire: &Wire, prefix: &str, batch: &[Envelope], missed: &Missed) -> Vec<Publish> {
    let mut out: Vec<Publish> = wire
        .payloads(batch)
        .into_iter()
        .map(|(user, payload)| (crate::delivery::bus::channel(prefix, user), payload))
        .collect();
    if let Some(notice) = missed.take() {
        let notice = wire.encode(&notice);
        out.push((crate::delivery::bus::lost_channel(prefix), notice));
    }
    out
}

/// A `(channel, payload)` pair to publish.
type Publish = (String, Vec<u8>);

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
