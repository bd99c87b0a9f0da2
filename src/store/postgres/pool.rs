//! The PostgreSQL connection pool: bb8 over tokio-postgres, every statement
//! prepared once per connection, the database created on a fresh machine,
//! and driver errors sorted into what callers act on ([`StoreError`]).

use super::statements::Statements;
use super::tls::{connectable, Connectable};
use crate::config::DatabaseConfig;
use crate::store::StoreError;
use bb8_postgres::PostgresConnectionManager;
use postgres_native_tls::MakeTlsConnector;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio_postgres::error::SqlState;

/// A pooled connection and its prepared statements.
pub struct PreparedConnection {
    pub client: tokio_postgres::Client,
    pub statements: Statements,
    /// [`Retirements`] when it was made.
    made_after: u64,
    /// A statement on it was given up unanswered: it is closed when it goes
    /// back to the pool (later statements would queue behind that one).
    abandoned: bool,
}

impl PreparedConnection {
    /// Marks it to be closed rather than pooled again.
    pub fn abandon(&mut self) {
        self.abandoned = true;
    }
}

/// How many times every connection open so far was retired: after an
/// operation was given up unanswered (see `PatientStore`), the connection
/// it ran on may still wait for the answer, and any statement sent on it
/// would queue behind. Which one it was is not known, so every connection
/// made before is closed as it is next checked out or returned, and new
/// ones are made. Shared by a store's pools.
#[derive(Clone, Default)]
pub struct Retirements(Arc<AtomicU64>);

impl Retirements {
    pub fn retire_all(&self) {
        self.0.fetch_add(1, Ordering::Relaxed);
    }

    fn current(&self) -> u64 {
        self.0.load(Ordering::Relaxed)
    }
}

/// bb8 manager: bb8-postgres connects, then every statement is prepared once.
pub struct PreparedManager {
    inner: PostgresConnectionManager<MakeTlsConnector>,
    retirements: Retirements,
}

impl bb8::ManageConnection for PreparedManager {
    type Connection = PreparedConnection;
    type Error = tokio_postgres::Error;

    async fn connect(&self) -> Result<Self::Connection, Self::Error> {
        let made_after = self.retirements.current();
        let client = self.inner.connect().await?;
        let statements = Statements::prepare(&client).await?;
        Ok(PreparedConnection {
            client,
            statements,
            made_after,
            abandoned: false,
        })
    }

    async fn is_valid(&self, conn: &mut Self::Connection) -> Result<(), Self::Error> {
        self.inner.is_valid(&mut conn.client).await
    }

    fn has_broken(&self, conn: &mut Self::Connection) -> bool {
        conn.client.is_closed() || conn.abandoned || conn.made_after != self.retirements.current()
    }
}

/// A pool of prepared connections, and when they were last all retired.
pub struct Pool {
    connections: bb8::Pool<PreparedManager>,
    retirements: Retirements,
}
pub type Conn<'a> = bb8::PooledConnection<'a, PreparedManager>;

/// Connects (creating the database when it does not exist yet), applies
/// pending migrations and builds the pool.
pub async fn open(config: &DatabaseConfig, retirements: Retirements) -> Result<Pool, StoreError> {
    let target = parse(&config.url, "DATABASE_URL")?;
    drop(migrated_on(&target).await?);
    Ok(pool_of(target, config.pool_size, retirements))
}

/// A pool on a standby: nothing is created or migrated there (the primary's
/// schema arrives by replication), and it is not reached until first used.
pub fn open_standby(url: &str, size: u32, retirements: Retirements) -> Result<Pool, StoreError> {
    let target = parse(url, "DATABASE_READ_URLS entry")?;
    Ok(pool_of(target, size, retirements))
}

/// A pool of up to `size` prepared connections, made as they are needed.
fn pool_of(target: Connectable, size: u32, retirements: Retirements) -> Pool {
    let manager = PreparedManager {
        inner: PostgresConnectionManager::new(target.config, target.tls),
        retirements: retirements.clone(),
    };
    let connections = bb8::Pool::builder()
        .max_size(size.max(1))
        // Short: a request that waits longer for the database does so in
        // `PatientStore`, which asks the pool again (up to `DB_RETRY_SECS`).
        .connection_timeout(Duration::from_secs(1))
        .test_on_check_out(false)
        .build_unchecked(manager);
    Pool {
        connections,
        retirements,
    }
}

/// One connection, not pooled, on a database created and migrated when needed.
pub async fn migrated_client(
    config: &DatabaseConfig,
) -> Result<tokio_postgres::Client, StoreError> {
    migrated_on(&parse(&config.url, "DATABASE_URL")?).await
}

async fn migrated_on(target: &Connectable) -> Result<tokio_postgres::Client, StoreError> {
    create_database_if_missing(target).await?;
    let mut client = connect_once(&target.config, &target.tls).await?;
    super::migrations::run(&mut client).await?;
    Ok(client)
}

/// A database URL's settings and TLS connector (see [`super::tls`]); `what`
/// names the setting in the error.
pub(super) fn parse(url: &str, what: &str) -> Result<Connectable, StoreError> {
    connectable(url).map_err(|e| StoreError::Unavailable(format!("bad {what}: {e}")))
}

/// A pooled connection that is still open and not retired. After the
/// database restarted, the pool holds connections it closed: one of them
/// would fail its statement before sending it, so it is passed over here
/// (dropped, and so discarded by the pool, see `has_broken`), which keeps "a
/// statement failed on a dead connection" meaning "its outcome is unknown".
/// A retired one (see [`Retirements`]) is passed over the same way.
pub async fn checkout(pool: &Pool) -> Result<Conn<'_>, StoreError> {
    loop {
        let conn = pool.connections.get().await.map_err(|e| match e {
            // No statement of ours was sent: nothing happened.
            bb8::RunError::User(e) => StoreError::Unavailable(e.to_string()),
            bb8::RunError::TimedOut => {
                StoreError::Unavailable("timed out waiting for a database connection".into())
            }
        })?;
        if !conn.client.is_closed() && conn.made_after == pool.retirements.current() {
            return Ok(conn);
        }
    }
}

/// Connection-level failures of a statement mean its outcome is unknown
/// (`Interrupted`, 503); the rest are real errors.
pub fn classify(error: tokio_postgres::Error) -> StoreError {
    let transient = error.is_closed()
        || error.code().is_some_and(|code| {
            code.code().starts_with("08")
                || *code == SqlState::ADMIN_SHUTDOWN
                || *code == SqlState::CANNOT_CONNECT_NOW
                || *code == SqlState::TOO_MANY_CONNECTIONS
        })
        || error.as_db_error().is_none() && error.code().is_none();
    if transient {
        StoreError::Interrupted(error.to_string())
    } else {
        StoreError::Database(error)
    }
}

pub fn is_retryable_race(error: &tokio_postgres::Error) -> bool {
    error.code().is_some_and(|code| {
        *code == SqlState::UNIQUE_VIOLATION
            || *code == SqlState::T_R_DEADLOCK_DETECTED
            || *code == SqlState::T_R_SERIALIZATION_FAILURE
    })
}

async fn connect_once(
    config: &tokio_postgres::Config,
    tls: &MakeTlsConnector,
) -> Result<tokio_postgres::Client, StoreError> {
    let (client, connection) = config
        .connect(tls.clone())
        .await
        .map_err(classify_connect)?;
    tokio::spawn(async move {
        if let Err(e) = connection.await {
            tracing::warn!(error = %e, "migration connection ended");
        }
    });
    Ok(client)
}

fn classify_connect(error: tokio_postgres::Error) -> StoreError {
    StoreError::Unavailable(format!(
        "cannot connect to PostgreSQL: {}",
        described(&error)
    ))
}

/// The error with its causes (the server's message, why a TLS handshake
/// failed): tokio-postgres' own text is only "db error" for a refusal.
pub(super) fn described(error: &tokio_postgres::Error) -> String {
    if let Some(db) = error.as_db_error() {
        return format!("{}: {}", db.severity(), db.message());
    }
    let mut text = error.to_string();
    let mut cause = std::error::Error::source(error);
    while let Some(inner) = cause {
        let said = inner.to_string();
        if !text.contains(&said) {
            text.push_str(": ");
            text.push_str(&said);
        }
        cause = inner.source();
    }
    text
}

/// A fresh machine has PostgreSQL but not our database: create it, as `createdb` would.
async fn create_database_if_missing(target: &Connectable) -> Result<(), StoreError> {
    let config = &target.config;
    let Err(error) = config.connect(target.tls.clone()).await else {
        return Ok(());
    };
    if error.code() != Some(&SqlState::INVALID_CATALOG_NAME) {
        return Err(classify_connect(error));
    }
    let name = config
        .get_dbname()
        .unwrap_or("chat_db")
        .replace('"', "\"\"");
    let mut admin = config.clone();
    admin.dbname("postgres");
    let client = connect_once(&admin, &target.tls).await?;
    match client
        .batch_execute(&format!("CREATE DATABASE \"{name}\""))
        .await
    {
        Ok(()) => {
            tracing::info!(database = %name, "created database");
            Ok(())
        }
        Err(e) if e.code() == Some(&SqlState::DUPLICATE_DATABASE) => Ok(()),
        Err(e) => Err(classify_connect(e)),
    }
}
