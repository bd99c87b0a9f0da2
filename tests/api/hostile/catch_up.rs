//! Catch-up memory: a socket resuming from far back reads the store a bounded
//! number of bytes at a time, and a catch-up that its client cannot take
//! within `WS_CATCH_UP_TIMEOUT_SECS` ends with a resumable close (4008).

use crate::helpers::spawn_app_with;
use crate::ws_client::{Received, WsClient};
use std::time::Duration;

#[tokio::test]
async fn a_resuming_socket_that_does_not_read_is_closed_at_the_catch_up_deadline() {
    let app = spawn_app_with(&[
        ("WS_CATCH_UP_TIMEOUT_SECS", "2"),
        ("WS_CATCH_UP_BYTES", "65536"),
    ])
    .await;
    let (ann, _bob, chat) = app.pair().await;
    // 3,000 messages of 10 KB: far more than the kernel's socket buffers hold.
    app.db()
        .await
        .batch_execute(&format!(
            "INSERT INTO messages (chat_id, seq, sender_id, content, metadata, created_at)
             SELECT {chat}, g, {ann}, repeat('x', 10000), '{{}}', now()
             FROM generate_series(1, 3000) g;
             UPDATE chats SET last_seq = 3000 WHERE id = {chat};",
            ann = ann.id
        ))
        .await
        .unwrap();
    let mut stalled = WsClient::connect(&app, chat, &ann.access, Some(0)).await;
    tokio::time::sleep(Duration::from_secs(4)).await;
    let mut delivered = 0;
    let code = loop {
        match stalled.recv().await {
            Received::Json(event) => {
                assert_eq!(event["type"], "message");
                delivered += 1;
                assert_eq!(event["data"]["seq"], delivered, "in order, from 1");
            }
            Received::Close(code) => break code,
        }
    };
    assert_eq!(
        code, 4008,
        "resumable: reconnect with after_seq={delivered}"
    );
    assert!(
        delivered < 3000,
        "the catch-up was cut short at {delivered}"
    );

    let mut resumed = WsClient::connect(&app, chat, &ann.access, Some(delivered)).await;
    let next = resumed.message().await;
    assert_eq!(next["seq"], delivered + 1, "it resumes where it stopped");
}
