//! Zero configuration: the binary started in an empty directory with an empty
//! environment serves the API on its embedded store, and after a kill -9 and a
//! restart it still has its data and still accepts the tokens it issued.

use crate::helpers::{spawn_bare_process, TestApp};

async fn kill_hard(app: &mut TestApp) {
    let process = app.process.as_mut().unwrap();
    process.start_kill().unwrap();
    process.wait().await.unwrap();
}

#[tokio::test]
async fn an_empty_directory_and_environment_give_a_working_server_that_keeps_its_data() {
    let dir =
        std::env::temp_dir().join(format!("chat-zero-{}", chat_server::digest::random_hex(6)));
    std::fs::create_dir_all(&dir).unwrap();
    let mut app = spawn_bare_process(&dir).await;
    let ready = app.get("/readyz", None).await;
    assert_eq!(ready.body["bus"], "local");
    assert_eq!(ready.body["status"], "ready");
    let (ann, _bob, chat) = app.pair().await;
    let sent = app.say(&ann, chat, "kept across a crash").await;
    assert!(
        dir.join("data/chat.sqlite3").exists(),
        "the embedded store is in ./data"
    );
    assert!(
        dir.join("data/secret_key").exists(),
        "the generated secret is kept with the data"
    );
    kill_hard(&mut app).await;

    let app = spawn_bare_process(&dir).await;
    let history = app
        .get(
            &format!("/api/chat/chats/{chat}/messages/"),
            Some(&ann.access),
        )
        .await;
    let body = history.expect(200);
    assert_eq!(body["count"], 1);
    assert_eq!(body["results"][0]["id"], sent["id"]);
    assert_eq!(body["results"][0]["content"], "kept across a crash");
    let again = app.say(&ann, chat, "after the restart").await;
    assert_eq!(again["seq"], 2, "seq continues gap-free");
    std::fs::remove_dir_all(&dir).ok();
}
