//! Measurements: an HDR histogram of latencies (microseconds) and a throughput
//! timeline. Each task records into its own `Recorder`; they are merged at the end,
//! so the hot path takes no locks. A shared counter feeds the progress bar.

use hdrhistogram::Histogram;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Width of one timeline bucket.
pub const BUCKET: Duration = Duration::from_millis(250);

/// One task's measurements.
pub struct Recorder {
    pub latency_us: Histogram<u64>,
    /// Events per bucket since `start`.
    pub timeline: Vec<u64>,
    start: Instant,
    live: Arc<AtomicU64>,
}

impl Recorder {
    pub fn new(start: Instant, live: Arc<AtomicU64>) -> Self {
        Recorder {
            latency_us: Histogram::new_with_bounds(1, 120_000_000, 3)
                .expect("valid histogram bounds"),
            timeline: Vec::new(),
            start,
            live,
        }
    }

    /// One event that took `latency`, observed now.
    pub fn record(&mut self, latency: Duration) {
        let micros = (latency.as_micros() as u64).clamp(1, 120_000_000);
        let _ = self.latency_us.record(micros);
        self.count();
    }

    /// One event without a latency.
    pub fn count(&mut self) {
        let bucket = (self.start.elapsed().as_millis() / BUCKET.as_millis()) as usize;
        if self.timeline.len() <= bucket {
            self.timeline.resize(bucket + 1, 0);
        }
        self.timeline[bucket] += 1;
        self.live.fetch_add(1, Ordering::Relaxed);
    }

    pub fn merge(&mut self, other: &Recorder) {
        let _ = self.latency_us.add(&other.latency_us);
        if self.timeline.len() < other.timeline.len() {
            self.timeline.resize(other.timeline.len(), 0);
        }
        for (mine, theirs) in self.timeline.iter_mut().zip(&other.timeline) {
            *mine += theirs;
        }
    }

    pub fn total(&self) -> u64 {
        self.timeline.iter().sum()
    }
}

/// Waits for workers that each return their recorder and error count; merges them.
pub async fn merge_workers(
    mut merged: Recorder,
    workers: Vec<tokio::task::JoinHandle<(Recorder, u64)>>,
) -> Result<(Recorder, u64), tokio::task::JoinError> {
    let mut errors = 0;
    for worker in workers {
        let (recorder, failed) = worker.await?;
        merged.merge(&recorder);
        errors += failed;
    }
    Ok((merged, errors))
}

/// Nanoseconds since `start`, to carry a send time inside a message.
pub fn stamp(start: Instant) -> u128 {
    start.elapsed().as_nanos()
}

/// How long ago a stamp was taken.
pub fn since(start: Instant, stamp_ns: u128) -> Duration {
    start
        .elapsed()
        .saturating_sub(Duration::from_nanos(stamp_ns.min(u64::MAX as u128) as u64))
}
