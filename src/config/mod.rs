//! Configuration: every setting the server reads from its environment, parsed and
//! validated once at start-up into a plain [`Config`] value.
//!
//! Names follow the Django backend where it had one (`DEBUG`, `SECRET_KEY`,
//! `ALLOWED_HOSTS`, `CORS_ALLOWED_ORIGINS`, `POSTGRES_*`, `REDIS_URL`); the rest are
//! this server's tuning knobs. [`Config::from_vars`] takes the variables as a map so
//! tests can build many configurations in one process without touching the real
//! environment.

mod env;
mod secret;
pub mod trusted_proxies;

use env::Env;
use secret::resolve_secret;
use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;
pub use trusted_proxies::TrustedProxies;

/// Why the environment could not be turned into a [`Config`].
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("{name}={value:?} is not valid: {reason}")]
    Invalid {
        name: &'static str,
        value: String,
        reason: String,
    },
    #[error("SECRET_KEY is required when DEBUG=0 (production): set it to a long random string")]
    MissingSecret,
    #[error("SECRET_KEY is a well-known example value; set a long random string when DEBUG=0")]
    DefaultSecret,
    #[error("SECRET_KEY must be at least 32 characters when DEBUG=0 (got {0})")]
    ShortSecret(usize),
    #[error("could not keep the generated secret in {path}: {source}")]
    SecretFile {
        path: PathBuf,
        source: std::io::Error,
    },
}

/// Where PostgreSQL is: a URL or key/value string as `tokio-postgres` accepts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DatabaseConfig {
    pub url: String,
    pub pool_size: u32,
    /// How long an operation that is safe to repeat waits for an unavailable
    /// database (a restart, a failover) before it is answered 503.
    pub retry_for: Duration,
    /// Standbys that serve reads (`DATABASE_READ_URLS`), one URL each.
    pub read_urls: Vec<String>,
}

/// Limits on what one request may carry.
#[derive(Debug, Clone)]
pub struct Limits {
    pub max_body_bytes: usize,
    pub max_content_chars: usize,
    pub max_metadata_bytes: usize,
    pub max_metadata_depth: usize,
    pub password_min_length: usize,
    pub max_connections: usize,
    /// Open connections from one address (0 = no cap); trusted proxies are exempt.
    pub max_connections_per_address: usize,
    pub header_read_timeout: Duration,
    /// A request body not received within this is refused with 408.
    pub body_read_timeout: Duration,
    pub user_search_limit: i64,
    /// Register/login attempts per client address per minute (0 = no limit).
    pub auth_per_minute: f64,
    pub auth_burst: f64,
    /// User searches per user per minute (0 = no limit), and at once.
    pub searches_per_minute: f64,
    pub searches_burst: f64,
    /// Chats a user may start per minute (0 = no limit), and at once; an
    /// existing chat is answered past the limit.
    pub new_chats_per_minute: f64,
    pub new_chats_burst: f64,
    /// `sync` events per user: each reads where up to 1,000 chats stand.
    pub syncs_per_minute: f64,
    pub syncs_burst: f64,
    /// Failed logins per email per minute (0 = no limit); the burst is the same.
    pub login_failures_per_email_per_minute: f64,
    /// Messages per user per second, REST and WebSocket together (0 = no limit).
    pub sends_per_second: f64,
    pub sends_burst: f64,
    /// Consecutive throttled WebSocket events before the socket is closed (1008).
    pub flood_close_after: u32,
    /// Open WebSockets per user (0 = no limit).
    pub max_sockets_per_user: usize,
}

/// History pagination defaults.
#[derive(Debug, Clone, Copy)]
pub struct Paging {
    pub default_page_size: i64,
    pub max_page_size: i64,
    /// Bytes of this node's cache of stored messages' JSON; 0 turns it off.
    pub history_cache_bytes: usize,
}

/// Real-time delivery: WebSocket sessions, the room map and the group-commit writer.
#[derive(Debug, Clone)]
pub struct Realtime {
    /// Largest WebSocket message (after reassembly); more closes with 1009.
    pub max_message_bytes: usize,
    /// Write buffer per socket (small bursts are coalesced into one write).
    pub write_buffer_bytes: usize,
    /// Frames queued for one socket; a full outbox closes it with 4008.
    pub outbox_capacity: usize,
    pub ping_interval: Duration,
    /// No frame (not even a pong) for this long closes the socket with 4000.
    pub idle_timeout: Duration,
    /// At most one `typing` event per user and chat per interval is forwarded.
    pub typing_interval: Duration,
    /// Bytes of stored messages (content and metadata) a catch-up reads at
    /// once, and how long a whole catch-up may take before the socket is
    /// closed with 4008.
    pub catch_up_bytes: usize,
    pub catch_up_timeout: Duration,
    /// A user's read marker in a chat is stored at most once per interval
    /// (the highest asked for meanwhile).
    pub read_marker_interval: Duration,
    pub room_shards: usize,
    /// Independent writer lanes (chats are split between them by id); each keeps
    /// one batch in flight, so this is also the pipelining depth.
    pub writer_lanes: usize,
    pub writer_batch_max: usize,
    /// Extra time a lane waits to fill a batch; 0 = take what is queued.
    pub writer_linger: Duration,
    /// Lanes of each kind of batched read (see `crate::store::read_batches`);
    /// each keeps one statement in flight.
    pub reader_lanes: usize,
}

/// Token lifetimes and password hashing cost.
#[derive(Debug, Clone)]
pub struct AuthConfig {
    pub secret_key: String,
    pub access_ttl: Duration,
    pub refresh_ttl: Duration,
    pub hash_concurrency: usize,
    pub argon2_memory_kib: u32,
    pub argon2_iterations: u32,
    /// How often each node reads which users are inactive; a user deactivated
    /// in the database is refused everywhere within this (1 s at least).
    pub inactive_users_poll: Duration,
}

/// Everything the server needs to know, built once at start-up.
#[derive(Debug, Clone)]
pub struct Config {
    pub debug: bool,
    pub bind: SocketAddr,
    pub data_dir: PathBuf,
    pub allowed_hosts: Vec<String>,
    pub cors_allowed_origins: Vec<String>,
    /// Proxies whose `X-Forwarded-For` names the client (none by default).
    pub trusted_proxies: TrustedProxies,
    pub database: Option<DatabaseConfig>,
    /// The bus between nodes: none (one node), one Redis, or a Redis Cluster.
    pub redis: Option<RedisBus>,
    /// Prefix of this deployment's Redis channels (several can share one Redis).
    pub redis_channel_prefix: String,
    pub auth: AuthConfig,
    pub limits: Limits,
    pub paging: Paging,
    pub realtime: Realtime,
    pub shutdown_timeout: Duration,
    pub json_logs: bool,
}

impl Config {
    /// Reads the process environment.
    pub fn from_env() -> Result<Self, ConfigError> {
        Self::from_vars(std::env::vars().collect())
    }

    /// Builds a configuration from explicit variables (tests use this).
    pub fn from_vars(vars: HashMap<String, String>) -> Result<Self, ConfigError> {
        Self::read(&Env::new(vars))
    }

    fn read(env: &Env) -> Result<Self, ConfigError> {
        let debug = env.flag("DEBUG", true)?;
        let data_dir = PathBuf::from(env.text("DATA_DIR").unwrap_or("./data"));
        let workers = std::thread::available_parallelism().map_or(2, |n| n.get());
        let auth = AuthConfig {
            secret_key: resolve_secret(env.text("SECRET_KEY"), debug, &data_dir)?,
            access_ttl: Duration::from_secs(env.number("ACCESS_TOKEN_TTL_SECS", 30 * 60)?),
            refresh_ttl: Duration::from_secs(env.number("REFRESH_TOKEN_TTL_SECS", 7 * 86_400)?),
            hash_concurrency: env.number("HASH_CONCURRENCY", workers)?,
            argon2_memory_kib: env.number("ARGON2_MEMORY_KIB", 19 * 1024)?,
            argon2_iterations: env.number("ARGON2_ITERATIONS", 2)?,
            inactive_users_poll: Duration::from_secs(
                env.number::<u64>("INACTIVE_USERS_POLL_SECS", 10)?.max(1),
            ),
        };
        Ok(Config {
            debug,
            bind: env.number("BIND", SocketAddr::from(([0, 0, 0, 0], 8000)))?,
            allowed_hosts: env.list("ALLOWED_HOSTS", &["*"]),
            cors_allowed_origins: env.list("CORS_ALLOWED_ORIGINS", &[]),
            trusted_proxies: trusted_proxies(env)?,
            database: database_config(env)?,
            redis: redis_bus(env)?,
            redis_channel_prefix: env
                .text("REDIS_CHANNEL_PREFIX")
                .map_or_else(|| default_channel_prefix(&auth.secret_key), str::to_owned),
            auth,
            limits: limits(env)?,
            paging: paging(env)?,
            realtime: realtime(env, workers)?,
            shutdown_timeout: Duration::from_secs(env.number("SHUTDOWN_TIMEOUT_SECS", 10)?),
            json_logs: env.text("LOG_FORMAT") == Some("json"),
            data_dir,
        })
    }
}

fn limits(env: &Env) -> Result<Limits, ConfigError> {
    Ok(Limits {
        max_body_bytes: env.number("MAX_BODY_BYTES", 1024 * 1024)?,
        max_content_chars: env.number("MAX_CONTENT_CHARS", 10_000)?,
        max_metadata_bytes: env.number("MAX_METADATA_BYTES", 16 * 1024)?,
        max_metadata_depth: env.number("MAX_METADATA_DEPTH", 32)?,
        password_min_length: env.number("PASSWORD_MIN_LENGTH", 8)?,
        max_connections: env.number("MAX_CONNECTIONS", 100_000)?,
        max_connections_per_address: env.number("MAX_CONNECTIONS_PER_ADDRESS", 1_000)?,
        header_read_timeout: Duration::from_secs(env.number("HEADER_READ_TIMEOUT_SECS", 10)?),
        body_read_timeout: Duration::from_secs(env.number("BODY_READ_TIMEOUT_SECS", 15)?),
        user_search_limit: env.number("USER_SEARCH_LIMIT", 50)?,
        auth_per_minute: env.number("RATE_LIMIT_AUTH_PER_MIN", 60.0)?,
        auth_burst: env.number("RATE_LIMIT_AUTH_BURST", 20.0)?,
        searches_per_minute: env.number("RATE_LIMIT_SEARCH_PER_MIN", 60.0)?,
        searches_burst: env.number("RATE_LIMIT_SEARCH_BURST", 20.0)?,
        new_chats_per_minute: env.number("RATE_LIMIT_NEW_CHATS_PER_MIN", 20.0)?,
        new_chats_burst: env.number("RATE_LIMIT_NEW_CHATS_BURST", 20.0)?,
        syncs_per_minute: env.number("RATE_LIMIT_SYNC_PER_MIN", 60.0)?,
        syncs_burst: env.number("RATE_LIMIT_SYNC_BURST", 20.0)?,
        login_failures_per_email_per_minute: env
            .number("RATE_LIMIT_LOGIN_FAILURES_PER_EMAIL_PER_MIN", 10.0)?,
        sends_per_second: env.number("RATE_LIMIT_SENDS_PER_SEC", 50.0)?,
        sends_burst: env.number("RATE_LIMIT_SENDS_BURST", 200.0)?,
        flood_close_after: env.number("WS_FLOOD_CLOSE_AFTER", 100)?,
        max_sockets_per_user: env.number("WS_MAX_SOCKETS_PER_USER", 32)?,
    })
}

fn realtime(env: &Env, workers: usize) -> Result<Realtime, ConfigError> {
    let secs = |name, default| env.number(name, default).map(Duration::from_secs);
    let millis = |name, default| env.number(name, default).map(Duration::from_millis);
    let realtime = Realtime {
        max_message_bytes: env.number("WS_MAX_MESSAGE_BYTES", 128 * 1024)?,
        write_buffer_bytes: env.number::<usize>("WS_WRITE_BUFFER_BYTES", 8192)?.max(64),
        outbox_capacity: env.number::<usize>("WS_OUTBOX_CAPACITY", 1024)?.max(1),
        ping_interval: secs("WS_PING_INTERVAL_SECS", 30)?,
        idle_timeout: secs("WS_IDLE_TIMEOUT_SECS", 75)?,
        typing_interval: millis("WS_TYPING_INTERVAL_MS", 1000)?,
        read_marker_interval: millis("WS_READ_MARKER_INTERVAL_MS", 250)?,
        catch_up_bytes: env.number::<usize>("WS_CATCH_UP_BYTES", 256 * 1024)?.max(1),
        catch_up_timeout: secs("WS_CATCH_UP_TIMEOUT_SECS", 60)?,
        room_shards: env.number::<usize>("ROOM_SHARDS", workers)?.max(1),
        // One lane per core: more lanes than cores add latency for no
        // throughput (BENCHMARKS.md).
        writer_lanes: env
            .number::<usize>("WRITER_LANES", workers.clamp(2, 8))?
            .max(1),
        writer_batch_max: env.number::<usize>("WRITER_BATCH_MAX", 512)?.max(1),
        writer_linger: millis("WRITER_LINGER_MS", 0)?,
        reader_lanes: env
            .number::<usize>("READER_LANES", default_reader_lanes(workers))?
            .max(1),
    };
    if realtime.idle_timeout <= realtime.ping_interval {
        return Err(ConfigError::Invalid {
            name: "WS_IDLE_TIMEOUT_SECS",
            value: realtime.idle_timeout.as_secs().to_string(),
            reason: "must be longer than WS_PING_INTERVAL_SECS, or live clients time out".into(),
        });
    }
    Ok(realtime)
}

/// A lane per four cores (1 to 8): PostgreSQL's cost of a read statement is
/// mostly per statement, and the questions that wait while one lane's
/// statement is in flight make the next one's batch (BENCHMARKS.md).
fn default_reader_lanes(cores: usize) -> usize {
    (cores / 4).clamp(1, 8)
}

fn paging(env: &Env) -> Result<Paging, ConfigError> {
    let paging = Paging {
        default_page_size: env.number("PAGE_SIZE", 25)?,
        max_page_size: env.number("MAX_PAGE_SIZE", 100)?,
        history_cache_bytes: env
            .number::<usize>("HISTORY_CACHE_MB", 64)?
            .saturating_mul(1 << 20),
    };
    if paging.default_page_size < 1 || paging.default_page_size > paging.max_page_size {
        return Err(ConfigError::Invalid {
            name: "PAGE_SIZE",
            value: paging.default_page_size.to_string(),
            reason: format!(
                "must be between 1 and MAX_PAGE_SIZE ({})",
                paging.max_page_size
            ),
        });
    }
    Ok(paging)
}

/// `DATABASE_URL` wins; otherwise any `POSTGRES_*` variable selects PostgreSQL with
/// the seed's defaults for the others. Neither → no database configured.
fn database_config(env: &Env) -> Result<Option<DatabaseConfig>, ConfigError> {
    let pool_size = env.number("DB_POOL_SIZE", 16)?;
    let retry_for = Duration::from_secs(env.number("DB_RETRY_SECS", 10)?);
    // `postgres://` URLs: a key/value string would split on its spaces.
    let read_urls = env.list("DATABASE_READ_URLS", &[]);
    if let Some(url) = env.text("DATABASE_URL") {
        return Ok(Some(DatabaseConfig {
            url: url.to_owned(),
            pool_size,
            retry_for,
            read_urls,
        }));
    }
    let keys = [
        "POSTGRES_HOST",
        "POSTGRES_PORT",
        "POSTGRES_USER",
        "POSTGRES_DB",
    ];
    if !keys.iter().any(|k| env.text(k).is_some()) {
        return Ok(None);
    }
    let mut url = format!(
        "host={} port={} user={} dbname={}",
        env.text("POSTGRES_HOST").unwrap_or("127.0.0.1"),
        env.number::<u16>("POSTGRES_PORT", 5432)?,
        env.text("POSTGRES_USER").unwrap_or("chat_backend"),
        env.text("POSTGRES_DB").unwrap_or("chat_db"),
    );
    if let Some(password) = env.text("POSTGRES_PASSWORD") {
        url.push_str(&format!(" password='{}'", password.replace('\'', "\\'")));
    }
    Ok(Some(DatabaseConfig {
        url,
        pool_size,
        retry_for,
        read_urls,
    }))
}

/// A prefix two deployments cannot share by accident: derived from the secret
/// (the nodes of one deployment share it; another deployment's differs), never
/// showing it.
fn default_channel_prefix(secret: &str) -> String {
    let digest = crate::digest::sha256(format!("chat-server channel prefix:{secret}").as_bytes());
    format!("chat-{}", crate::digest::hex(&digest[..6]))
}

/// `TRUSTED_PROXIES`: addresses and CIDR networks, comma- or space-separated.
fn trusted_proxies(env: &Env) -> Result<TrustedProxies, ConfigError> {
    let entries = env.list("TRUSTED_PROXIES", &[]);
    TrustedProxies::parse(&entries).map_err(|reason| ConfigError::Invalid {
        name: "TRUSTED_PROXIES",
        value: entries.join(","),
        reason,
    })
}

/// Where the bus runs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RedisBus {
    /// One Redis (`REDIS_URL`): classic pub/sub.
    Single(String),
    /// A Redis Cluster (`REDIS_CLUSTER_URLS`, some of its nodes): sharded
    /// pub/sub, each channel on the shard that owns its slot.
    Cluster(Vec<String>),
}

/// `REDIS_URL` or `REDIS_CLUSTER_URLS` (not both), with `REDIS_PASSWORD`
/// folded into every URL that carries none.
fn redis_bus(env: &Env) -> Result<Option<RedisBus>, ConfigError> {
    let password = env.text("REDIS_PASSWORD");
    let cluster = env.list("REDIS_CLUSTER_URLS", &[]);
    match (env.text("REDIS_URL"), cluster.is_empty()) {
        (Some(url), true) => Ok(Some(RedisBus::Single(with_password(url, password)))),
        (None, false) => Ok(Some(RedisBus::Cluster(
            cluster
                .iter()
                .map(|url| with_password(url, password))
                .collect(),
        ))),
        (None, true) => Ok(None),
        (Some(_), false) => Err(ConfigError::Invalid {
            name: "REDIS_CLUSTER_URLS",
            value: cluster.join(","),
            reason: "set either REDIS_URL (one Redis) or REDIS_CLUSTER_URLS (a cluster), not both"
                .into(),
        }),
    }
}

fn with_password(url: &str, password: Option<&str>) -> String {
    match password {
        Some(password) if !url.contains('@') => {
            let (scheme, rest) = url.split_once("://").unwrap_or(("redis", url));
            format!("{scheme}://:{password}@{rest}")
        }
        _ => url.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeSet;

    #[test]
    fn every_variable_the_server_reads_is_documented() {
        let example = include_str!("../../.env.example");
        let readme = include_str!("../../README.md");
        let secret = (
            "SECRET_KEY",
            "a-long-enough-secret-for-this-test-0123456789",
        );
        let mut names = BTreeSet::new();
        for extra in [
            ("DATABASE_URL", "postgres://db/chat"),
            ("POSTGRES_HOST", "db"),
            ("REDIS_URL", "redis://cache:6379/"),
            ("REDIS_CLUSTER_URLS", "redis://a:7000,redis://b:7000"),
        ] {
            let env = Env::new(vars(&[secret, extra]));
            Config::read(&env).expect("a valid configuration");
            names.extend(env.asked.borrow().iter().copied());
        }
        assert!(names.len() > 30, "{names:?}");
        for name in names {
            let in_example = example.lines().any(|line| {
                let line = line.trim_start_matches('#').trim_start();
                line.starts_with(&format!("{name}="))
            });
            assert!(in_example, "{name} is read but not listed in .env.example");
            assert!(
                readme.contains(&format!("`{name}`")),
                "{name} is read but not documented in the README"
            );
        }
    }

    fn vars(pairs: &[(&str, &str)]) -> HashMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn production_refuses_missing_or_default_secret() {
        let err = Config::from_vars(vars(&[("DEBUG", "0")])).unwrap_err();
        assert!(matches!(err, ConfigError::MissingSecret));
        let err = Config::from_vars(vars(&[("DEBUG", "0"), ("SECRET_KEY", "changeme")]));
        assert!(matches!(err, Err(ConfigError::DefaultSecret)));
        let long = "x".repeat(40);
        let ok = Config::from_vars(vars(&[("DEBUG", "0"), ("SECRET_KEY", &long)])).unwrap();
        assert_eq!(ok.auth.secret_key, long);
    }

    #[test]
    fn debug_generates_and_keeps_a_secret() {
        let dir = std::env::temp_dir().join(format!("chat-cfg-{}", crate::digest::random_hex(6)));
        let dir_s = dir.to_str().unwrap();
        let first = Config::from_vars(vars(&[("DATA_DIR", dir_s)])).unwrap();
        let second = Config::from_vars(vars(&[("DATA_DIR", dir_s)])).unwrap();
        assert_eq!(first.auth.secret_key, second.auth.secret_key);
        assert_eq!(first.auth.secret_key.len(), 64);
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(dir.join("secret_key"))
                .unwrap()
                .permissions()
                .mode();
            assert_eq!(mode & 0o777, 0o600, "only its owner may read the secret");
        }
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn the_default_channel_prefix_follows_the_secret() {
        let prefix = |secret| {
            Config::from_vars(vars(&[("SECRET_KEY", secret)]))
                .unwrap()
                .redis_channel_prefix
        };
        assert_eq!(prefix("one"), prefix("one"), "one deployment, one prefix");
        assert_ne!(
            prefix("one"),
            prefix("two"),
            "two deployments, two prefixes"
        );
        assert!(!prefix("one").contains("one"), "{}", prefix("one"));
        let set = Config::from_vars(vars(&[
            ("SECRET_KEY", "one"),
            ("REDIS_CHANNEL_PREFIX", "p"),
        ]));
        assert_eq!(set.unwrap().redis_channel_prefix, "p");
    }

    #[test]
    fn reader_lanes_are_a_lane_per_four_cores_unless_set() {
        let lanes = |pairs: &[(&str, &str)]| {
            let mut all = vec![("SECRET_KEY", "k")];
            all.extend_from_slice(pairs);
            Config::from_vars(vars(&all)).unwrap().realtime.reader_lanes
        };
        let cores = std::thread::available_parallelism().map_or(2, |n| n.get());
        assert_eq!(lanes(&[]), (cores / 4).clamp(1, 8));
        assert_eq!(lanes(&[("READER_LANES", "3")]), 3);
        assert_eq!(lanes(&[("READER_LANES", "0")]), 1, "at least one lane");
        let by_cores = [1, 2, 7, 8, 16, 64].map(default_reader_lanes);
        assert_eq!(by_cores, [1, 1, 1, 2, 4, 8]);
    }

    #[test]
    fn bad_numbers_name_the_variable() {
        let err = Config::from_vars(vars(&[("SECRET_KEY", "k"), ("MAX_BODY_BYTES", "lots")]));
        let message = err.unwrap_err().to_string();
        assert!(message.contains("MAX_BODY_BYTES"), "{message}");
    }

    #[test]
    fn postgres_variables_build_a_connection_string() {
        let cfg = Config::from_vars(vars(&[
            ("SECRET_KEY", "k"),
            ("POSTGRES_HOST", "db"),
            ("POSTGRES_PASSWORD", "pw"),
        ]))
        .unwrap();
        let db = cfg.database.unwrap();
        assert_eq!(
            db.url,
            "host=db port=5432 user=chat_backend dbname=chat_db password='pw'"
        );
    }

    #[test]
    fn redis_password_is_folded_into_the_url() {
        let cfg = Config::from_vars(vars(&[
            ("SECRET_KEY", "k"),
            ("REDIS_URL", "redis://redis:6379/1"),
            ("REDIS_PASSWORD", "pw"),
        ]))
        .unwrap();
        assert_eq!(
            cfg.redis,
            Some(RedisBus::Single("redis://:pw@redis:6379/1".into()))
        );
    }

    #[test]
    fn a_cluster_is_named_by_some_of_its_nodes_and_excludes_a_single_redis() {
        let cfg = Config::from_vars(vars(&[
            ("SECRET_KEY", "k"),
            ("REDIS_CLUSTER_URLS", "redis://a:7000, redis://b:7001"),
            ("REDIS_PASSWORD", "pw"),
        ]))
        .unwrap();
        assert_eq!(
            cfg.redis,
            Some(RedisBus::Cluster(vec![
                "redis://:pw@a:7000".into(),
                "redis://:pw@b:7001".into()
            ]))
        );
        let both = Config::from_vars(vars(&[
            ("SECRET_KEY", "k"),
            ("REDIS_URL", "redis://a:6379"),
            ("REDIS_CLUSTER_URLS", "redis://a:7000"),
        ]));
        assert!(matches!(
            both,
            Err(ConfigError::Invalid {
                name: "REDIS_CLUSTER_URLS",
                ..
            })
        ));
    }
}
