//! The migrated PostgreSQL schema is ready to be distributed by chat (Citus):
//! every unique key of `messages` leads with `chat_id` and every unique key of
//! `chats` (which holds the read markers) with its `id`, so both tables can
//! be distributed by chat and colocated, and no other table holds a foreign
//! key into them. This test fails when a migration adds a key that breaks it.
//!
//! And a node of an older build, on a schema a later release migrated,
//! starts only when each migration it does not know says it may.

use crate::helpers::{spawn_app, spawn_app_on, start_failure_on};

#[tokio::test]
async fn every_key_of_messages_and_read_markers_leads_with_the_chat() {
    let app = spawn_app().await;
    let db = app.db().await;
    // Each unique or primary index: its table and its first key column.
    let rows = db
        .query(
            "SELECT t.relname::text, i.relname::text, a.attname::text
             FROM pg_index x
             JOIN pg_class t ON t.oid = x.indrelid
             JOIN pg_class i ON i.oid = x.indexrelid
             JOIN pg_attribute a ON a.attrelid = t.oid AND a.attnum = x.indkey[0]
             WHERE x.indisunique AND t.relname IN ('messages', 'chats')",
            &[],
        )
        .await
        .unwrap();
    let mut keys = Vec::new();
    for row in &rows {
        let (table, index, first): (String, String, String) = (row.get(0), row.get(1), row.get(2));
        let chat_column = if table == "messages" { "chat_id" } else { "id" };
        assert_eq!(
            first, chat_column,
            "{table}'s unique key {index} must lead with the chat"
        );
        keys.push(index);
    }
    keys.sort();
    assert_eq!(
        keys,
        ["chats_pkey", "messages_client_id_key", "messages_pkey"],
        "the keys this test knows of (a new one is checked above; name it here)"
    );
    // Foreign keys into a distributed table may come only from tables
    // colocated with it: none point into messages or chats.
    let into: Vec<String> = db
        .query(
            "SELECT conname::text FROM pg_constraint
             WHERE contype = 'f' AND confrelid IN ('messages'::regclass, 'chats'::regclass)",
            &[],
        )
        .await
        .unwrap()
        .iter()
        .map(|row| row.get(0))
        .collect();
    assert!(
        into.is_empty(),
        "foreign keys into messages or chats: {into:?}"
    );
    // The read markers are columns of the chat's row.
    let markers: i64 = db
        .query_one(
            "SELECT count(*) FROM information_schema.columns
             WHERE table_name = 'chats' AND column_name IN ('low_read_seq', 'high_read_seq')",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(markers, 2);
}

#[tokio::test]
async fn a_build_runs_on_a_later_schema_only_when_its_migrations_say_so() {
    let app = spawn_app().await;
    let db = app.db().await;
    let later =
        "INSERT INTO schema_migrations (version, name, older_builds_run) VALUES ($1, $2, $3)";
    db.execute(later, &[&1_000i32, &"adds a column", &true])
        .await
        .unwrap();
    let node = spawn_app_on(&app.database, &[]).await;
    let (ann, _bob, chat) = node.pair().await;
    node.say(&ann, chat, "on a later schema").await;
    assert_eq!(
        node.stored_contents(&ann, chat).await,
        ["on a later schema"]
    );
    db.execute(later, &[&1_001i32, &"drops a column", &false])
        .await
        .unwrap();
    let refused = start_failure_on(&app.database, &[]).await;
    assert!(
        refused.contains("migration 1001 (drops a column)"),
        "{refused}"
    );
}
