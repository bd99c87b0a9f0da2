//! The import's progress on standard error, the only user of `indicatif`: a
//! bar for phases whose size is known (messages), a spinner otherwise. When
//! standard error is not a terminal, each phase is one plain line instead.

use crate::store::import::ImportProgress;
use indicatif::{ProgressBar, ProgressStyle};
use std::sync::Mutex;
use std::time::Duration;

/// Progress of one run.
pub struct Progress {
    bar: Mutex<ProgressBar>,
}

impl Progress {
    pub fn new() -> Self {
        Progress {
            bar: Mutex::new(ProgressBar::hidden()),
        }
    }

    /// Ends the last phase's bar.
    pub fn finish(&self) {
        crate::remembered::lock(&self.bar).finish_and_clear();
    }
}

impl Default for Progress {
    fn default() -> Self {
        Self::new()
    }
}

fn bar_for(name: &str, total: Option<u64>) -> ProgressBar {
    let bar = match total {
        Some(total) => ProgressBar::new(total).with_style(
            ProgressStyle::with_template(
                "{msg:32} [{bar:40}] {human_pos}/{human_len} ({per_sec}, {eta} left)",
            )
            .unwrap_or_else(|_| ProgressStyle::default_bar())
            .progress_chars("=> "),
        ),
        None => ProgressBar::new_spinner()
            .with_style(ProgressStyle::default_spinner().tick_chars("-\\|/ ")),
    };
    bar.enable_steady_tick(Duration::from_millis(120));
    bar.with_message(name.to_owned())
}

impl ImportProgress for Progress {
    fn phase(&self, name: &str, total: Option<u64>) {
        let mut bar = crate::remembered::lock(&self.bar);
        bar.finish_and_clear();
        *bar = bar_for(name, total);
        if bar.is_hidden() {
            match total {
                Some(total) => eprintln!("import-django: {name} ({total})"),
                None => eprintln!("import-django: {name}"),
            }
        }
    }

    fn advance(&self, items: u64) {
        crate::remembered::lock(&self.bar).inc(items);
    }
}
