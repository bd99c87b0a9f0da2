//! The progress bar while a scenario runs (indicatif): elapsed time against the
//! duration, with the live event count and rate.

use indicatif::{ProgressBar, ProgressStyle};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Shows progress until dropped.
pub struct Progress {
    bar: ProgressBar,
    task: tokio::task::JoinHandle<()>,
}

impl Progress {
    pub fn start(label: &str, duration: Duration, live: Arc<AtomicU64>) -> Self {
        let bar = ProgressBar::new(duration.as_secs().max(1));
        bar.set_style(
            ProgressStyle::with_template("{prefix} [{bar:30}] {pos}/{len}s {msg}")
                .expect("valid template")
                .progress_chars("=> "),
        );
        bar.set_prefix(label.to_owned());
        let ticker = bar.clone();
        let task = tokio::spawn(async move {
            let started = Instant::now();
            let mut last = (0u64, Instant::now());
            loop {
                tokio::time::sleep(Duration::from_millis(500)).await;
                let count = live.load(Ordering::Relaxed);
                let rate = (count - last.0) as f64 / last.1.elapsed().as_secs_f64();
                last = (count, Instant::now());
                ticker.set_position(started.elapsed().as_secs());
                ticker.set_message(format!("{count} events, {rate:.0}/s"));
            }
        });
        Progress { bar, task }
    }
}

impl Drop for Progress {
    fn drop(&mut self) {
        self.task.abort();
        self.bar.finish_and_clear();
    }
}
