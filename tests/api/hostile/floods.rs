//! Floods of cheap events: read markers are coalesced (a burst becomes a write
//! or two, the highest wins), typing is limited per user across sockets, user
//! search is limited per user, bounded, goes through a trigram index, and an
//! empty query lists no one; starting chats is limited per user.

use crate::helpers::{spawn_app_with, Reply, TestApp, TestUser};
use crate::ws_client::{Received, WsClient};
use serde_json::json;
use std::time::Duration;

/// Every event a socket receives within `quiet` of the previous one.
async fn drain(ws: &mut WsClient, quiet: Duration) -> Vec<serde_json::Value> {
    let mut events = Vec::new();
    while let Some(Received::Json(event)) = ws.recv_within(quiet).await {
        events.push(event);
    }
    events
}

#[tokio::test]
async fn a_flood_of_read_markers_is_coalesced_and_the_highest_wins() {
    let app = spawn_app_with(&[("WS_READ_MARKER_INTERVAL_MS", "300")]).await;
    let (ann, bob, chat) = app.pair().await;
    app.say_many(&ann, chat, 50, "m", "hello").await;
    let mut watcher = WsClient::connect(&app, chat, &ann.access, Some(50)).await;
    let mut reader = WsClient::connect(&app, chat, &bob.access, Some(50)).await;
    for round in 0..4 {
        for seq in 1..=50 {
            let seq = if round == 3 { 51 - seq } else { seq };
            reader.send_json(&json!({"type": "read", "seq": seq})).await;
        }
    }
    let seen = drain(&mut watcher, Duration::from_millis(900)).await;
    let reads: Vec<i64> = seen
        .iter()
        .filter(|e| e["type"] == "read")
        .map(|e| e["seq"].as_i64().unwrap())
        .collect();
    assert!(
        !reads.is_empty() && reads.len() <= 3,
        "200 read events, a write per round: {reads:?}"
    );
    assert_eq!(reads.last(), Some(&50), "the highest wins: {reads:?}");
    assert_eq!(app.read_marker(bob.id).await, 50);
}

#[tokio::test]
async fn typing_is_limited_per_user_across_sockets() {
    let app = spawn_app_with(&[("WS_TYPING_INTERVAL_MS", "2000")]).await;
    let (ann, bob, chat) = app.pair().await;
    let mut watcher = WsClient::connect(&app, chat, &bob.access, None).await;
    let mut typists = Vec::new();
    for _ in 0..5 {
        typists.push(WsClient::connect(&app, chat, &ann.access, None).await);
    }
    for _ in 0..10 {
        for typist in &mut typists {
            typist.send_json(&json!({"type": "typing"})).await;
        }
    }
    let seen = drain(&mut watcher, Duration::from_millis(500)).await;
    assert_eq!(
        seen,
        [json!({"type": "typing", "chat": chat, "user_id": ann.id})],
        "one typing event per interval, however many sockets"
    );
}

#[tokio::test]
async fn user_search_is_limited_per_user() {
    let app = spawn_app_with(&[
        ("RATE_LIMIT_SEARCH_PER_MIN", "60"),
        ("RATE_LIMIT_SEARCH_BURST", "3"),
    ])
    .await;
    let (ann, bob, _) = app.pair().await;
    for _ in 0..3 {
        app.get("/api/users/?q=bob", Some(&ann.access))
            .await
            .expect(200);
    }
    let throttled = app.get("/api/users/?q=bob", Some(&ann.access)).await;
    throttled.expect(429);
    assert!(throttled.headers.contains_key("retry-after"));
    app.get("/api/users/?q=ann", Some(&bob.access))
        .await
        .expect(200);
}

#[tokio::test]
async fn starting_chats_is_limited_per_user_but_existing_ones_are_still_answered() {
    let app = spawn_app_with(&[
        ("RATE_LIMIT_NEW_CHATS_PER_MIN", "60"),
        ("RATE_LIMIT_NEW_CHATS_BURST", "2"),
    ])
    .await;
    let ann = app.user("ann").await;
    let (bob, cat, dan) = (
        app.user("bob").await,
        app.user("cat").await,
        app.user("dan").await,
    );
    let with_bob = start(&app, &ann, &bob).await.expect(201)["id"].clone();
    start(&app, &ann, &cat).await.expect(201);
    let refused = start(&app, &ann, &dan).await;
    refused.expect(429);
    assert!(refused.headers.contains_key("retry-after"));
    let dans = app.get("/api/chat/chats/", Some(&dan.access)).await;
    assert_eq!(
        *dans.expect(200),
        json!([]),
        "a refused start creates nothing"
    );
    // Past the limit an existing chat is still answered (clients call start
    // to open one), and the limit is ann's alone.
    assert_eq!(start(&app, &ann, &bob).await.expect(200)["id"], with_bob);
    assert_eq!(start(&app, &bob, &ann).await.expect(200)["id"], with_bob);
    start(&app, &dan, &ann).await.expect(201);
}

/// `who` starts (or finds) the chat with `with`.
async fn start(app: &TestApp, who: &TestUser, with: &TestUser) -> Reply {
    let body = json!({ "user_id": with.id });
    app.post("/api/chat/start/", Some(&who.access), &body).await
}

#[tokio::test]
async fn user_search_goes_through_a_trigram_index() {
    let app = spawn_app_with(&[]).await;
    let me = app.user("me").await;
    let db = app.db().await;
    db.batch_execute(
        "INSERT INTO users (email, password_hash, full_name, nickname)
         SELECT 'user' || g || '@example.com', '!', 'Person ' || md5(g::text),
                CASE WHEN g % 3 = 0 THEN 'nick' || g END
         FROM generate_series(1, 20000) g",
    )
    .await
    .unwrap();
    // As autovacuum would: the GIN indexes' pending entries are merged.
    db.batch_execute("VACUUM ANALYZE users").await.unwrap();
    // md5('12345') begins so: one user's name holds it.
    let found = app
        .get("/api/users/?q=827ccb0eea8a", Some(&me.access))
        .await;
    let found = found.expect(200);
    assert_eq!(found[0]["email"], "user12345@example.com", "{found}");
    assert_eq!(found.as_array().unwrap().len(), 1);

    // The server's statement, planned as it is planned for a rare substring.
    let statement = chat_server::store::postgres::SEARCH_USERS
        .replace("$1", &me.id.to_string())
        .replace("$2", "'%827ccb0eea8a%'")
        .replace("$3", "50");
    let plan: Vec<String> = db
        .query(&format!("EXPLAIN {statement}"), &[])
        .await
        .unwrap()
        .iter()
        .map(|row| row.get(0))
        .collect();
    let plan = plan.join("\n");
    for index in [
        "users_email_trgm",
        "users_full_name_trgm",
        "users_nickname_trgm",
    ] {
        assert!(plan.contains(index), "{index} not used:\n{plan}");
    }
}
