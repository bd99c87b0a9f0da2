//! Schema migrations for PostgreSQL: the plain SQL files in `migrations/` beside this file, compiled
//! into the binary, applied once each, in order, each in its own transaction, and
//! recorded in `schema_migrations`. An advisory lock lets several nodes start at once.
//!
//! Rolling upgrades: the first node of a new release migrates the schema
//! while nodes of the release before still run, and such a node may restart
//! meanwhile. So each migration records whether the release before it still
//! runs against the migrated schema (`older_builds_run`: it only adds, or
//! changes nothing those builds' statements use); a node that finds an applied
//! migration it does not know refuses to start when that migration says no,
//! naming it, and starts with a warning when it says yes. A migration that
//! drops or renames what the release before uses says no, and its release
//! notes say to stop the older nodes first. The migrations up to 11 predate
//! the rule and say no; every build that reads the flag knows them.

use super::StoreError;
use tokio_postgres::Client;

/// One migration: its version (the file's number), name and SQL, and whether
/// the build before it still runs against the schema it leaves.
pub struct Migration {
    pub version: i32,
    pub name: &'static str,
    pub sql: &'static str,
    pub older_builds_run: bool,
}

/// Every migration, in the order it must be applied.
pub const MIGRATIONS: &[Migration] = &[
    Migration {
        version: 1,
        name: "init",
        sql: include_str!("migrations/0001_init.sql"),
        older_builds_run: false,
    },
    Migration {
        version: 2,
        name: "read_markers",
        sql: include_str!("migrations/0002_read_markers.sql"),
        older_builds_run: false,
    },
    Migration {
        version: 3,
        name: "append_messages_index_probes",
        sql: include_str!("migrations/0003_append_messages_index_probes.sql"),
        older_builds_run: false,
    },
    Migration {
        version: 4,
        name: "lean_hot_path",
        sql: include_str!("migrations/0004_lean_hot_path.sql"),
        older_builds_run: false,
    },
    Migration {
        version: 5,
        name: "client_ids_bytewise",
        sql: include_str!("migrations/0005_client_ids_bytewise.sql"),
        older_builds_run: false,
    },
    Migration {
        version: 6,
        name: "user_search_trigrams",
        sql: include_str!("migrations/0006_user_search_trigrams.sql"),
        older_builds_run: false,
    },
    Migration {
        version: 7,
        name: "read_markers_in_chats",
        sql: include_str!("migrations/0007_read_markers_in_chats.sql"),
        older_builds_run: false,
    },
    Migration {
        version: 8,
        name: "chats_fillfactor",
        sql: include_str!("migrations/0008_chats_fillfactor.sql"),
        older_builds_run: false,
    },
    Migration {
        version: 9,
        name: "inactive_users",
        sql: include_str!("migrations/0009_inactive_users.sql"),
        older_builds_run: false,
    },
    Migration {
        version: 10,
        name: "django_import",
        sql: include_str!("migrations/0010_django_import.sql"),
        older_builds_run: false,
    },
    Migration {
        version: 11,
        name: "keys_lead_with_the_chat",
        sql: include_str!("migrations/0011_keys_lead_with_the_chat.sql"),
        older_builds_run: false,
    },
    Migration {
        version: 12,
        name: "login_failures",
        sql: include_str!("migrations/0012_login_failures.sql"),
        older_builds_run: true,
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
                applied_at TIMESTAMPTZ NOT NULL DEFAULT now());
             ALTER TABLE schema_migrations
                ADD COLUMN IF NOT EXISTS older_builds_run BOOLEAN NOT NULL DEFAULT FALSE",
        )
        .await?;
    refuse_a_schema_not_for_this_build(client).await?;
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

/// Applied migrations this build does not know (a later release's): an
/// error naming the first that says this build cannot run against it; a
/// warning when all say it can.
async fn refuse_a_schema_not_for_this_build(client: &Client) -> Result<(), StoreError> {
    let known: Vec<i32> = MIGRATIONS.iter().map(|m| m.version).collect();
    let unknown = client
        .query(
            "SELECT version, name, older_builds_run FROM schema_migrations
             WHERE version <> ALL($1) ORDER BY version",
            &[&known],
        )
        .await?;
    for row in &unknown {
        let (version, name): (i32, String) = (row.get(0), row.get(1));
        if !row.get::<_, bool>(2) {
            return Err(StoreError::SchemaTooNew { version, name });
        }
        tracing::warn!(
            version,
            name,
            "the database has a later release's migration; it says this build still runs"
        );
    }
    Ok(())
}

async fn apply_one(
    client: &mut Client,
    migration: &Migration,
) -> Result<(), tokio_postgres::Error> {
    let tx = client.transaction().await?;
    tx.batch_execute(migration.sql).await?;
    tx.execute(
        "INSERT INTO schema_migrations (version, name, older_builds_run) VALUES ($1, $2, $3)",
        &[
            &migration.version,
            &migration.name,
            &migration.older_builds_run,
        ],
    )
    .await?;
    tx.commit().await
}
