//! Nodes on a real Redis Cluster (three primaries, each with a replica,
//! started here from the installed `redis-server` and `redis-cli`): events
//! cross nodes by sharded pub/sub, each channel is followed on the one shard
//! that owns its slot, a primary killed mid-stream (its replica promoted)
//! loses, duplicates and reorders nothing, and a primary that stalls has
//! nothing published twice.

use crate::cluster::{bus_ready, counter_reaches, metric, seqs};
use crate::helpers::{fresh_database, spawn_app_on, TestApp};
use crate::ws_client::{seqs_resuming, WsClient};
use serde_json::json;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// Six `redis-server --cluster-enabled yes` processes made into a cluster by
/// `redis-cli --cluster create --cluster-replicas 1`, on free ports, with a
/// short node timeout so a failover takes seconds.
pub(crate) struct OwnRedisCluster {
    dir: std::path::PathBuf,
    nodes: Vec<(u16, Option<Child>)>,
    tls: Option<ClusterTls>,
}

/// How a cluster takes TLS connections only (clients, replication and the
/// cluster bus).
struct ClusterTls {
    /// The certificate and key every node serves and presents to the others
    /// (and redis-cli presents): the certificate is its own CA.
    cert: String,
    key: String,
    /// The CA of the clients' certificates, when the nodes ask for them.
    clients_ca: Option<String>,
}

impl OwnRedisCluster {
    pub(crate) fn start() -> Self {
        Self::start_in(scratch_dir(), None)
    }

    /// Taking TLS connections only (clients, replication and the cluster
    /// bus), with a certificate made by `make_cert` in the cluster's
    /// directory: `(cert, key)`.
    pub(crate) fn start_tls(make_cert: impl FnOnce(&std::path::Path) -> (String, String)) -> Self {
        let dir = scratch_dir();
        let (cert, key) = make_cert(&dir);
        let tls = ClusterTls {
            cert,
            key,
            clients_ca: None,
        };
        Self::start_in(dir, Some(tls))
    }

    /// Over TLS, with the certificate `cert` and `key`, from clients whose
    /// certificate `clients_ca` signed.
    pub(crate) fn start_tls_asking_for_client_certificates(
        cert: &str,
        key: &str,
        clients_ca: &str,
    ) -> Self {
        let tls = ClusterTls {
            cert: cert.to_owned(),
            key: key.to_owned(),
            clients_ca: Some(clients_ca.to_owned()),
        };
        Self::start_in(scratch_dir(), Some(tls))
    }

    fn start_in(dir: std::path::PathBuf, tls: Option<ClusterTls>) -> Self {
        let ports = free_cluster_ports(6);
        let nodes = ports
            .iter()
            .map(|port| (*port, Some(start_node(&dir, *port, tls.as_ref()))))
            .collect();
        let cluster = OwnRedisCluster { dir, nodes, tls };
        for port in &ports {
            wait_for(|| {
                cluster
                    .cli(*port, &["ping"])
                    .is_some_and(|out| out.trim() == "PONG")
            });
        }
        let addresses: Vec<String> = ports.iter().map(|p| format!("127.0.0.1:{p}")).collect();
        let mut create = Command::new("redis-cli");
        create.args(cluster.cli_tls());
        create.args(["--cluster", "create"]).args(&addresses).args([
            "--cluster-replicas",
            "1",
            "--cluster-yes",
        ]);
        let output = create.output().expect("redis-cli is installed");
        assert!(output.status.success(), "{output:?}");
        for port in &ports {
            wait_for(|| {
                cluster
                    .cli(*port, &["cluster", "info"])
                    .is_some_and(|info| info.contains("cluster_state:ok"))
                    && cluster
                        .cli(*port, &["info", "replication"])
                        .is_some_and(|info| {
                            info.contains("role:master") || info.contains("master_link_status:up")
                        })
            });
        }
        cluster
    }

    /// `REDIS_CLUSTER_URLS`: every node (over TLS, the self-made
    /// certificate not checked).
    pub(crate) fn urls(&self) -> String {
        match self.tls {
            Some(_) => self.urls_ending("#insecure"),
            None => self.urls_of("redis", ""),
        }
    }

    /// `REDIS_CLUSTER_URLS` over TLS, each URL ending in `tail` (a query).
    pub(crate) fn urls_ending(&self, tail: &str) -> String {
        self.urls_of("rediss", tail)
    }

    fn urls_of(&self, scheme: &str, tail: &str) -> String {
        self.nodes
            .iter()
            .map(|(port, _)| format!("{scheme}://127.0.0.1:{port}/{tail}"))
            .collect::<Vec<_>>()
            .join(",")
    }

    /// The ports of the primaries that answer.
    pub(crate) fn primaries(&self) -> Vec<u16> {
        self.live_ports()
            .filter(|port| {
                self.cli(*port, &["role"])
                    .is_some_and(|role| role.starts_with("master"))
            })
            .collect()
    }

    fn live_ports(&self) -> impl Iterator<Item = u16> + '_ {
        self.nodes
            .iter()
            .filter(|(_, child)| child.is_some())
            .map(|(port, _)| *port)
    }

    /// The port of the primary that owns `channel`'s slot.
    pub(crate) fn owner_of(&self, channel: &str) -> u16 {
        let port = self.live_ports().next().unwrap();
        let slot: u16 = self
            .cli(port, &["cluster", "keyslot", channel])
            .unwrap()
            .trim()
            .parse()
            .unwrap();
        self.primaries()
            .into_iter()
            .find(|primary| self.owns_slot(*primary, slot))
            .expect("a primary owns every slot")
    }

    /// The shard channels each primary has subscribers for.
    pub(crate) fn shard_channels(&self, primary: u16) -> Vec<String> {
        self.cli(primary, &["pubsub", "shardchannels"])
            .unwrap_or_default()
            .lines()
            .map(str::to_owned)
            .filter(|line| !line.is_empty())
            .collect()
    }

    /// `SPUBLISH` calls a node has executed.
    pub(crate) fn spublish_calls(&self, port: u16) -> u64 {
        let stats = self
            .cli(port, &["info", "commandstats"])
            .unwrap_or_default();
        stats
            .lines()
            .find_map(|line| line.strip_prefix("cmdstat_spublish:calls="))
            .and_then(|rest| rest.split(',').next())
            .and_then(|calls| calls.parse().ok())
            .unwrap_or(0)
    }

    /// Kills the node on `port` with -9.
    /// Makes the node at `port` hold its clients' writes (`SPUBLISH`
    /// included) for up to `long`, as a stalled primary would.
    pub(crate) fn pause_writes(&self, port: u16, long: Duration) {
        let millis = long.as_millis().to_string();
        let answer = self.cli(port, &["client", "pause", &millis, "write"]);
        assert_eq!(answer.as_deref().map(str::trim), Some("OK"));
    }

    pub(crate) fn resume_writes(&self, port: u16) {
        let answer = self.cli(port, &["client", "unpause"]);
        assert_eq!(answer.as_deref().map(str::trim), Some("OK"));
    }

    pub(crate) fn kill(&mut self, port: u16) {
        let node = self.nodes.iter_mut().find(|(p, _)| *p == port).unwrap();
        let mut child = node.1.take().unwrap();
        child.kill().unwrap();
        child.wait().unwrap();
    }

    /// Waits (without blocking the runtime) until a replica took over from
    /// every dead primary and every survivor sees the cluster whole.
    pub(crate) async fn whole(&self) {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let whole = self.primaries().len() == 3
                && self.live_ports().all(|port| {
                    self.cli(port, &["cluster", "info"])
                        .is_some_and(|info| info.contains("cluster_state:ok"))
                });
            if whole {
                return;
            }
            assert!(Instant::now() < deadline, "no replica took over");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

impl Drop for OwnRedisCluster {
    fn drop(&mut self) {
        for (_, child) in &mut self.nodes {
            if let Some(mut child) = child.take() {
                let _ = child.kill();
                let _ = child.wait();
            }
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

impl OwnRedisCluster {
    /// `redis-cli`'s TLS flags for this cluster (none without TLS): it
    /// presents the nodes' own certificate.
    fn cli_tls(&self) -> Vec<String> {
        match &self.tls {
            Some(tls) => [
                "--tls", "--cacert", &tls.cert, "--cert", &tls.cert, "--key", &tls.key,
            ]
            .map(str::to_owned)
            .to_vec(),
            None => Vec::new(),
        }
    }

    fn cli(&self, port: u16, args: &[&str]) -> Option<String> {
        let output = Command::new("redis-cli")
            .args(self.cli_tls())
            .args(["-p", &port.to_string()])
            .args(args)
            .output()
            .ok()?;
        output
            .status
            .success()
            .then(|| String::from_utf8_lossy(&output.stdout).into_owned())
    }

    fn owns_slot(&self, primary: u16, slot: u16) -> bool {
        let nodes = self.cli(primary, &["cluster", "nodes"]).unwrap_or_default();
        nodes
            .lines()
            .find(|line| line.contains("myself"))
            .is_some_and(|line| {
                line.split_whitespace().skip(8).any(|range| {
                    let (low, high) = range.split_once('-').unwrap_or((range, range));
                    match (low.parse::<u16>(), high.parse::<u16>()) {
                        (Ok(low), Ok(high)) => (low..=high).contains(&slot),
                        _ => false,
                    }
                })
            })
    }
}

fn scratch_dir() -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!(
        "chat-redis-cluster-{}",
        chat_server::digest::random_hex(6)
    ));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

fn start_node(dir: &std::path::Path, port: u16, tls: Option<&ClusterTls>) -> Child {
    let node_dir = dir.join(port.to_string());
    std::fs::create_dir_all(&node_dir).unwrap();
    let mut command = Command::new("redis-server");
    match tls {
        Some(tls) => command
            .args(["--port", "0", "--tls-port", &port.to_string()])
            .args(["--tls-cluster", "yes", "--tls-replication", "yes"])
            .args(["--tls-cert-file", &tls.cert, "--tls-key-file", &tls.key])
            .args(tls_clients(&node_dir, tls)),
        None => command.args(["--port", &port.to_string()]),
    };
    command
        .args(["--bind", "127.0.0.1"])
        .args(["--cluster-enabled", "yes", "--cluster-node-timeout", "1000"])
        // A replica syncs at once, and may take over however long it lost
        // its primary for (the test kills primaries seconds after start).
        .args(["--repl-diskless-sync-delay", "0"])
        .args(["--cluster-replica-validity-factor", "0"])
        .args(["--save", "", "--appendonly", "no"])
        .arg("--dir")
        .arg(&node_dir)
        .stdout(Stdio::null())
        .spawn()
        .expect("redis-server is installed")
}

/// The flags that say which clients a TLS node takes: any, or those that
/// present a certificate of the clients' CA or the nodes' own (the other
/// nodes and redis-cli), both in one file.
fn tls_clients(node_dir: &std::path::Path, tls: &ClusterTls) -> Vec<String> {
    let Some(clients_ca) = &tls.clients_ca else {
        return ["--tls-ca-cert-file", &tls.cert, "--tls-auth-clients", "no"]
            .map(str::to_owned)
            .to_vec();
    };
    let both = node_dir.join("trusted.pem");
    let pem = |path: &str| std::fs::read_to_string(path).unwrap();
    std::fs::write(&both, pem(&tls.cert) + &pem(clients_ca)).unwrap();
    let both = both.to_str().unwrap().to_owned();
    vec![
        "--tls-ca-cert-file".into(),
        both,
        "--tls-auth-clients".into(),
        "yes".into(),
    ]
}

/// Free ports whose cluster bus port (+10,000) is free too.
fn free_cluster_ports(n: usize) -> Vec<u16> {
    let mut ports = Vec::with_capacity(n);
    while ports.len() < n {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port() % 40_000 + 10_000;
        drop(listener);
        let free = |p: u16| std::net::TcpListener::bind(("127.0.0.1", p)).is_ok();
        if !ports.contains(&port) && free(port) && free(port + 10_000) {
            ports.push(port);
        }
    }
    ports
}

fn wait_for(mut ready: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while !ready() {
        assert!(
            Instant::now() < deadline,
            "the Redis cluster did not get ready"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// `n` nodes on one fresh database and the cluster, with a prefix of their own.
pub(crate) async fn nodes_on(cluster: &OwnRedisCluster, n: usize) -> (Vec<TestApp>, String) {
    nodes_configured_with(&cluster.urls(), n, &[]).await
}

/// `n` nodes on one fresh database, with `urls` as `REDIS_CLUSTER_URLS`, a
/// prefix of their own and the settings `extra`.
async fn nodes_configured_with(
    urls: &str,
    n: usize,
    extra: &[(&str, &str)],
) -> (Vec<TestApp>, String) {
    let database = fresh_database();
    let prefix = format!("test-{}", chat_server::digest::random_hex(6));
    let mut nodes = Vec::with_capacity(n);
    for _ in 0..n {
        let mut overrides = vec![
            ("REDIS_CLUSTER_URLS", urls),
            ("REDIS_CHANNEL_PREFIX", prefix.as_str()),
        ];
        overrides.extend_from_slice(extra);
        nodes.push(spawn_app_on(&database, &overrides).await);
    }
    (nodes, prefix)
}

#[tokio::test]
async fn two_nodes_deliver_across_the_cluster_each_channel_on_its_own_shard() {
    let cluster = OwnRedisCluster::start();
    // Sends limited (far above what the test sends), so usage is reported.
    let limited = [("RATE_LIMIT_SENDS_PER_SEC", "1000")];
    let (nodes, prefix) = nodes_configured_with(&cluster.urls(), 2, &limited).await;
    bus_ready(&[&nodes[0], &nodes[1]]).await;
    let (ann, bob) = (nodes[0].user("ann").await, nodes[0].user("bob").await);
    let mut bob_user = WsClient::user_synced(&nodes[1], &bob.access, json!({})).await;
    // Started on node 0: node 1 hears of it on bob's channel.
    let chat = nodes[0].chat(&ann, &bob).await;
    let mut bob_chat = WsClient::connect(&nodes[1], chat, &bob.access, None).await;
    let mut ann_chat = WsClient::connect(&nodes[0], chat, &ann.access, None).await;
    for i in 0..30 {
        nodes[0].say(&ann, chat, &format!("a{i}")).await;
    }
    let expected: Vec<i64> = (1..=30).collect();
    assert_eq!(seqs(&mut bob_chat, 30).await, expected);
    assert_eq!(seqs(&mut ann_chat, 30).await, expected);
    let chat_event = bob_user.next_of("chat").await;
    assert_eq!(chat_event["data"]["id"], chat, "{chat_event}");
    let mut on_user_socket = Vec::new();
    while on_user_socket.len() < 30 {
        let event = bob_user.next_of("message").await;
        on_user_socket.push(event["data"]["seq"].as_i64().unwrap());
    }
    assert_eq!(on_user_socket, expected);
    // Back the other way: bob on node 1 to ann on node 0.
    bob_chat
        .send_json(&json!({"type": "message.send", "content": "b", "client_msg_id": "b"}))
        .await;
    assert_eq!(ann_chat.message().await["seq"], 31);

    // Node 0's usage reports (its limit let Ann's sends through) reach node 1.
    let reports = "chat_bus_usage_reports_total";
    counter_reaches(&nodes[1], reports, 1, Duration::from_secs(5)).await;

    // Each user's channel, and the usage channel, is followed on exactly the
    // primary that owns its slot, and on no other; and only those primaries
    // carried the events.
    let primaries = cluster.primaries();
    let mut owners = Vec::new();
    let users = [ann.id, bob.id].map(|user| format!("{prefix}:user:{user}"));
    for channel in users.into_iter().chain([format!("{prefix}:usage")]) {
        let owner = cluster.owner_of(&channel);
        owners.push(owner);
        for primary in &primaries {
            let followed = cluster.shard_channels(*primary).contains(&channel);
            assert_eq!(followed, *primary == owner, "{channel} on {primary}");
        }
    }
    for primary in &primaries {
        let calls = cluster.spublish_calls(*primary);
        if owners.contains(primary) {
            // One SPUBLISH per recipient per published batch, and batches
            // queued together go out as one: at least one, not one per event.
            assert!(calls >= 1, "{primary} carried none of the events");
        } else {
            assert_eq!(calls, 0, "{primary} owns none of the channels");
        }
    }
}

#[tokio::test]
async fn a_primary_killed_mid_stream_loses_duplicates_and_reorders_nothing() {
    a_primary_killed_mid_stream(OwnRedisCluster::start()).await;
}

/// On `cluster`, two nodes; the primary of bob's channel killed while ann
/// sends: bob's per-chat and user sockets get every message once, in order.
pub(crate) async fn a_primary_killed_mid_stream(mut cluster: OwnRedisCluster) {
    let (nodes, prefix) = nodes_on(&cluster, 2).await;
    bus_ready(&[&nodes[0], &nodes[1]]).await;
    let (ann, bob, chat) = nodes[0].pair().await;
    let mut bob_chat = WsClient::connect(&nodes[1], chat, &bob.access, None).await;
    let mut bob_user = WsClient::user_synced(&nodes[1], &bob.access, json!({})).await;
    // Sends go on while the shard is down and after its replica took over.
    const TOTAL: usize = 150;
    let killed_at = 40;
    let sender = async {
        let mut failover = None;
        for i in 0..TOTAL {
            if i == killed_at {
                // The shard that carries bob's channel: node 1 hears
                // nothing for bob until it follows the channel again.
                let owner = cluster.owner_of(&format!("{prefix}:user:{}", bob.id));
                cluster.kill(owner);
                failover = Some(Instant::now());
            }
            nodes[0].say(&ann, chat, &format!("m{i}")).await;
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        cluster.whole().await;
        failover.unwrap().elapsed()
    };
    let per_chat = seqs(&mut bob_chat, TOTAL);
    // The user socket delivered from the chat before the kill, so it catches
    // up in place; had it closed with 4009, its client would resume with
    // `sync` from the last seq it saw.
    let on_user_socket = seqs_resuming(&mut bob_user, &nodes[1], &bob.access, chat, TOTAL);
    let (failover, per_chat, (on_user_socket, resumed)) =
        tokio::join!(sender, per_chat, on_user_socket);
    let expected: Vec<i64> = (1..=TOTAL as i64).collect();
    assert_eq!(per_chat, expected, "per-chat socket: once each, in order");
    assert_eq!(on_user_socket, expected, "user socket: once each, in order");
    println!(
        "kill to a whole cluster: at most {failover:?}; the user socket reconnected {resumed} times"
    );
    for socket in [&mut bob_chat, &mut bob_user] {
        let extra = socket.recv_within(Duration::from_millis(300)).await;
        assert!(extra.is_none(), "nothing more: {extra:?}");
    }
    // The bus is healthy again on both nodes, and messages still cross.
    bus_ready(&[&nodes[0], &nodes[1]]).await;
    nodes[0].say(&ann, chat, "after").await;
    assert_eq!(bob_chat.message().await["seq"], TOTAL as i64 + 1);
}

/// A primary that leaves the writer's pipeline unanswered (its clients'
/// writes paused past the publisher's answer timeout): the writer does not
/// send it again; it names bob in a lost notice, and bob's socket on the
/// other node gets the message once, whichever way it comes.
#[tokio::test]
async fn a_publish_a_primary_never_answers_reaches_the_other_node_once() {
    let cluster = OwnRedisCluster::start();
    let (nodes, prefix) = nodes_on(&cluster, 2).await;
    bus_ready(&[&nodes[0], &nodes[1]]).await;
    let (ann, bob, chat) = nodes[0].pair().await;
    let mut bob_chat = WsClient::connect(&nodes[1], chat, &bob.access, None).await;
    let owner = cluster.owner_of(&format!("{prefix}:user:{}", bob.id));
    // The chat's `chat` event, published once the start was answered.
    let published = "chat_bus_published_total";
    counter_reaches(&nodes[0], published, 1, Duration::from_secs(5)).await;
    let published_before = metric(&nodes[0], published).await;
    cluster.pause_writes(owner, Duration::from_secs(60));
    nodes[0].say(&ann, chat, "unanswered").await;
    let unconfirmed = "chat_bus_unconfirmed_total";
    counter_reaches(&nodes[0], unconfirmed, 1, Duration::from_secs(10)).await;
    cluster.resume_writes(owner);
    assert_eq!(bob_chat.message().await["content"], "unanswered");
    let extra = bob_chat.recv_within(Duration::from_millis(500)).await;
    assert!(extra.is_none(), "once: {extra:?}");
    // The notice named bob: his socket checked the store (its second
    // catch-up, after the one it made when it joined).
    counter_reaches(
        &nodes[1],
        "chat_ws_resyncs_total",
        2,
        Duration::from_secs(5),
    )
    .await;
    let received = metric(&nodes[1], "chat_bus_received_total").await;
    assert!(received <= 1, "published {received} times");
    assert_eq!(
        metric(&nodes[0], published).await,
        published_before,
        "a batch a primary left unanswered is not counted as published"
    );
}

/// Nodes configured with one node of the cluster find it again after that
/// node died: the slot map is asked of the primaries the last map named,
/// not only of the configured nodes.
#[tokio::test]
async fn a_cluster_whose_only_configured_node_died_is_found_through_the_primaries_it_named() {
    let mut cluster = OwnRedisCluster::start();
    let seed = cluster.primaries()[0];
    let (nodes, _) = nodes_configured_with(&format!("redis://127.0.0.1:{seed}/"), 2, &[]).await;
    bus_ready(&[&nodes[0], &nodes[1]]).await;
    let (ann, bob, chat) = nodes[0].pair().await;
    let mut bobs = WsClient::connect(&nodes[1], chat, &bob.access, None).await;
    nodes[0].say(&ann, chat, "before").await;
    assert_eq!(bobs.message().await["content"], "before");
    // Every node's subscriber loses its connection to the seed, and follows
    // every channel again on the cluster without it.
    cluster.kill(seed);
    cluster.whole().await;
    nodes[0].say(&ann, chat, "while following again").await;
    assert_eq!(bobs.message().await["content"], "while following again");
    bus_ready(&[&nodes[0], &nodes[1]]).await;
    nodes[0].say(&ann, chat, "after").await;
    assert_eq!(bobs.message().await["content"], "after");
}
