//! Sending messages and reading history.

use crate::helpers::{spawn_app, spawn_app_with, spawn_embedded, TestApp};
use serde_json::{json, Value};

pub fn path(chat: i64) -> String {
    format!("/api/chat/chats/{chat}/messages/")
}

pub fn seqs(page: &Value) -> Vec<i64> {
    page["results"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["seq"].as_i64().unwrap())
        .collect()
}

#[tokio::test]
async fn send_returns_the_stored_message() {
    let app = spawn_app().await;
    let (ann, _bob, chat) = app.pair().await;
    let body = json!({"content": "  Hello there!  ", "metadata": {"type": "text", "n": [1, 2]},
                      "chat": 999, "client_msg_id": "c-1"});
    let reply = app.post(&path(chat), Some(&ann.access), &body).await;
    let message = reply.expect(201);
    assert_eq!(message["chat"], chat, "the body's chat field is ignored");
    assert_eq!(message["seq"], 1);
    assert_eq!(message["content"], "Hello there!", "content is trimmed");
    assert_eq!(message["metadata"], json!({"type": "text", "n": [1, 2]}));
    assert_eq!(message["sender"]["id"], ann.id);
    assert_eq!(message["sender"]["email"], ann.email);
    assert_eq!(message["client_msg_id"], "c-1");
    let created = message["created_at"].as_str().unwrap();
    assert_eq!(
        created.len(),
        "2024-01-02T03:04:05.123456Z".len(),
        "{created}"
    );

    let plain = app
        .post(&path(chat), Some(&ann.access), &json!({"content": "x"}))
        .await;
    assert_eq!(
        plain.expect(201)["metadata"],
        json!({}),
        "metadata defaults to {{}}"
    );
}

#[tokio::test]
async fn a_retried_client_msg_id_returns_the_original_and_stores_nothing() {
    let app = spawn_app().await;
    let (ann, bob, chat) = app.pair().await;
    let body = json!({"content": "once", "client_msg_id": "retry-me"});
    let first = app.post(&path(chat), Some(&ann.access), &body).await;
    let retry = app
        .post(
            &path(chat),
            Some(&ann.access),
            &json!({"content": "changed", "client_msg_id": "retry-me"}),
        )
        .await;
    assert_eq!(first.expect(201)["id"], retry.expect(200)["id"]);
    assert_eq!(retry.body["content"], "once");
    let bobs = app.post(&path(chat), Some(&bob.access), &body).await;
    assert_eq!(bobs.expect(201)["seq"], 2, "client ids are per sender");

    let other = app.user("cat").await;
    let other_chat = app.chat(&ann, &other).await;
    // Client ids are per chat: the same id in another chat is another message.
    let elsewhere = app.post(&path(other_chat), Some(&ann.access), &body).await;
    assert_eq!(elsewhere.expect(201)["seq"], 1);
    let again = app.post(&path(other_chat), Some(&ann.access), &body).await;
    assert_eq!(again.expect(200)["id"], elsewhere.body["id"]);

    assert_eq!(app.stored_message_count().await, 3);
}

#[tokio::test]
async fn concurrent_senders_get_a_gap_free_sequence() {
    let app = spawn_app().await;
    let (ann, bob, chat) = app.pair().await;
    let sends = (0..60).map(|i| {
        let (app, who) = (&app, if i % 2 == 0 { &ann } else { &bob });
        async move {
            let body = json!({"content": format!("m{i}"), "client_msg_id": format!("id-{i}")});
            app.post(&path(chat), Some(&who.access), &body)
                .await
                .expect(201)["seq"]
                .as_i64()
                .unwrap()
        }
    });
    let mut got: Vec<i64> = futures_util::future::join_all(sends).await;
    got.sort_unstable();
    assert_eq!(got, (1..=60).collect::<Vec<_>>());
    let page = app
        .get(&format!("{}?page_size=100", path(chat)), Some(&ann.access))
        .await;
    assert_eq!(page.expect(200)["count"], 60);
    assert_eq!(seqs(&page.body), (1..=60).collect::<Vec<_>>());
}

/// Concurrent sends are authorized in batches (one lookup statement for many
/// requests): every request must still get its own answer.
#[tokio::test]
async fn concurrent_sends_by_members_and_outsiders_each_get_their_own_answer() {
    let app = spawn_app().await;
    let (ann, bob, ann_bob) = app.pair().await;
    let cat = app.user("cat").await;
    let ann_cat = app.chat(&ann, &cat).await;
    let sends = (0..90).map(|i| {
        let app = &app;
        // Members of their chat, or outsiders (cat in ann-bob, bob in ann-cat).
        let (who, chat, allowed) = match i % 5 {
            0 => (&ann, ann_bob, true),
            1 => (&bob, ann_bob, true),
            2 => (&cat, ann_cat, true),
            3 => (&cat, ann_bob, false),
            _ => (&bob, ann_cat, false),
        };
        async move {
            let body = json!({"content": format!("m{i}")});
            let reply = app.post(&path(chat), Some(&who.access), &body).await;
            (i, who.id, allowed, reply)
        }
    });
    for (i, sender, allowed, reply) in futures_util::future::join_all(sends).await {
        if allowed {
            let message = reply.expect(201);
            assert_eq!(message["sender"]["id"], sender, "send {i}: its own sender");
            assert_eq!(message["content"], format!("m{i}"));
        } else {
            reply.expect(403);
        }
    }
}

/// Concurrent history reads are answered in batches (one statement for many
/// requests): every request must still get its own chat's page.
#[tokio::test]
async fn concurrent_history_reads_each_get_their_own_page() {
    let app = spawn_app().await;
    let (ann, bob, ann_bob) = app.pair().await;
    let cat = app.user("cat").await;
    let ann_cat = app.chat(&ann, &cat).await;
    app.say_many(&ann, ann_bob, 7, "ab", "to bob").await;
    app.say_many(&cat, ann_cat, 3, "ac", "to ann").await;
    let reads = (0..60).map(|i| {
        let app = &app;
        let (who, chat, expected) = match i % 4 {
            0 => (&bob, ann_bob, Some((7, "to bob"))),
            1 => (&ann, ann_cat, Some((3, "to ann"))),
            2 => (&cat, ann_bob, None),
            _ => (&ann, ann_bob, Some((7, "to bob"))),
        };
        async move { (app.get(&path(chat), Some(&who.access)).await, expected) }
    });
    for (reply, expected) in futures_util::future::join_all(reads).await {
        match expected {
            Some((count, content)) => {
                let page = reply.expect(200);
                assert_eq!(page["count"], count);
                assert_eq!(page["results"][0]["content"], content);
            }
            None => {
                reply.expect(403);
            }
        }
    }
}

/// Concurrent long pages make a heavy batch, which is read by several
/// statements at once, each answering its own callers: every request must
/// still get its own chat's page, whole and in order.
#[tokio::test]
async fn concurrent_long_history_pages_each_get_their_own_page() {
    long_pages_each_get_their_own(spawn_app_with(LONG_READS).await).await;
}

#[tokio::test]
async fn concurrent_long_history_pages_each_get_their_own_page_on_the_embedded_store() {
    long_pages_each_get_their_own(spawn_embedded(LONG_READS).await).await;
}

/// One lane and no cache: concurrent long pages meet in heavy batches.
const LONG_READS: &[(&str, &str)] = &[("READER_LANES", "1"), ("HISTORY_CACHE_MB", "0")];

async fn long_pages_each_get_their_own(app: TestApp) {
    let (ann, bob, ann_bob) = app.pair().await;
    let cat = app.user("cat").await;
    let ann_cat = app.chat(&ann, &cat).await;
    app.say_many(&ann, ann_bob, 120, "ab", "to bob").await;
    app.say_many(&cat, ann_cat, 110, "ac", "to ann").await;
    let reads = (0..64).map(|i| {
        let app = &app;
        let (who, chat, page, expected) = match i % 4 {
            0 => (&bob, ann_bob, 1, 21..=120),
            1 => (&ann, ann_cat, 1, 11..=110),
            2 => (&ann, ann_bob, 2, 1..=20),
            _ => (&cat, ann_cat, 2, 1..=10),
        };
        async move {
            let page = format!("{}?page_size=100&page={page}", path(chat));
            (i, app.get(&page, Some(&who.access)).await, expected)
        }
    });
    for (i, reply, expected) in futures_util::future::join_all(reads).await {
        let page = reply.expect(200);
        assert_eq!(seqs(page), expected.collect::<Vec<_>>(), "read {i}");
    }
}

#[tokio::test]
async fn history_pages_count_back_from_the_newest_with_absolute_links() {
    let app = spawn_app().await;
    let (ann, bob, chat) = app.pair().await;
    for i in 1..=7 {
        app.say(if i % 2 == 0 { &bob } else { &ann }, chat, &format!("m{i}"))
            .await;
    }
    let first = app
        .get(&format!("{}?page_size=3", path(chat)), Some(&bob.access))
        .await;
    let body = first.expect(200);
    assert_eq!(body["count"], 7);
    assert_eq!(
        seqs(body),
        [5, 6, 7],
        "page 1 is the newest, oldest-first within"
    );
    let next = body["next"].as_str().unwrap();
    assert_eq!(next, app.url(&format!("{}?page_size=3&page=2", path(chat))));
    assert_eq!(body["previous"], Value::Null);

    let second = app
        .get(
            &format!("{}?page_size=3&page=2", path(chat)),
            Some(&bob.access),
        )
        .await;
    assert_eq!(seqs(second.expect(200)), [2, 3, 4]);
    assert_eq!(
        second.body["previous"],
        app.url(&format!("{}?page_size=3", path(chat)))
    );
    let last = app
        .get(
            &format!("{}?page_size=3&page=last", path(chat)),
            Some(&bob.access),
        )
        .await;
    assert_eq!(seqs(last.expect(200)), [1]);
    assert_eq!(last.body["next"], Value::Null);

    let past = app
        .get(
            &format!("{}?page_size=3&page=4", path(chat)),
            Some(&bob.access),
        )
        .await;
    assert_eq!(past.expect(404).clone()["detail"], "Invalid page.");
    let alias = app
        .get(
            &format!("/api/chats/chats/{chat}/messages/"),
            Some(&ann.access),
        )
        .await;
    assert_eq!(seqs(alias.expect(200)), (1..=7).collect::<Vec<_>>());
}

#[tokio::test]
async fn cursor_reads_return_ranges_around_a_seq() {
    let app = spawn_app().await;
    let (ann, _bob, chat) = app.pair().await;
    for i in 1..=10 {
        app.say(&ann, chat, &format!("m{i}")).await;
    }
    let after = app
        .get(
            &format!("{}?after_seq=4&limit=3", path(chat)),
            Some(&ann.access),
        )
        .await;
    assert_eq!(seqs(after.expect(200)), [5, 6, 7]);
    let newer = after.body["previous"].as_str().unwrap();
    assert!(newer.ends_with("limit=3&after_seq=7"), "{newer}");
    let before = app
        .get(
            &format!("{}?before_seq=4&limit=10", path(chat)),
            Some(&ann.access),
        )
        .await;
    assert_eq!(seqs(before.expect(200)), [1, 2, 3]);
    assert_eq!(before.body["next"], Value::Null);
    let caught_up = app
        .get(&format!("{}?after_seq=10", path(chat)), Some(&ann.access))
        .await;
    assert!(seqs(caught_up.expect(200)).is_empty());
}

#[tokio::test]
async fn empty_chats_have_an_empty_first_page() {
    let app = spawn_app().await;
    let (ann, _bob, chat) = app.pair().await;
    let page = app.get(&path(chat), Some(&ann.access)).await;
    assert_eq!(
        page.expect(200),
        &json!({"count": 0, "next": null, "previous": null, "results": []})
    );
}

#[tokio::test]
async fn outsiders_cannot_read_or_write_a_chat() {
    let app = spawn_app().await;
    let (_ann, _bob, chat) = app.pair().await;
    let eve = app.user("eve").await;
    let read = app.get(&path(chat), Some(&eve.access)).await;
    assert_eq!(
        read.expect(403).clone()["detail"],
        "You do not have permission to perform this action."
    );
    app.post(&path(chat), Some(&eve.access), &json!({"content": "hi"}))
        .await
        .expect(403);
    app.get(&path(chat + 1000), Some(&eve.access))
        .await
        .expect(404);
}

#[tokio::test]
async fn a_remembered_membership_admits_only_its_own_user_and_chat() {
    let app = spawn_app().await;
    let (ann, bob, chat) = app.pair().await;
    let (cat, dan) = (app.user("cat").await, app.user("dan").await);
    let other = app.chat(&cat, &dan).await;
    // Ann's and Bob's memberships of `chat` are confirmed and remembered here.
    for _ in 0..2 {
        app.say(&ann, chat, "hi").await;
        app.say(&bob, chat, "hello").await;
    }
    let send = |token: &str, chat: i64| {
        let token = token.to_string();
        let app = &app;
        async move {
            app.post(&path(chat), Some(&token), &json!({"content": "x"}))
                .await
        }
    };
    send(&cat.access, chat).await.expect(403);
    send(&ann.access, other).await.expect(403);
    send(&ann.access, other + chat + 1_000).await.expect(404);
    let sent = send(&dan.access, other).await;
    assert_eq!(sent.expect(201)["sender"]["id"], dan.id);
    let again = send(&ann.access, chat).await;
    let message = again.expect(201);
    assert_eq!(message["sender"]["email"], ann.email.as_str());
    assert_eq!(message["seq"], 5);
}
