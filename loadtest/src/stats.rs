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

    /// The recorder as one line of text, for another process to merge:
    /// `<timeline counts>;<latency:count ...>`, comma-separated.
    pub fn to_line(&self) -> String {
        let timeline: Vec<String> = self.timeline.iter().map(u64::to_string).collect();
        let latencies: Vec<String> = self
            .latency_us
            .iter_recorded()
            .map(|v| format!("{}:{}", v.value_iterated_to(), v.count_at_value()))
            .collect();
        format!("{};{}", timeline.join(","), latencies.join(","))
    }

    /// A recorder read back from [`Recorder::to_line`], its timeline counted
    /// from `start`; its events count towards `live`.
    pub fn from_line(start: Instant, live: Arc<AtomicU64>, line: &str) -> Result<Self, String> {
        let bad = || format!("not a recorder line: {line:.80}");
        let (timeline, latencies) = line.split_once(';').ok_or_else(bad)?;
        let mut recorder = Recorder::new(start, live);
        for count in timeline.split(',').filter(|c| !c.is_empty()) {
            recorder.timeline.push(count.parse().map_err(|_| bad())?);
        }
        for pair in latencies.split(',').filter(|p| !p.is_empty()) {
            let (micros, count) = pair.split_once(':').ok_or_else(bad)?;
            let (micros, count) = (
                micros.parse().map_err(|_| bad())?,
                count.parse().map_err(|_| bad())?,
            );
            recorder
                .latency_us
                .record_n(micros, count)
                .map_err(|_| bad())?;
        }
        recorder.live.fetch_add(recorder.total(), Ordering::Relaxed);
        Ok(recorder)
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_recorder_survives_its_line() {
        let live = Arc::new(AtomicU64::new(0));
        let start = Instant::now();
        let mut sent = Recorder::new(start, live.clone());
        for micros in [5, 5, 900, 40_000] {
            sent.record(Duration::from_micros(micros));
        }
        let line = sent.to_line();
        let received = Recorder::from_line(start, live.clone(), &line).unwrap();
        assert_eq!(received.total(), 4);
        assert_eq!(received.timeline, sent.timeline);
        assert_eq!(received.latency_us.len(), 4);
        assert_eq!(received.latency_us.max(), sent.latency_us.max());
        assert_eq!(received.latency_us.value_at_quantile(0.5), 5);
        assert_eq!(live.load(Ordering::Relaxed), 8, "both count towards live");
        assert!(Recorder::from_line(start, live, "1,2;x:1").is_err());
    }
}
