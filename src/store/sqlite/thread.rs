//! The store thread: it owns the SQLite connection, runs reads one by one,
//! and commits the writes that queued while it was busy in one transaction,
//! each in its own savepoint, answering nobody before that commit.

use crate::store::StoreError;
use rusqlite::Connection;
use std::sync::mpsc;
use tokio::sync::oneshot;

/// Sends a job's answer once its transaction's fate is known.
type Finish = Box<dyn FnOnce(bool) + Send>;

/// Runs a job's SQL: whether it succeeded, and how to answer.
type Work = Box<dyn FnOnce(&Connection) -> (bool, Finish) + Send>;

pub struct Job {
    write: bool,
    run: Work,
}

/// Writes committed together at most.
const GROUP_MAX: usize = 1024;

/// Hands work to the store thread and awaits its answer; cheap to clone.
#[derive(Clone)]
pub struct StoreThread {
    jobs: mpsc::Sender<Job>,
}

impl StoreThread {
    /// Starts the thread that owns `conn`.
    pub fn start(conn: Connection) -> Result<Self, StoreError> {
        let (jobs, queue) = mpsc::channel();
        std::thread::Builder::new()
            .name("chat-store".into())
            .spawn(move || serve(conn, queue))
            .map_err(|e| StoreError::Unavailable(format!("cannot start the store thread: {e}")))?;
        Ok(StoreThread { jobs })
    }

    /// Runs `work` on the store thread (in the group transaction when `write`).
    pub async fn call<T: Send + 'static>(
        &self,
        write: bool,
        work: impl FnOnce(&Connection) -> Result<T, StoreError> + Send + 'static,
    ) -> Result<T, StoreError> {
        let (tx, rx) = oneshot::channel();
        let run = Box::new(move |conn: &Connection| -> (bool, Finish) {
            let result = work(conn);
            let ok = result.is_ok();
            let finish: Finish = Box::new(move |committed| {
                let _ = tx.send(if committed {
                    result
                } else {
                    Err(StoreError::Unavailable(
                        "the transaction did not commit".into(),
                    ))
                });
            });
            (ok, finish)
        });
        let gone = || StoreError::Unavailable("the store thread has stopped".into());
        self.jobs.send(Job { write, run }).map_err(|_| gone())?;
        rx.await.map_err(|_| gone())?
    }
}

/// The store thread: reads one by one, queued writes in one transaction.
fn serve(conn: Connection, queue: mpsc::Receiver<Job>) {
    while let Ok(first) = queue.recv() {
        if !first.write {
            let (_, finish) = (first.run)(&conn);
            finish(true);
            continue;
        }
        let (mut writes, mut reads) = (vec![first], Vec::new());
        while writes.len() < GROUP_MAX {
            match queue.try_recv() {
                Ok(job) if job.write => writes.push(job),
                Ok(job) => reads.push(job),
                Err(_) => break,
            }
        }
        commit_group(&conn, writes);
        for job in reads {
            let (_, finish) = (job.run)(&conn);
            finish(true);
        }
    }
}

/// Runs writes in one transaction, each in a savepoint (a failed one leaves no
/// trace); answers them after the commit.
fn commit_group(conn: &Connection, writes: Vec<Job>) {
    let began = conn.execute_batch("BEGIN IMMEDIATE").is_ok();
    let mut finishes = Vec::with_capacity(writes.len());
    for job in writes {
        let _ = conn.execute_batch("SAVEPOINT job");
        let (ok, finish) = (job.run)(conn);
        if !ok {
            let _ = conn.execute_batch("ROLLBACK TO job");
        }
        let _ = conn.execute_batch("RELEASE job");
        finishes.push(finish);
    }
    let committed = began && conn.execute_batch("COMMIT").is_ok();
    if !committed {
        let _ = conn.execute_batch("ROLLBACK");
    }
    for finish in finishes {
        finish(committed);
    }
}
