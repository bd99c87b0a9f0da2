//! Schema migrations for PostgreSQL: the plain SQL files in `migrations/` beside this file, compiled
//! into the binary, applied once each, in order, each in its own transaction, and
//! recorded in `schema_migrations`. An advisory lock lets several nodes start at once.

use super::StoreError;
use tokio_postgres::Client;

/// One migration: its version (the file's number), name and SQL.
pub struct Migration {
    pub version: i32,
    pub name: &'static str,
    pub sql: &'static str,
}

/// Every migration, in the order it must be applied.
pub const MIGRATIONS: &[Migration] = &[
    Migration {
        version: 1,
        name: "init",
        sql: include_str!("migrations/0001_init.sql"),
    },
    Migration {
        version: 2,
        name: "read_markers",
        sql: include_str!("migrations/0002_read_markers.sql"),
    },
    Migration {
        version: 3,
        name: "append_messages_index_probes",
        sql: include_str!("migrations/0003_append_messages_index_probes.sql"),
    },
    Migration {
        version: 4,
        name: "lean_hot_path",
        sql: include_str!("migrations/0004_lean_hot_path.sql"),
    },
    Migration {
        version: 5,
        name: "client_ids_bytewise",
        sql: include_str!("migrations/0005_client_ids_bytewise.sql"),
    },
    Migration {
        version: 6,
        name: "user_search_trigrams",
        sql: include_str!("migrations/0006_user_search_trigrams.sql"),
    },
    Migration {
        version: 7,
        name: "read_markers_in_chats",
        sql: include_str!("migrations/0007_read_markers_in_chats.sql"),
    },
    Migration {
        version: 8,
        name: "chats_fillfactor",
        sql: include_str!("migrations/0008_chats_fillfactor.sql"),
    },
    Migration {
        version: 9,
        name: "inactive_users",
        sql: include_str!("migrations/0009_inactive_users.sql"),
    },
    Migration {
        version: 10,
        name: "django_import",
        sql: include_str!("migrations/0010_django_import.sql"),
    },
    Migration {
        version: 11,
        name: "keys_lead_with_the_chat",
        sql: include_str!("migrations/0011_keys_lead_with_the_chat.sql"),
    },
];

/// Arbitrary constant naming this server's migration lock.
const MIGRATION_LOCK_KEY: i64 = 0x6368_6174_5f6d_6967;

/// Applies every migration the database has not seen; returns how many ran.
pub async fn run(client: &mut Client) -> Result<usize, StoreError> {
    client
        .execute("SELECT pg_advisory_lock($1)", &[&MIGRATION_LOCK_KEY])
        .await?;
    let result = apply_pending(client).await;
    client
        .execute("SELECT pg_advisory_unlock($1)", &[&MIGRATION_LOCK_KEY])
        .await?;
    result
}

async fn apply_pending(client: &mut Client) -> Result<usize, StoreError> {
    client
        .batch_execute(
            "CREATE TABLE IF NOT EXISTS schema_migrations (
                version INT PRIMARY KEY,
                name TEXT NOT NULL,
                applied_at TIMESTAMPTZ NOT NULL DEFAULT now())",
        )
        .await?;
    let applied: Vec<i32> = client
        .query("SELECT version FROM schema_migrations", &[])
        .await?
        .iter()
        .map(|row| row.get(0))
        .collect();
    let mut count = 0;
    for migration in MIGRATIONS.iter().filter(|m| !applied.contains(&m.version)) {
        apply_one(client, migration)
            .await
            .map_err(|source| StoreError::Migration {
                version: migration.version,
                name: migration.name,
                source,
            })?;
        tracing::info!(
            version = migration.version,
            name = migration.name,
            "applied migration"
        );
        count += 1;
    }
    Ok(count)
}

async fn apply_one(
    client: &mut Client,
    migration: &Migration,
) -> Result<(), tokio_postgres::Error> {
    let tx = client.transaction().await?;
    tx.batch_execute(migration.sql).await?;
    tx.execute(
        "INSERT INTO schema_migrations (version, name) VALUES ($1, $2)",
        &[&migration.version, &migration.name],
    )
    .await?;
    tx.commit().await
}
