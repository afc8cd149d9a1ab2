//! Job statistics: per-operator record counts and backpressure, summed over
//! subtasks when the job ends.

use std::fmt;
use std::time::Duration;

/// Counters of one operator in one subtask.
#[derive(Clone, Debug, Default)]
pub struct StageStats {
    /// The operator's node id in the stream graph.
    pub node: usize,
    /// Records received.
    pub records_in: u64,
    /// Records emitted on the main output.
    pub records_out: u64,
    /// Records sent to side outputs that nothing consumes.
    pub side_dropped: u64,
    /// Undecodable records sent to the dead-letter stream (sources).
    pub dead_letters: u64,
    /// Time spent blocked on full output channels.
    pub backpressured: Duration,
    /// The operator's own counters (see `Operator::metrics`).
    pub custom: Vec<(&'static str, u64)>,
}

/// Totals for one operator over all its subtasks.
#[derive(Clone, Debug)]
pub struct OperatorStats {
    /// Operator name.
    pub name: String,
    /// Operator uid.
    pub uid: String,
    /// Parallelism it ran at.
    pub parallelism: usize,
    /// Records received.
    pub records_in: u64,
    /// Records emitted on the main output.
    pub records_out: u64,
    /// Records sent to side outputs that nothing consumes.
    pub side_dropped: u64,
    /// Undecodable records routed to the dead-letter stream.
    pub dead_letters: u64,
    /// Time its subtasks spent blocked on full output channels, summed.
    pub backpressured: Duration,
    /// The operator's own counters, summed over subtasks, by name.
    pub metrics: std::collections::BTreeMap<&'static str, u64>,
}

impl OperatorStats {
    /// The operator's counter `name` (0 when it never reported it).
    pub fn metric(&self, name: &str) -> u64 {
        self.metrics.get(name).copied().unwrap_or(0)
    }
}

/// What `Env::execute` returns when a bounded job ends.
#[derive(Clone, Debug)]
pub struct JobStats {
    /// The job's name.
    pub job: String,
    /// Wall time from start to the end of the last task.
    pub duration: Duration,
    /// One entry per operator, in graph order.
    pub operators: Vec<OperatorStats>,
    /// How often the job restarted after a failure.
    pub restarts: u32,
    /// Checkpoints and savepoints completed, oldest first.
    pub checkpoints: Vec<crate::checkpoint::CompletedCheckpoint>,
    /// Where the savepoint is when the job was stopped with one (or, for
    /// the `savepoint` command, where the running job wrote it).
    pub stopped_with_savepoint: Option<std::path::PathBuf>,
}

impl JobStats {
    /// The statistics of the operator with uid or name `id`.
    pub fn operator(&self, id: &str) -> Option<&OperatorStats> {
        self.operators
            .iter()
            .find(|o| o.uid == id)
            .or_else(|| self.operators.iter().find(|o| o.name == id))
    }
}

impl fmt::Display for JobStats {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "job '{}' finished in {:.3} s",
            self.job,
            self.duration.as_secs_f64()
        )?;
        writeln!(
            f,
            "  {:<28} {:>3} {:>12} {:>12} {:>9} {:>10}",
            "operator", "p", "records in", "records out", "dropped", "blocked ms"
        )?;
        for o in &self.operators {
            writeln!(
                f,
                "  {:<28} {:>3} {:>12} {:>12} {:>9} {:>10}",
                truncate(&o.name, 28),
                o.parallelism,
                o.records_in,
                o.records_out,
                o.side_dropped + o.dead_letters,
                o.backpressured.as_millis()
            )?;
        }
        Ok(())
    }
}

fn truncate(s: &str, n: usize) -> String {
    if s.chars().count() <= n {
        s.to_owned()
    } else {
        let mut t: String = s.chars().take(n - 1).collect();
        t.push('…');
        t
    }
}

/// The process's peak resident set size in bytes (`VmHWM` in
/// `/proc/self/status`); `None` where that file does not exist.
pub fn peak_rss_bytes() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib * 1024)
}
