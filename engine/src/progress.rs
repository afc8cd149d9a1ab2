//! The progress line of a job run from a terminal: records read by its
//! sources, their rate, the time elapsed and, when every source knows its
//! size, a bar and an ETA. Drawn on standard error four times a second from
//! the live metrics, cleared when the job ends (the summary table follows);
//! off with `--quiet`, or when standard output or error is not a terminal.

use std::io::IsTerminal;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use indicatif::{ProgressBar, ProgressStyle};

use crate::metrics::JobMetrics;

/// How often the line is redrawn.
const TICK: Duration = Duration::from_millis(250);

/// A drawn progress line; dropping it clears the line.
pub(crate) struct ProgressLine {
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

/// The line's layout: a bar with an ETA when the total is known.
fn style(total: Option<u64>) -> ProgressStyle {
    let template = match total {
        Some(_) => "{elapsed_precise} [{bar:30}] {human_pos}/{human_len} records read ({per_sec}, ETA {eta})",
        None => "{spinner} {elapsed_precise} {human_pos} records read ({per_sec})",
    };
    ProgressStyle::with_template(template)
        .unwrap_or_else(|_| ProgressStyle::default_spinner())
        .progress_chars("=> ")
}

impl ProgressLine {
    /// Starts drawing the records the source nodes `sources` read, out of
    /// `total` when known; `None` when standard output or error is not a
    /// terminal.
    pub(crate) fn start(
        metrics: Arc<JobMetrics>,
        sources: Vec<usize>,
        total: Option<u64>,
    ) -> Option<Self> {
        if !std::io::stdout().is_terminal() || !std::io::stderr().is_terminal() {
            return None;
        }
        let bar = match total {
            Some(total) => ProgressBar::new(total),
            None => ProgressBar::new_spinner(),
        };
        bar.set_style(style(total));
        let stop = Arc::new(AtomicBool::new(false));
        let stopped = Arc::clone(&stop);
        let thread = std::thread::Builder::new()
            .name("eddy-progress".into())
            .spawn(move || {
                while !stopped.load(Ordering::Relaxed) {
                    bar.set_position(metrics.records_out_of(&sources));
                    std::thread::sleep(TICK);
                }
                bar.finish_and_clear();
            })
            .ok()?;
        Some(ProgressLine {
            stop,
            thread: Some(thread),
        })
    }
}

impl Drop for ProgressLine {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}
