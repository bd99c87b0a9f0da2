//! Starting chats and listing them.

use crate::helpers::spawn_app;
use serde_json::json;

#[tokio::test]
async fn start_creates_once_and_returns_the_same_chat_from_either_side() {
    let app = spawn_app().await;
    let (ann, bob) = (app.user("ann").await, app.user("bob").await);
    let first = app
        .post(
            "/api/chat/start/",
            Some(&ann.access),
            &json!({"user_id": bob.id}),
        )
        .await;
    let chat = first.expect(201).clone();
    assert_eq!(chat["participants"][0]["id"], ann.id);
    assert_eq!(chat["participants"][1]["id"], bob.id);
    assert_eq!(chat["last_message"], serde_json::Value::Null);
    assert!(chat["created_at"].as_str().unwrap().ends_with('Z'));

    let again = app
        .post(
            "/api/chats/start/",
            Some(&bob.access),
            &json!({"user_id": ann.id}),
        )
        .await;
    assert_eq!(again.expect(200)["id"], chat["id"]);

    let db = app.db().await;
    let row = db
        .query_one("SELECT pair_key FROM chats", &[])
        .await
        .unwrap();
    let stored: String = row.get(0);
    assert_eq!(stored, chat_server::model::pair_key(ann.id, bob.id));
    assert_eq!(db.query("SELECT 1 FROM chats", &[]).await.unwrap().len(), 1);
}

#[tokio::test]
async fn start_accepts_a_numeric_string_like_drf() {
    let app = spawn_app().await;
    let (ann, bob) = (app.user("ann").await, app.user("bob").await);
    let reply = app
        .post(
            "/api/chat/start/",
            Some(&ann.access),
            &json!({"user_id": bob.id.to_string()}),
        )
        .await;
    reply.expect(201);
}

#[tokio::test]
async fn start_refuses_yourself_and_unknown_users() {
    let app = spawn_app().await;
    let ann = app.user("ann").await;
    let me = app
        .post(
            "/api/chat/start/",
            Some(&ann.access),
            &json!({"user_id": ann.id}),
        )
        .await;
    assert_eq!(
        me.expect(400).clone()["detail"],
        "Cannot start chat with yourself"
    );
    let ghost = app
        .post(
            "/api/chat/start/",
            Some(&ann.access),
            &json!({"user_id": 987654}),
        )
        .await;
    assert_eq!(ghost.expect(404).clone()["detail"], "Not found.");
}

#[tokio::test]
async fn list_orders_by_latest_activity_with_last_message() {
    let app = spawn_app().await;
    let (me, bob, cat) = (
        app.user("me").await,
        app.user("bob").await,
        app.user("cat").await,
    );
    let with_bob = app.chat(&me, &bob).await;
    let with_cat = app.chat(&me, &cat).await;
    app.say(&bob, with_bob, "newest from bob").await;

    let list = app.get("/api/chat/chats/", Some(&me.access)).await;
    let chats = list.expect(200).as_array().unwrap().clone();
    assert_eq!(chats.len(), 2);
    assert_eq!(
        chats[0]["id"], with_bob,
        "the chat with a new message comes first"
    );
    assert_eq!(chats[0]["last_message"]["content"], "newest from bob");
    assert_eq!(chats[0]["last_message"]["sender"]["id"], bob.id);
    assert!(chats[0]["updated_at"].as_str() > chats[0]["created_at"].as_str());
    assert_eq!(chats[1]["id"], with_cat);

    app.say(&me, with_cat, "now cat").await;
    let list = app.get("/api/chats/chats/", Some(&me.access)).await;
    assert_eq!(
        list.expect(200)[0]["id"],
        with_cat,
        "updated_at moves with every message"
    );

    let bobs = app.get("/api/chat/chats/", Some(&bob.access)).await;
    assert_eq!(
        bobs.expect(200).as_array().unwrap().len(),
        1,
        "only your own chats"
    );
}
