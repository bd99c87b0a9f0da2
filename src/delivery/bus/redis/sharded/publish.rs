//! The cluster publisher: each batch as one pipeline of `SPUBLISH` per
//! primary, on a connection of its own to each primary the slot map names;
//! what failed or moved is retried after the map is read again, before later
//! batches.

use super::super::slots::SlotMap;
use super::super::{gathered, next_backoff, MIN_BACKOFF};
use super::{connect, Cluster, Seeds};
use crate::delivery::bus::missed::Missed;
use crate::delivery::bus::{Envelope, Wire};
use crate::metrics::Metrics;
use futures_util::future::join_all;
use redis::aio::MultiplexedConnection;
use redis::{AsyncConnectionConfig, Client};
use std::sync::Arc;
use tokio::sync::mpsc;

/// Publishes batches in order. Each batch goes out as one pipeline per primary,
/// all at once; the publishes that failed are retried with backoff (later
/// batches wait), so a channel's events keep their order.
pub(in crate::delivery::bus) async fn publish_loop(
    seeds: Seeds,
    wire: Wire,
    prefix: String,
    mut queue: mpsc::Receiver<Vec<Envelope>>,
    missed: Arc<Missed>,
    metrics: Arc<Metrics>,
) {
    let mut primaries: Option<Primaries> = None;
    let mut known: Vec<Client> = Vec::new();
    while let Some(first) = queue.recv().await {
        let batch = gathered(first, &mut queue);
        let mut pending = spublishes(&wire, &prefix, &batch, &missed);
        let mut backoff = MIN_BACKOFF;
        loop {
            if primaries.is_none() {
                primaries = seeds.cluster(&known).await.map(Primaries::new);
            }
            if let Some(primaries) = &mut primaries {
                pending = primaries.publish_round(pending).await;
            }
            if pending.is_empty() {
                break;
            }
            // Something failed or moved: read the slot map again first.
            if let Some(failed) = primaries.take() {
                known = failed.nodes.into_iter().map(|(node, _)| node).collect();
            }
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

/// The primaries of one slot map, each with its connection once opened.
struct Primaries {
    map: SlotMap,
    nodes: Vec<(Client, Option<MultiplexedConnection>)>,
}

impl Primaries {
    fn new(cluster: Cluster) -> Self {
        let nodes = cluster
            .primaries
            .into_iter()
            .map(|node| (node, None))
            .collect();
        Primaries {
            map: cluster.map,
            nodes,
        }
    }

    /// One pipeline per primary, all at once; returns the publishes that
    /// failed (their primary did not answer, or their slot is no longer its).
    async fn publish_round(&mut self, publishes: Vec<Publish>) -> Vec<Publish> {
        let mut failed = Vec::new();
        let mut per_primary: Vec<Vec<Publish>> = vec![Vec::new(); self.nodes.len()];
        for publish in publishes {
            match self.map.owner_of(publish.0.as_bytes()) {
                Some(owner) => per_primary[owner].push(publish),
                None => failed.push(publish),
            }
        }
        let rounds = per_primary
            .into_iter()
            .zip(&mut self.nodes)
            .filter(|(group, _)| !group.is_empty())
            .map(|(group, (node, connection))| spublish_on(node, connection, group));
        for refused in join_all(rounds).await {
            failed.extend(refused);
        }
        failed
    }
}

/// `group` as one pipeline on `node` (its connection opened if need be; a
/// failure drops every connection, see [`publish_loop`]): the publishes
/// that failed.
async fn spublish_on(
    node: &Client,
    connection: &mut Option<MultiplexedConnection>,
    group: Vec<Publish>,
) -> Vec<Publish> {
    if connection.is_none() {
        *connection = connect(node, AsyncConnectionConfig::new()).await.ok();
    }
    let Some(open) = connection.as_mut() else {
        return group;
    };
    let mut pipe = redis::pipe();
    pipe.ignore_errors();
    for (channel, payload) in &group {
        pipe.cmd("SPUBLISH").arg(channel).arg(&payload[..]);
    }
    match pipe.query_async::<Vec<redis::RedisResult<i64>>>(open).await {
        Ok(answers) if answers.len() == group.len() => group
            .into_iter()
            .zip(answers)
            .filter(|(_, answer)| answer.is_err())
            .map(|(publish, _)| publish)
            .collect(),
        _ => group,
    }
}
