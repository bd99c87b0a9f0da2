//! The user socket (`/ws/`, DESIGN §3b): one connection for every chat of a
//! user. `ready` first, nothing until `sync`, replay then live per chat, `chat`
//! events before a new chat's first message, read markers and typing, errors
//! that name the chat, and unread counts in the chat list. The tests that need
//! no Redis run on both stores.

use crate::helpers::{TestApp, TestUser};
use crate::ws_client::{Received, WsClient};
use serde_json::{json, Value};
use std::collections::HashMap;
use std::time::Duration;

pub(crate) fn send(chat: i64, content: &str) -> Value {
    json!({"type": "message.send", "chat": chat, "content": content, "client_msg_id": content})
}

/// Nothing arrives on `socket` for a while.
pub(crate) async fn quiet(socket: &mut WsClient, why: &str) {
    let got = socket.recv_within(Duration::from_millis(300)).await;
    assert!(got.is_none(), "{why}: {got:?}");
}

/// The chat list entry of `chat` as `user` sees it.
async fn listed(app: &TestApp, user: &TestUser, chat: i64) -> Value {
    let list = app.get("/api/chat/chats/", Some(&user.access)).await;
    let list = list.expect(200).as_array().unwrap().clone();
    list.into_iter()
        .find(|c| c["id"] == chat)
        .unwrap_or_else(|| panic!("chat {chat} is listed"))
}

/// Polls the chat list until `user`'s `read_seq` in `chat` is `seq`.
async fn read_seq_reaches(app: &TestApp, user: &TestUser, chat: i64, seq: i64) -> Value {
    let mut entry = listed(app, user, chat).await;
    for _ in 0..50 {
        if entry["read_seq"] == seq {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
        entry = listed(app, user, chat).await;
    }
    entry
}

macro_rules! on_both_stores {
    ($($test:ident),* $(,)?) => {
        mod on_postgres {
            $(#[tokio::test] async fn $test() { super::$test(crate::helpers::spawn_app().await).await; })*
        }
        mod on_embedded_store {
            $(#[tokio::test] async fn $test() {
                super::$test(crate::helpers::spawn_embedded(&[]).await).await;
            })*
        }
    };
}

on_both_stores!(
    ready_comes_first_then_nothing_until_sync_then_the_replay_then_live,
    a_chat_started_by_the_peer_arrives_before_its_first_message,
    an_empty_chat_from_before_ready_starts_with_its_first_message_and_no_chat_event,
    bad_events_get_errors_naming_the_chat_and_the_socket_stays_open,
    one_message_reaches_both_kinds_of_socket_once_each,
    read_markers_reach_the_peer_and_the_readers_other_devices_typing_the_peer,
    unread_counts_and_the_peers_marker_follow_sends_reads_and_a_second_device,
    order_and_exactly_once_per_chat_across_syncs_under_a_send_storm_in_three_chats,
    a_ping_gets_a_pong_on_that_socket_only,
    a_sync_past_a_chats_end_resumes_from_its_end,
);

/// A `sync` cursor past the chat's end (a client's bug, or a database
/// restored from an older backup) resumes from the end: the next message
/// arrives, rather than being taken for one the client has.
async fn a_sync_past_a_chats_end_resumes_from_its_end(app: TestApp) {
    let (ann, bob, chat) = app.pair().await;
    app.say(&bob, chat, "one").await;
    let mut socket = WsClient::user_synced(&app, &ann.access, json!({chat.to_string(): 99})).await;
    quiet(&mut socket, "nothing to replay").await;
    app.say(&bob, chat, "two").await;
    let next = socket.message().await;
    assert_eq!(
        (next["seq"].as_i64(), next["content"].as_str()),
        (Some(2), Some("two"))
    );
}

async fn a_ping_gets_a_pong_on_that_socket_only(app: TestApp) {
    let (ann, bob, chat) = app.pair().await;
    let mut asked = WsClient::user_synced(&app, &ann.access, json!({})).await;
    let mut other_device = WsClient::user_synced(&app, &ann.access, json!({})).await;
    let mut per_chat = WsClient::connect(&app, chat, &ann.access, None).await;
    let mut peer = WsClient::user_synced(&app, &bob.access, json!({})).await;
    asked.send_json(&json!({"type": "ping"})).await;
    assert_eq!(asked.event().await, json!({"type": "pong"}));
    per_chat.send_json(&json!({"type": "ping"})).await;
    assert_eq!(per_chat.event().await, json!({"type": "pong"}));
    for socket in [&mut asked, &mut other_device, &mut per_chat, &mut peer] {
        quiet(socket, "one pong, to the socket that asked").await;
    }
}

async fn ready_comes_first_then_nothing_until_sync_then_the_replay_then_live(app: TestApp) {
    let (ann, bob, chat) = app.pair().await;
    app.say(&ann, chat, "one").await;
    app.say(&bob, chat, "two").await;
    let mut socket = WsClient::user(&app, &ann.access).await;
    assert_eq!(
        socket.event().await,
        json!({"type": "ready", "user_id": ann.id})
    );
    app.say(&bob, chat, "three").await;
    quiet(&mut socket, "nothing before the first sync").await;
    socket
        .send_json(&json!({"type": "sync", "chats": {chat.to_string(): 1}}))
        .await;
    let replayed = socket.message().await;
    assert_eq!(
        (replayed["seq"].as_i64(), replayed["chat"].as_i64()),
        (Some(2), Some(chat))
    );
    assert_eq!(
        socket.message().await["content"],
        "three",
        "held, then sent once"
    );
    quiet(&mut socket, "no duplicate at the seam").await;
    app.say(&bob, chat, "four").await;
    assert_eq!(socket.message().await["seq"], 4, "then live");
}

async fn a_chat_started_by_the_peer_arrives_before_its_first_message(app: TestApp) {
    let (ann, bob) = (app.user("ann").await, app.user("bob").await);
    let mut a = WsClient::user_synced(&app, &ann.access, json!({})).await;
    let mut b = WsClient::user_synced(&app, &bob.access, json!({})).await;
    let chat = app.chat(&bob, &ann).await;
    for socket in [&mut a, &mut b] {
        let event = socket.event().await;
        assert_eq!(event["type"], "chat", "{event}");
        assert_eq!(event["data"]["id"], chat);
        assert_eq!(
            (&event["data"]["last_seq"], &event["data"]["unread_count"]),
            (&json!(0), &json!(0))
        );
        let ids: Vec<&Value> = event["data"]["participants"]
            .as_array()
            .unwrap()
            .iter()
            .map(|u| &u["id"])
            .collect();
        assert_eq!(ids, [&json!(ann.id), &json!(bob.id)]);
    }
    b.send_json(&send(chat, "hello")).await;
    assert_eq!(a.message().await["content"], "hello");
    assert_eq!(b.message().await["client_msg_id"], "hello", "the echo");
    assert_eq!(app.chat(&ann, &bob).await, chat);
    quiet(&mut a, "an existing chat is not announced again").await;
}

/// A chat created before the sockets' `ready` is in the chat list their
/// clients read after it: its first message arrives with no `chat` event
/// ahead of it, on both sides.
async fn an_empty_chat_from_before_ready_starts_with_its_first_message_and_no_chat_event(
    app: TestApp,
) {
    let (ann, bob) = (app.user("ann").await, app.user("bob").await);
    let chat = app.chat(&bob, &ann).await;
    let mut a = WsClient::user_synced(&app, &ann.access, json!({})).await;
    let mut b = WsClient::user_synced(&app, &bob.access, json!({})).await;
    b.send_json(&send(chat, "first")).await;
    for (socket, who) in [(&mut a, "ann"), (&mut b, "bob")] {
        let event = socket.event().await;
        assert_eq!(
            (
                &event["type"],
                &event["data"]["seq"],
                &event["data"]["content"]
            ),
            (&json!("message"), &json!(1), &json!("first")),
            "{who}'s first event"
        );
        quiet(socket, "nothing after it").await;
    }
}

async fn bad_events_get_errors_naming_the_chat_and_the_socket_stays_open(app: TestApp) {
    let (ann, bob, chat) = app.pair().await;
    let (carol, dave) = (app.user("carol").await, app.user("dave").await);
    let others = app.chat(&carol, &dave).await;
    for path in [
        "/ws/".to_string(),
        "/ws/?token=nope".to_string(),
        format!("/ws/?token={}", ann.refresh),
    ] {
        let refused = app.upgrade_request(&path).await;
        assert_eq!(refused.status, 401, "{path}: {}", refused.text);
    }
    let mut socket = WsClient::user(&app, &ann.access).await;
    assert_eq!(socket.event().await["type"], "ready");
    let error = |code: &str, chat: Value| (code.to_string(), chat);
    let got = |event: Value| {
        assert_eq!(event["type"], "error", "{event}");
        (
            event["code"].as_str().unwrap().to_string(),
            event["chat"].clone(),
        )
    };
    let sync_body = json!({"999999": 0, others.to_string(): 0, chat.to_string(): 0});
    socket
        .send_json(&json!({"type": "sync", "chats": sync_body}))
        .await;
    let mut refusals = vec![got(socket.event().await), got(socket.event().await)];
    refusals.sort_by_key(|(code, _)| code.clone());
    assert_eq!(
        refusals,
        [
            error("forbidden", json!(others)),
            error("not_found", json!(999999))
        ]
    );
    socket
        .send_json(&json!({"type": "message.send", "content": "where?"}))
        .await;
    assert_eq!(
        got(socket.event().await),
        error("invalid_fields", Value::Null)
    );
    socket.send_json(&send(999999, "nowhere")).await;
    assert_eq!(got(socket.event().await), error("not_found", json!(999999)));
    socket.send_json(&send(others, "not mine")).await;
    assert_eq!(got(socket.event().await), error("forbidden", json!(others)));
    socket
        .send_json(&json!({"type": "read", "chat": chat, "seq": "x"}))
        .await;
    assert_eq!(
        got(socket.event().await),
        error("invalid_fields", json!(chat))
    );
    socket
        .send_json(&json!({"type": "typing", "chat": others}))
        .await;
    assert_eq!(got(socket.event().await), error("forbidden", json!(others)));
    let many: serde_json::Map<String, Value> =
        (1..=1001).map(|c| (c.to_string(), json!(0))).collect();
    socket
        .send_json(&json!({"type": "sync", "chats": many}))
        .await;
    assert_eq!(
        got(socket.event().await),
        error("too_many_chats", Value::Null)
    );
    socket
        .send_json(&json!({"type": "sync", "chats": {"x": "y"}}))
        .await;
    assert_eq!(
        got(socket.event().await),
        error("invalid_fields", Value::Null)
    );
    app.say(&bob, chat, "live").await;
    assert_eq!(socket.message().await["content"], "live");
    socket
        .send_json(&json!({"type": "sync", "chats": {chat.to_string(): 0}}))
        .await;
    assert_eq!(
        got(socket.event().await),
        error("already_live", json!(chat))
    );
    socket.send_json(&send(chat, "still open")).await;
    assert_eq!(socket.message().await["content"], "still open");
    let history = app
        .get(
            &format!("/api/chat/chats/{chat}/messages/"),
            Some(&ann.access),
        )
        .await;
    assert_eq!(history.expect(200)["count"], 2, "only the two good sends");
}

async fn one_message_reaches_both_kinds_of_socket_once_each(app: TestApp) {
    let (ann, bob, chat) = app.pair().await;
    let mut ann_user = WsClient::user_synced(&app, &ann.access, json!({})).await;
    let mut ann_chat = WsClient::connect(&app, chat, &ann.access, None).await;
    let mut bob_user = WsClient::user_synced(&app, &bob.access, json!({})).await;
    bob_user.send_json(&send(chat, "once")).await;
    for socket in [&mut ann_user, &mut ann_chat, &mut bob_user] {
        let message = socket.message().await;
        assert_eq!(
            (message["seq"].as_i64(), message["chat"].as_i64()),
            (Some(1), Some(chat))
        );
    }
    for socket in [&mut ann_user, &mut ann_chat, &mut bob_user] {
        quiet(socket, "once each").await;
    }
    ann_chat
        .send_json(&json!({"type": "message.send", "content": "from the per-chat socket"}))
        .await;
    assert_eq!(bob_user.message().await["seq"], 2);
    assert_eq!(
        ann_user.message().await["seq"],
        2,
        "the sender's other socket"
    );
    assert_eq!(ann_chat.message().await["seq"], 2, "the echo");
}

async fn read_markers_reach_the_peer_and_the_readers_other_devices_typing_the_peer(app: TestApp) {
    let (ann, bob, chat) = app.pair().await;
    for i in 0..3 {
        app.say(&bob, chat, &format!("m{i}")).await;
    }
    let mut phone = WsClient::user_synced(&app, &ann.access, json!({})).await;
    let mut laptop = WsClient::user_synced(&app, &ann.access, json!({})).await;
    let mut old_client = WsClient::connect(&app, chat, &ann.access, None).await;
    let mut b = WsClient::user_synced(&app, &bob.access, json!({})).await;
    phone
        .send_json(&json!({"type": "read", "chat": chat, "seq": 2}))
        .await;
    let read = json!({"type": "read", "chat": chat, "user_id": ann.id, "seq": 2});
    assert_eq!(b.event().await, read, "the other participant");
    assert_eq!(laptop.event().await, read, "the reader's other device");
    assert_eq!(old_client.event().await, read, "and its per-chat socket");
    quiet(&mut phone, "not the socket it came from").await;
    phone
        .send_json(&json!({"type": "typing", "chat": chat}))
        .await;
    assert_eq!(
        b.event().await,
        json!({"type": "typing", "chat": chat, "user_id": ann.id})
    );
    quiet(&mut laptop, "typing goes to the other participant only").await;
}

async fn unread_counts_and_the_peers_marker_follow_sends_reads_and_a_second_device(app: TestApp) {
    let (ann, bob, chat) = app.pair().await;
    for i in 0..3 {
        app.say(&bob, chat, &format!("m{i}")).await;
    }
    let seen = listed(&app, &ann, chat).await;
    assert_eq!(
        (&seen["last_seq"], &seen["read_seq"], &seen["unread_count"]),
        (&json!(3), &json!(0), &json!(3))
    );
    assert_eq!(
        seen["peer_read_seq"], 3,
        "the peer's marker, moved by sending"
    );
    let sender = listed(&app, &bob, chat).await;
    assert_eq!(
        (
            &sender["read_seq"],
            &sender["unread_count"],
            &sender["peer_read_seq"]
        ),
        (&json!(3), &json!(0), &json!(0)),
        "sending moved the sender's marker"
    );
    let mut phone = WsClient::user_synced(&app, &ann.access, json!({})).await;
    let mut laptop = WsClient::user_synced(&app, &ann.access, json!({})).await;
    phone
        .send_json(&json!({"type": "read", "chat": chat, "seq": 2}))
        .await;
    assert_eq!(
        laptop.next_of("read").await["seq"],
        2,
        "devices stay in step"
    );
    let after_read = read_seq_reaches(&app, &ann, chat, 2).await;
    assert_eq!(after_read["unread_count"], 1);
    assert_eq!(
        listed(&app, &bob, chat).await["peer_read_seq"],
        2,
        "what ann has seen, from the store"
    );
    phone
        .send_json(&json!({"type": "read", "chat": chat, "seq": 1}))
        .await;
    laptop.send_json(&send(chat, "reply")).await;
    assert_eq!(phone.message().await["seq"], 4);
    let after_send = listed(&app, &ann, chat).await;
    assert_eq!(
        (&after_send["read_seq"], &after_send["unread_count"]),
        (&json!(4), &json!(0)),
        "a marker never moves back, and sending reads up to the message"
    );
    assert_eq!(after_send["peer_read_seq"], 3);
    let peer = listed(&app, &bob, chat).await;
    assert_eq!(
        (&peer["unread_count"], &peer["peer_read_seq"]),
        (&json!(1), &json!(4))
    );
}

/// Three peers send to one user at once while the user's socket drops and
/// resumes with `sync`, several times: per chat, every message arrives, in
/// `seq` order, exactly once across the connections.
async fn order_and_exactly_once_per_chat_across_syncs_under_a_send_storm_in_three_chats(
    app: TestApp,
) {
    const EACH: i64 = 60;
    let ann = app.user("ann").await;
    let mut peers = Vec::new();
    for name in ["bob", "carol", "dave"] {
        let peer = app.user(name).await;
        let chat = app.chat(&ann, &peer).await;
        peers.push((peer, chat));
    }
    let app = std::sync::Arc::new(app);
    let storm: Vec<_> = peers
        .iter()
        .map(|(peer, chat)| {
            let (app, peer, chat) = (app.clone(), peer.clone(), *chat);
            tokio::spawn(async move {
                for i in 0..EACH {
                    app.say(&peer, chat, &format!("{chat}:{i}")).await;
                }
            })
        })
        .collect();
    let mut got: HashMap<i64, Vec<i64>> = peers.iter().map(|(_, c)| (*c, Vec::new())).collect();
    let total = EACH as usize * peers.len();
    let mut connections = 0;
    while got.values().map(Vec::len).sum::<usize>() < total {
        connections += 1;
        let cursors: serde_json::Map<String, Value> = got
            .iter()
            .map(|(chat, seqs)| (chat.to_string(), json!(seqs.last().copied().unwrap_or(0))))
            .collect();
        let mut socket = WsClient::user_synced(&app, &ann.access, Value::Object(cursors)).await;
        // Each connection reads a few messages, then drops (the last one reads on).
        let budget = if connections < 4 { 25 } else { usize::MAX };
        for _ in 0..budget {
            match socket.recv_within(Duration::from_secs(5)).await {
                Some(Received::Json(event)) if event["type"] == "message" => {
                    let chat = event["data"]["chat"].as_i64().unwrap();
                    got.get_mut(&chat)
                        .unwrap()
                        .push(event["data"]["seq"].as_i64().unwrap());
                }
                Some(other) => panic!("unexpected {other:?}"),
                None => break,
            }
        }
    }
    for task in storm {
        task.await.unwrap();
    }
    for (chat, seqs) in got {
        assert_eq!(seqs, (1..=EACH).collect::<Vec<_>>(), "chat {chat}");
    }
    assert!(connections >= 4, "the socket resumed {connections} times");
}

#[tokio::test]
async fn a_client_that_never_syncs_is_closed_once_its_held_events_fill_the_outbox() {
    let app = crate::helpers::spawn_app_with(&[("WS_OUTBOX_CAPACITY", "8")]).await;
    let (ann, bob, chat) = app.pair().await;
    let mut socket = WsClient::user(&app, &ann.access).await;
    assert_eq!(socket.event().await["type"], "ready");
    app.say_many(&bob, chat, 20, "held", "held").await;
    assert_eq!(socket.closed().await, 4008);
}

/// Across nodes (Redis between them): every event of both kinds of socket.
mod across_nodes {
    use super::{quiet, send};
    use crate::cluster::{bus_ready, bus_state, cluster, redis_url, Deployment};
    use crate::helpers::spawn_process_on;
    use crate::ws_client::{seqs_resuming, Received, WsClient};
    use serde_json::json;

    #[tokio::test]
    async fn read_markers_typing_and_chats_cross_nodes_for_both_kinds_of_socket() {
        let nodes = cluster(2, &redis_url()).await;
        bus_ready(&[&nodes[0], &nodes[1]]).await;
        let (ann, bob, chat) = nodes[0].pair().await;
        let mut ann_user = WsClient::user_synced(&nodes[0], &ann.access, json!({})).await;
        let mut ann_chat = WsClient::connect(&nodes[0], chat, &ann.access, None).await;
        let mut bob_user = WsClient::user_synced(&nodes[1], &bob.access, json!({})).await;
        let mut bob_chat = WsClient::connect(&nodes[1], chat, &bob.access, None).await;
        tokio::time::sleep(std::time::Duration::from_millis(300)).await; // subscribed
        bob_user.send_json(&send(chat, "over")).await;
        for socket in [&mut ann_user, &mut ann_chat, &mut bob_user, &mut bob_chat] {
            assert_eq!(socket.message().await["content"], "over");
        }
        ann_chat.send_json(&json!({"type": "read", "seq": 1})).await;
        let read = json!({"type": "read", "chat": chat, "user_id": ann.id, "seq": 1});
        assert_eq!(
            bob_user.event().await,
            read,
            "per-chat read → other node's user socket"
        );
        assert_eq!(bob_chat.event().await, read, "and its per-chat socket");
        assert_eq!(
            ann_user.event().await,
            read,
            "and the reader's other socket"
        );
        bob_chat.send_json(&json!({"type": "typing"})).await;
        let typing = json!({"type": "typing", "chat": chat, "user_id": bob.id});
        assert_eq!(ann_user.event().await, typing);
        assert_eq!(ann_chat.event().await, typing);
        quiet(
            &mut bob_user,
            "typing is not echoed to the typist's devices",
        )
        .await;
        let carol = nodes[1].user("carol").await;
        let started = nodes[1].chat(&carol, &ann).await;
        let announced = ann_user.event().await;
        assert_eq!(
            (&announced["type"], &announced["data"]["id"]),
            (&json!("chat"), &json!(started))
        );
        quiet(&mut ann_chat, "per-chat sockets get no chat events").await;
    }

    #[tokio::test]
    async fn one_user_with_sockets_on_two_nodes_stays_in_step() {
        let nodes = cluster(2, &redis_url()).await;
        bus_ready(&[&nodes[0], &nodes[1]]).await;
        let (ann, bob, chat) = nodes[0].pair().await;
        let mut phone = WsClient::user_synced(&nodes[0], &ann.access, json!({})).await;
        let mut laptop = WsClient::user_synced(&nodes[1], &ann.access, json!({})).await;
        tokio::time::sleep(std::time::Duration::from_millis(300)).await;
        phone.send_json(&send(chat, "from the phone")).await;
        assert_eq!(phone.message().await["seq"], 1);
        assert_eq!(laptop.message().await["content"], "from the phone");
        nodes[0].say(&bob, chat, "to both").await;
        assert_eq!(phone.message().await["seq"], 2);
        assert_eq!(laptop.message().await["seq"], 2);
        laptop
            .send_json(&json!({"type": "read", "chat": chat, "seq": 2}))
            .await;
        assert_eq!(
            phone.next_of("read").await["seq"],
            2,
            "devices stay in step"
        );
        quiet(&mut laptop, "once each, nothing back to the reader").await;
    }

    /// Waits (up to 5 s) until the node's `chat_bus_subscriptions` is `n`.
    async fn subscriptions_reach(node: &crate::helpers::TestApp, n: f64) -> f64 {
        let mut seen = 0.0;
        for _ in 0..100 {
            seen = crate::hostile::metric(node, "chat_bus_subscriptions").await;
            if seen == n {
                break;
            }
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        }
        seen
    }

    /// A node's Redis subscriptions follow its connected users, not their
    /// chats: a user in 1,000 chats costs one, as does a user in one, and a
    /// per-chat socket of a user already followed costs nothing more.
    #[tokio::test]
    async fn a_nodes_subscriptions_grow_with_its_users_not_their_chats() {
        let nodes = cluster(2, &redis_url()).await;
        bus_ready(&[&nodes[0], &nodes[1]]).await;
        let (ann, bob, chat) = nodes[0].pair().await;
        let others: Vec<i64> = nodes[0]
            .db()
            .await
            .query(
                "INSERT INTO users (email, password_hash, full_name)
                 SELECT 'u' || g || '@example.com', 'x', 'U ' || g FROM generate_series(1, 999) g
                 RETURNING id",
                &[],
            )
            .await
            .unwrap()
            .iter()
            .map(|row| row.get(0))
            .collect();
        nodes[0]
            .db()
            .await
            .execute(
                "INSERT INTO chats (pair_key, user_low, user_high)
                 SELECT encode(sha256(convert_to('pair:' || least($1, o) || ':' || greatest($1, o),
                                                 'UTF8')), 'hex'),
                        least($1, o), greatest($1, o)
                 FROM unnest($2::BIGINT[]) AS o",
                &[&ann.id, &others],
            )
            .await
            .unwrap();
        let listed = nodes[0].get("/api/chat/chats/", Some(&ann.access)).await;
        assert_eq!(listed.expect(200).as_array().unwrap().len(), 1000);
        assert_eq!(subscriptions_reach(&nodes[0], 0.0).await, 0.0);
        let mut ann_user = WsClient::user_synced(&nodes[0], &ann.access, json!({})).await;
        assert_eq!(
            subscriptions_reach(&nodes[0], 1.0).await,
            1.0,
            "1,000 chats, 1 subscription"
        );
        let _ann_chat = WsClient::connect(&nodes[0], chat, &ann.access, None).await;
        let _bob_user = WsClient::user_synced(&nodes[0], &bob.access, json!({})).await;
        assert_eq!(
            subscriptions_reach(&nodes[0], 2.0).await,
            2.0,
            "1 chat, 1 subscription"
        );
        let far = others[500];
        nodes[1].say(&ann, chat, "to bob from the other node").await;
        assert_eq!(ann_user.message().await["seq"], 1);
        let far_chat: i64 = nodes[0]
            .db()
            .await
            .query_one(
                "SELECT id FROM chats WHERE $1 IN (user_low, user_high) AND $2 IN (user_low, user_high)",
                &[&ann.id, &far],
            )
            .await
            .unwrap()
            .get(0);
        nodes[1].say(&ann, far_chat, "to one of 1,000").await;
        let far_message = ann_user.next_of("message").await;
        assert_eq!(
            far_message["data"]["chat"], far_chat,
            "any chat of the user, one subscription"
        );
    }

    /// A user socket on a node that is killed, while Redis restarts under a
    /// stream of messages: after the restart the socket catches up in place
    /// (it delivered from its one chat, so it knows where it stands);
    /// reconnected on the survivor after the kill, `sync` with the last seq it
    /// saw brings everything, once, in order; a chat created meanwhile is in
    /// the chat list.
    #[tokio::test]
    async fn after_a_redis_restart_and_a_node_kill_sync_finds_everything() {
        let mut deployment = Deployment::start();
        let overrides = deployment.overrides(&[]);
        let mut doomed = spawn_process_on(&deployment.database, &overrides).await;
        let survivor = deployment.node(&[]).await;
        bus_ready(&[&survivor, &doomed]).await;
        let (ann, bob, chat) = survivor.pair().await;
        let mut socket = WsClient::user_synced(&doomed, &ann.access, json!({})).await;
        for i in 0..30 {
            if i == 10 {
                deployment.redis.kill();
                bus_state(&doomed, "disconnected").await;
            }
            if i == 20 {
                deployment.redis.restart();
            }
            survivor.say(&bob, chat, &format!("m{i}")).await;
        }
        bus_state(&doomed, "ok").await;
        let (seen, resumed) = seqs_resuming(&mut socket, &doomed, &ann.access, chat, 30).await;
        assert_eq!(seen, (1..=30).collect::<Vec<_>>(), "through the restart");
        assert_eq!(resumed, 0, "caught up in place, never closed");
        doomed.process.as_mut().unwrap().start_kill().unwrap();
        doomed.process.as_mut().unwrap().wait().await.unwrap();
        assert!(matches!(socket.recv().await, Received::Close(_)));
        for i in 30..40 {
            survivor.say(&bob, chat, &format!("m{i}")).await;
        }
        let carol = survivor.user("carol").await;
        let missed = survivor.chat(&carol, &ann).await;
        survivor.say(&carol, missed, "while away").await;
        let cursors = json!({chat.to_string(): 30});
        let mut socket = WsClient::user_synced(&survivor, &ann.access, cursors).await;
        let rest: Vec<i64> = {
            let mut rest = Vec::new();
            while rest.len() < 10 {
                rest.push(socket.message().await["seq"].as_i64().unwrap());
            }
            rest
        };
        assert_eq!(rest, (31..=40).collect::<Vec<_>>());
        quiet(&mut socket, "nothing twice").await;
        let list = survivor.get("/api/chat/chats/", Some(&ann.access)).await;
        let first = &list.expect(200)[0];
        assert_eq!(
            (&first["id"], &first["last_seq"], &first["unread_count"]),
            (&json!(missed), &json!(1), &json!(1)),
            "the chat created while away leads the list"
        );
    }
}

/// A chat whose `chat` event never reached the sockets (here: created in the
/// database directly, so no event exists) is read from the store and
/// announced before its first message, on both sides: the sender's socket
/// too, although its client named the chat to send.
#[tokio::test]
async fn a_chat_whose_event_was_lost_is_announced_before_its_first_message() {
    let app = crate::helpers::spawn_app().await;
    let (ann, bob) = (app.user("ann").await, app.user("bob").await);
    let mut socket = WsClient::user_synced(&app, &ann.access, json!({})).await;
    let mut bobs = WsClient::user_synced(&app, &bob.access, json!({})).await;
    let (low, high) = (ann.id.min(bob.id), ann.id.max(bob.id));
    let row = app
        .db()
        .await
        .query_one(
            "INSERT INTO chats (pair_key, user_low, user_high)
             VALUES (encode(sha256(convert_to('pair:' || $1::BIGINT || ':' || $2::BIGINT, 'UTF8')), 'hex'),
                     $1::BIGINT, $2::BIGINT)
             RETURNING id",
            &[&low, &high],
        )
        .await
        .unwrap();
    let chat: i64 = row.get(0);
    quiet(
        &mut socket,
        "no event for a chat made behind the server's back",
    )
    .await;
    bobs.send_json(&send(chat, "first")).await;
    for (socket, who) in [(&mut socket, "ann"), (&mut bobs, "bob, the sender")] {
        let announced = socket.event().await;
        assert_eq!(
            (&announced["type"], &announced["data"]["id"]),
            (&json!("chat"), &json!(chat)),
            "{who}'s first event"
        );
        assert_eq!(socket.message().await["content"], "first");
        quiet(socket, "once each").await;
    }
}
