//! `loadtest store-ceiling` inserts into a scratch table that must cost what a
//! stored message's insert costs: the same columns, key, unique index and
//! collation as `messages` after every migration.

use crate::helpers::{fresh_database, pg_base};
use chat_server::config::DatabaseConfig;
use chat_server::store::postgres::PgStore;
use tokio_postgres::{Client, NoTls};

const SCRATCH_TABLE: &str = include_str!("../../loadtest/src/scenarios/store_ceiling_table.sql");

#[tokio::test]
async fn the_store_ceilings_scratch_table_is_shaped_as_messages_is() {
    let url = format!("{} dbname={}", pg_base(), fresh_database());
    let config = DatabaseConfig {
        url: url.clone(),
        pool_size: 1,
        retry_for: std::time::Duration::ZERO,
        read_urls: Vec::new(),
    };
    PgStore::connect(
        &config,
        std::sync::Arc::new(chat_server::metrics::Metrics::new()),
    )
    .await
    .expect("a migrated database");
    let (client, connection) = tokio_postgres::connect(&url, NoTls).await.unwrap();
    tokio::spawn(connection);
    client.batch_execute(SCRATCH_TABLE).await.unwrap();
    let messages = shape(&client, "messages").await;
    assert!(
        messages
            .indexes
            .iter()
            .any(|index| index.ends_with("(chat_id, seq) primary")),
        "{messages:?}"
    );
    assert_eq!(shape(&client, "loadtest_store_ceiling").await, messages);
}

/// A table's columns (name, type, collation, nullability) and indexes (their
/// definitions without the names, the key marked).
#[derive(Debug, PartialEq)]
struct Shape {
    columns: Vec<String>,
    indexes: Vec<String>,
}

async fn shape(client: &Client, table: &str) -> Shape {
    let column_rows = client
        .query(
            "SELECT concat_ws(' ', column_name, data_type, collation_name, is_nullable)
             FROM information_schema.columns WHERE table_name = $1 ORDER BY ordinal_position",
            &[&table],
        )
        .await
        .unwrap();
    let index_rows = client
        .query(
            "SELECT regexp_replace(pg_get_indexdef(i.indexrelid), '^.* USING ', '')
                    || CASE WHEN i.indisprimary THEN ' primary' ELSE '' END
             FROM pg_index i WHERE i.indrelid = $1::TEXT::regclass ORDER BY 1",
            &[&table],
        )
        .await
        .unwrap();
    Shape {
        columns: column_rows.iter().map(|row| row.get(0)).collect(),
        indexes: index_rows.iter().map(|row| row.get(0)).collect(),
    }
}
