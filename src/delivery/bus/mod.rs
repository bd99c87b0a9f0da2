//! The bus between nodes. Every event a node's sockets could see on another
//! node is published there: committed messages, new chats, read markers and
//! typing. Channels are per user (`{prefix}:user:{id}`): an event goes to the
//! channel of each user it is for (a message: both participants; typing: the
//! other one), and each node listens only to the users that have sockets on
//! it. So a node's subscriptions grow with its connected users, not with their
//! chats, and a chat created later needs no new subscription. The event is
//! encoded and signed once whatever the number of channels it goes to; a
//! group chat would publish to each member's channel (or, for large groups,
//! to a chat channel that nodes follow while a member is connected) with the
//! same wire form.
//!
//! The bus is a wake-up path, never the source of truth: sessions order by `seq`
//! and fill any gap from the store, and whenever the bus may have missed
//! something (a new subscription, a reconnect) the watching sessions catch up
//! from the store (messages and chats). So a lost, late or reordered bus
//! message delays a delivery at worst; it never loses or duplicates one. With
//! no `REDIS_URL` the bus is in-process only (one node).

mod missed;
mod redis;
mod wire;

use missed::Missed;
pub use wire::{Received, Wire, PURPOSE as WIRE_KEY_PURPOSE};

use crate::config::RedisBus;
use crate::delivery::rooms::{peer_of, Audience, Interest, Published, Rooms, UserEvent};
use crate::metrics::Metrics;
use crate::ratelimit::shared::SharedLimits;
use bytes::Bytes;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use tokio::sync::mpsc;

/// What kind of event crosses the bus.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// A committed message (`seq` set).
    Message,
    /// A new chat.
    Chat,
    /// A read marker moved.
    Read,
    /// Someone is typing.
    Typing,
    /// A node dropped events (its publish queue was full): the sockets of
    /// the users it names catch up from the store, as after a reconnect
    /// (see [`missed`]).
    Lost,
    /// What a node's shared rate limits let through (see
    /// [`crate::ratelimit::shared`]), on the deployment's usage channel.
    Usage,
}

impl Kind {
    /// Whether an event of this kind may be dropped with no one catching
    /// up: typing (DESIGN §4, and no store holds it) and usage reports.
    fn may_be_dropped(self) -> bool {
        matches!(self, Kind::Typing | Kind::Usage)
    }
}

/// An event on its way to the other nodes: for `audience` (the chat's
/// participants), published to the channels of `to`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Envelope {
    pub kind: Kind,
    pub chat: i64,
    /// The message's `seq`; 0 for other kinds.
    pub seq: i64,
    pub audience: Audience,
    /// The one user it is for, when it is not for the whole audience.
    pub only: Option<i64>,
    pub frame: Bytes,
}

impl Envelope {
    /// The users whose channels carry it (none for a usage report).
    pub fn recipients(&self) -> impl Iterator<Item = i64> + '_ {
        let to_users = self.kind != Kind::Usage;
        self.audience
            .iter()
            .copied()
            .filter(move |user| to_users && self.only.is_none_or(|only| only == *user))
    }

    /// A report of what this node's shared rate limits let through.
    pub fn usage(report: Vec<u8>) -> Self {
        Envelope {
            kind: Kind::Usage,
            chat: 0,
            seq: 0,
            audience: [0, 0],
            only: None,
            frame: Bytes::from(report),
        }
    }

    /// What it is for one of its recipients' sockets on this node.
    pub fn for_user(&self, user: i64) -> UserEvent {
        let (chat, frame) = (self.chat, self.frame.clone());
        match self.kind {
            Kind::Message => UserEvent::Message {
                chat,
                seq: self.seq,
                frame,
            },
            Kind::Chat => UserEvent::Chat {
                chat,
                peer: peer_of(self.audience, user),
                frame,
            },
            Kind::Read | Kind::Typing | Kind::Lost | Kind::Usage => UserEvent::Ephemeral {
                chat,
                frame,
                except: None,
            },
        }
    }
}

impl From<Published> for Envelope {
    fn from(message: Published) -> Self {
        Envelope {
            kind: Kind::Message,
            chat: message.chat,
            seq: message.seq,
            audience: message.audience,
            only: None,
            frame: message.frame,
        }
    }
}

/// Publishing side of the bus; cheap to clone.
#[derive(Clone)]
pub struct Bus {
    /// `None` in-process: nothing leaves the node.
    outgoing: Option<Outgoing>,
    healthy: Arc<AtomicBool>,
}

/// The way to the publisher, and what a full queue costs.
#[derive(Clone)]
struct Outgoing {
    queue: mpsc::Sender<Vec<Envelope>>,
    /// Whose events were dropped for a full queue (see [`Kind::Lost`]).
    missed: Arc<Missed>,
    metrics: Arc<Metrics>,
}

/// Batches of messages waiting to be published while Redis is slow or down.
const PUBLISH_QUEUE: usize = 4096;

impl Bus {
    /// A bus for one node: nothing leaves the process.
    pub fn local() -> Self {
        Bus {
            outgoing: None,
            healthy: Arc::new(AtomicBool::new(true)),
        }
    }

    /// A bus over one Redis or a Redis Cluster: spawns the publisher and the
    /// subscriber. `interest` carries the room map's watch/unwatch notices
    /// (users); `limits` takes the other nodes' usage reports.
    pub fn redis(
        target: &RedisBus,
        prefix: &str,
        secret: &str,
        rooms: Rooms,
        limits: Arc<SharedLimits>,
        interest: mpsc::UnboundedReceiver<Interest>,
        metrics: Arc<Metrics>,
    ) -> Result<Self, String> {
        let wire = Wire::new(secret, crate::digest::random_hex(8));
        let healthy = Arc::new(AtomicBool::new(false));
        let (tx, rx) = mpsc::channel(PUBLISH_QUEUE);
        let missed: Arc<Missed> = Arc::default();
        let listener = redis::Listener {
            wire: wire.clone(),
            prefix: prefix.to_owned(),
            lost_channel: lost_channel(prefix),
            usage_channel: usage_channel(prefix),
            rooms,
            limits,
            metrics: metrics.clone(),
        };
        let outgoing = Outgoing {
            queue: tx,
            missed: missed.clone(),
            metrics: metrics.clone(),
        };
        let prefix = prefix.to_owned();
        match target {
            RedisBus::Single(url) => {
                let client = redis::tls::client_for("REDIS_URL", url)?;
                let publisher =
                    redis::publish_loop(client.clone(), wire, prefix, rx, missed.clone(), metrics);
                tokio::spawn(publisher);
                tokio::spawn(redis::subscribe_loop(
                    client,
                    listener,
                    interest,
                    healthy.clone(),
                ));
            }
            RedisBus::Cluster(urls) => {
                let seeds = redis::sharded::Seeds::open(urls)?;
                let publish = redis::sharded::publish_loop(
                    seeds.clone(),
                    wire,
                    prefix,
                    rx,
                    missed.clone(),
                    metrics,
                );
                tokio::spawn(publish);
                let subscribe =
                    redis::sharded::subscribe_loop(seeds, listener, interest, healthy.clone());
                tokio::spawn(subscribe);
            }
        }
        Ok(Bus {
            outgoing: Some(outgoing),
            healthy,
        })
    }

    /// Hands a committed batch to the publisher without waiting. If the queue is
    /// full the batch is dropped: other nodes fill the gap from the store on the
    /// chat's next message or their next catch-up.
    pub fn publish(&self, batch: Vec<Published>) {
        if self.outgoing.is_some() && !batch.is_empty() {
            self.send(batch.into_iter().map(Envelope::from).collect());
        }
    }

    /// Hands one event (a new chat, a read marker, typing) to the publisher
    /// without waiting; dropped, like a batch, when the queue is full.
    pub fn publish_event(&self, event: Envelope) {
        if self.outgoing.is_some() {
            self.send(vec![event]);
        }
    }

    /// Hands a usage report to the publisher without waiting (dropped
    /// when the queue is full: the other nodes limit alone meanwhile).
    pub fn publish_usage(&self, report: Vec<u8>) {
        self.publish_event(Envelope::usage(report));
    }

    fn send(&self, events: Vec<Envelope>) {
        if let Some(outgoing) = &self.outgoing {
            if let Err(refused) = outgoing.queue.try_send(events) {
                let (mpsc::error::TrySendError::Full(events)
                | mpsc::error::TrySendError::Closed(events)) = refused;
                outgoing.missed.note(&events);
                outgoing.metrics.bus_dropped.inc_by(events.len() as u64);
                tracing::warn!("bus publish queue full; other nodes will catch up from the store");
            }
        }
    }

    /// Whether the bus is connected (always true in-process).
    pub fn is_healthy(&self) -> bool {
        self.healthy.load(Ordering::Relaxed)
    }

    pub fn is_distributed(&self) -> bool {
        self.outgoing.is_some()
    }
}

/// Channel name of a user: `{prefix}:user:{id}` (the prefix separates
/// deployments sharing one Redis).
pub fn channel(prefix: &str, user: i64) -> String {
    format!("{prefix}:user:{user}")
}

/// The deployment's channel for [`Kind::Lost`] notices.
pub fn lost_channel(prefix: &str) -> String {
    format!("{prefix}:lost")
}

/// The deployment's channel for [`Kind::Usage`] reports.
pub fn usage_channel(prefix: &str) -> String {
    format!("{prefix}:usage")
}

/// A batch's usage reports as `(channel, payload)` pairs for the usage
/// channel (each report a payload of its own).
fn usage_publishes<'a>(
    wire: &'a Wire,
    prefix: &'a str,
    batch: &'a [Envelope],
) -> impl Iterator<Item = (String, Vec<u8>)> + 'a {
    batch
        .iter()
        .filter(|event| event.kind == Kind::Usage)
        .map(move |report| (usage_channel(prefix), wire.encode(report)))
}

/// The user id of a channel name.
pub fn user_of(prefix: &str, channel: &str) -> Option<i64> {
    channel
        .strip_prefix(prefix)?
        .strip_prefix(":user:")?
        .parse()
        .ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn channel_names_round_trip() {
        assert_eq!(user_of("p", &channel("p", 7)), Some(7));
        assert_eq!(user_of("q", &channel("p", 7)), None);
        assert_eq!(user_of("p", "p:chat:1"), None);
    }

    #[test]
    fn an_event_goes_to_its_recipients_channels_as_what_each_one_gets() {
        let message = Envelope::from(Published {
            chat: 3,
            seq: 9,
            audience: [4, 5],
            frame: Bytes::from_static(b"m"),
        });
        assert_eq!(message.recipients().collect::<Vec<_>>(), vec![4, 5]);
        assert!(matches!(
            message.for_user(5),
            UserEvent::Message {
                chat: 3,
                seq: 9,
                ..
            }
        ));
        let typing = Envelope {
            kind: Kind::Typing,
            only: Some(5),
            ..message.clone()
        };
        assert_eq!(typing.recipients().collect::<Vec<_>>(), vec![5]);
        let chat = Envelope {
            kind: Kind::Chat,
            ..message
        };
        assert!(matches!(chat.for_user(5), UserEvent::Chat { peer: 4, .. }));
        assert!(matches!(chat.for_user(4), UserEvent::Chat { peer: 5, .. }));
    }

    #[test]
    fn a_usage_report_goes_to_the_usage_channel_alone_and_is_never_caught_up() {
        let report = Envelope::usage(b"s 7 3".to_vec());
        let message = Envelope::from(Published {
            chat: 3,
            seq: 9,
            audience: [4, 5],
            frame: Bytes::from_static(b"m"),
        });
        assert_eq!(report.recipients().count(), 0, "no user's channel");
        let (ours, theirs) = (Wire::new("s", "n1".into()), Wire::new("s", "n2".into()));
        let batch = [report.clone(), message];
        let reports: Vec<_> = usage_publishes(&ours, "p", &batch).collect();
        assert_eq!(reports.len(), 1);
        assert_eq!(reports[0].0, "p:usage");
        assert_eq!(
            theirs.decode(0, &reports[0].1),
            vec![Received::Event(report.clone())]
        );
        let users: Vec<i64> = ours
            .payloads(&batch)
            .into_iter()
            .map(|(user, _)| user)
            .collect();
        assert_eq!(users, vec![4, 5], "the message's recipients only");
        let missed = Missed::default();
        missed.note(&[report]);
        assert!(
            missed.take().is_none(),
            "a dropped report costs no catch-up"
        );
    }
}
