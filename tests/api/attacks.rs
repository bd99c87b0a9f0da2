//! Attacks on identity: a deleted user's tokens, and secrets in logs.

use crate::helpers::{spawn_app, spawn_app_with, spawn_process, PASSWORD};
use crate::messages::path;
use crate::ws_client::socket_path;
use serde_json::json;

#[tokio::test]
async fn a_deleted_users_tokens_open_nothing() {
    let app = spawn_app().await;
    let (ann, bob, chat) = app.pair().await;
    app.say(&ann, chat, "before").await;
    let db = app.db().await;
    db.execute("DELETE FROM users WHERE id = $1", &[&ann.id])
        .await
        .unwrap();

    let send = app
        .post(&path(chat), Some(&ann.access), &json!({"content": "x"}))
        .await;
    assert_eq!(send.status, 401, "send: {}", send.text);
    let start = app
        .post(
            "/api/chat/start/",
            Some(&ann.access),
            &json!({"user_id": bob.id}),
        )
        .await;
    assert_eq!(start.status, 401, "start: {}", start.text);
    let refresh = app
        .post("/auth/refresh/", None, &json!({"refresh": ann.refresh}))
        .await;
    assert_eq!(refresh.status, 401, "refresh: {}", refresh.text);
    let history = app.get(&path(chat), Some(&ann.access)).await;
    assert!(
        history.status.is_client_error(),
        "history: {}",
        history.text
    );
    let chats = app.get("/api/chat/chats/", Some(&ann.access)).await;
    assert_eq!(
        chats.expect(200),
        &json!([]),
        "nothing of theirs is left to list"
    );
    let socket = app
        .upgrade_request(&socket_path(chat, &ann.access, None))
        .await;
    assert!(
        socket.status.is_client_error(),
        "websocket: {}",
        socket.status
    );
}

#[tokio::test]
async fn passwords_and_tokens_never_reach_the_logs() {
    let app = spawn_process(&[("RUST_LOG", "debug")]).await;
    let (ann, _bob, chat) = app.pair().await;
    app.say(&ann, chat, "hello").await;
    app.post("/auth/refresh/", None, &json!({"refresh": ann.refresh}))
        .await
        .expect(200);
    let socket = crate::ws_client::WsClient::connect(&app, chat, &ann.access, None).await;
    socket.close().await;
    tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    let logs = app.logs();
    assert!(
        logs.contains("websocket session opened"),
        "debug logs were captured"
    );
    for secret in [PASSWORD, ann.access.as_str(), ann.refresh.as_str()] {
        assert!(!logs.contains(secret), "a secret reached the logs");
    }
}

/// One lane that waits 100 ms to fill its batch, so the sends below share one
/// batch: a send into a chat deleted in the database (through a membership the
/// node remembers) must fail alone, not take its batch-mates down with it.
#[tokio::test]
async fn a_send_into_a_deleted_chat_fails_alone() {
    let app = spawn_app_with(&[("WRITER_LANES", "1"), ("WRITER_LINGER_MS", "100")]).await;
    let (ann, bob, live) = app.pair().await;
    let cat = app.user("cat").await;
    let doomed = app.chat(&ann, &cat).await;
    app.say(&ann, doomed, "remembered").await;
    let db = app.db().await;
    db.execute("DELETE FROM chats WHERE id = $1", &[&doomed])
        .await
        .unwrap();
    let live_sends = (0..20).map(|n| {
        let body = json!({"content": format!("live {n}"), "client_msg_id": format!("l{n}")});
        let (app, bob, path) = (&app, &bob, path(live));
        async move { app.post(&path, Some(&bob.access), &body).await }
    });
    let (doomed_path, doomed_body) = (path(doomed), json!({"content": "x"}));
    let doomed_send = app.post(&doomed_path, Some(&ann.access), &doomed_body);
    let (live_replies, refused) =
        tokio::join!(futures_util::future::join_all(live_sends), doomed_send);
    assert_eq!(refused.status, 404, "{}", refused.text);
    let mut seqs: Vec<i64> = live_replies
        .iter()
        .map(|reply| reply.expect(201)["seq"].as_i64().unwrap())
        .collect();
    seqs.sort_unstable();
    assert_eq!(seqs, (1..=20).collect::<Vec<_>>());
}
