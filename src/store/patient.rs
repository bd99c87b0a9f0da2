//! Riding out a database restart or failover: a store that asks again (with
//! backoff, for up to `DB_RETRY_SECS`) before giving up with 503.
//!
//! - Every operation is asked again when the database could not be reached
//!   (`Unavailable`: nothing was sent).
//! - When a statement's connection died under it (`Interrupted`), its outcome
//!   is unknown: only operations that are safe to repeat are asked again.
//!   Those are reads, and writes whose repeat changes nothing: a chat's start,
//!   a read marker, a blacklisted token, and a batch of messages that all
//!   carry a `client_msg_id` (the repeat answers each with the message already
//!   stored). A new user, or a batch with a message without a client id, is
//!   answered 503; the client retries, with a client id if it has one.
//! - An operation that gets no answer within the patience left (at least
//!   [`SHORTEST_BOUND`]) is given up as `Interrupted`, as if its connection
//!   died: a primary can take a statement and never answer it (a commit
//!   waiting for a synchronous standby that is gone), and a request must get
//!   its 503 rather than hang. The connections open then are retired, so no
//!   later statement queues behind the unanswered one.

use super::{
    Appended, ChatPosition, ChatProgress, ChatStanding, Credentials, FailedLogins, History,
    HistoryRead, NewMessage, NewUser, PositionsRead, ReplayRead, SeqWindow, StandingsRead,
    StartedChat, Store, StoreError, UserAndChat,
};
use crate::model::{Chat, Message, User};
use async_trait::async_trait;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;
use tokio::time::Instant;

const FIRST_WAIT: Duration = Duration::from_millis(50);
const LONGEST_WAIT: Duration = Duration::from_secs(1);
/// The least time an attempt is given, however little patience is left.
const SHORTEST_BOUND: Duration = Duration::from_secs(1);

/// Wraps a store whose database may go away for a while.
pub struct PatientStore {
    inner: Arc<dyn Store>,
    patience: Duration,
}

impl PatientStore {
    pub fn new(inner: Arc<dyn Store>, patience: Duration) -> Self {
        PatientStore { inner, patience }
    }

    /// An operation safe to repeat: asked again while the database is
    /// unavailable or the connection is lost, for up to `patience`.
    async fn again<T, F>(&self, attempt: impl FnMut() -> F) -> Result<T, StoreError>
    where
        F: Future<Output = Result<T, StoreError>>,
    {
        self.retry(Repeat::Safe, attempt).await
    }

    /// An operation that must not run twice: asked again only when nothing
    /// was sent.
    async fn unless_sent<T, F>(&self, attempt: impl FnMut() -> F) -> Result<T, StoreError>
    where
        F: Future<Output = Result<T, StoreError>>,
    {
        self.retry(Repeat::UnlessSent, attempt).await
    }

    async fn retry<T, F>(
        &self,
        repeat: Repeat,
        mut attempt: impl FnMut() -> F,
    ) -> Result<T, StoreError>
    where
        F: Future<Output = Result<T, StoreError>>,
    {
        let deadline = Instant::now() + self.patience;
        let mut wait = FIRST_WAIT;
        loop {
            let bound = deadline
                .saturating_duration_since(Instant::now())
                .max(SHORTEST_BOUND);
            let outcome = match tokio::time::timeout(bound, attempt()).await {
                Ok(outcome) => outcome,
                Err(_) => {
                    self.inner.retire_connections();
                    Err(no_answer(bound))
                }
            };
            let error = match outcome {
                Err(error) if repeat.allows(&error) && Instant::now() + wait < deadline => error,
                other => return other,
            };
            tracing::debug!(%error, ?wait, "database unavailable; asking again");
            tokio::time::sleep(wait).await;
            wait = (wait * 2).min(LONGEST_WAIT);
        }
    }
}

/// An attempt the database did not answer in time: what it did is unknown.
fn no_answer(bound: Duration) -> StoreError {
    StoreError::Interrupted(format!("no answer from the database within {bound:?}"))
}

/// Which failures an operation may be repeated after.
#[derive(Debug, Clone, Copy)]
enum Repeat {
    /// Any loss of the database.
    Safe,
    /// Only a failure to reach it (nothing was sent).
    UnlessSent,
}

impl Repeat {
    fn allows(self, error: &StoreError) -> bool {
        match self {
            Repeat::Safe => error.is_unavailable(),
            Repeat::UnlessSent => matches!(error, StoreError::Unavailable(_)),
        }
    }
}

#[async_trait]
impl Store for PatientStore {
    /// Not after an unknown outcome: a repeat could find the user it made.
    async fn create_user(&self, user: NewUser) -> Result<User, StoreError> {
        self.unless_sent(|| self.inner.create_user(user.clone()))
            .await
    }

    async fn credentials(&self, email: &str) -> Result<Option<Credentials>, StoreError> {
        self.again(|| self.inner.credentials(email)).await
    }

    /// Compare-and-set: a repeat finds the hash it set and changes nothing.
    async fn replace_password_hash(
        &self,
        user_id: i64,
        replaced: &str,
        hash: &str,
    ) -> Result<bool, StoreError> {
        self.again(|| self.inner.replace_password_hash(user_id, replaced, hash))
            .await
    }

    async fn user(&self, id: i64) -> Result<Option<User>, StoreError> {
        self.again(|| self.inner.user(id)).await
    }

    async fn inactive_users(&self) -> Result<Vec<i64>, StoreError> {
        self.again(|| self.inner.inactive_users()).await
    }

    async fn search_users(
        &self,
        query: &str,
        exclude: i64,
        limit: i64,
    ) -> Result<Vec<User>, StoreError> {
        self.again(|| self.inner.search_users(query, exclude, limit))
            .await
    }

    /// The chat of a pair is unique: a repeat finds the one made.
    async fn start_chat(&self, a: &User, b: &User) -> Result<StartedChat, StoreError> {
        self.again(|| self.inner.start_chat(a, b)).await
    }

    async fn chat_between(&self, a: &User, b: &User) -> Result<Option<Chat>, StoreError> {
        self.again(|| self.inner.chat_between(a, b)).await
    }

    async fn user_and_chat(&self, user_id: i64, chat_id: i64) -> Result<UserAndChat, StoreError> {
        self.again(|| self.inner.user_and_chat(user_id, chat_id))
            .await
    }

    async fn users_and_chats(&self, pairs: &[(i64, i64)]) -> Result<Vec<UserAndChat>, StoreError> {
        self.again(|| self.inner.users_and_chats(pairs)).await
    }

    async fn chat(&self, chat_id: i64, reader: i64) -> Result<Option<Chat>, StoreError> {
        self.again(|| self.inner.chat(chat_id, reader)).await
    }

    async fn chats_progress(&self, chats: &[i64]) -> Result<Vec<Option<ChatProgress>>, StoreError> {
        self.again(|| self.inner.chats_progress(chats)).await
    }

    async fn chat_standings(
        &self,
        reads: &[StandingsRead],
    ) -> Result<Vec<Vec<ChatStanding>>, StoreError> {
        self.again(|| self.inner.chat_standings(reads)).await
    }

    async fn users_with_messages(&self, users: &[i64]) -> Result<Vec<bool>, StoreError> {
        self.again(|| self.inner.users_with_messages(users)).await
    }

    async fn chat_positions(
        &self,
        user_id: i64,
        chats: &[i64],
    ) -> Result<Vec<ChatPosition>, StoreError> {
        self.again(|| self.inner.chat_positions(user_id, chats))
            .await
    }

    async fn positions_of_many(
        &self,
        reads: &[PositionsRead],
    ) -> Result<Vec<Vec<ChatPosition>>, StoreError> {
        self.again(|| self.inner.positions_of_many(reads)).await
    }

    async fn chats_of(&self, user_id: i64) -> Result<Vec<Chat>, StoreError> {
        self.again(|| self.inner.chats_of(user_id)).await
    }

    async fn messages_between_many(
        &self,
        reads: &[ReplayRead],
        max_bytes: usize,
    ) -> Result<Vec<Vec<Message>>, StoreError> {
        self.again(|| self.inner.messages_between_many(reads, max_bytes))
            .await
    }

    async fn messages_between(
        &self,
        chat_id: i64,
        from_seq: i64,
        to_seq: i64,
        max_bytes: usize,
    ) -> Result<Vec<Message>, StoreError> {
        self.again(|| {
            self.inner
                .messages_between(chat_id, from_seq, to_seq, max_bytes)
        })
        .await
    }

    async fn history(
        &self,
        chat_id: i64,
        reader: i64,
        window: SeqWindow,
    ) -> Result<Option<History>, StoreError> {
        self.again(|| self.inner.history(chat_id, reader, window))
            .await
    }

    async fn histories(&self, reads: &[HistoryRead]) -> Result<Vec<Option<History>>, StoreError> {
        self.again(|| self.inner.histories(reads)).await
    }

    /// After an unknown outcome, repeated only when every message carries a
    /// client id.
    async fn append_messages(&self, batch: &[NewMessage]) -> Result<Vec<Appended>, StoreError> {
        if batch.iter().all(|m| m.client_msg_id.is_some()) {
            self.again(|| self.inner.append_messages(batch)).await
        } else {
            self.unless_sent(|| self.inner.append_messages(batch)).await
        }
    }

    /// A marker only moves forward: a repeat changes nothing.
    async fn mark_read(&self, chat_id: i64, user_id: i64, seq: i64) -> Result<i64, StoreError> {
        self.again(|| self.inner.mark_read(chat_id, user_id, seq))
            .await
    }

    async fn failed_logins(&self, account: &str) -> Result<Option<FailedLogins>, StoreError> {
        self.again(|| self.inner.failed_logins(account)).await
    }

    /// Not after an unknown outcome: a repeat would count the failure twice.
    async fn count_failed_login(
        &self,
        account: &str,
        window: Duration,
    ) -> Result<FailedLogins, StoreError> {
        self.unless_sent(|| self.inner.count_failed_login(account, window))
            .await
    }

    async fn blacklist_token(&self, jti: &str, expires_at: i64) -> Result<(), StoreError> {
        self.again(|| self.inner.blacklist_token(jti, expires_at))
            .await
    }

    async fn is_token_blacklisted(&self, jti: &str) -> Result<bool, StoreError> {
        self.again(|| self.inner.is_token_blacklisted(jti)).await
    }

    /// Readiness says how the database is now: never waits for it.
    async fn ping(&self) -> Result<(), StoreError> {
        self.inner.ping().await
    }

    fn retire_connections(&self) {
        self.inner.retire_connections()
    }

    fn describe(&self) -> String {
        self.inner.describe()
    }
}
