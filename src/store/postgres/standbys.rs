//! Reads from standbys (`DATABASE_READ_URLS`): history pages, message
//! catch-up, the chat list and user search, so read capacity grows with
//! standbys. A standby serves a read only when it has replayed the primary's
//! WAL up to where it ended when the read began: then it holds every
//! transaction committed before, so it holds every message any client had
//! been sent, every chat a client knew of and every cursor a client can name,
//! and no reader sees less than it was already sent. A standby that lags,
//! or does not answer, leaves the read to the primary (counted as a miss).
//! The cost is one position read on the primary per read (or per batch of
//! reads), far cheaper than the read itself; on the standby, the check and
//! the read go out together (one round trip), the read after the check, so
//! its snapshot is at least as new as the position checked. (A lagging
//! standby's read is thereby wasted and done again on the primary: the price
//! of not waiting for the check.)

use super::pool::{checkout, open_standby, Conn, Pool, Retirements};
use super::statements::Statements;
use super::Params;
use crate::metrics::Metrics;
use crate::store::StoreError;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use tokio_postgres::types::{ToSql, Type};
use tokio_postgres::{Row, Statement};

/// A read that a standby may serve: a prepared statement, or one planned
/// for its parameters each time (user search: a pattern's best plan depends
/// on the pattern).
pub enum Read<'a> {
    Prepared(fn(&Statements) -> &Statement, &'a Params<'a>),
    Typed(&'static str, &'a [(&'a (dyn ToSql + Sync), Type)]),
}

impl Read<'_> {
    /// Runs on `conn`: every row.
    pub async fn on(&self, conn: &Conn<'_>) -> Result<Vec<Row>, tokio_postgres::Error> {
        match self {
            Read::Prepared(statement, params) => {
                conn.client.query(statement(&conn.statements), params).await
            }
            Read::Typed(sql, params) => conn.client.query_typed(sql, params).await,
        }
    }
}

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
        retirements: &Retirements,
    ) -> Result<Option<Self>, StoreError> {
        if urls.is_empty() {
            return Ok(None);
        }
        let pools = urls
            .iter()
            .map(|url| open_standby(url, pool_size, retirements.clone()))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Some(Standbys {
            pools,
            next: AtomicUsize::new(0),
            metrics,
        }))
    }

    /// One read on a standby that has replayed the WAL through `position`
    /// (the primary's, read after the request arrived): its rows; `None`
    /// when no standby had (the rows a lagging one read are dropped) or none
    /// answers.
    pub async fn read(&self, position: &str, read: &Read<'_>) -> Option<Vec<Row>> {
        for pool in self.in_turn() {
            let Ok(conn) = checkout(pool).await else {
                continue;
            };
            // Sent in this order on one connection: the check runs first.
            let check_params: [&(dyn ToSql + Sync); 1] = [&position];
            let check = conn
                .client
                .query_one(&conn.statements.replayed_through, &check_params);
            let (replayed, rows) = tokio::join!(check, read.on(&conn));
            if replayed.is_ok_and(|row| row.get::<_, bool>(0)) {
                if let Ok(rows) = rows {
                    self.metrics.standby_reads.inc();
                    return Some(rows);
                }
            }
        }
        self.metrics.standby_misses.inc();
        None
    }

    /// Every standby once, starting with the next in turn (round robin).
    fn in_turn(&self) -> impl Iterator<Item = &Pool> {
        let start = self.next.fetch_add(1, Ordering::Relaxed);
        let (before, after) = self.pools.split_at(start % self.pools.len());
        after.iter().chain(before)
    }

    pub fn count(&self) -> usize {
        self.pools.len()
    }
}
