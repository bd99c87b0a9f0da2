//! The cluster publisher: each batch as one pipeline of `SPUBLISH` per
//! primary, on a connection of its own to each primary the slot map names;
//! what a primary refused (its slot moved, or no connection opened) is
//! retried after the map is read again, before later batches. A pipeline a
//! primary never answered may have published any part of itself: it is not
//! sent again, its recipients catch up from the store (as in [`super::super`]).

use super::super::publish::answering;
use super::super::slots::SlotMap;
use super::super::{gathered, next_backoff, MIN_BACKOFF};
use super::{connect, Cluster, Seeds};
use crate::delivery::bus::missed::Missed;
use crate::delivery::bus::{lost_channel, usage_publishes, user_of, Envelope, Wire};
use crate::metrics::Metrics;
use futures_util::future::join_all;
use redis::aio::MultiplexedConnection;
use redis::Client;
use std::sync::Arc;
use tokio::sync::mpsc;

/// Publishes batches in order. Each batch goes out as one pipeline per primary,
/// all at once; the publishes refused are retried with backoff (later
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
        // Whether every publish of the batch was confirmed (what
        // `bus_published` counts, as on one Redis).
        let mut whole = true;
        loop {
            if primaries.is_none() {
                primaries = seeds.cluster(&known).await.map(Primaries::new);
            }
            let unanswered = match &mut primaries {
                Some(primaries) => {
                    let round = primaries.publish_round(pending).await;
                    pending = round.refused;
                    let unanswered = !round.unconfirmed.is_empty();
                    pending.extend(unconfirmed(&prefix, round.unconfirmed, &missed, &metrics));
                    unanswered
                }
                None => false,
            };
            if unanswered {
                whole = false;
                // The users just noted hear of it now, not with a later batch.
                pending.extend(notice(&wire, &prefix, &missed));
            }
            if unanswered || !pending.is_empty() {
                // Something failed or moved: read the slot map again first.
                if let Some(failed) = primaries.take() {
                    known = failed.nodes.into_iter().map(|(node, _)| node).collect();
                }
            }
            if pending.is_empty() {
                break;
            }
            tracing::warn!(
                events = pending.len(),
                ?backoff,
                "redis cluster publish failed; retrying"
            );
            tokio::time::sleep(backoff).await;
            backoff = next_backoff(backoff);
        }
        if whole {
            metrics.bus_published.inc_by(batch.len() as u64);
        }
    }
}

/// Notes the users of the publishes no primary confirmed, for the next lost
/// notice; returns the lost notices among them, to publish again (a notice
/// heard twice costs a catch-up, never a duplicate). A usage report is not
/// sent again: heard twice, it would take its tokens twice.
fn unconfirmed(
    prefix: &str,
    publishes: Vec<Publish>,
    missed: &Missed,
    metrics: &Metrics,
) -> Vec<Publish> {
    let mut users = Vec::new();
    let mut notices = Vec::new();
    for publish in publishes {
        match user_of(prefix, &publish.0) {
            Some(user) => users.push(user),
            None if publish.0 == lost_channel(prefix) => notices.push(publish),
            None => {}
        }
    }
    if !users.is_empty() {
        tracing::warn!(
            publishes = users.len(),
            "a redis cluster primary did not confirm a publish; its users catch up from the store"
        );
        metrics.bus_unconfirmed.inc_by(users.len() as u64);
        missed.note_users(users);
    }
    notices
}

/// The `(channel, payload)` pairs of a batch: each event signed once, a
/// payload per recipient (see [`Wire::payloads`]), its usage reports, and
/// the lost notice when events were dropped (retried with the rest until
/// published).
fn spublishes(wire: &Wire, prefix: &str, batch: &[Envelope], missed: &Missed) -> Vec<Publish> {
    let mut out: Vec<Publish> = wire
        .payloads(batch)
        .into_iter()
        .map(|(user, payload)| (crate::delivery::bus::channel(prefix, user), payload))
        .collect();
    out.extend(usage_publishes(wire, prefix, batch));
    out.extend(notice(wire, prefix, missed));
    out
}

/// The lost notice of what was noted since the last one, if anything was.
fn notice(wire: &Wire, prefix: &str, missed: &Missed) -> Option<Publish> {
    let notice = wire.encode(&missed.take()?);
    Some((lost_channel(prefix), notice))
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

    /// One pipeline per primary, all at once: what each primary refused (its
    /// slot is no longer its, or it took no connection) and what it never
    /// answered.
    async fn publish_round(&mut self, publishes: Vec<Publish>) -> Round {
        let mut round = Round::default();
        let mut per_primary: Vec<Vec<Publish>> = vec![Vec::new(); self.nodes.len()];
        for publish in publishes {
            match self.map.owner_of(publish.0.as_bytes()) {
                Some(owner) => per_primary[owner].push(publish),
                None => round.refused.push(publish),
            }
        }
        let rounds = per_primary
            .into_iter()
            .zip(&mut self.nodes)
            .filter(|(group, _)| !group.is_empty())
            .map(|(group, (node, connection))| spublish_on(node, connection, group));
        for answered in join_all(rounds).await {
            round.refused.extend(answered.refused);
            round.unconfirmed.extend(answered.unconfirmed);
        }
        round
    }
}

/// What became of publishes that were not published for certain.
#[derive(Default)]
struct Round {
    /// Not published: safe to send again.
    refused: Vec<Publish>,
    /// Sent, and never answered: perhaps published.
    unconfirmed: Vec<Publish>,
}

/// `group` as one pipeline on `node` (its connection opened if need be; a
/// failure drops every connection, see [`publish_loop`]).
async fn spublish_on(
    node: &Client,
    connection: &mut Option<MultiplexedConnection>,
    group: Vec<Publish>,
) -> Round {
    if connection.is_none() {
        *connection = connect(node, answering()).await.ok();
    }
    let Some(open) = connection.as_mut() else {
        return Round {
            refused: group,
            unconfirmed: Vec::new(),
        };
    };
    let mut pipe = redis::pipe();
    pipe.ignore_errors();
    for (channel, payload) in &group {
        pipe.cmd("SPUBLISH").arg(channel).arg(&payload[..]);
    }
    match pipe.query_async::<Vec<redis::RedisResult<i64>>>(open).await {
        // Each command answered: an error (`MOVED`, `CLUSTERDOWN`) is a
        // publish not made.
        Ok(answers) if answers.len() == group.len() => Round {
            refused: group
                .into_iter()
                .zip(answers)
                .filter(|(_, answer)| answer.is_err())
                .map(|(publish, _)| publish)
                .collect(),
            unconfirmed: Vec::new(),
        },
        _ => Round {
            refused: Vec::new(),
            unconfirmed: group,
        },
    }
}
