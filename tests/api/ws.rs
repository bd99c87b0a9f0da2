//! Real-time delivery over real WebSockets: handshake refusals, echo as ack,
//! ordering under concurrency, resume with `after_seq`, slow consumers, bad
//! input, typing and read events, token expiry, shutdown.

use crate::helpers::{spawn_app, spawn_app_with, TestApp, SECRET};
use crate::ws_client::{socket_path, Received, WsClient};
use serde_json::{json, Value};
use std::time::Duration;

fn send_event(content: &str, client_msg_id: &str) -> Value {
    json!({"type": "message.send", "content": content, "metadata": {"k": 1}, "client_msg_id": client_msg_id})
}

/// Status of a plain upgrade request (refusals happen before the upgrade).
async fn handshake_status(app: &TestApp, path: &str) -> (u16, Value) {
    let reply = app.upgrade_request(path).await;
    (reply.status.as_u16(), reply.body)
}

#[tokio::test]
async fn handshakes_are_refused_before_the_upgrade() {
    let app = spawn_app().await;
    let (ann, _bob, chat) = app.pair().await;
    let eve = app.user("eve").await;
    let now = chat_server::auth::jwt::unix_now();
    let expired = jsonwebtoken::encode(
        &jsonwebtoken::Header::default(),
        &json!({"token_type": "access", "exp": now - 5, "iat": now - 100, "jti": "x", "user_id": ann.id.to_string()}),
        &jsonwebtoken::EncodingKey::from_secret(SECRET.as_bytes()),
    )
    .unwrap();
    let cases = [
        (format!("/ws/chats/{chat}/"), 401),
        (socket_path(chat, "garbage", None), 401),
        (socket_path(chat, &expired, None), 401),
        (socket_path(chat, &ann.refresh, None), 401),
        (socket_path(chat, &eve.access, None), 403),
        (socket_path(chat + 99, &ann.access, None), 404),
        (format!("/ws/chats/abc/?token={}", ann.access), 404),
        (
            format!("{}&after_seq=-4", socket_path(chat, &ann.access, None)),
            400,
        ),
        (
            format!("{}&after_seq=x", socket_path(chat, &ann.access, None)),
            400,
        ),
    ];
    for (path, status) in cases {
        let (got, body) = handshake_status(&app, &path).await;
        assert_eq!(got, status, "{path}: {body}");
        assert!(body.is_object(), "{path}: JSON error body");
    }
    let plain = app.get(&socket_path(chat, &ann.access, None), None).await;
    assert_eq!(plain.status, 426, "a plain GET is told to upgrade");
}

#[tokio::test]
async fn participants_exchange_messages_and_the_echo_is_the_ack() {
    let app = spawn_app().await;
    let (ann, bob, chat) = app.pair().await;
    let mut a = WsClient::connect(&app, chat, &ann.access, None).await;
    let mut b = WsClient::connect(&app, chat, &bob.access, None).await;
    a.send_json(&send_event("  hello bob ", "a-1")).await;
    let echo = a.message().await;
    let delivered = b.message().await;
    assert_eq!(echo, delivered, "the same message to both sockets");
    assert_eq!(echo["seq"], 1);
    assert_eq!(echo["content"], "hello bob");
    assert_eq!(echo["client_msg_id"], "a-1");
    assert_eq!(echo["sender"]["id"], ann.id);
    assert_eq!(echo["metadata"], json!({"k": 1}));

    b.send_json(&json!({"type": "message.send", "content": "hi ann"}))
        .await;
    assert_eq!(a.message().await["seq"], 2);
    assert_eq!(b.message().await["content"], "hi ann");

    let stored = app
        .get(
            &format!("/api/chat/chats/{chat}/messages/"),
            Some(&ann.access),
        )
        .await;
    assert_eq!(stored.expect(200)["count"], 2, "acknowledged means stored");
}

#[tokio::test]
async fn a_rest_send_reaches_every_socket_of_both_users() {
    let app = spawn_app().await;
    let (ann, bob, chat) = app.pair().await;
    let mut a1 = WsClient::connect(&app, chat, &ann.access, None).await;
    let mut a2 = WsClient::connect(&app, chat, &ann.access, None).await;
    let mut b = WsClient::connect(&app, chat, &bob.access, None).await;
    let sent = app.say(&bob, chat, "over rest").await;
    for socket in [&mut a1, &mut a2, &mut b] {
        assert_eq!(socket.message().await["id"], sent["id"]);
    }
}

#[tokio::test]
async fn a_resent_client_msg_id_creates_nothing_and_returns_the_original() {
    let app = spawn_app().await;
    let (ann, bob, chat) = app.pair().await;
    let mut a = WsClient::connect(&app, chat, &ann.access, None).await;
    let mut b = WsClient::connect(&app, chat, &bob.access, None).await;
    a.send_json(&send_event("once", "dup-1")).await;
    let first = a.message().await;
    b.message().await;
    a.send_json(&send_event("twice", "dup-1")).await;
    let again = a.message().await;
    assert_eq!(again["id"], first["id"]);
    assert_eq!(again["content"], "once");
    assert!(
        b.recv_within(Duration::from_millis(300)).await.is_none(),
        "the peer sees it once"
    );
    assert_eq!(app.stored_message_count().await, 1);
}

/// Reads `n` message events and returns their (seq, content).
async fn read_messages(socket: &mut WsClient, n: usize) -> Vec<(i64, String)> {
    let mut got = Vec::with_capacity(n);
    while got.len() < n {
        let message = socket.message().await;
        got.push((
            message["seq"].as_i64().unwrap(),
            message["content"].as_str().unwrap().to_owned(),
        ));
    }
    got
}

fn assert_gap_free_from(got: &[(i64, String)], first: i64) {
    let seqs: Vec<i64> = got.iter().map(|(seq, _)| *seq).collect();
    let expected: Vec<i64> = (first..first + got.len() as i64).collect();
    assert_eq!(seqs, expected, "every message once, in seq order");
}

#[tokio::test]
async fn concurrent_senders_are_seen_by_both_sockets_once_and_in_order() {
    let app = spawn_app().await;
    let (ann, bob, chat) = app.pair().await;
    let mut a = WsClient::connect(&app, chat, &ann.access, None).await;
    let mut b = WsClient::connect(&app, chat, &bob.access, None).await;
    let mut a_sender = WsClient::connect(&app, chat, &ann.access, None).await;
    let mut b_sender = WsClient::connect(&app, chat, &bob.access, None).await;
    const EACH: usize = 300;
    let send_a = async {
        for i in 0..EACH {
            a_sender
                .send_json(&send_event(&format!("a{i}"), &format!("a{i}")))
                .await;
        }
    };
    let send_b = async {
        for i in 0..EACH {
            b_sender
                .send_json(&send_event(&format!("b{i}"), &format!("b{i}")))
                .await;
        }
    };
    let (_, _, got_a, got_b) = tokio::join!(
        send_a,
        send_b,
        read_messages(&mut a, 2 * EACH),
        read_messages(&mut b, 2 * EACH)
    );
    assert_gap_free_from(&got_a, 1);
    assert_eq!(got_a, got_b, "both sockets see the same sequence");
    for who in ["a", "b"] {
        let own: Vec<usize> = got_a
            .iter()
            .filter(|(_, c)| c.starts_with(who))
            .map(|(_, c)| c[1..].parse().unwrap())
            .collect();
        assert_eq!(
            own,
            (0..EACH).collect::<Vec<_>>(),
            "{who}'s messages in the order sent"
        );
    }
}

#[tokio::test]
async fn reconnecting_with_after_seq_gets_what_was_missed_then_live() {
    let app = spawn_app().await;
    let (ann, bob, chat) = app.pair().await;
    let mut b = WsClient::connect(&app, chat, &bob.access, None).await;
    for i in 1..=3 {
        app.say(&ann, chat, &format!("m{i}")).await;
    }
    let seen = read_messages(&mut b, 3).await;
    let last_seen = seen.last().unwrap().0;
    b.close().await;
    for i in 4..=8 {
        app.say(&ann, chat, &format!("m{i}")).await;
    }
    let mut b = WsClient::connect(&app, chat, &bob.access, Some(last_seen)).await;
    let missed = read_messages(&mut b, 5).await;
    assert_gap_free_from(&missed, 4);
    app.say(&ann, chat, "live").await;
    let live = b.message().await;
    assert_eq!(
        (live["seq"].as_i64(), live["content"].as_str()),
        (Some(9), Some("live"))
    );
    assert!(
        b.recv_within(Duration::from_millis(300)).await.is_none(),
        "no duplicates"
    );
}

/// An `after_seq` past the chat's end (a client's bug, or a database
/// restored from an older backup) resumes from the end: the next message
/// arrives, rather than being taken for one the client has.
#[tokio::test]
async fn a_resume_past_the_chats_end_takes_the_next_message() {
    let app = spawn_app().await;
    let (ann, bob, chat) = app.pair().await;
    for i in 1..=3 {
        app.say(&ann, chat, &format!("m{i}")).await;
    }
    let mut b = WsClient::connect(&app, chat, &bob.access, Some(99)).await;
    assert!(b.recv_within(Duration::from_millis(300)).await.is_none());
    app.say(&ann, chat, "m4").await;
    let next = b.message().await;
    assert_eq!(
        (next["seq"].as_i64(), next["content"].as_str()),
        (Some(4), Some("m4"))
    );
}

#[tokio::test]
async fn resuming_during_a_send_storm_has_no_gap_or_duplicate_at_the_seam() {
    let app = spawn_app().await;
    let (ann, bob, chat) = app.pair().await;
    let mut sender = WsClient::connect(&app, chat, &ann.access, None).await;
    const TOTAL: usize = 400;
    let storm = async {
        for i in 0..TOTAL {
            sender
                .send_json(&send_event(&format!("s{i}"), &format!("s{i}")))
                .await;
            if i == TOTAL / 4 {
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }
    };
    let reader = async {
        tokio::time::sleep(Duration::from_millis(10)).await;
        let mut b = WsClient::connect(&app, chat, &bob.access, Some(0)).await;
        read_messages(&mut b, TOTAL).await
    };
    let ((), got) = tokio::join!(storm, reader);
    assert_gap_free_from(&got, 1);
}

/// A plain connect racing a send gets that message live, or never (it was
/// stored before the socket's starting point was read); never late, as a gap
/// filled only when the next message arrives. The server skips the catch-up
/// query on a plain connect, so this is what proves the skip is safe.
#[tokio::test]
async fn a_plain_connect_racing_a_send_gets_it_live_or_never() {
    let app = spawn_app().await;
    let (ann, bob, chat) = app.pair().await;
    for round in 0..24u64 {
        // Alternately the send and the connect start first, by 0-5.5 ms.
        let head_start = Duration::from_micros(round / 2 * 500);
        let (send_after, connect_after) = if round % 2 == 0 {
            (head_start, Duration::ZERO)
        } else {
            (Duration::ZERO, head_start)
        };
        let send = async {
            tokio::time::sleep(send_after).await;
            app.say(&ann, chat, "raced").await["seq"].as_i64().unwrap()
        };
        let connect = async {
            tokio::time::sleep(connect_after).await;
            WsClient::connect(&app, chat, &bob.access, None).await
        };
        let (raced, mut bob_socket) = tokio::join!(send, connect);
        match bob_socket.recv_within(Duration::from_millis(500)).await {
            Some(Received::Json(event)) => {
                assert_eq!(event["data"]["seq"], raced, "live: the raced message");
            }
            Some(Received::Close(code)) => panic!("closed with {code}"),
            None => {
                let next = app.say(&ann, chat, "next").await["seq"].clone();
                let first = bob_socket.message().await["seq"].clone();
                assert_eq!(first, next, "message {raced} was not delivered late");
            }
        }
        bob_socket.close().await;
    }
}

#[tokio::test]
async fn a_client_that_never_reads_is_closed_and_can_resume() {
    let app = spawn_app_with(&[("WS_OUTBOX_CAPACITY", "4")]).await;
    let (ann, bob, chat) = app.pair().await;
    let mut stalled = WsClient::connect(&app, chat, &bob.access, None).await;
    let big = "x".repeat(9_000);
    const TOTAL: usize = 1_500;

    app.say_many(&ann, chat, TOTAL, "c", &big).await;

    // The stalled socket was cut off: what it buffered, then the slow-consumer close.
    let mut received = Vec::new();
    let code = loop {
        match stalled.recv().await {
            Received::Json(event) => received.push(event["data"]["seq"].as_i64().unwrap()),
            Received::Close(code) => break code,
        }
    };
    assert_eq!(
        code, 4008,
        "slow consumers are closed with the resumable code"
    );
    assert!(received.len() < TOTAL, "it was cut off before the end");
    let resume_from = received.last().copied().unwrap_or(0);
    let mut resumed = WsClient::connect(&app, chat, &bob.access, Some(resume_from)).await;
    let rest = read_messages(&mut resumed, TOTAL - resume_from as usize).await;
    assert_gap_free_from(&rest, resume_from + 1);
}

/// A client that stops reading altogether fills its socket's buffers; the
/// session, blocked writing to it, gives up after the idle timeout and frees
/// the socket (it could not deliver a close frame anyway).
#[tokio::test]
async fn a_client_that_stops_reading_altogether_is_dropped_after_the_idle_timeout() {
    // An outbox roomy enough not to overflow: the session must be stuck in a
    // write (9 MB sent; loopback buffers take ~4 MB of it), not closed for 4008.
    let app = spawn_app_with(&[
        ("WS_OUTBOX_CAPACITY", "10000"),
        ("WS_IDLE_TIMEOUT_SECS", "2"),
        ("WS_PING_INTERVAL_SECS", "1"),
    ])
    .await;
    let (ann, bob, chat) = app.pair().await;
    let stalled = WsClient::connect(&app, chat, &bob.access, None).await;
    app.say_many(&ann, chat, 1_000, "s", &"x".repeat(9_000))
        .await;
    let open_sockets = || async {
        let metrics = app.get("/metrics", None).await.text;
        metrics
            .lines()
            .find_map(|line| line.strip_prefix("chat_websocket_connections_open "))
            .map(|n| n.trim().to_string())
    };
    let mut open = open_sockets().await;
    for _ in 0..100 {
        if open.as_deref() == Some("0") {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
        open = open_sockets().await;
    }
    assert_eq!(open.as_deref(), Some("0"), "the stalled session ended");
    drop(stalled);
}

#[tokio::test]
async fn bad_events_get_error_events_and_the_socket_stays_open() {
    let app = spawn_app().await;
    let (ann, _bob, chat) = app.pair().await;
    let mut a = WsClient::connect(&app, chat, &ann.access, None).await;
    let cases = [
        ("{not json", "invalid_json"),
        ("[1,2]", "invalid_event"),
        ("\"text\"", "invalid_event"),
        (r#"{"content":"no type"}"#, "invalid_event"),
        (r#"{"type":42}"#, "invalid_event"),
        (r#"{"type":"dance"}"#, "unknown_type"),
        (r#"{"type":"message.send"}"#, "invalid_fields"),
        (
            r#"{"type":"message.send","content":"   ","client_msg_id":"b-1"}"#,
            "invalid_fields",
        ),
        (
            r#"{"type":"message.send","content":{"a":1}}"#,
            "invalid_fields",
        ),
        (
            r#"{"type":"message.send","content":"x","metadata":null}"#,
            "invalid_fields",
        ),
        (
            r#"{"type":"message.send","content":"x","client_msg_id":5}"#,
            "invalid_fields",
        ),
        (r#"{"type":"read","seq":"x"}"#, "invalid_fields"),
        (r#"{"type":"read"}"#, "invalid_fields"),
        (r#"{"type":"read","seq":0}"#, "invalid_fields"),
    ];
    for (text, code) in cases {
        a.send_text(text).await;
        let event = a.event().await;
        assert_eq!(event["type"], "error", "{text}");
        assert_eq!(event["code"], code, "{text}: {event}");
        assert!(event["detail"].as_str().is_some_and(|d| !d.is_empty()));
    }
    a.send_text(r#"{"type":"message.send","content":" ","client_msg_id":"keep-me"}"#)
        .await;
    assert_eq!(
        a.event().await["client_msg_id"],
        "keep-me",
        "errors carry the client id"
    );
    a.send_json(&send_event("still here", "ok-1")).await;
    assert_eq!(
        a.message().await["content"],
        "still here",
        "the socket stayed open"
    );
}

#[tokio::test]
async fn binary_frames_and_oversized_messages_close_with_defined_codes() {
    let app = spawn_app_with(&[("WS_MAX_MESSAGE_BYTES", "2048")]).await;
    let (ann, _bob, chat) = app.pair().await;
    let mut a = WsClient::connect(&app, chat, &ann.access, None).await;
    a.send_binary(b"\x00\x01").await;
    assert_eq!(a.closed().await, 1003);
    let mut a = WsClient::connect(&app, chat, &ann.access, None).await;
    a.send_json(&send_event(&"y".repeat(4096), "big")).await;
    assert_eq!(a.closed().await, 1009);
    assert_eq!(app.stored_message_count().await, 0);
}

#[tokio::test]
async fn typing_and_read_markers_reach_the_peer() {
    let app = spawn_app().await;
    let (ann, bob, chat) = app.pair().await;
    let mut a = WsClient::connect(&app, chat, &ann.access, None).await;
    let mut b = WsClient::connect(&app, chat, &bob.access, None).await;
    a.send_json(&json!({"type": "typing"})).await;
    a.send_json(&json!({"type": "typing"})).await;
    assert_eq!(
        b.event().await,
        json!({"type": "typing", "chat": chat, "user_id": ann.id})
    );
    assert!(
        b.recv_within(Duration::from_millis(300)).await.is_none(),
        "typing is throttled"
    );
    assert!(
        a.recv_within(Duration::from_millis(100)).await.is_none(),
        "not echoed to the typist"
    );

    for i in 0..3 {
        app.say(&ann, chat, &format!("m{i}")).await;
    }
    read_messages(&mut a, 3).await;
    read_messages(&mut b, 3).await;
    b.send_json(&json!({"type": "read", "seq": 2})).await;
    assert_eq!(
        a.event().await,
        json!({"type": "read", "chat": chat, "user_id": bob.id, "seq": 2})
    );
    b.send_json(&json!({"type": "read", "seq": 1})).await;
    assert_eq!(a.event().await["seq"], 2, "read markers never move back");
    b.send_json(&json!({"type": "read", "seq": 99})).await;
    assert_eq!(a.event().await["seq"], 3, "nor past the last message");
    assert_eq!(app.read_marker(bob.id).await, 3);
}

/// A per-chat client that resumes with `after_seq` is told, after what it
/// missed, the read markers its messages do not already tell; a plain
/// connect is told none (as the original's clients expect).
#[tokio::test]
async fn a_resuming_client_is_told_the_read_markers_that_moved_while_it_was_away() {
    let app = spawn_app().await;
    let (ann, bob, chat) = app.pair().await;
    let mut b = WsClient::connect(&app, chat, &bob.access, None).await;
    for i in 1..=3 {
        app.say(&bob, chat, &format!("m{i}")).await;
    }
    read_messages(&mut b, 3).await;
    b.close().await;

    let mut a = WsClient::connect(&app, chat, &ann.access, None).await;
    let mut a_elsewhere = WsClient::connect(&app, chat, &ann.access, None).await;
    a.send_json(&json!({"type": "read", "seq": 2})).await;
    let own = a_elsewhere.event().await;
    assert_eq!(
        own,
        json!({"type": "read", "chat": chat, "user_id": ann.id, "seq": 2})
    );

    let mut plain = WsClient::connect(&app, chat, &bob.access, None).await;
    assert!(
        plain
            .recv_within(Duration::from_millis(300))
            .await
            .is_none(),
        "a plain connect is told no marker"
    );
    let mut resumed = WsClient::connect(&app, chat, &bob.access, Some(3)).await;
    assert_eq!(
        resumed.event().await,
        json!({"type": "read", "chat": chat, "user_id": ann.id, "seq": 2}),
        "ann's marker moved while bob was away; bob's own names his own message"
    );
    assert!(resumed
        .recv_within(Duration::from_millis(300))
        .await
        .is_none());

    app.say(&ann, chat, "m4").await;
    let mut behind = WsClient::connect(&app, chat, &bob.access, Some(3)).await;
    assert_eq!(behind.message().await["seq"], 4);
    assert!(
        behind
            .recv_within(Duration::from_millis(300))
            .await
            .is_none(),
        "ann's marker is her own message 4, which told it"
    );
}

#[tokio::test]
async fn an_expiring_token_closes_the_socket_with_4001() {
    let app = spawn_app_with(&[("ACCESS_TOKEN_TTL_SECS", "2")]).await;
    let (ann, _bob, chat) = app.pair().await;
    let mut a = WsClient::connect(&app, chat, &ann.access, None).await;
    assert_eq!(a.closed().await, 4001);
}

/// The idle timeout and the token's expiry share one timer that the session
/// sets again whenever it fires early; a client that keeps answering pings must
/// still be closed when its token expires, with 4001, not kept alive by its pongs
/// nor closed as idle.
#[tokio::test]
async fn a_ponging_client_is_still_closed_when_its_token_expires() {
    let app = spawn_app_with(&[
        ("ACCESS_TOKEN_TTL_SECS", "4"),
        ("WS_IDLE_TIMEOUT_SECS", "2"),
        ("WS_PING_INTERVAL_SECS", "1"),
    ])
    .await;
    let (ann, _bob, chat) = app.pair().await;
    let mut a = WsClient::connect(&app, chat, &ann.access, None).await;
    let opened = std::time::Instant::now();
    assert_eq!(a.closed().await, 4001);
    assert!(
        opened.elapsed() >= Duration::from_secs(2),
        "outlived the idle timeout by answering pings ({:?})",
        opened.elapsed()
    );
}

#[tokio::test]
async fn shutdown_closes_sockets_with_going_away() {
    let app = spawn_app().await;
    let (ann, _bob, chat) = app.pair().await;
    let mut a = WsClient::connect(&app, chat, &ann.access, None).await;
    let stopping = tokio::spawn(app.stop());
    assert_eq!(a.closed().await, 1001);
    tokio::time::timeout(Duration::from_secs(5), stopping)
        .await
        .expect("drain finishes once sockets are closed")
        .unwrap();
}

#[tokio::test]
async fn silent_clients_time_out_but_ponging_clients_stay() {
    let app = spawn_app_with(&[
        ("WS_IDLE_TIMEOUT_SECS", "2"),
        ("WS_PING_INTERVAL_SECS", "1"),
    ])
    .await;
    let (ann, bob, chat) = app.pair().await;
    let mut silent = WsClient::silent(&app, chat, &ann.access).await;
    let mut alive = WsClient::connect(&app, chat, &bob.access, None).await;
    // `alive` keeps reading, so its client answers the server's pings.
    assert!(
        alive
            .recv_within(Duration::from_millis(3500))
            .await
            .is_none(),
        "still open"
    );
    assert_eq!(
        silent.closed().await,
        4000,
        "no pong, no frames: idle timeout"
    );
    app.say(&ann, chat, "still there?").await;
    assert_eq!(alive.message().await["content"], "still there?");
}

#[tokio::test]
async fn a_stalled_socket_does_not_grow_server_memory() {
    let app = crate::helpers::spawn_process(&[("WS_OUTBOX_CAPACITY", "64")]).await;
    let (ann, bob, chat) = app.pair().await;
    let big = "x".repeat(9_000);
    let _stalled = WsClient::silent(&app, chat, &bob.access).await;
    app.say_many(&ann, chat, 200, "warm-up", &big).await; // pools and buffers
    let before = app.server_rss_bytes();
    const TOTAL: usize = 4_000;
    app.say_many(&ann, chat, TOTAL, "c", &big).await;
    let grown = app.server_rss_bytes().saturating_sub(before);
    let sent = (TOTAL * big.len()) as u64;
    println!("server RSS grew {grown} bytes while {sent} bytes were sent to a stalled socket");
    assert!(
        grown < sent / 4,
        "server RSS grew {grown} bytes; {sent} were sent"
    );
}

/// A client that floods sends and reads nothing until it is done overflows its
/// outbox (its own echoes); it must still get the 4008 close frame, not a reset
/// from a socket closed with its unread events still queued.
#[tokio::test]
async fn a_flooding_client_that_overflows_gets_the_close_code() {
    let app = spawn_app_with(&[("WS_OUTBOX_CAPACITY", "4")]).await;
    let (ann, _bob, chat) = app.pair().await;
    let mut socket = WsClient::connect(&app, chat, &ann.access, None).await;
    for i in 0..300 {
        let event = json!({"type": "message.send", "content": format!("m{i}"), "client_msg_id": format!("f{i}")});
        socket.send_json(&event).await;
    }
    let code = loop {
        match socket.recv().await {
            Received::Json(_) => {}
            Received::Close(code) => break code,
        }
    };
    assert_eq!(code, 4008, "the close code reached the client");
}

/// A burst big enough that the writer lane appends a batch while it still
/// settles the one before: every message is echoed to its sender and delivered
/// to the peer once, in the order it was sent, with gap-free seqs.
#[tokio::test]
async fn a_burst_through_one_writer_lane_arrives_whole_and_in_order() {
    const BURST: usize = 400;
    // Small batches: a full one queued behind a commit is likely.
    let app = spawn_app_with(&[("WRITER_LANES", "1"), ("WRITER_BATCH_MAX", "8")]).await;
    let (ann, bob, chat) = app.pair().await;
    let mut a = WsClient::connect(&app, chat, &ann.access, None).await;
    let mut b = WsClient::connect(&app, chat, &bob.access, None).await;
    for i in 0..BURST {
        a.send_json(&send_event(&format!("m{i}"), &format!("c{i}")))
            .await;
    }
    for (who, socket) in [("sender", &mut a), ("peer", &mut b)] {
        for i in 0..BURST {
            let message = socket.message().await;
            let expected = format!("m{i}");
            assert_eq!(
                (message["seq"].as_i64(), message["content"].as_str()),
                (Some(i as i64 + 1), Some(expected.as_str())),
                "{who}"
            );
        }
    }
    let metrics = app.get("/metrics", None).await.text;
    let counter = |name: &str| {
        metrics
            .lines()
            .find_map(|line| line.strip_prefix(name))
            .and_then(|n| n.trim().parse::<u64>().ok())
            .unwrap_or_else(|| panic!("{name}in {metrics}"))
    };
    assert!(
        counter("chat_writer_overlapped_batches_total ") > 0,
        "the burst never overlapped"
    );
    assert_eq!(
        counter("chat_messages_delivered_total "),
        2 * BURST as u64,
        "every message reached both sockets through the room, none by a store read filling a gap"
    );
}

#[tokio::test]
async fn the_lean_client_holds_a_socket_that_receives_and_is_refused_like_any_other() {
    use chat_client::connect_lean;
    use chat_server::ws::transport::{Inbound, MessageReader};
    use fastwebsockets::WebSocketError;
    let app = spawn_app().await;
    let (ann, bob, chat) = app.pair().await;
    let authority = app.addr.to_string();
    let path = socket_path(chat, &bob.access, None);
    let (socket, read_ahead) = connect_lean(app.addr, &authority, &path, None)
        .await
        .expect("the hand-made handshake is accepted");
    app.say(&ann, chat, "to the lean socket").await;
    let mut reader = MessageReader::client(&socket, read_ahead, 1 << 20);
    let inbound = tokio::time::timeout(crate::ws_client::WAIT, reader.next())
        .await
        .expect("a frame in time")
        .expect("a frame");
    let Inbound::Text(text) = inbound else {
        panic!("expected a text frame, got {inbound:?}");
    };
    let event: Value = serde_json::from_slice(&text).unwrap();
    assert_eq!(event["type"], "message");
    assert_eq!(event["data"]["content"], "to the lean socket");

    let refused = connect_lean(
        app.addr,
        &authority,
        &socket_path(chat, "garbage", None),
        None,
    )
    .await;
    assert!(
        matches!(refused, Err(WebSocketError::InvalidStatusCode(401))),
        "{:?}",
        refused.err()
    );
}
