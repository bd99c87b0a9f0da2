//! Reads from standbys (`DATABASE_READ_URLS`): history pages, message
//! catch-up, the chat list and user search, so read capacity grows with
//! standbys. A standby serves a read only when it has replayed the primary's
//! WAL up to where it ended when the read began: then it holds every
//! transaction committed before, so it holds every message any client had
//! been sent, every chat a client knew of and every cursor a client can name,
//! and no reader sees less than it was already sent. A standby that lags,
//! or does not answer within two seconds, leaves the read to the primary
//! (counted as a miss); one that failed (no connection, no answer, an
//! error) is passed over for a few seconds.
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
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
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

/// How long a standby that failed a read (no connection within the pool's
/// second, no answer within [`STANDBY_PATIENCE`], or an error) is passed
/// over: a dead host costs the reads one attempt per rest, not one per read.
const REST_AFTER_FAILURE: Duration = Duration::from_secs(5);
/// How long a read waits for a standby's answer before it goes to the
/// primary (a standby's reads answer in milliseconds; one whose host
/// vanished leaves open connections that never answer).
const STANDBY_PATIENCE: Duration = Duration::from_secs(2);

/// The standbys' pools, tried round robin.
pub struct Standbys {
    standbys: Vec<Standby>,
    next: AtomicUsize,
    /// What each standby's rest is measured from.
    epoch: Instant,
    metrics: Arc<Metrics>,
}

/// One standby's pool, and until when it rests after a failure
/// (milliseconds since [`Standbys::epoch`]; 0: not resting).
struct Standby {
    pool: Pool,
    resting_until_ms: AtomicU64,
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
        let standbys = urls
            .iter()
            .map(|url| {
                let pool = open_standby(url, pool_size, retirements.clone())?;
                Ok(Standby {
                    pool,
                    resting_until_ms: AtomicU64::new(0),
                })
            })
            .collect::<Result<Vec<_>, StoreError>>()?;
        Ok(Some(Standbys {
            standbys,
            next: AtomicUsize::new(0),
            epoch: Instant::now(),
            metrics,
        }))
    }

    /// One read on a standby that has replayed the WAL through `position`
    /// (the primary's, read after the request arrived): its rows; `None`
    /// when no standby had (the rows a lagging one read are dropped) or none
    /// answers.
    pub async fn read(&self, position: &str, read: &Read<'_>) -> Option<Vec<Row>> {
        for standby in self.awake_in_turn() {
            let Ok(mut conn) = checkout(&standby.pool).await else {
                self.rest(standby);
                continue;
            };
            // Sent in this order on one connection: the check runs first.
            let check_params: [&(dyn ToSql + Sync); 1] = [&position];
            let check = conn
                .client
                .query_one(&conn.statements.replayed_through, &check_params);
            let both = async { tokio::join!(check, read.on(&conn)) };
            let Ok((replayed, rows)) = tokio::time::timeout(STANDBY_PATIENCE, both).await else {
                conn.abandon();
                self.rest(standby);
                continue;
            };
            match (replayed, rows) {
                (Ok(replayed), Ok(rows)) if replayed.get::<_, bool>(0) => {
                    self.metrics.standby_reads.inc();
                    return Some(rows);
                }
                (Ok(_), Ok(_)) => {} // lagging: the next one, or the primary
                _ => self.rest(standby),
            }
        }
        self.metrics.standby_misses.inc();
        None
    }

    /// Every standby not resting, once, starting with the next in turn
    /// (round robin).
    fn awake_in_turn(&self) -> impl Iterator<Item = &Standby> {
        let start = self.next.fetch_add(1, Ordering::Relaxed);
        let (before, after) = self.standbys.split_at(start % self.standbys.len());
        let now = self.now_ms();
        after
            .iter()
            .chain(before)
            .filter(move |standby| standby.resting_until_ms.load(Ordering::Relaxed) <= now)
    }

    /// Passes `standby` over for [`REST_AFTER_FAILURE`].
    fn rest(&self, standby: &Standby) {
        let until = self.now_ms() + REST_AFTER_FAILURE.as_millis() as u64;
        standby.resting_until_ms.store(until, Ordering::Relaxed);
    }

    fn now_ms(&self) -> u64 {
        self.epoch.elapsed().as_millis() as u64
    }

    pub fn count(&self) -> usize {
        self.standbys.len()
    }
}
