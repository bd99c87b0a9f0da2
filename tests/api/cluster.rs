//! Several nodes sharing PostgreSQL and Redis behave as one server: participants
//! on different nodes, concurrent senders on different nodes, a Redis restart
//! mid-stream, and a node killed with -9.

use crate::helpers::{free_port, fresh_database, spawn_app_on, spawn_process_on, TestApp};
use crate::ws_client::{Received, WsClient};
use chat_server::delivery::bus::{channel, lost_channel, Envelope, Wire, WIRE_KEY_PURPOSE};
use chat_server::digest::{Signer, MAC_BYTES};
use serde_json::{json, Value};
use std::time::Duration;

pub(crate) fn redis_url() -> String {
    std::env::var("TEST_REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379/".into())
}

/// `n` in-process nodes on one fresh database and one Redis, with a channel
/// prefix of their own (other tests share the Redis).
pub(crate) async fn cluster(n: usize, redis: &str) -> Vec<TestApp> {
    let database = fresh_database();
    let prefix = format!("test-{}", chat_server::digest::random_hex(6));
    let mut nodes = Vec::with_capacity(n);
    for _ in 0..n {
        let overrides = [
            ("REDIS_URL", redis),
            ("REDIS_CHANNEL_PREFIX", prefix.as_str()),
        ];
        nodes.push(spawn_app_on(&database, &overrides).await);
    }
    nodes
}

/// Waits until every node reports its bus connected.
pub(crate) async fn bus_ready(nodes: &[&TestApp]) {
    for node in nodes {
        let reply = bus_state(node, "ok").await;
        assert_eq!(reply.body["bus"], "ok", "{}", reply.text);
    }
}

/// Polls `/readyz` until the bus reports `state` (or 5 s pass); the last reply.
pub(crate) async fn bus_state(node: &TestApp, state: &str) -> crate::helpers::Reply {
    let mut reply = node.get("/readyz", None).await;
    for _ in 0..100 {
        if reply.body["bus"] == state {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
        reply = node.get("/readyz", None).await;
    }
    reply
}

fn send_event(content: &str) -> Value {
    json!({"type": "message.send", "content": content, "client_msg_id": content})
}

/// Reads `n` messages; returns their seqs.
pub(crate) async fn seqs(socket: &mut WsClient, n: usize) -> Vec<i64> {
    let mut out = Vec::with_capacity(n);
    while out.len() < n {
        out.push(socket.message().await["seq"].as_i64().unwrap());
    }
    out
}

#[tokio::test]
async fn participants_on_different_nodes_exchange_messages() {
    let nodes = cluster(2, &redis_url()).await;
    bus_ready(&[&nodes[0], &nodes[1]]).await;
    let (ann, bob, chat) = nodes[0].pair().await;
    let mut a = WsClient::connect(&nodes[0], chat, &ann.access, None).await;
    let mut b = WsClient::connect(&nodes[1], chat, &bob.access, None).await;
    a.send_json(&send_event("from node 0")).await;
    assert_eq!(a.message().await["content"], "from node 0");
    assert_eq!(b.message().await["content"], "from node 0");
    b.send_json(&send_event("from node 1")).await;
    assert_eq!(b.message().await["seq"], 2);
    assert_eq!(a.message().await["content"], "from node 1");
    assert!(
        a.recv_within(Duration::from_millis(300)).await.is_none(),
        "no duplicates"
    );
}

#[tokio::test]
async fn concurrent_senders_on_different_nodes_are_seen_once_and_in_order_everywhere() {
    let nodes = cluster(3, &redis_url()).await;
    bus_ready(&[&nodes[0], &nodes[1], &nodes[2]]).await;
    let (ann, bob, chat) = nodes[0].pair().await;
    let mut readers = Vec::new();
    for (node, user) in [
        (&nodes[0], &ann),
        (&nodes[1], &bob),
        (&nodes[2], &ann),
        (&nodes[2], &bob),
    ] {
        readers.push(WsClient::connect(node, chat, &user.access, None).await);
    }
    let mut a_sender = WsClient::connect(&nodes[0], chat, &ann.access, None).await;
    let mut b_sender = WsClient::connect(&nodes[1], chat, &bob.access, None).await;
    const EACH: usize = 150;
    let send_a = async {
        for i in 0..EACH {
            a_sender.send_json(&send_event(&format!("a{i}"))).await;
        }
    };
    let send_b = async {
        for i in 0..EACH {
            b_sender.send_json(&send_event(&format!("b{i}"))).await;
        }
    };
    let read_all = futures_util::future::join_all(readers.iter_mut().map(|r| seqs(r, 2 * EACH)));
    let ((), (), seen) = tokio::join!(send_a, send_b, read_all);
    let expected: Vec<i64> = (1..=2 * EACH as i64).collect();
    for (i, got) in seen.iter().enumerate() {
        assert_eq!(
            got, &expected,
            "reader {i}: every message once, in seq order"
        );
    }
}

/// A Redis of this test's own, so it can be stopped and started.
pub(crate) struct OwnRedis {
    port: u16,
    child: Option<std::process::Child>,
    extra: Vec<String>,
}

impl OwnRedis {
    pub(crate) fn start() -> Self {
        Self::start_with(&[])
    }

    /// With extra `redis-server` arguments (e.g. `--requirepass`).
    fn start_with(extra: &[&str]) -> Self {
        Self::start_on(free_port(), extra.iter().map(|s| s.to_string()).collect())
    }

    /// Taking TLS connections only, with `cert` and `key` (no client
    /// certificates asked for): reached at [`Self::tls_url`].
    pub(crate) fn start_tls(cert: &str, key: &str) -> Self {
        Self::start_tls_with(cert, key, &["--tls-auth-clients", "no"])
    }

    /// Taking TLS connections only, from clients whose certificate
    /// `clients_ca` signed.
    pub(crate) fn start_tls_asking_for_client_certificates(
        cert: &str,
        key: &str,
        clients_ca: &str,
    ) -> Self {
        let asking = [
            "--tls-auth-clients",
            "yes",
            "--tls-ca-cert-file",
            clients_ca,
        ];
        Self::start_tls_with(cert, key, &asking)
    }

    fn start_tls_with(cert: &str, key: &str, clients: &[&str]) -> Self {
        let port = free_port();
        let port_text = port.to_string();
        let tls = [
            "--tls-port",
            &port_text,
            "--port",
            "0",
            "--tls-cert-file",
            cert,
            "--tls-key-file",
            key,
        ];
        let args = tls.iter().chain(clients).map(|arg| arg.to_string());
        Self::start_on(port, args.collect())
    }

    /// `rediss://` on `localhost` (the name its certificate carries), the
    /// certificate checked against the CAs OpenSSL trusts.
    pub(crate) fn tls_url(&self) -> String {
        format!("rediss://localhost:{}/", self.port)
    }

    fn start_on(port: u16, extra: Vec<String>) -> Self {
        let mut redis = OwnRedis {
            port,
            child: None,
            extra,
        };
        redis.restart();
        redis
    }

    pub(crate) fn url(&self) -> String {
        format!("redis://127.0.0.1:{}/", self.port)
    }

    pub(crate) fn restart(&mut self) {
        let child = std::process::Command::new("redis-server")
            .args([
                "--port",
                &self.port.to_string(),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
            ])
            .args(&self.extra)
            .stdout(std::process::Stdio::null())
            .spawn()
            .expect("redis-server is installed");
        self.child = Some(child);
        for _ in 0..100 {
            if std::net::TcpStream::connect(("127.0.0.1", self.port)).is_ok() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        panic!("redis-server did not start");
    }

    pub(crate) fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Drop for OwnRedis {
    fn drop(&mut self) {
        self.kill();
    }
}

/// One deployment's shared parts, the test's own: a Redis it may stop, a
/// fresh database and a channel prefix.
pub(crate) struct Deployment {
    pub(crate) redis: OwnRedis,
    pub(crate) database: String,
    url: String,
    prefix: String,
}

impl Deployment {
    pub(crate) fn start() -> Self {
        let redis = OwnRedis::start();
        Deployment {
            url: redis.url(),
            redis,
            database: fresh_database(),
            prefix: format!("test-{}", chat_server::digest::random_hex(6)),
        }
    }

    /// A node's settings for this deployment's bus, then `extra`.
    pub(crate) fn overrides<'a>(&'a self, extra: &[(&'a str, &'a str)]) -> Vec<(&'a str, &'a str)> {
        let mut overrides = vec![
            ("REDIS_URL", self.url.as_str()),
            ("REDIS_CHANNEL_PREFIX", self.prefix.as_str()),
        ];
        overrides.extend_from_slice(extra);
        overrides
    }

    /// A node in this process on the deployment's bus.
    pub(crate) async fn node(&self, extra: &[(&str, &str)]) -> TestApp {
        spawn_app_on(&self.database, &self.overrides(extra)).await
    }

    /// A node on the bus whose sockets watch, and a node without Redis on
    /// the same database that writes: what it stores reaches the watcher's
    /// sockets only by their catch-up from the store.
    async fn watcher_and_busless_writer(&self) -> (TestApp, TestApp) {
        let watcher = self.node(&[]).await;
        let writer = spawn_app_on(&self.database, &[]).await;
        bus_ready(&[&watcher]).await;
        (watcher, writer)
    }
}

#[tokio::test]
async fn a_redis_restart_mid_stream_loses_and_duplicates_nothing() {
    let mut redis = OwnRedis::start();
    let nodes = cluster(2, &redis.url()).await;
    bus_ready(&[&nodes[0], &nodes[1]]).await;
    let (ann, bob, chat) = nodes[0].pair().await;
    let mut b = WsClient::connect(&nodes[1], chat, &bob.access, None).await;
    const TOTAL: usize = 90;
    for i in 0..TOTAL {
        if i == 30 {
            redis.kill();
            let ready = bus_state(&nodes[1], "disconnected").await;
            assert_eq!(ready.status, 200, "Redis down: still ready");
            assert_eq!(ready.body["status"], "degraded");
        }
        if i == 60 {
            redis.restart();
        }
        nodes[0].say(&ann, chat, &format!("m{i}")).await;
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(
        bus_state(&nodes[1], "ok").await.body["status"],
        "ready",
        "reconnected"
    );
    let got = seqs(&mut b, TOTAL).await;
    assert_eq!(
        got,
        (1..=TOTAL as i64).collect::<Vec<_>>(),
        "all, once, in order"
    );
    assert!(
        b.recv_within(Duration::from_millis(500)).await.is_none(),
        "no duplicates after"
    );
}

/// Nothing is sent after Redis returns, so no later message can reveal the gap:
/// these messages reach the other node's socket by the catch-up after the new
/// subscription or by the writer's publisher retrying its queued batch,
/// whichever comes first, in order and once either way. (The test after this
/// one leaves the catch-up alone to bring them.)
#[tokio::test]
async fn messages_sent_while_redis_was_down_arrive_by_the_catch_up_alone() {
    let mut redis = OwnRedis::start();
    let nodes = cluster(2, &redis.url()).await;
    bus_ready(&[&nodes[0], &nodes[1]]).await;
    let (ann, bob, chat) = nodes[0].pair().await;
    let mut b = WsClient::connect(&nodes[1], chat, &bob.access, None).await;
    // The new room's own catch-up after its subscription must be over, or it
    // could bring the messages below while Redis is down.
    resyncs_reach(&nodes[1], 1).await;
    redis.kill();
    assert_eq!(bus_state(&nodes[1], "disconnected").await.status, 200);
    for i in 0..3 {
        nodes[0].say(&ann, chat, &format!("while down {i}")).await;
    }
    assert!(
        b.recv_within(Duration::from_millis(300)).await.is_none(),
        "nothing can reach the other node while Redis is down"
    );
    redis.restart();
    assert_eq!(bus_state(&nodes[1], "ok").await.body["status"], "ready");
    assert_eq!(seqs(&mut b, 3).await, vec![1, 2, 3], "caught up, in order");
    assert!(
        b.recv_within(Duration::from_millis(500)).await.is_none(),
        "and only once"
    );
}

/// Messages the bus never carried (their writer is a node without Redis) reach
/// a socket only by the catch-up after its node re-subscribes, in order and
/// once.
#[tokio::test]
async fn after_a_resubscription_a_room_catches_up_with_what_the_bus_never_carried() {
    let mut deployment = Deployment::start();
    let (watcher, writer) = deployment.watcher_and_busless_writer().await;
    let (ann, bob, chat) = writer.pair().await;
    let mut b = WsClient::connect(&watcher, chat, &bob.access, None).await;
    // The new room's own catch-up after its subscription must be over, or it
    // could bring the messages below.
    resyncs_reach(&watcher, 1).await;
    for i in 0..3 {
        writer.say(&ann, chat, &format!("off the bus {i}")).await;
    }
    assert!(
        b.recv_within(Duration::from_millis(300)).await.is_none(),
        "no bus carries the writer's messages"
    );
    deployment.redis.kill();
    assert_eq!(bus_state(&watcher, "disconnected").await.status, 200);
    deployment.redis.restart();
    assert_eq!(bus_state(&watcher, "ok").await.body["status"], "ready");
    assert_eq!(seqs(&mut b, 3).await, vec![1, 2, 3], "caught up, in order");
    resyncs_reach(&watcher, 2).await;
    assert!(
        b.recv_within(Duration::from_millis(500)).await.is_none(),
        "and only once"
    );
}

/// A read marker the bus never carried (its reader is on a node without
/// Redis) reaches a per-chat socket by the catch-up after that socket's node
/// re-subscribes: read markers are never lost. A marker its client knew at
/// the handshake, or that its owner's own message told, is not told again.
#[tokio::test]
async fn after_a_resubscription_a_per_chat_socket_is_told_the_read_markers_the_bus_never_carried() {
    let mut deployment = Deployment::start();
    let (watcher, writer) = deployment.watcher_and_busless_writer().await;
    let (ann, bob, chat) = writer.pair().await;
    for i in 0..2 {
        writer.say(&ann, chat, &format!("m{i}")).await;
    }
    // Ann's own marker is at 2 (she sent both): known at the handshake.
    let mut a = WsClient::connect(&watcher, chat, &ann.access, Some(2)).await;
    resyncs_reach(&watcher, 1).await;
    let mut b = WsClient::connect(&writer, chat, &bob.access, Some(0)).await;
    assert_eq!(seqs(&mut b, 2).await, vec![1, 2]);
    b.send_json(&json!({"type": "read", "seq": 2})).await;
    let stored = || async {
        let list = watcher.get("/api/chat/chats/", Some(&ann.access)).await;
        list.body[0]["id"] == chat && list.body[0]["peer_read_seq"] == 2
    };
    for _ in 0..100 {
        if stored().await {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(stored().await, "Bob's marker is stored");
    assert!(
        a.recv_within(Duration::from_millis(300)).await.is_none(),
        "no bus carries it, and Ann's own marker is not told"
    );
    // Ann's marker moves to her own message 3, which her socket delivers
    // live: the message told it, so the catch-up does not.
    watcher.say(&ann, chat, "m2").await;
    assert_eq!(a.message().await["seq"], 3);
    deployment.redis.kill();
    assert_eq!(bus_state(&watcher, "disconnected").await.status, 200);
    deployment.redis.restart();
    assert_eq!(bus_state(&watcher, "ok").await.body["status"], "ready");
    assert_eq!(
        a.event().await,
        json!({"type": "read", "chat": chat, "user_id": bob.id, "seq": 2}),
        "told by the catch-up"
    );
    resyncs_reach(&watcher, 2).await;
    assert!(
        a.recv_within(Duration::from_millis(500)).await.is_none(),
        "once"
    );
}

/// The same on a user socket, caught up twice: the first catch-up tells the
/// marker the bus never carried, the second tells nothing (no marker moved
/// since), and a marker at its owner's own last message is never told.
#[tokio::test]
async fn a_user_socket_caught_up_again_is_told_only_the_read_markers_that_moved() {
    let mut deployment = Deployment::start();
    let (watcher, writer) = deployment.watcher_and_busless_writer().await;
    let (ann, bob, chat) = writer.pair().await;
    for i in 0..2 {
        writer.say(&ann, chat, &format!("m{i}")).await;
    }
    let named = json!({ chat.to_string(): 2 });
    let mut a = WsClient::user_synced(&watcher, &ann.access, named).await;
    let mut b = WsClient::connect(&writer, chat, &bob.access, Some(2)).await;
    b.send_json(&json!({"type": "read", "seq": 2})).await;
    for _ in 0..100 {
        let list = watcher.get("/api/chat/chats/", Some(&ann.access)).await;
        if list.body[0]["peer_read_seq"] == 2 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(
        a.recv_within(Duration::from_millis(300)).await.is_none(),
        "no bus carries Bob's marker, and the sync told nothing"
    );
    let bobs_marker = json!({"type": "read", "chat": chat, "user_id": bob.id, "seq": 2});
    for told in [Some(bobs_marker), None] {
        let before = metric(&watcher, "chat_ws_resyncs_total").await;
        deployment.redis.kill();
        assert_eq!(bus_state(&watcher, "disconnected").await.status, 200);
        deployment.redis.restart();
        assert_eq!(bus_state(&watcher, "ok").await.body["status"], "ready");
        resyncs_reach(&watcher, before + 1).await;
        if let Some(event) = told {
            assert_eq!(a.event().await, event, "told by the first catch-up");
        }
        assert!(
            a.recv_within(Duration::from_millis(500)).await.is_none(),
            "nothing else: not Ann's own marker, not Bob's again"
        );
    }
}

/// A node whose publish queue overflowed names, in its lost notice, the
/// users the dropped events were for: only their sockets catch up (here a
/// user socket closes with 4009), so one node's overload does not send every
/// client of the deployment back at once. A notice naming no one (more users
/// than a notice holds) still reaches everyone. The notice is published here
/// as another node of the deployment would sign it.
#[tokio::test]
async fn a_lost_notice_sends_back_only_the_users_it_names() {
    let url = redis_url();
    let prefix = format!("test-{}", chat_server::digest::random_hex(6));
    let overrides = [
        ("REDIS_URL", url.as_str()),
        ("REDIS_CHANNEL_PREFIX", prefix.as_str()),
    ];
    let node = spawn_app_on(&fresh_database(), &overrides).await;
    bus_ready(&[&node]).await;
    let (ann, bob, chat) = node.pair().await;
    // Chats with a message neither socket has a position in: a catch-up
    // cannot be done in place, so the sockets it reaches close.
    node.say(&ann, chat, "before").await;
    let carol = node.user("carol").await;
    let bob_and_carol = node.chat(&carol, &bob).await;
    node.say(&carol, bob_and_carol, "before").await;
    let mut anns = WsClient::user_synced(&node, &ann.access, json!({})).await;
    let mut bobs = WsClient::user_synced(&node, &bob.access, json!({})).await;
    let other_node = Wire::new(crate::helpers::SECRET, "another-node".into());
    let channel = lost_channel(&prefix);
    let for_ann = other_node.encode(&Envelope::lost_for(&[ann.id]));
    assert_eq!(
        publish(&url, &channel, &for_ann).await,
        1,
        "the node follows it"
    );
    assert_eq!(anns.closed().await, 4009, "named: resume with sync");
    node.say(&ann, chat, "still open").await;
    assert_eq!(bobs.message().await["content"], "still open", "not named");
    let for_everyone = other_node.encode(&Envelope::lost_for(&[]));
    publish(&url, &channel, &for_everyone).await;
    assert_eq!(bobs.closed().await, 4009, "naming no one: everyone");
}

/// A user socket that knows where it stands in every chat of its user that
/// holds messages (its `sync` named them) catches up in place when its node
/// may have missed events: the messages the bus never carried, then the read
/// markers that moved, and it stays open and live. One that has no position in a chat
/// with messages cannot tell which of them its client lacks: it closes with
/// 4009 (resume with `sync`).
#[tokio::test]
async fn a_user_socket_that_knows_every_chat_catches_up_in_place() {
    let deployment = Deployment::start();
    let (watcher, writer) = deployment.watcher_and_busless_writer().await;
    let (ann, bob, chat) = writer.pair().await;
    let carol = writer.user("carol").await;
    let other = writer.chat(&carol, &bob).await;
    writer.say(&bob, other, "hello carol").await;
    let both = json!({chat.to_string(): 0, other.to_string(): 1});
    let mut knows_all = WsClient::user_synced(&watcher, &bob.access, both).await;
    let one = json!({chat.to_string(): 0});
    let mut knows_one = WsClient::user_synced(&watcher, &bob.access, one).await;
    writer.say(&ann, chat, "only in the store").await;
    let mut carols = WsClient::connect(&writer, other, &carol.access, None).await;
    carols.send_json(&json!({"type": "read", "seq": 1})).await;
    marker_stored(&writer, carol.id, 1).await;
    notice_lost(&deployment, &[bob.id]).await;
    assert_eq!(knows_all.message().await["content"], "only in the store");
    assert_eq!(
        knows_all.event().await,
        json!({"type": "read", "chat": other, "user_id": carol.id, "seq": 1}),
        "carol's marker moved unheard; ann's and bob's are at their own last messages"
    );
    assert_eq!(knows_one.closed().await, 4009, "no position in {other}");
    let quiet = knows_all.recv_within(Duration::from_millis(300)).await;
    assert!(quiet.is_none(), "open, and nothing twice: {quiet:?}");
    watcher.say(&ann, chat, "live").await;
    let live = knows_all.message().await;
    assert_eq!(
        (live["seq"].as_i64(), live["content"].as_str()),
        (Some(2), Some("live"))
    );
}

/// A user socket's resync announces a chat created while the bus was away
/// that is still empty (its `chat` event was lost with the bus), and not an
/// empty chat from before its `ready` (the client's chat list has that one);
/// the socket stays open, and the chat's first message follows live.
#[tokio::test]
async fn a_user_socket_resync_announces_an_empty_chat_it_missed() {
    let deployment = Deployment::start();
    let (watcher, writer) = deployment.watcher_and_busless_writer().await;
    let (_, bob, _) = writer.pair().await;
    let mut bobs = WsClient::user_synced(&watcher, &bob.access, json!({})).await;
    let carol = writer.user("carol").await;
    let missed = writer.chat(&carol, &bob).await;
    notice_lost(&deployment, &[bob.id]).await;
    let announced = bobs.event().await;
    assert_eq!(
        (&announced["type"], &announced["data"]["id"]),
        (&json!("chat"), &json!(missed))
    );
    let quiet = bobs.recv_within(Duration::from_millis(300)).await;
    assert!(
        quiet.is_none(),
        "the older empty chat is not announced: {quiet:?}"
    );
    watcher.say(&carol, missed, "first").await;
    assert_eq!(
        bobs.message().await["content"],
        "first",
        "live, announced once"
    );
}

/// A user socket's resync reads no more of its user's chats than it can
/// use: one per cursor, and 64 empty chats created since `ready` that it
/// never heard of. Ann's 64 unheard chats are each announced; Bob's 65 are
/// more than his socket could have missed, so it closes with 4009 and its
/// client resumes with `sync` (the chat list has them all).
#[tokio::test]
async fn a_user_socket_resync_announces_64_unheard_chats_and_resumes_past_that() {
    let deployment = Deployment::start();
    let (watcher, writer) = deployment.watcher_and_busless_writer().await;
    let ann = writer.user("ann").await;
    let bob = writer.user("bob").await;
    let mut anns = WsClient::user_synced(&watcher, &ann.access, json!({})).await;
    let mut bobs = WsClient::user_synced(&watcher, &bob.access, json!({})).await;
    let mut anns_chats = std::collections::BTreeSet::new();
    for i in 0..65 {
        let peer = writer.user(&format!("peer{i}")).await;
        if i < 64 {
            anns_chats.insert(writer.chat(&peer, &ann).await);
        }
        writer.chat(&peer, &bob).await;
    }
    notice_lost(&deployment, &[ann.id, bob.id]).await;
    let mut announced = std::collections::BTreeSet::new();
    for _ in 0..64 {
        let event = anns.event().await;
        assert_eq!(event["type"], "chat", "{event}");
        announced.insert(event["data"]["id"].as_i64().unwrap());
    }
    assert_eq!(announced, anns_chats, "each of Ann's, once");
    assert_eq!(bobs.closed().await, 4009, "more than Bob's socket can use");
    let quiet = anns.recv_within(Duration::from_millis(300)).await;
    assert!(
        quiet.is_none(),
        "Ann's stays open, nothing twice: {quiet:?}"
    );
}

/// Waits (up to 5 s) until `user`'s read marker, in their one chat, is `seq`.
async fn marker_stored(node: &TestApp, user: i64, seq: i64) {
    for _ in 0..100 {
        if node.read_marker(user).await == seq {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("the read marker of {user} never reached {seq}");
}

/// A record the deployment signed in a form this node cannot read (a newer
/// node's, in a rolling upgrade) may have carried a stored event: its
/// channel's user catches up from the store, so the per-chat socket gets the
/// message the bus never carried and the user socket closes with 4009 to
/// resume with `sync`. A new kind whose letter says it may be dropped (upper
/// case, as typing may be) is ignored.
#[tokio::test]
async fn a_bus_record_of_a_newer_form_sends_its_user_to_the_store() {
    let deployment = Deployment::start();
    let url = deployment.redis.url();
    let (watcher, writer) = deployment.watcher_and_busless_writer().await;
    let (ann, bob, chat) = writer.pair().await;
    let mut bobs = WsClient::user_synced(&watcher, &bob.access, json!({})).await;
    let mut b = WsClient::connect(&watcher, chat, &bob.access, None).await;
    writer.say(&ann, chat, "only in the store").await;
    let bobs_channel = channel(&deployment.prefix, bob.id);
    let droppable = format!("newer-node P {chat} 0 {} {} {{}}", ann.id, bob.id);
    let heard = publish(&url, &bobs_channel, &signed_record(droppable.as_bytes())).await;
    assert_eq!(heard, 1, "the watcher follows Bob");
    let quiet = Duration::from_millis(300);
    assert!(b.recv_within(quiet).await.is_none(), "ignored");
    assert!(bobs.recv_within(quiet).await.is_none(), "ignored");
    let newer = format!("newer-node z {chat} 1 {} {} {{}}", ann.id, bob.id);
    publish(&url, &bobs_channel, &signed_record(newer.as_bytes())).await;
    assert_eq!(b.message().await["content"], "only in the store");
    assert_eq!(bobs.closed().await, 4009, "resume with sync");
    assert_eq!(metric(&watcher, "chat_bus_unreadable_total").await, 1);
    assert_eq!(metric(&watcher, "chat_bus_refused_total").await, 0);
}

/// A bus record carrying `body`, signed as a node of the test deployment
/// signs (`length MAC body`).
fn signed_record(body: &[u8]) -> Vec<u8> {
    let signer = Signer::derived(crate::helpers::SECRET.as_bytes(), WIRE_KEY_PURPOSE);
    let mut record = ((MAC_BYTES + body.len()) as u32).to_be_bytes().to_vec();
    record.extend_from_slice(&signer.mac(&[body]));
    record.extend_from_slice(body);
    record
}

/// Events a node's full publish queue drops reach the other nodes through
/// the store: while Redis takes no `PUBLISH` (paused), the writer's queue
/// fills and drops the later messages, noting their users; once Redis takes
/// them again, the writer's lost notice names those users, and only their
/// sockets on the other nodes catch up. The dropped messages are the last
/// ones sent, so no later message can reveal the gap: the notice alone
/// brings them, each once and in order.
#[tokio::test]
async fn a_full_publish_queue_sends_what_it_dropped_through_the_store() {
    // More messages than the publish queue holds (`PUBLISH_QUEUE`, 4,096
    // committed batches); each is sent after the last one's echo, so each
    // is a batch of its own.
    const SENT: i64 = 4_300;
    let deployment = Deployment::start();
    // The queued messages reach the watcher all at once when Redis resumes:
    // its sockets' outboxes take them all rather than close with 4008.
    let roomy = [("WS_OUTBOX_CAPACITY", "16384")];
    let writer = deployment.node(&roomy).await;
    let watcher = deployment.node(&roomy).await;
    let bystanders_node = deployment.node(&[]).await;
    let url = deployment.redis.url();
    bus_ready(&[&writer, &watcher, &bystanders_node]).await;
    let (ann, bob, chat) = writer.pair().await;
    let (cat, dan) = (writer.user("cat").await, writer.user("dan").await);
    let bystanders = writer.chat(&cat, &dan).await;
    let mut b = WsClient::connect(&watcher, chat, &bob.access, None).await;
    let mut c = WsClient::connect(&bystanders_node, bystanders, &cat.access, None).await;
    resyncs_reach(&watcher, 1).await;
    resyncs_reach(&bystanders_node, 1).await;
    let mut a = WsClient::connect(&writer, chat, &ann.access, None).await;
    redis_command(&url, &["CLIENT", "PAUSE", "120000", "WRITE"]).await;
    for i in 1..=SENT {
        a.send_json(&json!({"type": "message.send", "content": format!("m{i}")}))
            .await;
        assert_eq!(a.message().await["seq"], i, "echoed after commit");
    }
    let dropped = metric(&writer, "chat_bus_dropped_total").await;
    assert!(dropped > 0, "the queue filled and dropped events");
    redis_command(&url, &["CLIENT", "UNPAUSE"]).await;
    let got = seqs(&mut b, SENT as usize).await;
    assert_eq!(got, (1..=SENT).collect::<Vec<_>>(), "all, once, in order");
    let extra = b.recv_within(Duration::from_millis(500)).await;
    assert!(extra.is_none(), "no duplicates after: {extra:?}");
    // Bob's socket caught up (counted once the catch-up is whole); the
    // bystanders' node heard the same notice and named no one of its own.
    resyncs_reach(&watcher, 2).await;
    assert_eq!(
        metric(&bystanders_node, "chat_ws_resyncs_total").await,
        1,
        "the bystander was not named"
    );
    assert!(c.recv_within(Duration::from_millis(100)).await.is_none());
}

/// A publish Redis never answers (paused past the publisher's answer
/// timeout) may or may not go out: the writer does not send it again (Redis
/// would run both once it resumes), it names its users in a lost notice,
/// and their sockets on the other node catch up from the store: the message
/// arrives once, however it came.
#[tokio::test]
async fn a_publish_redis_never_answers_is_not_sent_again_and_its_users_catch_up() {
    let deployment = Deployment::start();
    let writer = deployment.node(&[]).await;
    let watcher = deployment.node(&[]).await;
    let url = deployment.redis.url();
    bus_ready(&[&writer, &watcher]).await;
    let (ann, bob, chat) = writer.pair().await;
    let mut b = WsClient::connect(&watcher, chat, &bob.access, None).await;
    resyncs_reach(&watcher, 1).await;
    // The chat's `chat` event, published once the start was answered.
    let published = "chat_bus_published_total";
    counter_reaches(&writer, published, 1, Duration::from_secs(5)).await;
    let published_before = metric(&writer, published).await;
    redis_command(&url, &["CLIENT", "PAUSE", "60000", "WRITE"]).await;
    writer.say(&ann, chat, "unanswered").await;
    counter_reaches(
        &writer,
        "chat_bus_unconfirmed_total",
        1,
        Duration::from_secs(10),
    )
    .await;
    redis_command(&url, &["CLIENT", "UNPAUSE"]).await;
    assert_eq!(b.message().await["content"], "unanswered");
    let extra = b.recv_within(Duration::from_millis(500)).await;
    assert!(extra.is_none(), "once: {extra:?}");
    resyncs_reach(&watcher, 2).await;
    // Redis may run the unanswered pipeline once it resumes (the connection
    // it came on is still open): once, never again.
    let received = metric(&watcher, "chat_bus_received_total").await;
    assert!(received <= 1, "published {received} times");
    assert_eq!(
        metric(&writer, published).await,
        published_before,
        "a batch Redis left unanswered is not counted as published"
    );
}

/// Waits until counter `name` of `node` is at least `count`, for `within`.
pub(crate) async fn counter_reaches(node: &TestApp, name: &str, count: u64, within: Duration) {
    let deadline = tokio::time::Instant::now() + within;
    let mut seen = metric(node, name).await;
    while seen < count {
        assert!(
            tokio::time::Instant::now() < deadline,
            "{name} at {seen}, not {count}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
        seen = metric(node, name).await;
    }
}

/// Runs one command on the Redis at `url`.
async fn redis_command(url: &str, words: &[&str]) {
    let client = redis::Client::open(url).unwrap();
    let mut connection = client.get_multiplexed_async_connection().await.unwrap();
    let mut command = redis::cmd(words[0]);
    for word in &words[1..] {
        command.arg(*word);
    }
    command.query_async::<()>(&mut connection).await.unwrap();
}

/// A counter of `node`'s `/metrics`; 0 when absent.
pub(crate) async fn metric(node: &TestApp, name: &str) -> u64 {
    let metrics = node.get("/metrics", None).await.text;
    metrics
        .lines()
        .find_map(|line| line.strip_prefix(name)?.strip_prefix(' '))
        .and_then(|n| n.trim().parse().ok())
        .unwrap_or(0)
}

/// Publishes, as another node of `deployment` would sign it, a lost notice
/// naming `users`; its one node watching (the watcher) must hear it.
async fn notice_lost(deployment: &Deployment, users: &[i64]) {
    let notice =
        Wire::new(crate::helpers::SECRET, "another-node".into()).encode(&Envelope::lost_for(users));
    let url = deployment.redis.url();
    let heard = publish(&url, &lost_channel(&deployment.prefix), &notice).await;
    assert_eq!(heard, 1, "the watcher follows the lost channel");
}

/// `PUBLISH channel payload` on the Redis at `url`; how many subscribers
/// heard it.
async fn publish(url: &str, channel: &str, payload: &[u8]) -> i64 {
    let client = redis::Client::open(url).unwrap();
    let mut connection = client.get_multiplexed_async_connection().await.unwrap();
    redis::cmd("PUBLISH")
        .arg(channel)
        .arg(payload)
        .query_async(&mut connection)
        .await
        .unwrap()
}

/// Waits (up to 5 s) until `chat_ws_resyncs_total` on `node` is at least `count`.
async fn resyncs_reach(node: &TestApp, count: u64) {
    counter_reaches(node, "chat_ws_resyncs_total", count, Duration::from_secs(5)).await
}

#[tokio::test]
async fn a_killed_node_s_clients_resume_on_another_without_loss() {
    let database = fresh_database();
    let prefix = format!("test-{}", chat_server::digest::random_hex(6));
    let redis = redis_url();
    let overrides = [
        ("REDIS_URL", redis.as_str()),
        ("REDIS_CHANNEL_PREFIX", prefix.as_str()),
    ];
    let mut doomed = spawn_process_on(&database, &overrides).await;
    let survivor = spawn_app_on(&database, &overrides).await;
    bus_ready(&[&survivor]).await;
    let (ann, bob, chat) = survivor.pair().await;
    let mut b = WsClient::connect(&doomed, chat, &bob.access, None).await;
    for i in 0..20 {
        survivor.say(&ann, chat, &format!("before {i}")).await;
    }
    let seen = seqs(&mut b, 20).await;
    doomed.process.as_mut().unwrap().start_kill().unwrap();
    doomed.process.as_mut().unwrap().wait().await.unwrap();
    assert!(
        matches!(b.recv().await, Received::Close(_)),
        "the socket died with its node"
    );
    for i in 0..20 {
        survivor.say(&ann, chat, &format!("after {i}")).await;
    }
    let last = *seen.last().unwrap();
    let mut b = WsClient::connect(&survivor, chat, &bob.access, Some(last)).await;
    let rest = seqs(&mut b, 20).await;
    assert_eq!(rest, (21..=40).collect::<Vec<i64>>());
}

#[tokio::test]
async fn redis_password_is_honoured() {
    let redis = OwnRedis::start_with(&["--requirepass", "s3cret"]);
    let database = fresh_database();
    let prefix = format!("test-{}", chat_server::digest::random_hex(6));
    let mut nodes = Vec::new();
    for _ in 0..2 {
        let overrides = [
            ("REDIS_URL", redis.url()),
            ("REDIS_PASSWORD", "s3cret".to_owned()),
            ("REDIS_CHANNEL_PREFIX", prefix.clone()),
        ];
        let overrides: Vec<(&str, &str)> =
            overrides.iter().map(|(k, v)| (*k, v.as_str())).collect();
        nodes.push(spawn_app_on(&database, &overrides).await);
    }
    bus_ready(&[&nodes[0], &nodes[1]]).await;
    let (ann, bob, chat) = nodes[0].pair().await;
    let mut b = WsClient::connect(&nodes[1], chat, &bob.access, None).await;
    nodes[0]
        .say(&ann, chat, "through an authenticated Redis")
        .await;
    assert_eq!(
        b.message().await["content"],
        "through an authenticated Redis"
    );
}
