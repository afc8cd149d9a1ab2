//! Job statistics: per-operator record counts and backpressure, summed over
//! subtasks when the job ends.

use std::fmt;
use std::time::Duration;

/// Counters of one operator in one subtask.
#[derive(Clone, Debug, Default, serde::Serialize, serde::Deserialize)]
pub struct StageStats {
    /// The operator's node id in the stream graph.
    pub node: usize,
    /// Records received.
    pub records_in: u64,
    /// Records emitted on the main output.
    pub records_out: u64,
    /// Batches sent to other tasks (network outputs).
    pub batches_out: u64,
    /// Records sent to side outputs that nothing consumes.
    pub side_dropped: u64,
    /// Undecodable records sent to the dead-letter stream (sources).
    pub dead_letters: u64,
    /// Time spent blocked on full output channels.
    pub backpressured: Duration,
    /// The operator's own counters (see `Operator::metrics`).
    #[serde(deserialize_with = "crate::runtime::cluster::interned_metrics")]
    pub custom: Vec<(&'static str, u64)>,
    /// The last watermark it received (sources: emitted).
    pub watermark: Option<crate::element::Timestamp>,
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
    /// The answer to a control command (`savepoint`, `stop`, `cancel`,
    /// `status`, `list`), which ran instead of the job.
    pub answer: Option<String>,
}

impl JobStats {
    /// What a worker of a cluster returns when the coordinator shuts the
    /// job down: its tasks' statistics are the coordinator's to report.
    pub(crate) fn of_worker(job: &str, duration: Duration) -> Self {
        JobStats {
            job: job.to_owned(),
            duration,
            operators: Vec::new(),
            restarts: 0,
            checkpoints: Vec::new(),
            stopped_with_savepoint: None,
            answer: Some("worker: the coordinator ended the job".into()),
        }
    }

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
        if let Some(answer) = &self.answer {
            return writeln!(f, "{answer}");
        }
        writeln!(
            f,
            "job '{}' finished in {:.3} s",
            self.job,
            self.duration.as_secs_f64()
        )?;
        writeln!(
            f,
            "  {:<28} {:>3} {:>12} {:>12} {:>9} {:>9} {:>10}",
            "operator", "p", "records in", "records out", "dropped", "late", "blocked ms"
        )?;
        for o in &self.operators {
            writeln!(
                f,
                "  {:<28} {:>3} {:>12} {:>12} {:>9} {:>9} {:>10}",
                truncate(&o.name, 28),
                o.parallelism,
                o.records_in,
                o.records_out,
                o.side_dropped + o.dead_letters,
                o.metric(LATE_DROPPED),
                o.backpressured.as_millis()
            )?;
        }
        for o in self.operators.iter().filter(|o| o.metric("commits") > 0) {
            let commits = o.metric("commits");
            writeln!(
                f,
                "  {} ({}): {} commits ({} retried attempts), {:.1} ms per commit",
                o.uid,
                o.name,
                commits,
                o.metric("commit_retries"),
                o.metric("commit_ms") as f64 / commits as f64
            )?;
        }
        for o in self.operators.iter().filter(|o| o.dead_letters > 0) {
            if o.records_out == 0 {
                writeln!(
                    f,
                    "  warning: every record of {} was undecodable ({} dead letters, none read): check its format (a CSV header? compressed input?)",
                    o.name, o.dead_letters
                )?;
            }
        }
        Ok(())
    }
}

/// The metric of operators that drop records behind the watermark.
const LATE_DROPPED: &str = "late_records_dropped";

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

#[cfg(test)]
mod tests {
    use super::*;

    fn operator(name: &str, out: u64, dead: u64, late: u64) -> OperatorStats {
        OperatorStats {
            name: name.into(),
            uid: name.into(),
            parallelism: 1,
            records_in: 10,
            records_out: out,
            side_dropped: 0,
            dead_letters: dead,
            backpressured: Duration::ZERO,
            metrics: [(LATE_DROPPED, late)].into_iter().collect(),
        }
    }

    #[test]
    fn the_summary_shows_late_drops_and_warns_when_a_source_read_nothing() {
        let stats = JobStats {
            job: "j".into(),
            duration: Duration::ZERO,
            operators: vec![
                operator("CsvSource", 0, 44, 0),
                operator("Window", 3, 0, 328),
            ],
            restarts: 0,
            checkpoints: Vec::new(),
            stopped_with_savepoint: None,
            answer: None,
        };
        let text = stats.to_string();
        let window = text
            .lines()
            .find(|l| l.contains("Window"))
            .unwrap_or_default();
        assert!(window.split_whitespace().any(|w| w == "328"), "{text}");
        assert!(
            text.contains("every record of CsvSource was undecodable (44 dead letters"),
            "{text}"
        );
    }
}
