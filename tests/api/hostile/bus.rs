//! Forged or foreign bus events: a node delivers only events that a node of
//! its own deployment signed, for the user of the channel they arrive on.
//! Anything else published on a user's Redis channel (an unsigned payload,
//! another deployment's event under the same prefix, a genuine event of other
//! users replayed onto this user's channel) reaches no socket, even beside a
//! genuine event in one payload.

use super::metric;
use crate::helpers::{fresh_database, spawn_app_on, TestApp, SECRET};
use crate::ws_client::WsClient;
use bytes::Bytes;
use chat_server::delivery::bus::{channel, Envelope, Wire};
use chat_server::delivery::rooms::Published;
use std::time::Duration;

fn redis_url() -> String {
    std::env::var("TEST_REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379/".into())
}

async fn publish(channel: &str, payload: &[u8]) {
    let client = redis::Client::open(redis_url()).unwrap();
    let mut conn = client.get_multiplexed_async_connection().await.unwrap();
    let _: i64 = redis::cmd("PUBLISH")
        .arg(channel)
        .arg(payload)
        .query_async(&mut conn)
        .await
        .unwrap();
}

/// `chat_bus_refused_total` once it reaches `count` (or after 5 s).
async fn refused_reaching(app: &TestApp, count: f64) -> f64 {
    let mut refused = 0.0;
    for _ in 0..50 {
        refused = metric(app, "chat_bus_refused_total").await;
        if refused >= count {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    refused
}

fn forged_frame(chat: i64, content: &str) -> Bytes {
    let event = serde_json::json!({"type": "message", "data": {
        "id": 999, "chat": chat, "seq": 1, "content": content, "metadata": {},
        "client_msg_id": null, "created_at": "2026-01-01T00:00:00.000000Z",
        "sender": {"id": 1, "email": "x@example.com", "full_name": "X", "nickname": null}}});
    Bytes::from(event.to_string())
}

#[tokio::test]
async fn only_events_signed_by_this_deployment_for_this_user_are_delivered() {
    let prefix = format!("test-{}", chat_server::digest::random_hex(6));
    let redis = redis_url();
    let vars = [
        ("REDIS_URL", redis.as_str()),
        ("REDIS_CHANNEL_PREFIX", prefix.as_str()),
    ];
    let app = spawn_app_on(&fresh_database(), &vars).await;
    let (ann, bob, chat) = app.pair().await;
    let audience = [ann.id, bob.id];
    let mut ws = WsClient::connect(&app, chat, &ann.access, None).await;
    tokio::time::sleep(Duration::from_millis(300)).await; // the subscription is made

    let on_this_chat = channel(&prefix, ann.id);
    let unsigned = [b"n1 m 1 1 1 2 ".as_slice(), &forged_frame(chat, "unsigned")].concat();
    publish(&on_this_chat, &unsigned).await;

    let foreign = Wire::new("another deployment's secret-0123456789", "f1".into());
    let theirs = Envelope::from(Published {
        chat,
        seq: 1,
        audience,
        frame: forged_frame(chat, "foreign"),
    });
    publish(&on_this_chat, &foreign.encode(&theirs)).await;

    let ours = Wire::new(SECRET, "n2".into());
    let elsewhere = Envelope::from(Published {
        chat,
        seq: 1,
        audience: [bob.id, bob.id + 100],
        frame: forged_frame(chat, "moved"),
    });
    publish(&on_this_chat, &ours.encode(&elsewhere)).await;

    let refused = refused_reaching(&app, 3.0).await;
    assert_eq!(refused, 3.0, "each event was refused");
    assert!(
        ws.recv_within(Duration::from_millis(300)).await.is_none(),
        "nothing reached the socket"
    );

    let genuine = Envelope::from(Published {
        chat,
        seq: 1,
        audience,
        frame: forged_frame(chat, "signed here"),
    });
    publish(&on_this_chat, &ours.encode(&genuine)).await;
    let delivered = ws.message().await;
    assert_eq!(
        delivered["content"], "signed here",
        "a genuine event still is"
    );

    // A payload carries a user's events as records, each checked on its own.
    let next = Envelope::from(Published {
        chat,
        seq: 2,
        audience,
        frame: forged_frame(chat, "second, signed here"),
    });
    let mixed = [ours.encode(&next), foreign.encode(&theirs)].concat();
    publish(&on_this_chat, &mixed).await;
    assert_eq!(ws.message().await["content"], "second, signed here");
    let refused = refused_reaching(&app, 4.0).await;
    assert_eq!(refused, 4.0, "the foreign record beside it was refused");
}
