//! Abuse limits: per-address register/login, per-user sends (REST and
//! WebSocket, with a close for persistent floods, and later sends held back
//! behind a refused one), sockets per user, connections within the open-file
//! limit.

use crate::cluster::{bus_ready, bus_state, counter_reaches, metric, Deployment};
use crate::helpers::{spawn_app_with, spawn_process_with_open_files, TestApp, PASSWORD};
use crate::ws_client::{socket_path, WsClient};
use serde_json::json;
use std::time::Duration;

#[tokio::test]
async fn register_and_login_are_limited_per_address() {
    let app = spawn_app_with(&[
        ("RATE_LIMIT_AUTH_PER_MIN", "6"),
        ("RATE_LIMIT_AUTH_BURST", "3"),
    ])
    .await;
    for i in 0..3 {
        let body =
            json!({"email": format!("u{i}@example.com"), "password": PASSWORD, "full_name": "U"});
        app.post("/auth/register/", None, &body).await.expect(201);
    }
    let login = app
        .post(
            "/auth/login/",
            None,
            &json!({"email": "u0@example.com", "password": PASSWORD}),
        )
        .await;
    assert_eq!(login.status, 429);
    assert!(
        login.detail().starts_with("Request was throttled."),
        "{}",
        login.text
    );
    let retry: u64 = login.headers["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!((1..=10).contains(&retry), "Retry-After {retry}");
}

#[tokio::test]
async fn rest_sends_are_limited_per_user() {
    let app = spawn_app_with(&[
        ("RATE_LIMIT_SENDS_PER_SEC", "1"),
        ("RATE_LIMIT_SENDS_BURST", "2"),
    ])
    .await;
    let (ann, bob, chat) = app.pair().await;
    let path = format!("/api/chat/chats/{chat}/messages/");
    for _ in 0..2 {
        app.post(&path, Some(&ann.access), &json!({"content": "ok"}))
            .await
            .expect(201);
    }
    let third = app
        .post(&path, Some(&ann.access), &json!({"content": "too fast"}))
        .await;
    assert_eq!(third.status, 429);
    assert!(third.headers.contains_key("retry-after"));
    app.post(
        &path,
        Some(&bob.access),
        &json!({"content": "bob has his own budget"}),
    )
    .await
    .expect(201);
    assert_eq!(app.stored_message_count().await, 3);
}

/// The per-user limits count across the deployment's nodes: each node takes
/// what the others report they let a user through from its own buckets. Ann
/// spends her burst (one new chat, one search, one send) on one node; the
/// other node, once it has heard that node's reports, refuses her all three
/// (a node that limited alone would take them), while Bob, who spent
/// nothing, keeps his budget there. (One token each, each reported before
/// the next is spent, so no report can hold part of them.)
#[tokio::test]
async fn per_user_limits_count_across_nodes() {
    let deployment = Deployment::start();
    let limits = [
        ("RATE_LIMIT_SENDS_PER_SEC", "0.1"),
        ("RATE_LIMIT_SENDS_BURST", "1"),
        ("RATE_LIMIT_NEW_CHATS_PER_MIN", "1"),
        ("RATE_LIMIT_NEW_CHATS_BURST", "1"),
        ("RATE_LIMIT_SEARCH_PER_MIN", "1"),
        ("RATE_LIMIT_SEARCH_BURST", "1"),
    ];
    let first = deployment.node(&limits).await;
    let second = deployment.node(&limits).await;
    bus_ready(&[&first, &second]).await;
    let (ann, bob, chat) = first.pair().await;
    let reports = "chat_bus_usage_reports_total";
    counter_reaches(&second, reports, 1, Duration::from_secs(5)).await;
    let search = "/api/users/?q=carol";
    first.get(search, Some(&ann.access)).await.expect(200);
    counter_reaches(&second, reports, 2, Duration::from_secs(5)).await;
    let path = format!("/api/chat/chats/{chat}/messages/");
    first
        .post(
            &path,
            Some(&ann.access),
            &json!({"content": "on the first node"}),
        )
        .await
        .expect(201);
    counter_reaches(&second, reports, 3, Duration::from_secs(5)).await;
    let refused = second
        .post(
            &path,
            Some(&ann.access),
            &json!({"content": "on the second"}),
        )
        .await;
    assert_eq!(refused.status, 429, "{}", refused.text);
    let carol = second.user("carol").await;
    let start = second
        .post(
            "/api/chat/start/",
            Some(&ann.access),
            &json!({"user_id": carol.id}),
        )
        .await;
    assert_eq!(start.status, 429, "{}", start.text);
    let searched = second.get(search, Some(&ann.access)).await;
    assert_eq!(searched.status, 429, "{}", searched.text);
    second.get(search, Some(&bob.access)).await.expect(200);
    second
        .post(
            &path,
            Some(&bob.access),
            &json!({"content": "bob's own budget"}),
        )
        .await
        .expect(201);
    second.chat(&bob, &carol).await;
    assert_eq!(second.stored_message_count().await, 2);
}

/// Register and login count per address across the nodes too: one
/// registration from this address on one node leaves none for it on the
/// other (each node alone would take one).
#[tokio::test]
async fn register_and_login_count_per_address_across_nodes() {
    let deployment = Deployment::start();
    let limits = [
        ("RATE_LIMIT_AUTH_PER_MIN", "1"),
        ("RATE_LIMIT_AUTH_BURST", "1"),
    ];
    let first = deployment.node(&limits).await;
    let second = deployment.node(&limits).await;
    bus_ready(&[&first, &second]).await;
    let body = |name: &str| json!({"email": format!("{name}@example.com"), "password": PASSWORD, "full_name": name});
    first
        .post("/auth/register/", None, &body("ann"))
        .await
        .expect(201);
    let reports = "chat_bus_usage_reports_total";
    counter_reaches(&second, reports, 1, Duration::from_secs(5)).await;
    let refused = second.post("/auth/register/", None, &body("bob")).await;
    assert_eq!(refused.status, 429, "{}", refused.text);
}

/// The nodes follow the usage channel again once Redis is back: a send on
/// one node after a Redis restart is reported to the other.
#[tokio::test]
async fn usage_reports_resume_after_a_redis_restart() {
    let mut deployment = Deployment::start();
    let limits = [("RATE_LIMIT_SENDS_PER_SEC", "1000")];
    let first = deployment.node(&limits).await;
    let second = deployment.node(&limits).await;
    bus_ready(&[&first, &second]).await;
    let (ann, _bob, chat) = first.pair().await;
    deployment.redis.kill();
    for node in [&first, &second] {
        assert_eq!(
            bus_state(node, "disconnected").await.body["bus"],
            "disconnected"
        );
    }
    deployment.redis.restart();
    bus_ready(&[&first, &second]).await;
    let reports = "chat_bus_usage_reports_total";
    let heard = metric(&second, reports).await;
    first.say(&ann, chat, "after the restart").await;
    counter_reaches(&second, reports, heard + 1, Duration::from_secs(5)).await;
}

#[tokio::test]
async fn websocket_floods_get_errors_then_a_close() {
    let app = spawn_app_with(&[
        ("RATE_LIMIT_SENDS_PER_SEC", "20"),
        ("RATE_LIMIT_SENDS_BURST", "1"),
        ("WS_FLOOD_CLOSE_AFTER", "3"),
    ])
    .await;
    let (ann, _bob, chat) = app.pair().await;
    let mut a = WsClient::connect(&app, chat, &ann.access, None).await;
    let send = |id: &str| json!({"type": "message.send", "content": "flood", "client_msg_id": id});
    a.send_json(&send("f0")).await;
    assert_eq!(a.message().await["client_msg_id"], "f0");
    for i in 1..=3 {
        a.send_json(&send(&format!("f{i}"))).await;
        let error = a.event().await;
        assert_eq!(error["code"], "rate_limited", "{error}");
        assert_eq!(error["client_msg_id"], format!("f{i}"));
        if i == 1 {
            // A second past the stated wait (50 ms), and "f1" is never sent
            // again: what follows was not on its way when the refusal went out.
            tokio::time::sleep(std::time::Duration::from_millis(1100)).await;
        }
    }
    a.send_json(&send("f4")).await;
    assert_eq!(a.closed().await, 1008, "a persistent flood is closed");
    assert_eq!(app.stored_message_count().await, 1);
}

/// A send refused for the rate holds back every later send on its socket
/// until it comes back (its client id), so a client that resends in order
/// never has a later message stored ahead of it, even once tokens are there.
#[tokio::test]
async fn after_a_send_refused_for_the_rate_later_ones_wait_for_its_return() {
    let app = spawn_app_with(&[
        ("RATE_LIMIT_SENDS_PER_SEC", "5"),
        ("RATE_LIMIT_SENDS_BURST", "1"),
    ])
    .await;
    let (ann, _bob, chat) = app.pair().await;
    let mut a = WsClient::connect(&app, chat, &ann.access, None).await;
    let send = |id: &str| json!({"type": "message.send", "content": id, "client_msg_id": id});
    let refused = |event: serde_json::Value, id: &str| {
        assert_eq!(event["code"], "rate_limited", "{event}");
        assert_eq!(event["client_msg_id"], id, "{event}");
    };
    a.send_json(&send("a")).await;
    assert_eq!(a.message().await["client_msg_id"], "a");
    a.send_json(&send("b")).await;
    refused(a.event().await, "b");
    a.send_json(&send("c")).await;
    refused(a.event().await, "c");
    tokio::time::sleep(std::time::Duration::from_millis(450)).await;
    a.send_json(&send("c")).await;
    refused(a.event().await, "c"); // a token is there, but "b" has not come back
    a.send_json(&send("b")).await;
    assert_eq!(a.message().await["client_msg_id"], "b");
    tokio::time::sleep(std::time::Duration::from_millis(250)).await;
    a.send_json(&send("c")).await;
    assert_eq!(a.message().await["client_msg_id"], "c");
    let stored = app.stored_contents(&ann, chat).await;
    assert_eq!(stored, ["a", "b", "c"]);
}

/// A client that sends far past its burst at once (an outbox flushed after a
/// reconnect) is refused, not closed as a flood: the sends already on their
/// way when the first was refused are held back, and it gets everything
/// stored, in order, by resending what was refused after the stated wait.
#[tokio::test]
async fn a_burst_sent_at_once_past_the_limit_is_held_back_not_closed() {
    let app = spawn_app_with(&[
        ("RATE_LIMIT_SENDS_PER_SEC", "20"),
        ("RATE_LIMIT_SENDS_BURST", "5"),
        ("WS_FLOOD_CLOSE_AFTER", "3"),
    ])
    .await;
    let (ann, _bob, chat) = app.pair().await;
    let mut a = WsClient::connect(&app, chat, &ann.access, None).await;
    let ids: Vec<String> = (0..20).map(|i| format!("s{i:02}")).collect();
    let mut pending: Vec<String> = ids.clone();
    let mut rounds = 0;
    while !pending.is_empty() {
        rounds += 1;
        assert!(rounds <= 40, "no progress: {pending:?} left");
        for id in &pending {
            let send = json!({"type": "message.send", "content": id, "client_msg_id": id});
            a.send_json(&send).await;
        }
        let mut refused = Vec::new();
        let mut wait_ms = 0;
        for _ in 0..pending.len() {
            let event = a.event().await;
            match event["type"].as_str() {
                Some("message") => {}
                Some("error") => {
                    assert_eq!(event["code"], "rate_limited", "{event}");
                    let detail = event["detail"].as_str().unwrap();
                    let ms = detail.split("retry in ").nth(1).unwrap();
                    wait_ms = wait_ms.max(ms.trim_end_matches(" ms.").parse::<u64>().unwrap());
                    refused.push(event["client_msg_id"].as_str().unwrap().to_owned());
                }
                _ => panic!("unexpected {event}"),
            }
        }
        assert!(
            refused.len() < pending.len(),
            "round {rounds} stored nothing"
        );
        pending = refused;
        tokio::time::sleep(std::time::Duration::from_millis(wait_ms + 10)).await;
    }
    assert!(rounds >= 2, "the burst of 5 was not enforced");
    let stored = app.stored_contents(&ann, chat).await;
    assert_eq!(stored, ids, "each once, in the order sent");
}

/// While a user socket's sends are held behind a refused one, a send that
/// names no chat still gets its own error, not the hold's.
#[tokio::test]
async fn a_held_user_socket_still_names_a_send_without_a_chat() {
    let app = spawn_app_with(&[
        ("RATE_LIMIT_SENDS_PER_SEC", "1"),
        ("RATE_LIMIT_SENDS_BURST", "1"),
    ])
    .await;
    let (ann, _bob, chat) = app.pair().await;
    let mut a = WsClient::user_synced(&app, &ann.access, json!({})).await;
    let send = |id: &str| json!({"type": "message.send", "chat": chat, "content": id, "client_msg_id": id});
    a.send_json(&send("m0")).await;
    assert_eq!(a.next_of("message").await["data"]["client_msg_id"], "m0");
    a.send_json(&send("m1")).await;
    let refused = a.event().await;
    assert_eq!(refused["code"], "rate_limited", "{refused}");
    a.send_json(&json!({"type": "message.send", "content": "where?", "client_msg_id": "m2"}))
        .await;
    let error = a.event().await;
    assert_eq!(error["code"], "invalid_fields", "{error}");
    assert_eq!(error["client_msg_id"], "m2", "{error}");
    a.send_json(&send("m3")).await;
    let held = a.event().await;
    assert_eq!(held["code"], "rate_limited", "still held: {held}");
    assert_eq!(held["chat"], chat, "{held}");
}

/// Each `sync` reads where up to 1,000 chats stand: a socket's first sync
/// is always served, and a later one over the per-user limit gets
/// `rate_limited` and changes nothing; the socket stays open and live, and a
/// sync after the wait is served.
#[tokio::test]
async fn syncs_beyond_the_limit_get_rate_limited_and_the_socket_stays_live() {
    let app = spawn_app_with(&[
        ("RATE_LIMIT_SYNC_PER_MIN", "600"),
        ("RATE_LIMIT_SYNC_BURST", "1"),
    ])
    .await;
    let (ann, bob, chat) = app.pair().await;
    app.say(&bob, chat, "before").await;
    let cursors = json!({chat.to_string(): 0});
    let mut a = WsClient::user_synced(&app, &ann.access, cursors.clone()).await;
    assert_eq!(
        a.message().await["content"],
        "before",
        "the first sync replays"
    );
    a.send_json(&json!({"type": "sync", "chats": {}})).await;
    a.send_json(&json!({"type": "sync", "chats": cursors}))
        .await;
    let error = a.event().await;
    assert_eq!(error["code"], "rate_limited", "{error}");
    assert!(
        error["detail"].as_str().unwrap().contains("retry in"),
        "{error}"
    );
    app.say(&bob, chat, "live").await;
    assert_eq!(
        a.message().await["content"],
        "live",
        "still live, nothing replayed again"
    );
    // 600 a minute: a token is back within 100 ms.
    tokio::time::sleep(std::time::Duration::from_millis(150)).await;
    let other = app.user("cat").await;
    let second = app.chat(&other, &ann).await;
    app.say(&other, second, "elsewhere").await;
    a.send_json(&json!({"type": "sync", "chats": {second.to_string(): 0}}))
        .await;
    let replayed = a.next_of("message").await;
    assert_eq!(replayed["data"]["content"], "elsewhere", "{replayed}");
}

#[tokio::test]
async fn sockets_per_user_are_capped() {
    let app = spawn_app_with(&[("WS_MAX_SOCKETS_PER_USER", "2")]).await;
    let (ann, bob, chat) = app.pair().await;
    let first = WsClient::connect(&app, chat, &ann.access, None).await;
    let _second = WsClient::connect(&app, chat, &ann.access, None).await;

    let path = socket_path(chat, &ann.access, None);
    let third = app.upgrade_request(&path).await;
    assert_eq!(third.status, 429, "{}", third.text);
    let _bobs = WsClient::connect(&app, chat, &bob.access, None).await;
    first.close().await;
    let mut again = None;
    for _ in 0..50 {
        let reply = app.upgrade_request(&path).await;
        if reply.status == 101 {
            again = Some(reply.status);
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    assert_eq!(
        again,
        Some(reqwest::StatusCode::SWITCHING_PROTOCOLS),
        "a closed socket frees its slot"
    );
}

/// Reads until the server closes the connection (or `wait` passes).
pub async fn read_until_closed(
    stream: &mut tokio::net::TcpStream,
    wait: std::time::Duration,
) -> Option<String> {
    use tokio::io::AsyncReadExt;
    let mut received = Vec::new();
    let read = tokio::time::timeout(wait, stream.read_to_end(&mut received)).await;
    read.ok()
        .map(|_| String::from_utf8_lossy(&received).into_owned())
}

/// A connection that has sent the start of a request. (The server is handed a
/// connection once its first bytes arrive: one that sends nothing waits in the
/// kernel, uncounted, until it does or the header timeout passes.)
pub async fn open_and_start_a_request(app: &TestApp) -> tokio::net::TcpStream {
    use tokio::io::AsyncWriteExt;
    let mut stream = tokio::net::TcpStream::connect(app.addr).await.unwrap();
    stream
        .write_all(b"GET /healthz HTTP/1.1\r\n")
        .await
        .unwrap();
    stream
}

#[tokio::test]
async fn connections_beyond_the_limit_get_a_503_and_a_close() {
    let app = spawn_app_with(&[("MAX_CONNECTIONS", "2")]).await;
    let _first = open_and_start_a_request(&app).await;
    let _second = open_and_start_a_request(&app).await;
    tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    let mut third = open_and_start_a_request(&app).await;
    let answer = read_until_closed(&mut third, std::time::Duration::from_secs(2)).await;
    let answer = answer.expect("the excess connection is closed promptly");
    assert!(answer.starts_with("HTTP/1.1 503"), "{answer}");
    assert!(answer.contains("content-length: 49\r\n"), "{answer}");
    assert!(
        answer.ends_with(r#"{"detail":"Too many connections, retry shortly."}"#),
        "{answer}"
    );
}

/// A server started at a soft limit of 300 open files raises it to the hard
/// 400, and takes only the connections that fit beside what it keeps back
/// (128, its pool of 8, and 400 / 32 for refusals: 252). Every connection
/// past that gets its 503 at once; none is left waiting unanswered in the
/// kernel's queue, as when `accept` runs out of descriptors.
#[tokio::test]
async fn connections_past_the_open_file_limit_get_a_503_not_silence() {
    let app = spawn_process_with_open_files(300, 400, &[]).await;
    let (capacity, said) = logged_capacity(&app).await;
    assert!(said.contains("lowered"), "{said}");
    assert_eq!(
        capacity, 252,
        "the soft limit raised to 400, less 148 kept back"
    );
    let mut connections = Vec::new();
    for _ in 0..300 {
        connections.push(open_and_start_a_request(&app).await);
    }
    let answers = futures_util::future::join_all(
        connections
            .iter_mut()
            .map(|stream| read_until_closed(stream, std::time::Duration::from_secs(2))),
    )
    .await;
    let refused = answers.iter().flatten().collect::<Vec<_>>();
    assert!(
        refused
            .iter()
            .all(|answer| answer.starts_with("HTTP/1.1 503")),
        "{refused:?}"
    );
    assert_eq!(
        refused.len(),
        300 - 252,
        "each connection past the capacity refused"
    );
    drop(connections);
    tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    app.get("/healthz", None).await.expect(200);
}

/// `MAX_CONNECTIONS=0` sets no cap of its own: the capacity logged is the
/// open-file limit's (the same 252 as above, which that test shows enforced),
/// and the log says why; requests are served (a cap of 0 once refused every
/// connection).
#[tokio::test]
async fn max_connections_zero_logs_the_open_file_limit_as_its_cap_and_serves() {
    let app = spawn_process_with_open_files(300, 400, &[("MAX_CONNECTIONS", "0")]).await;
    let (capacity, said) = logged_capacity(&app).await;
    assert_eq!(capacity, 252, "the open-file limit's capacity");
    assert!(said.contains("MAX_CONNECTIONS=0"), "{said}");
    assert!(!said.contains("lowered"), "{said}");
    app.get("/healthz", None).await.expect(200);
}

/// The capacity the server logged when the open-file limit set it, and the
/// log line's message.
async fn logged_capacity(app: &TestApp) -> (u64, String) {
    for _ in 0..100 {
        let logs = app.logs();
        let logged = logs
            .lines()
            .filter_map(|line| serde_json::from_str::<serde_json::Value>(line).ok())
            .find_map(|entry| {
                let capacity = entry["fields"]["capacity"].as_u64()?;
                let said = entry["fields"]["message"].as_str().unwrap_or_default();
                Some((capacity, said.to_owned()))
            });
        if let Some(logged) = logged {
            return logged;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    panic!("no capacity logged:\n{}", app.logs());
}

/// An upgraded connection is still an open connection: WebSockets count
/// towards `MAX_CONNECTIONS` for as long as their sessions run.
#[tokio::test]
async fn websockets_count_towards_the_connection_limit() {
    let mut app = spawn_app_with(&[("MAX_CONNECTIONS", "3")]).await;
    let (ann, bob, chat) = app.pair().await;
    // The setup's pooled keep-alive connection goes away.
    app.client = reqwest::Client::new();
    tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    let _a = WsClient::connect(&app, chat, &ann.access, None).await;
    let _b = WsClient::connect(&app, chat, &bob.access, None).await;
    let c = WsClient::connect(&app, chat, &ann.access, None).await;
    let mut excess = open_and_start_a_request(&app).await;
    let answer = read_until_closed(&mut excess, std::time::Duration::from_secs(2)).await;
    let answer = answer.expect("the excess connection is closed promptly");
    assert!(answer.starts_with("HTTP/1.1 503"), "{answer}");

    c.close().await;
    tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    app.get("/healthz", None).await.expect(200);
}

#[tokio::test]
async fn slow_headers_are_cut_off() {
    use tokio::io::AsyncWriteExt;
    let app = spawn_app_with(&[("HEADER_READ_TIMEOUT_SECS", "1")]).await;
    let mut slow = tokio::net::TcpStream::connect(app.addr).await.unwrap();
    slow.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n")
        .await
        .unwrap();
    let started = std::time::Instant::now();
    let closed = read_until_closed(&mut slow, std::time::Duration::from_secs(5)).await;
    assert!(closed.is_some(), "a slowloris connection is closed");
    assert!(started.elapsed() < std::time::Duration::from_secs(4));
}
