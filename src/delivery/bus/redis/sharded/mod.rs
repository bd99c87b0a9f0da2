//! A Redis Cluster: sharded pub/sub. A channel lives on the shard that owns
//! its slot (CRC16 of the whole name, so users' channels spread evenly over
//! the 16,384 slots), and `SPUBLISH` reaches only that shard, where classic
//! `PUBLISH` copies every event to every node of the cluster. A batch of
//! publishes goes out as one pipeline per primary (each command checked on
//! its own: a slot that moved is answered `MOVED` and retried after the slot
//! map is read again); subscriptions are batched per slot (a command may not
//! span slots), and the batches of one round go out together.
//!
//! The topology is ours to follow: the slot map is asked of the primaries
//! known from the last map, then of the configured nodes (`CLUSTER SLOTS`),
//! and each primary it names gets a connection of ours, reached like the
//! node that named it (the configured node's scheme, password and TLS
//! files, see [`super::tls`]). The subscriber does not trust
//! a subscription to survive a topology change: when any primary's
//! connection drops (it died) or a shard takes its channels away
//! (`SUNSUBSCRIBE` from the server), it waits until the cluster has settled
//! (every slot has a primary, and every primary takes a connection), opens
//! fresh connections, subscribes to every channel again, and every watched
//! user catches up from the store, as after a single Redis's reconnect.

mod publish;
mod subscribe;

pub(in crate::delivery::bus) use publish::publish_loop;
pub(in crate::delivery::bus) use subscribe::subscribe_loop;

use super::slots::SlotMap;
use super::tls::client_for;
use redis::aio::MultiplexedConnection;
use redis::{AsyncConnectionConfig, Client, ConnectionAddr, Value};
use std::sync::Arc;
use std::time::Duration;

/// How long a node may take to take a connection, or to answer while the
/// topology is read.
const NODE_TIMEOUT: Duration = Duration::from_secs(1);

/// The configured nodes of the cluster (`REDIS_CLUSTER_URLS`), each a client
/// with its TLS files: where the slot map is asked, and the template for
/// reaching each node it names.
#[derive(Clone)]
pub(in crate::delivery::bus) struct Seeds(Arc<[Client]>);

/// The cluster as one configured node sees it: which primary owns each
/// slot, and a client for each primary (the same index as in the map).
pub(super) struct Cluster {
    pub map: SlotMap,
    pub primaries: Vec<Client>,
}

impl Seeds {
    /// Clients for the configured nodes; nothing connects yet. The error
    /// names what is wrong with which setting.
    pub(in crate::delivery::bus) fn open(urls: &[String]) -> Result<Self, String> {
        if urls.is_empty() {
            return Err("REDIS_CLUSTER_URLS names no node".into());
        }
        let clients = urls
            .iter()
            .map(|url| client_for("REDIS_CLUSTER_URLS", url))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Seeds(clients.into()))
    }

    /// The slot map of the first node that answers, asked of the primaries
    /// of the map before (`known`, so a cluster whose configured nodes have
    /// all been replaced is still found) and then of the configured nodes,
    /// with a client for each primary it names; `None` while none answers or
    /// a slot has no primary (a dead primary's replica not yet promoted is
    /// still named, and found out when its connection is refused).
    async fn cluster(&self, known: &[Client]) -> Option<Cluster> {
        for node in known.iter().chain(self.0.iter()) {
            let Some(answer) = ask(node, redis::cmd("CLUSTER").arg("SLOTS")).await else {
                continue;
            };
            let map = SlotMap::parse(&answer, &host_of(node)).filter(SlotMap::is_complete)?;
            let primaries = map
                .primaries
                .iter()
                .map(|(host, port)| reached_like(node, host, *port))
                .collect::<Option<Vec<_>>>()?;
            return Some(Cluster { map, primaries });
        }
        None
    }
}

/// A connection to one node, within [`NODE_TIMEOUT`]; pushes (RESP3) go to
/// `config`'s sender, if it has one.
async fn connect(
    node: &Client,
    config: AsyncConnectionConfig,
) -> redis::RedisResult<MultiplexedConnection> {
    let config = config.set_connection_timeout(Some(NODE_TIMEOUT));
    node.get_multiplexed_async_connection_with_config(&config)
        .await
}

/// One command on a connection of its own, within [`NODE_TIMEOUT`].
async fn ask(node: &Client, command: &redis::Cmd) -> Option<Value> {
    let asked = async {
        let mut connection = connect(node, AsyncConnectionConfig::new()).await.ok()?;
        command.query_async::<Value>(&mut connection).await.ok()
    };
    tokio::time::timeout(NODE_TIMEOUT, asked).await.ok()?
}

/// The node at `host:port`, reached the way `seed` is: over TLS or not,
/// with its certificates, password and protocol.
fn reached_like(seed: &Client, host: &str, port: u16) -> Option<Client> {
    let info = seed.get_connection_info().clone();
    let addr = match info.addr() {
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
    };
    Client::open(info.set_addr(addr)).ok()
}

/// The host `seed` reaches: where a primary announced without a host lives.
fn host_of(seed: &Client) -> String {
    match seed.get_connection_info().addr() {
        ConnectionAddr::Tcp(host, _) => host.clone(),
        ConnectionAddr::TcpTls { host, .. } => host.clone(),
        _ => "127.0.0.1".into(),
    }
}
