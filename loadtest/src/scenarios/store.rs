//! `store-ceiling`: the storage ceiling on this machine. Batched inserts of
//! message-sized rows into a scratch table shaped as `messages` is (same
//! columns, key, unique index and collation: `store_ceiling_table.sql`), from
//! several connections at once, with plain tokio-postgres.

use crate::cli::StoreArgs;
use crate::procfs::{Consumer, CpuSnapshot};
use crate::progress::Progress;
use crate::report::{self, Report, StoreFigures};
use crate::stats::Recorder;
use crate::Result;
use std::sync::atomic::AtomicU64;
use std::sync::Arc;
use std::time::{Duration, Instant};

const TABLE: &str = "loadtest_store_ceiling";
/// Creates `TABLE` afresh, shaped as `messages` is.
const SCRATCH_TABLE: &str = include_str!("store_ceiling_table.sql");

pub async fn run(args: StoreArgs) -> Result<Report<StoreFigures>> {
    let admin = connect(&args.database_url).await?;
    admin.batch_execute(SCRATCH_TABLE).await?;
    let live = Arc::new(AtomicU64::new(0));
    let duration = Duration::from_secs(args.output.duration);
    let cpu_before = CpuSnapshot::take(&[]);
    let start = Instant::now();
    let progress = Progress::start("store-ceiling", duration, live.clone());
    let mut tasks = Vec::new();
    // Held here until the CPU is read: a backend whose connection closed first
    // would have left /proc, and its CPU time the count.
    let mut clients = Vec::new();
    for worker in 0..args.connections.max(1) {
        let client = Arc::new(connect(&args.database_url).await?);
        clients.push(client.clone());
        let recorder = Recorder::new(start, live.clone());
        let (batch, size) = (args.batch.max(1), args.size);
        tasks.push(tokio::spawn(insert_until(
            client,
            worker as i64,
            batch,
            size,
            start + duration,
            recorder,
        )));
    }
    let (merged, errors) = crate::stats::merge_workers(Recorder::new(start, live), tasks).await?;
    drop(progress);
    let cpu_after = CpuSnapshot::take(&[]);
    drop(clients);
    admin
        .batch_execute(&format!("DROP TABLE IF EXISTS {TABLE}"))
        .await?;
    let mut report = Report::measured("store-ceiling", duration.as_secs_f64(), &merged);
    report.errors = errors;
    let spent = |consumer| cpu_after.spent_since(&cpu_before, consumer);
    report.figures = StoreFigures {
        database_cpu_per_row_us: report::cpu_per(spent(Consumer::Database), report.delivered),
        tool_cpu_per_row_us: report::cpu_per(spent(Consumer::Tool), report.delivered),
        batch: args.batch as u64,
        connections: args.connections as u64,
    };
    Ok(report)
}

async fn connect(url: &str) -> Result<tokio_postgres::Client> {
    let (client, connection) = tokio_postgres::connect(url, tokio_postgres::NoTls).await?;
    tokio::spawn(connection);
    Ok(client)
}

/// One connection inserting batches; each row counts as one delivered event and
/// the batch's commit time as its latency.
async fn insert_until(
    client: Arc<tokio_postgres::Client>,
    worker: i64,
    batch: usize,
    size: usize,
    deadline: Instant,
    mut recorder: Recorder,
) -> (Recorder, u64) {
    let statement = format!(
        "INSERT INTO {TABLE} (chat_id, seq, sender_id, content, metadata, client_msg_id)
         SELECT * FROM unnest($1::bigint[], $2::bigint[], $3::bigint[], $4::text[], $5::text[]::jsonb[], $6::text[])"
    );
    let Ok(statement) = client.prepare(&statement).await else {
        return (recorder, 1);
    };
    let content = "x".repeat(size);
    let (mut seq, mut errors) = (0i64, 0u64);
    while Instant::now() < deadline {
        let chats: Vec<i64> = (0..batch)
            .map(|i| worker * 1_000_000 + (i % 100) as i64)
            .collect();
        let seqs: Vec<i64> = (0..batch as i64).map(|i| seq + i).collect();
        let senders: Vec<i64> = vec![worker; batch];
        let contents: Vec<&str> = vec![content.as_str(); batch];
        let metadata: Vec<&str> = vec!["{}"; batch];
        let ids: Vec<String> = seqs.iter().map(|s| format!("w{worker}-{s}")).collect();
        let began = Instant::now();
        match client
            .execute(
                &statement,
                &[&chats, &seqs, &senders, &contents, &metadata, &ids],
            )
            .await
        {
            Ok(_) => {
                let took = began.elapsed();
                for _ in 0..batch {
                    recorder.record(took);
                }
            }
            Err(_) => errors += 1,
        }
        seq += batch as i64;
    }
    (recorder, errors)
}
