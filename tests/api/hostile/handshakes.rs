//! A handshake that does not become a session leaves nothing behind: many
//! clients that send an upgrade request and hang up while its lookup is in
//! flight (held there by a lock on the chats table) leave no room entry and,
//! with Redis, no subscription.

use super::metric;
use crate::helpers::{spawn_app_with, TestApp};
use std::time::Duration;
use tokio::io::AsyncWriteExt;

fn redis_url() -> String {
    std::env::var("TEST_REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379/".into())
}

fn upgrade_request(chat: i64, token: &str) -> String {
    format!(
        "GET /ws/chats/{chat}/?token={token} HTTP/1.1\r\nHost: localhost\r\n\
         Upgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
    )
}

/// Polls a metric until it is `want` (or 5 s pass); the last value seen.
async fn settles_at(app: &TestApp, name: &str, want: f64) -> f64 {
    let mut seen = metric(app, name).await;
    for _ in 0..50 {
        if seen == want {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
        seen = metric(app, name).await;
    }
    seen
}

#[tokio::test]
async fn handshakes_abandoned_mid_lookup_leave_no_room_and_no_subscription() {
    let prefix = format!("test-{}", chat_server::digest::random_hex(6));
    let app = spawn_app_with(&[
        ("REDIS_URL", redis_url().as_str()),
        ("REDIS_CHANNEL_PREFIX", prefix.as_str()),
    ])
    .await;
    let mut chats = Vec::new();
    let mut tokens = Vec::new();
    for i in 0..8 {
        let (a, b) = (
            app.user(&format!("a{i}")).await,
            app.user(&format!("b{i}")).await,
        );
        chats.push(app.chat(&a, &b).await);
        tokens.push(a.access);
    }
    let mut db = app.db().await;
    let lock = db.transaction().await.unwrap();
    lock.batch_execute("LOCK TABLE chats IN ACCESS EXCLUSIVE MODE")
        .await
        .unwrap();
    let mut abandoned = Vec::new();
    for round in 0..40 {
        let i = round % chats.len();
        let mut stream = tokio::net::TcpStream::connect(app.addr).await.unwrap();
        stream
            .write_all(upgrade_request(chats[i], &tokens[i]).as_bytes())
            .await
            .unwrap();
        abandoned.push(stream);
    }
    assert_eq!(
        settles_at(&app, "chat_rooms_open", chats.len() as f64).await,
        chats.len() as f64,
        "every handshake joined its room before its lookup"
    );
    drop(abandoned);
    tokio::time::sleep(Duration::from_millis(300)).await;
    lock.rollback().await.unwrap();
    assert_eq!(
        settles_at(&app, "chat_rooms_open", 0.0).await,
        0.0,
        "rooms left"
    );
    assert_eq!(
        settles_at(&app, "chat_bus_subscriptions", 0.0).await,
        0.0,
        "subscriptions left"
    );
    assert_eq!(metric(&app, "chat_websocket_handshakes_total").await, 0.0);
}
