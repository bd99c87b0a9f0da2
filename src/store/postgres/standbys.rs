//! Reads from standbys (`DATABASE_READ_URLS`): history pages, message
//! catch-up, the chat list and user search, so read capacity grows with
//! standbys. A standby serves a read only when it has replayed the primary's
//! WAL up to where it ended when the read began: then it holds every
//! transaction committed before, so it holds every message any client had
//! been sent, every chat a client knew of and every cursor a client can name,
//! and no reader sees less than it was already sent. A standby that lags,
//! or does not answer, leaves the read to the primary (counted as a miss).
//! The cost is one position read on the primary per read (or per batch of
//! reads), far cheaper than the read itself.

use super::pool::{checkout, open_standby, Conn, Pool};
use crate::metrics::Metrics;
use crate::store::StoreError;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

/// The standbys' pools, tried round robin.
pub struct Standbys {
    pools: Vec<Pool>,
    next: AtomicUsize,
    metrics: Arc<Metrics>,
}

impl Standbys {
    /// Pools for `urls` (none: no standby reads); nothing connects yet.
    pub fn open(
        urls: &[String],
        pool_size: u32,
        metrics: Arc<Metrics>,
    ) -> Result<Option<Self>, StoreError> {
        if urls.is_empty() {
            return Ok(None);
        }
        let pools = urls
            .iter()
            .map(|url| open_standby(url, pool_size))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Some(Standbys {
            pools,
            next: AtomicUsize::new(0),
            metrics,
        }))
    }

    /// A connection to a standby that has replayed the WAL through
    /// `position` (the primary's, read after the request arrived); `None`
    /// when none has, or none answers.
    pub async fn caught_up(&self, position: &str) -> Option<Conn<'_>> {
        let start = self.next.fetch_add(1, Ordering::Relaxed);
        for offset in 0..self.pools.len() {
            let pool = &self.pools[(start + offset) % self.pools.len()];
            let Ok(conn) = checkout(pool).await else {
                continue;
            };
            let replayed = conn
                .client
                .query_one(&conn.statements.replayed_through, &[&position])
                .await
                .is_ok_and(|row| row.get::<_, bool>(0));
            if replayed {
                self.metrics.standby_reads.inc();
                return Some(conn);
            }
        }
        self.metrics.standby_misses.inc();
        None
    }

    pub fn count(&self) -> usize {
        self.pools.len()
    }
}
