//! History pages served partly from a node's message cache are exactly the pages
//! the store alone gives, whatever other nodes have written in between.

use crate::helpers::{fresh_database, spawn_app_on, Reply, TestApp};
use crate::messages::{path, seqs};
use serde_json::json;

/// A reply's status and body with the node's own address taken out of the links.
fn comparable(node: &TestApp, reply: &Reply) -> (u16, String) {
    let text = reply.text.replace(&node.addr.to_string(), "NODE");
    (reply.status.as_u16(), text)
}

#[tokio::test]
async fn a_node_that_cached_a_page_sees_what_another_node_stored_since() {
    let database = fresh_database();
    let writer = spawn_app_on(&database, &[]).await;
    let reader = spawn_app_on(&database, &[]).await;
    let (ann, bob, chat) = writer.pair().await;
    writer.say_many(&ann, chat, 30, "a", "early").await;
    let first = reader.get(&path(chat), Some(&bob.access)).await;
    assert_eq!(seqs(first.expect(200)), (6..=30).collect::<Vec<_>>());
    for round in 1..=3 {
        writer.say(&bob, chat, &format!("late {round}")).await;
        let page = reader.get(&path(chat), Some(&ann.access)).await;
        let body = page.expect(200);
        assert_eq!(body["count"], 30 + round);
        assert_eq!(seqs(body), (6 + round..=30 + round).collect::<Vec<_>>());
        assert_eq!(body["results"][24]["content"], format!("late {round}"));
        assert_eq!(body["results"][24]["sender"]["id"], bob.id);
    }
    let older = reader
        .get(&format!("{}?page=2", path(chat)), Some(&ann.access))
        .await;
    assert_eq!(seqs(older.expect(200)), (1..=8).collect::<Vec<_>>());
    // 25 read at first, then 1 new message per round with 24 from the cache,
    // then page 2 (below the cached run) read whole.
    let metrics = reader.get("/metrics", None).await.text;
    assert!(
        metrics.contains("chat_history_messages_stored_total 36"),
        "{metrics}"
    );
    assert!(
        metrics.contains("chat_history_messages_cached_total 72"),
        "{metrics}"
    );
    let outsider = writer.user("eve").await;
    let refused = reader.get(&path(chat), Some(&outsider.access)).await;
    refused.expect(403);
}

#[tokio::test]
async fn pages_are_byte_for_byte_the_same_with_and_without_the_cache() {
    let database = fresh_database();
    let cached = spawn_app_on(&database, &[]).await;
    let plain = spawn_app_on(&database, &[("HISTORY_CACHE_MB", "0")]).await;
    let (ann, bob, chat) = cached.pair().await;
    let queries = [
        "",
        "?page=2",
        "?page=last",
        "?page_size=7",
        "?page_size=7&page=3",
        "?page_size=100",
        "?page=2&page_size=1",
        "?after_seq=3&limit=5",
        "?after_seq=0&limit=100",
        "?before_seq=20&limit=4",
        "?page=9",
    ];
    let mut sent = 0;
    for round in 0..4 {
        for n in 0..round * 9 + 3 {
            let (node, from) = if n % 2 == 0 {
                (&plain, &ann)
            } else {
                (&cached, &bob)
            };
            let body = json!({"content": format!("r{round} m{n} \"q\" é"),
                              "metadata": {"z": [round], "a": {"n": n}}});
            node.post(&path(chat), Some(&from.access), &body)
                .await
                .expect(201);
            sent += 1;
        }
        for query in queries {
            // Twice: the second read of each page is served from the cache.
            for _ in 0..2 {
                let url = format!("{}{query}", path(chat));
                let ours = cached.get(&url, Some(&ann.access)).await;
                let reference = plain.get(&url, Some(&ann.access)).await;
                assert_eq!(
                    comparable(&cached, &ours),
                    comparable(&plain, &reference),
                    "round {round}, {query:?}"
                );
            }
        }
        let newest = cached.get(&path(chat), Some(&bob.access)).await;
        assert_eq!(newest.expect(200)["count"], sent);
    }
}
