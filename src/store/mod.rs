//! Storage: the [`Store`] interface every backend implements (PostgreSQL, and the
//! embedded SQLite store) and the values that cross it.
//!
//! The interface is shaped for the hot path: messages are appended in batches (so a
//! group-commit writer can hand over many at once), and every history read is a
//! `seq` range, which costs the same on page 1 and page 10,000.

mod batch;
pub mod import;
pub mod patient;
pub mod postgres;
pub mod read_batches;
mod search;
pub mod sqlite;

use crate::model::{Chat, Message, Timestamp, User};
use async_trait::async_trait;
use std::borrow::Borrow;
use std::sync::Arc;
use std::time::Duration;

/// Why a store operation failed. Callers branch on the first variants; the rest
/// are infrastructure failures that become a 503 or an opaque 500.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("a user with this email already exists")]
    EmailTaken,
    /// Nothing was asked of the database (it could not be reached).
    #[error("the database is unavailable: {0}")]
    Unavailable(String),
    /// The connection was lost while a statement ran: whether it took
    /// effect is unknown, so only an operation safe to repeat may be.
    #[error("the database connection was lost mid-statement: {0}")]
    Interrupted(String),
    #[error("database error: {0}")]
    Database(#[from] tokio_postgres::Error),
    #[error("storing failed: {0}")]
    Failed(String),
    #[error("the store broke an invariant: {0}")]
    Inconsistent(&'static str),
    #[error("migration {version} ({name}) failed: {source}")]
    Migration {
        version: i32,
        name: &'static str,
        source: tokio_postgres::Error,
    },
    /// A later release migrated the database in a way this build cannot run
    /// against (it dropped or renamed what this build uses).
    #[error(
        "the database has migration {version} ({name}) from a later release, which this \
         build cannot run against: run that release or a later one"
    )]
    SchemaTooNew { version: i32, name: String },
}

impl StoreError {
    /// Whether the database, not the request, is the problem (503: retry).
    pub fn is_unavailable(&self) -> bool {
        matches!(
            self,
            StoreError::Unavailable(_) | StoreError::Interrupted(_)
        )
    }
}

/// A user to create; the password is already hashed.
#[derive(Debug, Clone)]
pub struct NewUser {
    pub email: String,
    pub password_hash: String,
    pub full_name: String,
    pub nickname: Option<String>,
    /// Arbitrary JSON text, already validated.
    pub other_info: String,
}

/// What login needs to check a password.
#[derive(Debug, Clone)]
pub struct Credentials {
    pub user: User,
    pub password_hash: String,
    pub is_active: bool,
}

/// The failed logins counted against one account in the window open for it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FailedLogins {
    pub count: u32,
    /// How long the window stays open.
    pub window_left: Duration,
}

/// Who may see a chat, how many messages it holds and how far each
/// participant has read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ChatAccess {
    pub participants: [i64; 2],
    /// The highest `seq` in the chat; 0 when empty. Equals the message count.
    pub last_seq: i64,
    /// Each participant's read marker, in the order of `participants`; 0
    /// for none.
    pub read_seqs: [i64; 2],
}

impl ChatAccess {
    pub fn includes(&self, user_id: i64) -> bool {
        self.participants.contains(&user_id)
    }

    /// Each participant with their read marker.
    pub fn markers(&self) -> [(i64, i64); 2] {
        let [low, high] = self.participants;
        [(low, self.read_seqs[0]), (high, self.read_seqs[1])]
    }
}

/// The `seq` range a history read wants, stated against the chat's `last_seq` so a
/// store can resolve it in the same query that reads the chat:
/// `to = min(cap, last_seq - skip)` (or the oldest page's end when `oldest_page`),
/// `from = max(floor, to - size + 1)`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SeqWindow {
    pub skip: i64,
    pub size: i64,
    pub cap: i64,
    pub floor: i64,
    /// Page-number pagination's last page: it ends at `(last_seq - 1) % size + 1`.
    pub oldest_page: bool,
}

impl SeqWindow {
    /// The range for a chat whose newest message is `last_seq` (empty when
    /// `from > to`). Stores that run SQL compute the same expression in SQL.
    pub fn range(&self, last_seq: i64) -> std::ops::RangeInclusive<i64> {
        let to = if self.oldest_page {
            // Truncating `%`, as SQL's; an empty chat (last_seq 0) ends at 0.
            last_seq.min((last_seq - 1) % self.size.max(1) + 1)
        } else {
            self.cap.min(last_seq.saturating_sub(self.skip))
        };
        self.floor.max(to.saturating_sub(self.size - 1))..=to
    }
}

/// A run of consecutive `seq`s, `first..=last`; empty when `first > last`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SeqRun {
    pub first: i64,
    pub last: i64,
}

impl SeqRun {
    /// Holds nothing.
    pub const EMPTY: SeqRun = SeqRun { first: 1, last: 0 };
}

/// One history read: a window of `chat_id` as `reader` may see it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HistoryRead {
    pub chat_id: i64,
    pub reader: i64,
    pub window: SeqWindow,
    /// Messages the reader already has (a node's cache). When the window starts
    /// inside this run, a store may leave out the window's messages up to
    /// `held.last`: it then returns `max(from, held.last + 1)..=to`. Returning
    /// the whole window is also correct.
    pub held: SeqRun,
}

impl HistoryRead {
    /// Where the returned messages start for a window resolved to `range`.
    pub fn unheld_from(&self, range: &std::ops::RangeInclusive<i64>) -> i64 {
        if self.held.first <= *range.start() {
            (*range.start()).max(self.held.last + 1)
        } else {
            *range.start()
        }
    }
}

/// Where a chat stands, as a per-chat socket's resync reads it: its access
/// (`last_seq`, both read markers) and, per participant, whether the message
/// their marker names is their own. Sending moves the sender's marker to
/// their message, and that message already told every socket so (no `read`
/// event is sent for the move); only the other moves need telling. A user
/// socket meeting a chat's first message reads it too, for `created_at`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ChatProgress {
    pub access: ChatAccess,
    /// In the order of `access.participants`.
    pub marker_at_own_message: [bool; 2],
    pub created_at: Timestamp,
}

/// What a membership lookup finds: the user and the chat, each `None` when missing.
pub type UserAndChat = (Option<User>, Option<ChatAccess>);

/// A chat's access facts and, when the reader is one of its participants, the
/// messages of the window asked for, ascending.
#[derive(Debug, Clone)]
pub struct History {
    pub access: ChatAccess,
    pub messages: Vec<Message>,
}

/// A message to append. `sender` is the full user so the stored message can be
/// returned without another lookup.
#[derive(Debug, Clone)]
pub struct NewMessage {
    pub chat_id: i64,
    pub sender: Arc<User>,
    pub content: String,
    /// JSON text, already validated and bounded.
    pub metadata: String,
    pub client_msg_id: Option<String>,
}

impl NewMessage {
    /// The stored message: these fields (moved, not copied) and the ones the
    /// store assigned.
    pub fn stored(self, assigned: Assigned) -> Message {
        Message {
            id: assigned.id,
            chat: self.chat_id,
            seq: assigned.seq,
            sender: self.sender,
            content: self.content,
            metadata: crate::model::metadata_from_text(self.metadata),
            client_msg_id: self.client_msg_id,
            created_at: assigned.created_at,
        }
    }
}

/// What the store assigned a message it stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Assigned {
    pub id: i64,
    pub seq: i64,
    pub created_at: Timestamp,
}

/// What the store says of one message of a batch. A new message comes back as
/// what was assigned to it: the caller still owns the message, and
/// [`Appended::outcome`] moves its fields into the stored one, where a store
/// answering with whole messages had to copy each (its sender, content,
/// metadata and client id).
#[derive(Debug, Clone)]
pub enum Appended {
    Created(Assigned),
    /// `(sender, client_msg_id)` was already stored in this chat: the original.
    /// Boxed: a batch's answers are moved from stage to stage, and a retry
    /// is rare, so the common answer stays the size of an [`Assigned`].
    Duplicate(Box<Message>),
}

impl Appended {
    /// The outcome for `message`, the batch message this was said of.
    pub fn outcome(self, message: NewMessage) -> AppendOutcome {
        match self {
            Appended::Created(assigned) => AppendOutcome::Created(message.stored(assigned)),
            Appended::Duplicate(original) => AppendOutcome::Duplicate(*original),
        }
    }
}

/// A message's sender among its chat's two participants (`User`s, or shared
/// `Arc<User>`s); the first when neither has `sender_id`, which a chat's
/// membership rules out.
pub(crate) fn sender_among<T: Borrow<User>>(participants: &[T; 2], sender_id: i64) -> &T {
    participants
        .iter()
        .find(|user| (*user).borrow().id == sender_id)
        .unwrap_or(&participants[0])
}

/// The outcome of each message of a batch, from what the store said of them.
pub fn outcomes(appended: Vec<Appended>, batch: Vec<NewMessage>) -> Vec<AppendOutcome> {
    appended
        .into_iter()
        .zip(batch)
        .map(|(appended, message)| appended.outcome(message))
        .collect()
}

/// The result of appending one message of a batch.
#[derive(Debug, Clone)]
pub enum AppendOutcome {
    /// Stored now, with a fresh `seq`.
    Created(Message),
    /// `(sender, client_msg_id)` was already stored in this chat: the original.
    Duplicate(Message),
}

/// Where one of a user's chats stands: where a user socket's `sync` resumes
/// it from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ChatPosition {
    pub chat: i64,
    /// The other participant.
    pub peer: i64,
    pub last_seq: i64,
}

/// A chat's messages a catch-up replays: `from_seq <= seq <= to_seq`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ReplayRead {
    pub chat: i64,
    pub from_seq: i64,
    pub to_seq: i64,
}

/// A user and the chats a `sync` names: whose positions to read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PositionsRead {
    pub user: i64,
    pub chats: Vec<i64>,
}

/// Where one of a user's chats stands, as a user socket's resync reads it:
/// enough to replay it from a cursor and tell its read markers, without the
/// chat list's participants and last message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ChatStanding {
    pub chat: i64,
    /// The other participant.
    pub peer: i64,
    pub last_seq: i64,
    /// The user's own read marker (0 for none).
    pub read_seq: i64,
    /// The other participant's read marker (0 for none).
    pub peer_read_seq: i64,
    /// Who sent the last message: 0 when the chat is empty, and it may be 0
    /// when no read marker is at the last message (nothing asks it then).
    pub last_sender: i64,
}

/// A user whose chats a resync reads: those that hold messages, and the
/// empty ones created at or after `created_since` (unix microseconds; an
/// older empty chat has nothing to catch up).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StandingsRead {
    pub user: i64,
    pub created_since: i64,
    /// The most chats the reader can use. A user with more gets one more
    /// than this (which ones is unspecified), enough to tell that it has
    /// more, so no answer is larger than its reader can use.
    pub most: usize,
}

impl StandingsRead {
    /// The most chats the answer holds: [`StandingsRead::most`] and one.
    pub fn answer_limit(&self) -> usize {
        self.most.saturating_add(1)
    }
}

/// The result of starting a chat: the chat and whether it was created just now.
#[derive(Debug, Clone)]
pub struct StartedChat {
    pub chat: Chat,
    pub created: bool,
}

/// Everything the server asks of its storage.
#[async_trait]
pub trait Store: Send + Sync + 'static {
    /// Creates a user; `EmailTaken` when the email (case-insensitively) exists.
    async fn create_user(&self, user: NewUser) -> Result<User, StoreError>;
    /// Looks a user up by email, case-insensitively, for login (active or not).
    async fn credentials(&self, email: &str) -> Result<Option<Credentials>, StoreError>;
    /// Replaces the user's password hash when it still is `replaced` (a login
    /// rehashing a Django hash); whether it did.
    async fn replace_password_hash(
        &self,
        user_id: i64,
        replaced: &str,
        hash: &str,
    ) -> Result<bool, StoreError>;
    /// An active user; an inactive one (`is_active` false, as SimpleJWT
    /// refuses them) is not found, here and in every lookup of a requester.
    async fn user(&self, id: i64) -> Result<Option<User>, StoreError>;
    /// The ids of every inactive user.
    async fn inactive_users(&self) -> Result<Vec<i64>, StoreError>;
    /// Users other than `exclude` whose email, full name or nickname contain `query`.
    async fn search_users(
        &self,
        query: &str,
        exclude: i64,
        limit: i64,
    ) -> Result<Vec<User>, StoreError>;

    /// Returns the chat of the two users, creating it when it does not exist,
    /// as `a` (the starter) sees it.
    async fn start_chat(&self, a: &User, b: &User) -> Result<StartedChat, StoreError>;
    /// The chat of the two users as `a` sees it, if they have one (nothing
    /// is created).
    async fn chat_between(&self, a: &User, b: &User) -> Result<Option<Chat>, StoreError>;
    /// One chat as `reader` sees it; `None` when it does not exist or the
    /// reader takes no part in it.
    async fn chat(&self, chat_id: i64, reader: i64) -> Result<Option<Chat>, StoreError>;
    /// Of `chats`, those the user takes part in, each with its other
    /// participant and `last_seq` (in no particular order).
    async fn chat_positions(
        &self,
        user_id: i64,
        chats: &[i64],
    ) -> Result<Vec<ChatPosition>, StoreError>;
    /// [`Store::chat_positions`] for each of `reads`, in order, in as few
    /// statements as the store can where it has per-statement overhead: a
    /// reconnect storm has every user socket `sync` at once.
    async fn positions_of_many(
        &self,
        reads: &[PositionsRead],
    ) -> Result<Vec<Vec<ChatPosition>>, StoreError> {
        let mut answers = Vec::with_capacity(reads.len());
        for read in reads {
            answers.push(self.chat_positions(read.user, &read.chats).await?);
        }
        Ok(answers)
    }
    /// The [`ChatProgress`] of each of `chats` (`None` for one that does not
    /// exist), in order, in one statement where the store has per-statement
    /// overhead: after a bus outage every per-chat socket of a node asks.
    async fn chats_progress(&self, chats: &[i64]) -> Result<Vec<Option<ChatProgress>>, StoreError>;
    /// For each of `reads`, in order, the [`ChatStanding`] of each chat it
    /// asks for (in no particular order, at most [`StandingsRead::answer_limit`]),
    /// in as few statements as the store can where it has per-statement
    /// overhead: after a bus outage every user socket of a node asks.
    async fn chat_standings(
        &self,
        reads: &[StandingsRead],
    ) -> Result<Vec<Vec<ChatStanding>>, StoreError>;
    /// For each of `users`, in order, whether any of their chats holds a
    /// message: a first probe per user, where [`Store::chat_standings`]
    /// reads every chat.
    async fn users_with_messages(&self, users: &[i64]) -> Result<Vec<bool>, StoreError>;
    /// The user (when active) and the chat in one round trip (for a send or a
    /// handshake).
    async fn user_and_chat(&self, user_id: i64, chat_id: i64) -> Result<UserAndChat, StoreError>;
    /// [`Store::user_and_chat`] for many `(user, chat)` pairs at once, answered
    /// in order. A store with per-statement overhead answers them in one
    /// statement; the default asks one by one.
    async fn users_and_chats(&self, pairs: &[(i64, i64)]) -> Result<Vec<UserAndChat>, StoreError> {
        let mut found = Vec::with_capacity(pairs.len());
        for &(user_id, chat_id) in pairs {
            found.push(self.user_and_chat(user_id, chat_id).await?);
        }
        Ok(found)
    }
    /// The user's chats, most recent activity first, each with its last
    /// message and the user's read marker, in one statement.
    async fn chats_of(&self, user_id: i64) -> Result<Vec<Chat>, StoreError>;
    /// Messages with `from_seq <= seq <= to_seq`, ascending, stopping after
    /// the one that brings their content and metadata to `max_bytes` (so at
    /// least one, and at most `max_bytes` plus one message).
    async fn messages_between(
        &self,
        chat_id: i64,
        from_seq: i64,
        to_seq: i64,
        max_bytes: usize,
    ) -> Result<Vec<Message>, StoreError>;
    /// [`Store::messages_between`] for many reads at once, answered in order,
    /// each at least one message and at most `max_bytes` plus one; a store
    /// with per-statement overhead answers them together and may stop a read
    /// early (after its first message) to keep a statement's answer near
    /// `max_bytes` (its caller reads on from where it stopped). The default
    /// reads one by one.
    async fn messages_between_many(
        &self,
        reads: &[ReplayRead],
        max_bytes: usize,
    ) -> Result<Vec<Vec<Message>>, StoreError> {
        let mut answers = Vec::with_capacity(reads.len());
        for read in reads {
            let messages = self
                .messages_between(read.chat, read.from_seq, read.to_seq, max_bytes)
                .await?;
            answers.push(messages);
        }
        Ok(answers)
    }
    /// A history read in one round trip: the chat's participants and `last_seq`,
    /// and the window's messages when `reader` is a participant (none otherwise).
    /// `None` when the chat does not exist.
    async fn history(
        &self,
        chat_id: i64,
        reader: i64,
        window: SeqWindow,
    ) -> Result<Option<History>, StoreError>;
    /// [`Store::history`] for many reads at once, answered in order. A store
    /// with per-statement overhead answers them in one statement; the default
    /// reads one by one.
    async fn histories(&self, reads: &[HistoryRead]) -> Result<Vec<Option<History>>, StoreError> {
        let mut found = Vec::with_capacity(reads.len());
        for read in reads {
            found.push(self.history(read.chat_id, read.reader, read.window).await?);
        }
        Ok(found)
    }
    /// Appends a batch in one transaction: gap-free `seq` per chat (a chat's
    /// activity time is then its newest message's), idempotent on
    /// `(sender, client_msg_id)`. What it says of each message is in the order
    /// of `batch` (see [`outcomes`]).
    async fn append_messages(&self, batch: &[NewMessage]) -> Result<Vec<Appended>, StoreError>;

    /// Moves the user's read marker in the chat forward to `seq` (never back, never
    /// past the chat's last message); returns the marker after the move (0 when
    /// the user takes no part in the chat). Appending also moves each sender's
    /// marker to their newest message.
    async fn mark_read(&self, chat_id: i64, user_id: i64, seq: i64) -> Result<i64, StoreError>;

    /// The failed logins counted against `account` (a lowercased email) in
    /// the window open for it; `None` when none is open. They are kept in
    /// the store so that every node sharing it counts them together.
    async fn failed_logins(&self, account: &str) -> Result<Option<FailedLogins>, StoreError>;
    /// Counts a failed login against `account`: in its open window, or in a
    /// new one of `window`; what the window holds then.
    async fn count_failed_login(
        &self,
        account: &str,
        window: Duration,
    ) -> Result<FailedLogins, StoreError>;

    /// Remembers a refresh token's id until it would have expired anyway.
    async fn blacklist_token(&self, jti: &str, expires_at: i64) -> Result<(), StoreError>;
    async fn is_token_blacklisted(&self, jti: &str) -> Result<bool, StoreError>;
    /// Whether the store answers (readiness).
    async fn ping(&self) -> Result<(), StoreError>;
    /// An operation was given up unanswered: its connection may still be
    /// waiting, so no connection open now is used again.
    fn retire_connections(&self) {}
    /// Which store this is, for the start-up log.
    fn describe(&self) -> String;
}

pub(crate) use batch::{all_answered, dedupe_batch, expand_repeats};
pub(crate) use search::search_pattern;
