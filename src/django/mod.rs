//! `chat-server import-django`: moves a running Django backend's data into
//! the configured store (PostgreSQL, or the embedded store), keeping ids.
//!
//! A run reads the Django database as one snapshot, decides what it can
//! import ([`plan`]), refuses to write while emails clash without case, and
//! hands the rest to the store, which imports it in one transaction (see
//! [`crate::store::import`]). Runs repeat safely: each brings only what is
//! new. What cannot be imported is reported, never dropped silently.

pub mod plan;
mod progress;

use crate::config::Config;
use crate::store::import::{ImportCounts, ImportTarget};
use crate::store::postgres::django::DjangoSource;
use crate::store::postgres::PgStore;
use crate::store::sqlite::SqliteImport;
use crate::store::StoreError;
use plan::{Problems, SourceData};
use progress::Progress;
use std::fmt::Write as _;
use std::time::{Duration, Instant};

/// Why a run wrote nothing.
#[derive(Debug, thiserror::Error)]
pub enum ImportError {
    #[error(transparent)]
    Store(#[from] StoreError),
    /// Emails that differ only in case; the report lists them.
    #[error("{0} emails are used by more than one user when case is ignored; nothing was written")]
    EmailConflicts(usize),
    /// The first run found users that did not come from Django.
    #[error(
        "the store already holds {0} users that were not imported from Django: import into an \
         empty database (a new DATABASE_URL or DATA_DIR), so Django's ids can be kept"
    )]
    TargetNotEmpty(i64),
}

/// What a run did (or, dry, would do) and what it could not.
#[derive(Debug)]
pub struct Outcome {
    pub counts: ImportCounts,
    pub problems: Problems,
    pub source: SourceTotals,
    pub dry_run: bool,
    pub took: Duration,
}

/// How much the source holds.
#[derive(Debug, Clone, Copy, Default)]
pub struct SourceTotals {
    pub users: usize,
    pub inactive_users: usize,
    pub chats: usize,
    pub messages: i64,
    pub tokens: usize,
}

/// Runs one import from the Django database at `source_url` into the store
/// `config` names. The problems are returned with the error when nothing
/// could be written.
pub async fn run(
    config: &Config,
    source_url: &str,
    dry_run: bool,
) -> Result<Outcome, (ImportError, Option<Problems>)> {
    let started = Instant::now();
    let mut target = open_target(config).await.map_err(|e| (e.into(), None))?;
    let before = target
        .imported_before()
        .await
        .map_err(|e| (e.into(), None))?;
    if before.runs == 0 && before.users > 0 {
        return Err((ImportError::TargetNotEmpty(before.users), None));
    }
    let source = DjangoSource::open(source_url)
        .await
        .map_err(|e| (e.into(), None))?;
    let progress = Progress::new();
    let data = read_source(&source, &progress)
        .await
        .map_err(|e| (e.into(), None))?;
    let totals = totals_of(&data);
    let (plan, problems) = plan::plan(data, &before, dry_run);
    if problems.blocks_writing() {
        progress.finish();
        let conflicts = problems.email_conflicts.len();
        return Err((ImportError::EmailConflicts(conflicts), Some(problems)));
    }
    let counts = target.import(&source, &plan, &progress).await;
    progress.finish();
    let counts = counts.map_err(|e| (e.into(), Some(problems.clone())))?;
    Ok(Outcome {
        counts,
        problems,
        source: totals,
        dry_run,
        took: started.elapsed(),
    })
}

async fn open_target(config: &Config) -> Result<Box<dyn ImportTarget>, StoreError> {
    Ok(match &config.database {
        Some(database) => Box::new(PgStore::open_import(database).await?),
        None => Box::new(SqliteImport::open(&config.data_dir)?),
    })
}

async fn read_source(source: &DjangoSource, progress: &Progress) -> Result<SourceData, StoreError> {
    use crate::store::import::ImportProgress as _;
    progress.phase("reading users and chats", None);
    Ok(SourceData {
        users: source.users().await?,
        chats: source.chats().await?,
        importable_messages: source.message_counts(true).await?,
        outsider_messages: source.message_counts(false).await?,
        tokens: source.live_blacklisted_tokens().await?.unwrap_or_default(),
    })
}

fn totals_of(data: &SourceData) -> SourceTotals {
    let messages = |counts: &[(i64, i64)]| counts.iter().map(|&(_, n)| n).sum::<i64>();
    SourceTotals {
        users: data.users.len(),
        inactive_users: data.users.iter().filter(|u| !u.is_active).count(),
        chats: data.chats.len(),
        messages: messages(&data.importable_messages) + messages(&data.outsider_messages),
        tokens: data.tokens.len(),
    }
}

/// The closing summary: counts of each kind, what was skipped and why, time.
pub fn summary(outcome: &Outcome) -> String {
    let (c, s) = (&outcome.counts, &outcome.source);
    let verb = if outcome.dry_run {
        "would add"
    } else {
        "added"
    };
    let mut text = String::new();
    let _ = writeln!(
        text,
        "import-django{}:",
        if outcome.dry_run { " (dry run)" } else { "" }
    );
    let _ = writeln!(
        text,
        "  users     {verb} {}, updated {} (source: {}, {} inactive)",
        c.users_added, c.users_updated, s.users, s.inactive_users
    );
    let _ = writeln!(
        text,
        "  chats     {verb} {} (source: {})",
        c.chats_added, s.chats
    );
    let _ = writeln!(
        text,
        "  messages  {verb} {} (source: {})",
        c.messages_added, s.messages
    );
    let _ = writeln!(
        text,
        "  blacklisted refresh tokens {verb} {} (source, unexpired: {})",
        c.tokens_added, s.tokens
    );
    text.push_str(&problems_report(&outcome.problems));
    if c.changed_nothing() {
        text.push_str("nothing new since the last import: the store already holds everything\n");
    }
    let took = outcome.took.as_secs_f64();
    if outcome.dry_run {
        let _ = writeln!(text, "dry run in {took:.1} s: nothing was written");
    } else {
        let _ = writeln!(text, "done in {took:.1} s");
    }
    text
}

/// Every problem, one line each (long lists cut at [`LISTED`] entries).
pub fn problems_report(problems: &Problems) -> String {
    let mut text = String::new();
    if !problems.email_conflicts.is_empty() {
        let _ = writeln!(
            text,
            "emails used by more than one user when case is ignored (emails are unique \
             without case here):"
        );
        for (email, users) in problems.email_conflicts.iter().take(LISTED) {
            let users: Vec<String> = users.iter().map(|(id, e)| format!("{id} <{e}>")).collect();
            let _ = writeln!(text, "  {email}: users {}", users.join(", "));
        }
        more(&mut text, problems.email_conflicts.len());
        text.push_str(
            "  resolve each in the Django database (change the email of, or merge, all \
             but one of the accounts), then run again\n",
        );
    }
    list_skipped(&mut text, problems);
    if !problems.unverifiable_hashes.is_empty() {
        let _ = writeln!(
            text,
            "users imported with a password hash this server does not verify (they need a new \
             password):"
        );
        for (id, format) in problems.unverifiable_hashes.iter().take(LISTED) {
            let _ = writeln!(text, "  user {id}: {format}");
        }
        more(&mut text, problems.unverifiable_hashes.len());
    }
    if problems.unusable_passwords > 0 {
        let _ = writeln!(
            text,
            "users with Django's unusable password (imported; no password matches them, as in \
             Django): {}",
            problems.unusable_passwords
        );
    }
    text
}

/// Entries of a list printed before the rest is counted.
const LISTED: usize = 20;

fn more(text: &mut String, total: usize) {
    if total > LISTED {
        let _ = writeln!(text, "  ... and {} more", total - LISTED);
    }
}

fn list_skipped(text: &mut String, problems: &Problems) {
    if !problems.chats_not_two.is_empty() {
        let _ = writeln!(text, "chats skipped (a chat has exactly two participants):");
        for (chat, n) in problems.chats_not_two.iter().take(LISTED) {
            let _ = writeln!(text, "  chat {chat}: {n} participants");
        }
        more(text, problems.chats_not_two.len());
    }
    if !problems.chats_bad_pair_key.is_empty() {
        let _ = writeln!(text, "chats skipped (pair_key is not their participants'):");
        let ids: Vec<String> = problems
            .chats_bad_pair_key
            .iter()
            .take(LISTED)
            .map(i64::to_string)
            .collect();
        let _ = writeln!(text, "  chats {}", ids.join(", "));
        more(text, problems.chats_bad_pair_key.len());
    }
    if problems.messages_of_skipped_chats > 0 {
        let _ = writeln!(
            text,
            "messages skipped with their chats: {}",
            problems.messages_of_skipped_chats
        );
    }
    if !problems.messages_of_outsiders.is_empty() {
        let _ = writeln!(
            text,
            "messages skipped (sender not a participant of the chat):"
        );
        for (chat, n) in problems.messages_of_outsiders.iter().take(LISTED) {
            let _ = writeln!(text, "  chat {chat}: {n}");
        }
        more(text, problems.messages_of_outsiders.len());
    }
}
