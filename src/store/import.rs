//! What `chat-server import-django` hands a store, and what a store says back.
//!
//! The Django backend's database is read by [`super::postgres::django`] (a
//! [`MessageSource`] for the messages); the command (`crate::django`)
//! decides what can be imported and asks the configured store's
//! [`ImportTarget`] to bring it in. A target imports in one
//! transaction: a run killed halfway leaves nothing, and a dry run is the same
//! run rolled back, so its counts are exact.
//!
//! Ids are kept (tokens, URLs and clients keep working). Each chat's messages
//! are numbered 1, 2, 3, ... by (`created_at`, `id`); a later run numbers the
//! messages it has not seen after the chat's `last_seq`.

use super::StoreError;
use async_trait::async_trait;
use bytes::Bytes;
use futures_util::stream::BoxStream;
use std::collections::HashMap;
use time::OffsetDateTime;

/// A user of the Django backend, as imported.
#[derive(Debug, Clone)]
pub struct ImportUser {
    pub id: i64,
    pub email: String,
    /// Django's hasher format, kept as is (see `crate::auth::password`).
    pub password_hash: String,
    pub full_name: String,
    /// A blank nickname is `None`.
    pub nickname: Option<String>,
    /// JSON text.
    pub other_info: String,
    pub is_active: bool,
    pub date_joined: OffsetDateTime,
}

/// A chat of the Django backend whose participants and pair key check out.
#[derive(Debug, Clone)]
pub struct ImportChat {
    pub id: i64,
    pub pair_key: String,
    pub user_low: i64,
    pub user_high: i64,
    pub created_at: OffsetDateTime,
}

/// A blacklisted refresh token that has not expired yet.
#[derive(Debug, Clone)]
pub struct ImportToken {
    pub jti: String,
    pub expires_at: OffsetDateTime,
}

/// A message as read for a store that takes rows.
#[derive(Debug, Clone)]
pub struct SourceMessage {
    pub id: i64,
    pub chat_id: i64,
    pub sender_id: i64,
    pub content: String,
    /// JSON text.
    pub metadata: String,
    pub created_at: OffsetDateTime,
}

/// Where a target reads the messages of the chats it imports: the importable
/// ones (sent by a participant) only.
#[async_trait]
pub trait MessageSource: Sync {
    /// In COPY's text form, one line per message, columns `id, chat_id,
    /// sender_id, content, metadata, created_at` (UTC, ISO form).
    async fn copy_messages(
        &self,
        chats: &[i64],
    ) -> Result<BoxStream<'_, Result<Bytes, StoreError>>, StoreError>;
    /// As rows, by chat, then (`created_at`, `id`): each chat's messages in
    /// the order they are numbered.
    async fn messages(
        &self,
        chats: &[i64],
    ) -> Result<BoxStream<'_, Result<SourceMessage, StoreError>>, StoreError>;
}

/// What earlier runs brought into the target.
#[derive(Debug, Clone, Default)]
pub struct ImportedBefore {
    /// Runs committed so far.
    pub runs: i64,
    /// Users in the target (before the first run: users not from Django).
    pub users: i64,
    /// Per chat, how many of the Django backend's messages were imported.
    pub messages_per_chat: HashMap<i64, i64>,
}

/// One run's work, decided by the command from the source and
/// [`ImportedBefore`].
#[derive(Debug, Clone, Default)]
pub struct ImportPlan {
    /// Every user of the source: new ones are added, changed ones updated.
    pub users: Vec<ImportUser>,
    /// Every importable chat: new ones are added.
    pub chats: Vec<ImportChat>,
    /// The chats whose messages are read again (the source holds importable
    /// messages the target has not counted), each with that source count.
    pub message_chats: Vec<(i64, i64)>,
    pub tokens: Vec<ImportToken>,
    /// Roll back instead of committing.
    pub dry_run: bool,
}

impl ImportPlan {
    /// Importable messages in `message_chats` (for the progress bar).
    pub fn messages_to_read(&self) -> u64 {
        self.message_chats
            .iter()
            .map(|&(_, n)| n.max(0) as u64)
            .sum()
    }
}

/// What a run changed (or, dry, would have changed).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ImportCounts {
    pub users_added: u64,
    pub users_updated: u64,
    pub chats_added: u64,
    pub messages_added: u64,
    pub tokens_added: u64,
}

impl ImportCounts {
    pub fn changed_nothing(&self) -> bool {
        *self == ImportCounts::default()
    }
}

/// Where an import reports how far it got.
pub trait ImportProgress: Send + Sync {
    /// A new phase; `total` items when known.
    fn phase(&self, name: &str, total: Option<u64>);
    /// `items` more done in the current phase.
    fn advance(&self, items: u64);
}

/// A store that can take in the Django backend's data.
#[async_trait]
pub trait ImportTarget: Send {
    /// What earlier runs imported.
    async fn imported_before(&mut self) -> Result<ImportedBefore, StoreError>;
    /// Runs the plan in one transaction, reading messages from `source`;
    /// committed unless the plan is a dry run.
    async fn import(
        &mut self,
        source: &dyn MessageSource,
        plan: &ImportPlan,
        progress: &dyn ImportProgress,
    ) -> Result<ImportCounts, StoreError>;
}
