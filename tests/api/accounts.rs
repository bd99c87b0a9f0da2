//! Accounts as the Django backend left them: its password hashes (verified,
//! then rehashed to argon2id), unusable passwords, and inactive users, refused
//! on every authenticated path and closed out of live sockets.

use crate::helpers::{spawn_app_with, TestApp, TestUser, PASSWORD};
use crate::ws_client::{socket_path, WsClient};
use serde_json::json;
use std::time::{Duration, Instant};

/// Django 5.2's `PBKDF2PasswordHasher().encode(PASSWORD, "Wq8vN3kLp0aZ", 1000)`
/// (rounds lowered from 1,000,000 to keep the debug build quick; tests/django
/// logs in with hashes made at Django's own count).
const DJANGO_HASH: &str =
    "pbkdf2_sha256$1000$Wq8vN3kLp0aZ$1J7SgbuYzrsmuxqAUvhMEyz2J1ikG+jVeGW8ZGLEKCk=";

/// Sets one column of the user's row, as an admin would in the database.
async fn set_column<T: tokio_postgres::types::ToSql + Sync>(
    app: &TestApp,
    user: &TestUser,
    column: &str,
    value: T,
) {
    let db = app.db().await;
    let sql = format!("UPDATE users SET {column} = $2 WHERE id = $1");
    db.execute(&sql, &[&user.id, &value]).await.unwrap();
}

async fn set_hash(app: &TestApp, user: &TestUser, hash: &str) {
    set_column(app, user, "password_hash", hash).await;
}

async fn stored_hash(app: &TestApp, user: &TestUser) -> String {
    let db = app.db().await;
    let row = db
        .query_one("SELECT password_hash FROM users WHERE id = $1", &[&user.id])
        .await
        .unwrap();
    row.get(0)
}

async fn login(app: &TestApp, email: &str, password: &str) -> u16 {
    let body = json!({"email": email, "password": password});
    app.post("/auth/login/", None, &body).await.status.as_u16()
}

#[tokio::test]
async fn a_django_pbkdf2_password_logs_in_and_is_rehashed_to_argon2id() {
    let app = spawn_app_with(&[]).await;
    let user = app.user("dj").await;
    set_hash(&app, &user, DJANGO_HASH).await;
    assert_eq!(login(&app, &user.email, "correct horse batterY").await, 401);
    assert_eq!(
        stored_hash(&app, &user).await,
        DJANGO_HASH,
        "no rehash on a miss"
    );
    assert_eq!(login(&app, &user.email, PASSWORD).await, 200);
    let rehashed = stored_hash(&app, &user).await;
    assert!(rehashed.starts_with("$argon2id$"), "{rehashed}");
    assert_eq!(
        login(&app, &user.email, PASSWORD).await,
        200,
        "the new hash"
    );
    assert_eq!(login(&app, &user.email, "wrong password").await, 401);
}

#[tokio::test]
async fn unusable_and_unknown_hashes_fail_like_a_wrong_password() {
    let app = spawn_app_with(&[]).await;
    let user = app.user("nopw").await;
    for hash in [
        "!kq0WmZ3rT8vJ2xYpL5nB7cD9fG1hA4sE6uI0oP3",
        "bcrypt_sha256$$2b$12$Mr6Z3Wl2uFqPjN0hQeV9me",
        PASSWORD,
    ] {
        set_hash(&app, &user, hash).await;
        assert_eq!(login(&app, &user.email, PASSWORD).await, 401, "{hash}");
        let unknown = login(&app, "nobody-here@example.com", PASSWORD).await;
        assert_eq!(unknown, 401);
        assert_eq!(stored_hash(&app, &user).await, hash, "left as it was");
    }
}

async fn set_active(app: &TestApp, user: &TestUser, active: bool) {
    set_column(app, user, "is_active", active).await;
}

/// Every authenticated REST route and both handshakes, as `user`: their statuses.
async fn statuses_of(app: &TestApp, user: &TestUser, peer: &TestUser, chat: i64) -> Vec<u16> {
    let token = Some(user.access.as_str());
    let messages = format!("/api/chat/chats/{chat}/messages/");
    let mut statuses = vec![
        app.get("/api/chat/chats/", token).await.status.as_u16(),
        app.get(&messages, token).await.status.as_u16(),
        app.post(&messages, token, &json!({"content": "hi"}))
            .await
            .status
            .as_u16(),
        app.get("/api/users/?q=peer", token).await.status.as_u16(),
        app.post("/api/chat/start/", token, &json!({"user_id": peer.id}))
            .await
            .status
            .as_u16(),
        app.post("/auth/refresh/", None, &json!({"refresh": user.refresh}))
            .await
            .status
            .as_u16(),
        login(app, &user.email, PASSWORD).await,
    ];
    let chat_socket = socket_path(chat, &user.access, None);
    let user_socket = format!("/ws/?token={}", user.access);
    for path in [chat_socket, user_socket] {
        statuses.push(app.upgrade_request(&path).await.status.as_u16());
    }
    statuses
}

#[tokio::test]
async fn an_inactive_user_is_refused_everywhere_and_their_live_sockets_close() {
    let app = spawn_app_with(&[("INACTIVE_USERS_POLL_SECS", "1")]).await;
    let (user, peer) = (app.user("gone").await, app.user("peer").await);
    let chat = app.chat(&user, &peer).await;
    // Remembered by the node: a verified token and a confirmed membership.
    app.say(&user, chat, "before").await;
    let mut chat_socket = WsClient::connect(&app, chat, &user.access, None).await;
    let mut user_socket = WsClient::user_synced(&app, &user.access, json!({})).await;
    let mut peer_socket = WsClient::connect(&app, chat, &peer.access, None).await;

    set_active(&app, &user, false).await;
    let deactivated = Instant::now();
    assert_eq!(chat_socket.closed().await, 4003);
    assert_eq!(user_socket.closed().await, 4003);
    let closed_within = deactivated.elapsed();
    assert!(closed_within < Duration::from_secs(5), "{closed_within:?}");
    let statuses = statuses_of(&app, &user, &peer, chat).await;
    assert_eq!(
        statuses,
        vec![401; 9],
        "chats, history, send, search, start, refresh, login, both sockets"
    );
    let refused = app.get("/api/chat/chats/", Some(&user.access)).await;
    assert_eq!(refused.body["code"], "user_inactive", "{}", refused.text);

    // The peer is untouched, and sees no message from the inactive user.
    app.say(&peer, chat, "still here").await;
    assert_eq!(peer_socket.message().await["content"], "still here");

    set_active(&app, &user, true).await;
    tokio::time::sleep(Duration::from_millis(2_500)).await;
    let statuses = statuses_of(&app, &user, &peer, chat).await;
    assert_eq!(statuses, vec![200, 200, 201, 200, 200, 200, 200, 101, 101]);
}
