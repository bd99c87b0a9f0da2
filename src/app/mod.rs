//! The node: the shared state every request sees, built once from a
//! [`Config`], and the access checks both edges make with it ([`access`]).
//! Nothing lives in globals, so tests run many servers in one process.

pub mod access;
pub mod inactive;

use crate::auth::jwt::TokenService;
use crate::auth::password::{HashError, PasswordHasher};
use crate::cache::history::HistoryCache;
use crate::cache::memberships::Memberships;
use crate::config::{Config, Paging, Realtime};
use crate::delivery::bus::Bus;
use crate::delivery::notices::Notices;
use crate::delivery::pipeline::{MessagePipeline, WriterSettings};
use crate::delivery::read_markers::ReadMarkers;
use crate::delivery::rooms::{ConnId, Rooms};
use crate::http::cors::Cors;
use crate::metrics::Metrics;
use crate::model::Message;
use crate::ratelimit::shared::{SharedLimits, REPORT_EVERY};
use crate::ratelimit::{RateLimiter, SocketSlots};
use crate::store::patient::PatientStore;
use crate::store::postgres::PgStore;
use crate::store::read_batches::{ReadBatcher, Weighing};
use crate::store::sqlite::SqliteStore;
use crate::store::{
    ChatPosition, ChatProgress, ChatStanding, History, HistoryRead, PositionsRead, ReplayRead,
    StandingsRead, Store, StoreError, UserAndChat,
};
use inactive::InactiveUsers;
use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

/// Why the server could not be assembled.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("{0}")]
    Bus(String),
    #[error("{0}")]
    Invalid(String),
    #[error(transparent)]
    Hashing(#[from] HashError),
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        addr: std::net::SocketAddr,
        source: std::io::Error,
    },
}

/// Batched `(user, chat)` membership lookups.
pub type Lookups = ReadBatcher<(i64, i64), UserAndChat>;
/// Batched history reads.
pub type Histories = ReadBatcher<HistoryRead, Option<History>>;
/// Batched reads of where chats stand, for per-chat sockets' resyncs.
pub type Progresses = ReadBatcher<i64, Option<ChatProgress>>;
/// Batched reads of where a user's chats stand, for user sockets' resyncs.
pub type Standings = ReadBatcher<StandingsRead, Vec<ChatStanding>>;
/// Batched reads of where the chats a user socket's `sync` names stand.
pub type Positions = ReadBatcher<PositionsRead, Vec<ChatPosition>>;
/// Batched reads of the stored messages a catch-up sends.
pub type Replays = ReadBatcher<ReplayRead, Vec<Message>>;
/// Batched probes of whether a user has a chat that holds a message.
pub type MessagedUsers = ReadBatcher<i64, bool>;

/// Everything a handler needs, in groups by job.
pub struct AppState {
    pub config: Config,
    pub store: Arc<dyn Store>,
    pub auth: Auth,
    pub delivery: Delivery,
    pub reads: Reads,
    pub limiters: Limiters,
    pub cors: Cors,
    pub metrics: Arc<Metrics>,
    connections: AtomicU64,
}

/// Tokens, passwords, and who may no longer use either.
pub struct Auth {
    pub tokens: TokenService,
    pub passwords: PasswordHasher,
    /// Users deactivated in the store, refused on every path.
    pub inactive: Arc<InactiveUsers>,
}

/// The path of a message after it is accepted: the group-commit writer, the
/// room map, the bus between nodes, and the read-marker coalescer.
pub struct Delivery {
    pub pipeline: MessagePipeline,
    pub rooms: Rooms,
    pub bus: Bus,
    /// Read markers, coalesced per (chat, user).
    pub read_markers: ReadMarkers,
    /// New chats, read markers and typing, to this node's sockets and the bus.
    pub notices: Notices,
}

/// How reads reach the store: batched, and skipped where this node already
/// knows the answer.
pub struct Reads {
    /// The user and the chat for sends and handshakes, batched.
    pub lookups: Lookups,
    /// History pages, batched.
    pub histories: Histories,
    /// Where chats stand after the bus may have missed events, batched.
    pub progress: Progresses,
    /// Where each of a user's chats stands, for the same reason, batched: a
    /// bus outage has every user socket of a node ask at once.
    pub standings: Standings,
    /// Where the chats a `sync` names stand, batched: a reconnect storm has
    /// every user socket `sync` at once.
    pub positions: Positions,
    /// The stored messages a catch-up sends, batched: a bus outage or a
    /// reconnect storm has many sockets replay chats at once.
    pub replays: Replays,
    /// Whether a user has a chat with messages: a user socket that has no
    /// position in any chat closes on the first, and need not read them all.
    pub messaged_users: MessagedUsers,
    /// Stored messages' JSON, so history pages read only what this node lacks.
    pub history_cache: HistoryCache,
    /// Confirmed memberships, so a REST send needs no membership query.
    pub memberships: Memberships,
}

/// The rate limits and caps on what one client may do.
pub struct Limiters {
    /// Register/login attempts per client address (shared by the nodes, as
    /// the four per-user rates below).
    pub auth: Arc<RateLimiter>,
    /// Failed logins per email (so no one address, and no crowd of them,
    /// can try passwords against one account quickly).
    pub login_failures: RateLimiter,
    /// User searches per user.
    pub search: Arc<RateLimiter>,
    /// Chats started per user (each notifies its other participant).
    pub new_chats: Arc<RateLimiter>,
    /// `sync` events per user, across the user's sockets.
    pub syncs: Arc<RateLimiter>,
    /// Sends per user (REST and WebSocket).
    pub sends: Arc<RateLimiter>,
    /// `typing` events per (user, chat), across the user's sockets.
    pub typing: RateLimiter,
    /// Open sockets per user.
    pub sockets: Arc<SocketSlots>,
}

impl AppState {
    /// Connects the store (applying migrations) and builds the services.
    pub async fn build(config: Config) -> Result<Self, StartError> {
        let metrics = Arc::new(Metrics::new());
        let store = open_store(&config, &metrics).await?;
        let limiters = Limiters::new(&config);
        let delivery = start_delivery(&config, &store, &limiters, &metrics)?;
        let paging = config.paging;
        let auth = &config.auth;
        let inactive = InactiveUsers::start(
            store.clone(),
            delivery.rooms.clone(),
            auth.inactive_users_poll,
        )
        .await;
        Ok(AppState {
            auth: Auth {
                inactive,
                tokens: TokenService::new(&auth.secret_key, auth.access_ttl, auth.refresh_ttl),
                passwords: PasswordHasher::new(
                    auth.argon2_memory_kib,
                    auth.argon2_iterations,
                    auth.hash_concurrency,
                )?,
            },
            reads: start_reads(&store, &config.realtime, paging),
            limiters,
            delivery,
            metrics,
            cors: Cors::new(&config.cors_allowed_origins),
            connections: AtomicU64::new(0),
            store,
            config,
        })
    }
}

/// A rate limit the nodes keep together (see [`Limiters::shared`]).
fn shared_rate(per_second: f64, burst: f64) -> Arc<RateLimiter> {
    Arc::new(RateLimiter::new(per_second, burst))
}

impl Limiters {
    /// The rate limits the nodes of a deployment keep together, each under
    /// the letter their reports name it by (see [`crate::ratelimit::shared`]).
    fn shared(&self) -> SharedLimits {
        SharedLimits::new(vec![
            (b'a', self.auth.clone()),
            (b's', self.sends.clone()),
            (b'c', self.new_chats.clone()),
            (b'q', self.search.clone()),
            (b'y', self.syncs.clone()),
        ])
    }

    fn new(config: &Config) -> Self {
        let limits = &config.limits;
        let typing_interval = config.realtime.typing_interval.as_secs_f64();
        Limiters {
            auth: shared_rate(limits.auth_per_minute / 60.0, limits.auth_burst),
            login_failures: RateLimiter::new(
                limits.login_failures_per_email_per_minute / 60.0,
                limits.login_failures_per_email_per_minute,
            ),
            search: shared_rate(limits.searches_per_minute / 60.0, limits.searches_burst),
            new_chats: shared_rate(limits.new_chats_per_minute / 60.0, limits.new_chats_burst),
            syncs: shared_rate(limits.syncs_per_minute / 60.0, limits.syncs_burst),
            sends: shared_rate(limits.sends_per_second, limits.sends_burst),
            typing: RateLimiter::new(1.0 / typing_interval.max(0.001), 1.0),
            sockets: SocketSlots::new(limits.max_sockets_per_user),
        }
    }
}

/// History reads weigh the messages they ask for; a statement reads at most
/// 64 default pages' worth, so the batches of newest pages that most clients
/// read stay whole, and a batch of long pages of older history is read by
/// several statements at once (see `crate::store::read_batches`).
const HISTORY_WEIGHING: Weighing<HistoryRead> = Weighing {
    weigh: |read| usize::try_from(read.window.size).unwrap_or(0),
    per_statement: 1_600,
};

/// The batched readers (`lanes` lanes each for membership lookups, history
/// pages, syncs' positions, catch-ups' messages, and resyncs' chat progress,
/// standings and probes for messages) and the node's caches.
fn start_reads(store: &Arc<dyn Store>, realtime: &Realtime, paging: Paging) -> Reads {
    let lanes = realtime.reader_lanes;
    let catch_up_bytes = realtime.catch_up_bytes;
    let lookups = batched(store, lanes, None, |store, pairs| async move {
        store.users_and_chats(&pairs).await
    });
    let histories = batched(
        store,
        lanes,
        Some(HISTORY_WEIGHING),
        |store, reads| async move { store.histories(&reads).await },
    );
    let progress = batched(store, lanes, None, |store, chats| async move {
        store.chats_progress(&chats).await
    });
    let standings = batched(store, lanes, None, |store, reads| async move {
        store.chat_standings(&reads).await
    });
    let positions = batched(store, lanes, None, |store, reads| async move {
        store.positions_of_many(&reads).await
    });
    let replays = batched(store, lanes, None, move |store, reads| async move {
        store.messages_between_many(&reads, catch_up_bytes).await
    });
    let messaged_users = batched(store, lanes, None, |store, users| async move {
        store.users_with_messages(&users).await
    });
    Reads {
        lookups,
        histories,
        progress,
        standings,
        positions,
        replays,
        messaged_users,
        history_cache: HistoryCache::new(
            paging.history_cache_bytes,
            usize::try_from(paging.max_page_size).unwrap_or(0),
        ),
        memberships: Memberships::default(),
    }
}

/// A batcher of `lanes` lanes whose batches `read` answers from the store.
fn batched<Q, A, F, Fut>(
    store: &Arc<dyn Store>,
    lanes: usize,
    weighing: Option<Weighing<Q>>,
    read: F,
) -> ReadBatcher<Q, A>
where
    Q: Clone + Send + Sync + 'static,
    A: Send + 'static,
    F: Fn(Arc<dyn Store>, Arc<[Q]>) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Result<Vec<A>, StoreError>> + Send + 'static,
{
    let store = store.clone();
    ReadBatcher::start(lanes, weighing, move |questions| {
        read(store.clone(), questions)
    })
}

/// The writer, the room map, the bus that links it to other nodes (Redis
/// when configured, in-process otherwise) and the read-marker coalescer.
fn start_delivery(
    config: &Config,
    store: &Arc<dyn Store>,
    limiters: &Limiters,
    metrics: &Arc<Metrics>,
) -> Result<Delivery, StartError> {
    let (rooms, bus) = start_rooms_and_bus(config, limiters, metrics)?;
    let realtime = &config.realtime;
    let settings = WriterSettings {
        lanes: realtime.writer_lanes,
        batch_max: realtime.writer_batch_max,
        linger: realtime.writer_linger,
    };
    let pipeline = MessagePipeline::start(
        store.clone(),
        rooms.clone(),
        bus.clone(),
        metrics.clone(),
        settings,
    );
    let notices = Notices::new(rooms.clone(), bus.clone());
    let read_markers = ReadMarkers::start(
        store.clone(),
        notices.clone(),
        realtime.read_marker_interval,
    );
    Ok(Delivery {
        pipeline,
        rooms,
        bus,
        read_markers,
        notices,
    })
}

/// The room map, and the bus that links it to other nodes (with the rate
/// limits they keep together).
fn start_rooms_and_bus(
    config: &Config,
    limiters: &Limiters,
    metrics: &Arc<Metrics>,
) -> Result<(Rooms, Bus), StartError> {
    let (interest_tx, interest_rx) = tokio::sync::mpsc::unbounded_channel();
    let shards = config.realtime.room_shards;
    let Some(target) = &config.redis else {
        return Ok((Rooms::start(shards, None, metrics.clone()), Bus::local()));
    };
    let rooms = Rooms::start(shards, Some(interest_tx), metrics.clone());
    let prefix = &config.redis_channel_prefix;
    let secret = &config.auth.secret_key;
    let shared = Arc::new(limiters.shared());
    let bus = Bus::redis(
        target,
        prefix,
        secret,
        rooms.clone(),
        shared.clone(),
        interest_rx,
        metrics.clone(),
    )
    .map_err(StartError::Bus)?;
    tokio::spawn(report_usage(shared, bus.clone()));
    Ok((rooms, bus))
}

/// Tells the other nodes, every [`REPORT_EVERY`], whom this node's shared
/// limits let through (for as long as the node runs). While the bus is down
/// the reports are dropped, not queued: the other nodes limit alone
/// meanwhile, and a long outage's reports would fill the publish queue that
/// the events waiting for Redis need.
async fn report_usage(shared: Arc<SharedLimits>, bus: Bus) {
    let mut ticks = tokio::time::interval(REPORT_EVERY);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        ticks.tick().await;
        let reports = shared.reports();
        if bus.is_healthy() {
            for report in reports {
                bus.publish_usage(report);
            }
        }
    }
}

impl AppState {
    /// A fresh id for a WebSocket connection on this node.
    pub fn next_conn_id(&self) -> ConnId {
        self.connections.fetch_add(1, Ordering::Relaxed) + 1
    }
}

/// PostgreSQL when configured, else the embedded SQLite store in `DATA_DIR`.
pub async fn open_store(
    config: &Config,
    metrics: &Arc<Metrics>,
) -> Result<Arc<dyn Store>, StoreError> {
    Ok(match &config.database {
        Some(database) => {
            let store: Arc<dyn Store> =
                Arc::new(PgStore::connect(database, metrics.clone()).await?);
            Arc::new(PatientStore::new(store, database.retry_for))
        }
        None => Arc::new(SqliteStore::open(&config.data_dir)?),
    })
}
