//! The embedded store's schema migrations: the SQL files in `migrations/`
//! beside this file, applied once each, in order, each in its own
//! transaction, and recorded in `schema_migrations` with whether the build
//! before still runs against the migrated schema. As for PostgreSQL (see
//! that store's migrations), a build that finds a later release's migration
//! saying no refuses to open the data (a binary put back after an upgrade),
//! naming it; the migrations up to 3 predate the rule and say no.

use super::failed;
use crate::store::StoreError;
use rusqlite::{Connection, OptionalExtension};

/// `(version, SQL, whether the build before still runs against it)`.
const MIGRATIONS: &[(i64, &str, bool)] = &[
    (1, include_str!("migrations/0001_init.sql"), false),
    (2, include_str!("migrations/0002_django_import.sql"), false),
    (
        3,
        include_str!("migrations/0003_client_ids_per_chat.sql"),
        false,
    ),
    (4, include_str!("migrations/0004_login_failures.sql"), true),
];

pub fn migrate(conn: &mut Connection) -> Result<(), StoreError> {
    conn.execute_batch(
        "CREATE TABLE IF NOT EXISTS schema_migrations (version INTEGER PRIMARY KEY)",
    )
    .map_err(failed)?;
    record_whether_older_builds_run(conn)?;
    refuse_a_schema_not_for_this_build(conn)?;
    for (version, sql, older_builds_run) in MIGRATIONS {
        let applied: bool = conn
            .query_row(
                "SELECT 1 FROM schema_migrations WHERE version = ?",
                [version],
                |_| Ok(()),
            )
            .optional()
            .map_err(failed)?
            .is_some();
        if applied {
            continue;
        }
        let tx = conn.transaction().map_err(failed)?;
        tx.execute_batch(sql).map_err(failed)?;
        tx.execute(
            "INSERT INTO schema_migrations (version, older_builds_run) VALUES (?, ?)",
            rusqlite::params![version, older_builds_run],
        )
        .map_err(failed)?;
        tx.commit().map_err(failed)?;
        tracing::info!(version, "applied sqlite migration");
    }
    Ok(())
}

/// Adds the `older_builds_run` column to a table made before it existed.
fn record_whether_older_builds_run(conn: &Connection) -> Result<(), StoreError> {
    let present: bool = conn
        .query_row(
            "SELECT 1 FROM pragma_table_info('schema_migrations') WHERE name = 'older_builds_run'",
            [],
            |_| Ok(()),
        )
        .optional()
        .map_err(failed)?
        .is_some();
    if !present {
        conn.execute_batch(
            "ALTER TABLE schema_migrations
             ADD COLUMN older_builds_run INTEGER NOT NULL DEFAULT 0",
        )
        .map_err(failed)?;
    }
    Ok(())
}

/// Applied migrations this build does not know: an error naming the first
/// that says this build cannot run against it; a warning for the others.
fn refuse_a_schema_not_for_this_build(conn: &Connection) -> Result<(), StoreError> {
    let newest_known = MIGRATIONS.iter().map(|(version, ..)| *version).max();
    let mut later = conn
        .prepare(
            "SELECT version, older_builds_run FROM schema_migrations
             WHERE version > ? ORDER BY version",
        )
        .map_err(failed)?;
    let rows = later
        .query_map([newest_known.unwrap_or(0)], |row| {
            Ok((row.get::<_, i64>(0)?, row.get::<_, bool>(1)?))
        })
        .map_err(failed)?;
    for row in rows {
        let (version, older_builds_run) = row.map_err(failed)?;
        if !older_builds_run {
            return Err(StoreError::SchemaTooNew {
                version: i32::try_from(version).unwrap_or(i32::MAX),
                name: "embedded store".into(),
            });
        }
        tracing::warn!(
            version,
            "the data has a later release's migration; it says this build still runs"
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_later_migration_is_run_against_only_when_it_says_so() {
        let mut conn = Connection::open_in_memory().unwrap();
        migrate(&mut conn).unwrap();
        let later = "INSERT INTO schema_migrations (version, older_builds_run) VALUES (?, ?)";
        conn.execute(later, rusqlite::params![100, true]).unwrap();
        migrate(&mut conn).expect("a later migration that only added");
        conn.execute(later, rusqlite::params![101, false]).unwrap();
        let refused = migrate(&mut conn).unwrap_err().to_string();
        assert!(refused.contains("migration 101"), "{refused}");
    }

    #[test]
    fn a_table_from_before_the_rule_gets_the_column() {
        let mut conn = Connection::open_in_memory().unwrap();
        conn.execute_batch(
            "CREATE TABLE schema_migrations (version INTEGER PRIMARY KEY);
             INSERT INTO schema_migrations (version) VALUES (1), (2), (3);",
        )
        .unwrap();
        migrate(&mut conn).expect("the old table is brought up to date");
        let said: i64 = conn
            .query_row(
                "SELECT count(*) FROM schema_migrations WHERE older_builds_run = 0",
                [],
                |row| row.get(0),
            )
            .unwrap();
        assert_eq!(said, 3);
    }
}
