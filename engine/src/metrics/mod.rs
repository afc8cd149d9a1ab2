//! Live metrics of a running job, in a Prometheus registry.
//!
//! Tasks count as they always did, in plain per-stage fields
//! ([`StageStats`]), and publish those counts here once per
//! second and when they end: the hot path pays nothing per
//! record. Counters are kept per job run, across restarts: each
//! publication adds what its stage counted since the last one of the same
//! attempt (a restarted attempt counts again from zero), so a scrape sees
//! them grow for the life of the job. Operators and connectors add their
//! own series through [`MetricGroup`] (from
//! [`RuntimeContext::metrics`](crate::context::RuntimeContext::metrics)).
//!
//! Names follow Flink's, in Prometheus's spelling: per operator subtask
//! (labels `job`, `operator` (the uid), `operator_name`, `subtask`)
//! `eddy_operator_records_in_total`, `…_records_out_total`,
//! `…_dead_letters_total`, `…_side_output_dropped_total`,
//! `…_backpressured_seconds_total`, `…_current_watermark_ms`,
//! `…_watermark_lag_ms`, and the operator's own `metrics()` (levels such as
//! `state_entries` and `timers` as gauges, everything else as counters);
//! per task (labels `job`, `task` and `task_uid` (its first operator's name
//! and uid), `subtask`) `eddy_task_idle_seconds_total`,
//! `…_backpressured_seconds_total` and `…_busy_seconds_total` (their rates
//! are Flink's `idleTimeMsPerSecond` & co., in seconds per second); per job
//! `eddy_job_restarts_total`, `eddy_job_checkpoints_total`,
//! `eddy_job_checkpoints_failed_total`, `eddy_job_last_checkpoint_duration_ms`,
//! `eddy_job_last_checkpoint_size_bytes`, and per subtask
//! `eddy_task_checkpoint_ack_ms` (trigger to acknowledgement, last
//! checkpoint) and `eddy_task_checkpoint_alignment_ms` (its first to last
//! input's barrier), and `eddy_job_last_checkpoint_alignment_ms` (the
//! longest of them).

use std::collections::HashMap;
use std::sync::atomic::AtomicU64;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use prometheus_client::encoding::text::encode;
use prometheus_client::metrics::family::{Family, MetricConstructor};
/// The series kinds a [`MetricGroup`] hands out (from `prometheus-client`).
pub use prometheus_client::metrics::{counter::Counter, gauge::Gauge, histogram::Histogram};
use prometheus_client::registry::{Metric, Registry};

use crate::checkpoint::storage::SnapshotKind;
use crate::element::Timestamp;
use crate::graph::job::JobGraph;
use crate::runtime::placement::SlotPlan;
use crate::runtime::stats::StageStats;

mod view;
use crate::clock::wall_clock_ms;
pub use view::{
    CheckpointView, EdgeView, FailureView, JobState, JobView, SubtaskView, VertexView, WorkerView,
    LOCAL_WORKER,
};
use view::{GraphView, HISTORY};

/// How often a task publishes its counts.
pub(crate) const PUBLISH_INTERVAL: Duration = Duration::from_secs(1);

/// The metrics an operator reports through `metrics()` that are levels
/// (how much there is now), not counts of events.
const LEVELS: [&str; 3] = ["state_entries", "state_bytes", "timers"];

/// A series' labels.
type Labels = Vec<(String, String)>;
/// A counter in seconds.
type Seconds = Counter<f64, AtomicU64>;
/// Histograms of milliseconds, by labels.
type HistogramFamily = Family<Labels, Histogram, fn() -> Histogram>;

/// The registry and the series families of one job.
struct Families {
    registry: Registry,
    counters: HashMap<String, Family<Labels, Counter>>,
    gauges: HashMap<String, Family<Labels, Gauge>>,
    seconds: HashMap<String, Family<Labels, Seconds>>,
    histograms: HashMap<String, HistogramFamily>,
}

impl Families {
    fn counter(&mut self, name: &str, help: &str, labels: &Labels) -> Counter {
        let new = Family::default;
        series(
            &mut self.registry,
            &mut self.counters,
            name,
            help,
            labels,
            new,
        )
    }

    fn gauge(&mut self, name: &str, help: &str, labels: &Labels) -> Gauge {
        let new = Family::default;
        series(
            &mut self.registry,
            &mut self.gauges,
            name,
            help,
            labels,
            new,
        )
    }

    fn seconds(&mut self, name: &str, help: &str, labels: &Labels) -> Seconds {
        let new = Family::default;
        series(
            &mut self.registry,
            &mut self.seconds,
            name,
            help,
            labels,
            new,
        )
    }

    fn histogram(&mut self, name: &str, help: &str, labels: &Labels) -> Histogram {
        let new = || Family::new_with_constructor(millisecond_buckets as fn() -> Histogram);
        series(
            &mut self.registry,
            &mut self.histograms,
            name,
            help,
            labels,
            new,
        )
    }
}

/// The series of `name` with `labels`, its family made by `new` and
/// registered the first time the name is used.
fn series<M, C>(
    registry: &mut Registry,
    families: &mut HashMap<String, Family<Labels, M, C>>,
    name: &str,
    help: &str,
    labels: &Labels,
    new: impl FnOnce() -> Family<Labels, M, C>,
) -> M
where
    M: Clone,
    C: MetricConstructor<M> + Clone,
    Family<Labels, M, C>: Metric,
{
    families
        .entry(name.to_owned())
        .or_insert_with(|| {
            let family = new();
            registry.register(name, help, family.clone());
            family
        })
        .get_or_create(labels)
        .clone()
}

/// A histogram of milliseconds: 32 buckets from 0.25 ms to about 72 s,
/// each 1.5 times the one before (quantiles within ±25 %).
fn millisecond_buckets() -> Histogram {
    Histogram::new(prometheus_client::metrics::histogram::exponential_buckets(
        0.25, 1.5, 32,
    ))
}

/// The last publication of one operator subtask.
#[derive(Default)]
struct Published {
    attempt: u32,
    stats: StageStats,
}

/// The live series of one operator subtask.
struct StageSeries {
    labels: Labels,
    records_in: Counter,
    records_out: Counter,
    batches_out: Counter,
    dead_letters: Counter,
    side_dropped: Counter,
    backpressured: Seconds,
    watermark: Gauge,
    watermark_lag: Gauge,
    last: Published,
    /// When `last` was published, and the rate of records out since the
    /// publication before it.
    published_at: Option<Instant>,
    rate_in: f64,
    rate_out: f64,
}

/// The live series of one task (a subtask of a vertex).
struct TaskSeries {
    idle: Seconds,
    backpressured: Seconds,
    busy: Seconds,
    checkpoint_ack: Gauge,
    checkpoint_alignment: Gauge,
    last: (u32, TaskTimes),
    /// Busy, backpressured and idle shares of the time between the last
    /// two publications.
    shares: [f64; 3],
}

/// What one task last published, as its worker ships it to the
/// coordinator: one entry per operator of its chain, and its times.
#[derive(Clone, Debug, serde::Serialize, serde::Deserialize)]
pub(crate) struct TaskPublication {
    pub vertex: usize,
    pub subtask: usize,
    pub stages: Vec<StageStats>,
    pub times: TaskTimes,
}

/// The workers of a run and the slots its subtasks take.
struct Roster {
    workers: Vec<WorkerView>,
    /// `None` while a cluster waits for slots.
    slots: Option<SlotPlan>,
}

/// What a subtask's worker reads while the job waits for slots.
const UNPLACED: &str = "waiting for a slot";

/// How a task spent its time since it started (one attempt).
#[derive(Clone, Copy, Debug, Default, serde::Serialize, serde::Deserialize)]
pub(crate) struct TaskTimes {
    /// Waiting for input.
    pub idle: Duration,
    /// Blocked on full output channels.
    pub backpressured: Duration,
    /// Since the task started.
    pub elapsed: Duration,
}

/// The live metrics of one job: what the Prometheus endpoint and the web
/// view read.
pub struct JobMetrics {
    job: String,
    started_at_ms: i64,
    state: Mutex<JobState>,
    /// The job graph as the web view draws it.
    graph: GraphView,
    /// The workers of the current run and where its subtasks are (no
    /// workers: this process runs every task).
    roster: Mutex<Roster>,
    /// The latest completed checkpoints, oldest first.
    history: Mutex<std::collections::VecDeque<CheckpointView>>,
    /// The failures the job restarted after, oldest first.
    failures: Mutex<std::collections::VecDeque<FailureView>>,
    families: Mutex<Families>,
    /// `[node][subtask]`.
    stages: Vec<Vec<Mutex<StageSeries>>>,
    /// `[vertex][subtask]`.
    tasks: Vec<Vec<Mutex<TaskSeries>>>,
    restarts: Counter,
    checkpoints: Counter,
    checkpoints_failed: Counter,
    checkpoint_duration: Gauge,
    checkpoint_alignment: Gauge,
    checkpoint_size: Gauge,
}

/// How long a checkpoint took.
pub(crate) struct CheckpointTimes {
    /// Trigger to completion.
    pub duration: Duration,
    /// The longest barrier alignment of its tasks.
    pub alignment: Duration,
}

impl std::fmt::Debug for JobMetrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("JobMetrics")
            .field("job", &self.job)
            .finish()
    }
}

fn labels(pairs: &[(&str, &str)]) -> Labels {
    pairs
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect()
}

/// Adds to `counter` what `now` counts beyond `before` (all of `now` when
/// a new attempt started counting again).
fn advance(counter: &Counter, now: u64, before: u64, same_attempt: bool) {
    let delta = if same_attempt {
        now.saturating_sub(before)
    } else {
        now
    };
    if delta > 0 {
        counter.inc_by(delta);
    }
}

fn advance_seconds(counter: &Seconds, now: Duration, before: Duration, same_attempt: bool) {
    let delta = if same_attempt {
        now.saturating_sub(before)
    } else {
        now
    };
    if !delta.is_zero() {
        counter.inc_by(delta.as_secs_f64());
    }
}

impl JobMetrics {
    /// The series of job `job` with graph `graph`, all at zero.
    pub(crate) fn new(job: &str, graph: &JobGraph) -> Arc<Self> {
        let mut families = Families {
            registry: Registry::default(),
            counters: HashMap::new(),
            gauges: HashMap::new(),
            seconds: HashMap::new(),
            histograms: HashMap::new(),
        };
        let f = &mut families;
        let stages = graph
            .nodes
            .iter()
            .map(|n| {
                (0..n.parallelism)
                    .map(|s| {
                        let subtask = s.to_string();
                        let l = labels(&[
                            ("job", job),
                            ("operator", &n.uid),
                            ("operator_name", &n.name),
                            ("subtask", &subtask),
                        ]);
                        Mutex::new(StageSeries {
                            records_in: f.counter(
                                "eddy_operator_records_in",
                                "Records received.",
                                &l,
                            ),
                            records_out: f.counter(
                                "eddy_operator_records_out",
                                "Records emitted on the main output.",
                                &l,
                            ),
                            batches_out: f.counter(
                                "eddy_operator_batches_out",
                                "Batches sent to other tasks (records_out / batches_out: how full they are).",
                                &l,
                            ),
                            dead_letters: f.counter(
                                "eddy_operator_dead_letters",
                                "Undecodable records sent to the dead-letter output.",
                                &l,
                            ),
                            side_dropped: f.counter(
                                "eddy_operator_side_output_dropped",
                                "Records sent to side outputs nothing consumes.",
                                &l,
                            ),
                            backpressured: f.seconds(
                                "eddy_operator_backpressured_seconds",
                                "Time blocked on full output channels.",
                                &l,
                            ),
                            watermark: f.gauge(
                                "eddy_operator_current_watermark_ms",
                                "The operator's input watermark (ms since the epoch).",
                                &l,
                            ),
                            watermark_lag: f.gauge(
                                "eddy_operator_watermark_lag_ms",
                                "Processing time minus the watermark, when it was published.",
                                &l,
                            ),
                            labels: l,
                            last: Published::default(),
                            published_at: None,
                            rate_in: 0.0,
                            rate_out: 0.0,
                        })
                    })
                    .collect()
            })
            .collect();
        let tasks = graph
            .vertices
            .iter()
            .map(|v| {
                let (name, uid) = v.nodes.first().map_or(("task", "task"), |&n| {
                    (graph.nodes[n].name.as_str(), graph.nodes[n].uid.as_str())
                });
                (0..v.parallelism)
                    .map(|s| {
                        let subtask = s.to_string();
                        let l = labels(&[
                            ("job", job),
                            ("task", name),
                            ("task_uid", uid),
                            ("subtask", &subtask),
                        ]);
                        Mutex::new(TaskSeries {
                            idle: f.seconds(
                                "eddy_task_idle_seconds",
                                "Time waiting for input.",
                                &l,
                            ),
                            backpressured: f.seconds(
                                "eddy_task_backpressured_seconds",
                                "Time blocked on full output channels.",
                                &l,
                            ),
                            busy: f.seconds(
                                "eddy_task_busy_seconds",
                                "Time neither idle nor backpressured.",
                                &l,
                            ),
                            checkpoint_ack: f.gauge(
                                "eddy_task_checkpoint_ack_ms",
                                "Trigger to acknowledgement of the last checkpoint.",
                                &l,
                            ),
                            checkpoint_alignment: f.gauge(
                                "eddy_task_checkpoint_alignment_ms",
                                "First to last input's barrier of the last checkpoint.",
                                &l,
                            ),
                            last: (0, TaskTimes::default()),
                            shares: [0.0; 3],
                        })
                    })
                    .collect()
            })
            .collect();
        let l = labels(&[("job", job)]);
        Arc::new(JobMetrics {
            job: job.to_owned(),
            started_at_ms: wall_clock_ms(),
            state: Mutex::new(JobState::Running),
            graph: GraphView::of(graph),
            roster: Mutex::new(Roster {
                workers: Vec::new(),
                slots: Some(SlotPlan::default()),
            }),
            history: Mutex::new(std::collections::VecDeque::new()),
            failures: Mutex::new(std::collections::VecDeque::new()),
            restarts: f.counter("eddy_job_restarts", "Restarts after failures.", &l),
            checkpoints: f.counter("eddy_job_checkpoints", "Checkpoints completed.", &l),
            checkpoints_failed: f.counter(
                "eddy_job_checkpoints_failed",
                "Checkpoints abandoned or declined.",
                &l,
            ),
            checkpoint_duration: f.gauge(
                "eddy_job_last_checkpoint_duration_ms",
                "Trigger to completion of the last checkpoint.",
                &l,
            ),
            checkpoint_alignment: f.gauge(
                "eddy_job_last_checkpoint_alignment_ms",
                "The longest barrier alignment of a task in the last checkpoint.",
                &l,
            ),
            checkpoint_size: f.gauge(
                "eddy_job_last_checkpoint_size_bytes",
                "Bytes written by the last checkpoint.",
                &l,
            ),
            families: Mutex::new(families),
            stages,
            tasks,
        })
    }

    /// The job's name.
    pub fn job(&self) -> &str {
        &self.job
    }

    /// Where the job is in its life.
    pub fn state(&self) -> JobState {
        self.state.lock().map_or(JobState::Running, |s| *s)
    }

    /// When the job started (ms since the epoch).
    pub fn started_at_ms(&self) -> i64 {
        self.started_at_ms
    }

    /// How many subtasks (task threads) the job runs, over all vertices.
    pub fn subtasks(&self) -> usize {
        self.tasks.iter().map(Vec::len).sum()
    }

    /// Every series in the Prometheus text exposition format (OpenMetrics).
    pub fn encode(&self) -> String {
        let mut out = String::new();
        if let Ok(families) = self.families.lock() {
            // Writing into a String cannot fail.
            let _ = encode(&mut out, &families.registry);
        }
        out
    }

    /// The workers of the current run, and the slots its subtasks take
    /// (subtask `s` of every vertex runs on `workers[slots.worker_of(s)]`;
    /// `None`: the job waits for slots, nothing is placed).
    pub(crate) fn set_roster(&self, workers: Vec<WorkerView>, slots: Option<SlotPlan>) {
        if let Ok(mut roster) = self.roster.lock() {
            *roster = Roster { workers, slots };
        }
    }

    /// The workers of the current run (the local runtime: this process,
    /// with a slot per subtask of the widest vertex).
    pub fn workers(&self) -> Vec<WorkerView> {
        let roster = self.roster.lock().map(|r| r.workers.clone());
        match roster {
            Ok(workers) if !workers.is_empty() => workers,
            _ => {
                let widest = self.tasks.iter().map(Vec::len).max().unwrap_or(1);
                vec![WorkerView {
                    id: LOCAL_WORKER.to_owned(),
                    pid: std::process::id(),
                    slots: widest,
                    slots_used: widest,
                }]
            }
        }
    }

    /// The job as the web view shows it: its graph, each vertex's counts
    /// and times summed over its subtasks, and the latest checkpoints.
    pub fn view(&self) -> JobView {
        let vertices = self
            .graph
            .vertices
            .iter()
            .enumerate()
            .map(|(v, shape)| {
                let (head, tail) = (shape.nodes[0], shape.nodes[shape.nodes.len() - 1]);
                let stage = |n: usize, f: fn(&StageSeries) -> u64| -> u64 {
                    self.stages[n]
                        .iter()
                        .filter_map(|s| s.lock().ok().map(|s| f(&s)))
                        .sum()
                };
                let subtasks = self.tasks[v].len().max(1) as f64;
                let share = |i: usize| -> f64 {
                    let sum: f64 = self.tasks[v]
                        .iter()
                        .filter_map(|t| t.lock().ok().map(|t| t.shares[i]))
                        .sum();
                    sum / subtasks
                };
                // What a source reads, what anything else receives.
                let is_source = self.graph.sources.contains(&head);
                let rate: f64 = self.stages[head]
                    .iter()
                    .filter_map(|s| {
                        s.lock()
                            .ok()
                            .map(|s| if is_source { s.rate_out } else { s.rate_in })
                    })
                    .sum();
                let watermark = self.stages[head]
                    .iter()
                    .filter_map(|s| s.lock().ok().and_then(|s| s.last.stats.watermark))
                    .map(|w| w.millis())
                    .min();
                let mut subtasks = shape.subtasks.clone();
                if let Ok(roster) = self.roster.lock() {
                    for (s, view) in subtasks.iter_mut().enumerate() {
                        match &roster.slots {
                            None => view.worker = UNPLACED.to_owned(),
                            Some(plan) => {
                                if let Some(w) = roster.workers.get(plan.worker_of(s)) {
                                    view.worker.clone_from(&w.id);
                                }
                            }
                        }
                    }
                }
                VertexView {
                    subtasks,
                    records_in: stage(head, |s| s.records_in.get()),
                    records_out: stage(tail, |s| s.records_out.get()),
                    records_per_second: rate.round() as u64,
                    busy: share(0),
                    backpressured: share(1),
                    idle: share(2),
                    watermark_ms: watermark,
                    ..shape.clone()
                }
            })
            .collect();
        JobView {
            job: self.job.clone(),
            state: self.state(),
            started_at_ms: self.started_at_ms,
            vertices,
            edges: self.graph.edges.clone(),
            restarts: self.restarts.get(),
            checkpoints_completed: self.checkpoints.get(),
            checkpoints_failed: self.checkpoints_failed.get(),
            checkpoints: self
                .history
                .lock()
                .map(|h| h.iter().cloned().collect())
                .unwrap_or_default(),
            failures: self
                .failures
                .lock()
                .map(|f| f.iter().cloned().collect())
                .unwrap_or_default(),
        }
    }

    /// The records the nodes `nodes` emitted, over all their subtasks (the
    /// records sources read, for the progress line).
    pub(crate) fn records_out_of(&self, nodes: &[usize]) -> u64 {
        nodes
            .iter()
            .filter_map(|&n| self.stages.get(n))
            .flatten()
            .filter_map(|s| s.lock().ok().map(|s| s.records_out.get()))
            .sum()
    }

    /// Publishes what the stages of one task of attempt `attempt` counted
    /// (a node may appear more than once: an operator and its network
    /// output count apart).
    pub(crate) fn publish_stages(
        &self,
        attempt: u32,
        subtask: usize,
        stats: &[StageStats],
        now: Timestamp,
    ) {
        let mut merged: Vec<StageStats> = Vec::with_capacity(stats.len());
        for s in stats {
            match merged.iter_mut().find(|m| m.node == s.node) {
                Some(m) => {
                    m.records_in += s.records_in;
                    m.records_out += s.records_out;
                    m.batches_out += s.batches_out;
                    m.side_dropped += s.side_dropped;
                    m.dead_letters += s.dead_letters;
                    m.backpressured += s.backpressured;
                    m.custom.extend_from_slice(&s.custom);
                    m.watermark = m.watermark.or(s.watermark);
                }
                None => merged.push(s.clone()),
            }
        }
        self.publish_stages_merged(attempt, subtask, &merged, now);
    }

    /// [`Self::publish_stages`] with one entry per node.
    fn publish_stages_merged(
        &self,
        attempt: u32,
        subtask: usize,
        stats: &[StageStats],
        now: Timestamp,
    ) {
        for s in stats {
            let Some(series) = self.stages.get(s.node).and_then(|n| n.get(subtask)) else {
                continue;
            };
            let Ok(mut series) = series.lock() else {
                continue;
            };
            let same = series.last.attempt == attempt;
            let before = &series.last.stats;
            advance(&series.records_in, s.records_in, before.records_in, same);
            advance(&series.records_out, s.records_out, before.records_out, same);
            advance(&series.batches_out, s.batches_out, before.batches_out, same);
            advance(
                &series.dead_letters,
                s.dead_letters,
                before.dead_letters,
                same,
            );
            advance(
                &series.side_dropped,
                s.side_dropped,
                before.side_dropped,
                same,
            );
            advance_seconds(
                &series.backpressured,
                s.backpressured,
                before.backpressured,
                same,
            );
            if let Some(wm) = s.watermark {
                series.watermark.set(wm.millis());
                series
                    .watermark_lag
                    .set(now.millis().saturating_sub(wm.millis()).max(0));
            }
            if !s.custom.is_empty() {
                self.publish_custom(&series, s, same);
            }
            let at = Instant::now();
            if let Some(before_at) = series.published_at.filter(|_| same) {
                let seconds = (at - before_at).as_secs_f64();
                if seconds > 0.0 {
                    let before = &series.last.stats;
                    let (into, out) = (
                        s.records_in.saturating_sub(before.records_in),
                        s.records_out.saturating_sub(before.records_out),
                    );
                    series.rate_in = into as f64 / seconds;
                    series.rate_out = out as f64 / seconds;
                }
            }
            series.published_at = Some(at);
            series.last = Published {
                attempt,
                stats: s.clone(),
            };
        }
    }

    /// The operator's own `metrics()`: levels as gauges, the rest as counters.
    fn publish_custom(&self, series: &StageSeries, s: &StageStats, same: bool) {
        let Ok(mut families) = self.families.lock() else {
            return;
        };
        for &(name, value) in &s.custom {
            let full = format!("eddy_operator_{name}");
            if LEVELS.contains(&name) {
                families
                    .gauge(&full, name, &series.labels)
                    .set(value.min(i64::MAX as u64) as i64);
            } else {
                let before = series
                    .last
                    .stats
                    .custom
                    .iter()
                    .find(|(n, _)| *n == name)
                    .map_or(0, |(_, v)| *v);
                advance(
                    &families.counter(&full, name, &series.labels),
                    value,
                    before,
                    same,
                );
            }
        }
    }

    /// Publishes how task `subtask` of vertex `vertex` spent its time.
    pub(crate) fn publish_task(
        &self,
        attempt: u32,
        vertex: usize,
        subtask: usize,
        times: TaskTimes,
    ) {
        let Some(Ok(mut series)) = self
            .tasks
            .get(vertex)
            .and_then(|v| v.get(subtask))
            .map(|t| t.lock())
        else {
            return;
        };
        let (last_attempt, before) = series.last;
        let same = last_attempt == attempt;
        let busy = |t: &TaskTimes| t.elapsed.saturating_sub(t.idle + t.backpressured);
        advance_seconds(&series.idle, times.idle, before.idle, same);
        advance_seconds(
            &series.backpressured,
            times.backpressured,
            before.backpressured,
            same,
        );
        advance_seconds(&series.busy, busy(&times), busy(&before), same);
        let span = times.elapsed.saturating_sub(before.elapsed).as_secs_f64();
        if same && span > 0.0 {
            let share =
                |now: Duration, then: Duration| now.saturating_sub(then).as_secs_f64() / span;
            series.shares = [
                share(busy(&times), busy(&before)),
                share(times.backpressured, before.backpressured),
                share(times.idle, before.idle),
            ];
        }
        series.last = (attempt, times);
    }

    /// What the tasks `tasks` (vertex, subtask) of attempt `attempt` last
    /// published here: what a worker ships to its coordinator.
    pub(crate) fn publications(
        &self,
        attempt: u32,
        tasks: &[(usize, usize)],
    ) -> Vec<TaskPublication> {
        let mut out = Vec::with_capacity(tasks.len());
        for &(vertex, subtask) in tasks {
            let Some(Ok(task)) = self
                .tasks
                .get(vertex)
                .and_then(|v| v.get(subtask))
                .map(|t| t.lock())
            else {
                continue;
            };
            if task.last.0 != attempt {
                continue;
            }
            let stages = self.graph.vertices[vertex]
                .nodes
                .iter()
                .filter_map(|&n| self.stages.get(n)?.get(subtask)?.lock().ok())
                .filter(|s| s.last.attempt == attempt && s.published_at.is_some())
                .map(|s| s.last.stats.clone())
                .collect();
            out.push(TaskPublication {
                vertex,
                subtask,
                stages,
                times: task.last.1,
            });
        }
        out
    }

    /// Publishes here what a worker's tasks of attempt `attempt` published
    /// there ([`Self::publications`]).
    pub(crate) fn republish(&self, attempt: u32, publications: &[TaskPublication], now: Timestamp) {
        for p in publications {
            self.publish_stages_merged(attempt, p.subtask, &p.stages, now);
            self.publish_task(attempt, p.vertex, p.subtask, p.times);
        }
    }

    /// Task `subtask` of vertex `vertex` acknowledged a checkpoint `ack`
    /// after its trigger, its barriers aligned in `alignment`.
    pub(crate) fn checkpoint_acknowledged(
        &self,
        vertex: usize,
        subtask: usize,
        ack: Duration,
        alignment: Duration,
    ) {
        if let Some(Ok(series)) = self
            .tasks
            .get(vertex)
            .and_then(|v| v.get(subtask))
            .map(|t| t.lock())
        {
            series.checkpoint_ack.set(ack.as_millis() as i64);
            series
                .checkpoint_alignment
                .set(alignment.as_millis() as i64);
        }
    }

    /// Checkpoint or savepoint `id`, in `path`, completed after
    /// `times.duration`, writing `bytes`.
    pub(crate) fn checkpoint_completed(
        &self,
        id: u64,
        kind: SnapshotKind,
        path: &std::path::Path,
        times: CheckpointTimes,
        bytes: u64,
    ) {
        let CheckpointTimes {
            duration,
            alignment,
        } = times;
        if let Ok(mut history) = self.history.lock() {
            if history.len() == HISTORY {
                history.pop_front();
            }
            history.push_back(CheckpointView {
                id,
                kind: match kind {
                    SnapshotKind::Checkpoint => "checkpoint",
                    SnapshotKind::Savepoint => "savepoint",
                },
                path: path.to_path_buf(),
                completed_at_ms: wall_clock_ms(),
                duration_ms: duration.as_millis() as u64,
                alignment_ms: alignment.as_millis() as u64,
                bytes,
            });
        }
        self.checkpoints.inc();
        self.checkpoint_duration.set(duration.as_millis() as i64);
        self.checkpoint_alignment.set(alignment.as_millis() as i64);
        self.checkpoint_size.set(bytes.min(i64::MAX as u64) as i64);
    }

    /// The job entered `state`.
    pub(crate) fn set_state(&self, state: JobState) {
        if let Ok(mut s) = self.state.lock() {
            *s = state;
        }
    }

    /// A checkpoint was abandoned or declined.
    pub(crate) fn checkpoint_failed(&self) {
        self.checkpoints_failed.inc();
    }

    /// The job restarted after `failure` (its text names where it
    /// happened).
    pub(crate) fn restarted(&self, failure: &dyn std::fmt::Display) {
        self.restarts.inc();
        self.set_state(JobState::Restarting);
        if let Ok(mut failures) = self.failures.lock() {
            if failures.len() == HISTORY {
                failures.pop_front();
            }
            failures.push_back(FailureView {
                at_ms: wall_clock_ms(),
                error: failure.to_string(),
            });
        }
    }

    /// The series an operator subtask adds itself, under its labels.
    pub(crate) fn group(self: &Arc<Self>, node: usize, subtask: usize) -> MetricGroup {
        let labels = self
            .stages
            .get(node)
            .and_then(|n| n.get(subtask))
            .and_then(|s| s.lock().ok().map(|s| s.labels.clone()))
            .unwrap_or_default();
        MetricGroup {
            metrics: Some(Arc::clone(self)),
            labels,
        }
    }
}

/// Where an operator, source reader or sink writer registers series of its
/// own, labelled with its job, operator and subtask, named
/// `eddy_operator_<name>`. The same name and subtask give the same series
/// after a restart, so counters keep counting. Outside a job (harnesses)
/// the series count but are not exported.
#[derive(Clone, Debug, Default)]
pub struct MetricGroup {
    metrics: Option<Arc<JobMetrics>>,
    labels: Labels,
}

impl MetricGroup {
    fn with<M: Default>(&self, f: impl FnOnce(&mut Families, &str) -> M, name: &str) -> M {
        let full = format!("eddy_operator_{name}");
        match self.metrics.as_ref().map(|m| m.families.lock()) {
            Some(Ok(mut families)) => f(&mut families, &full),
            _ => M::default(),
        }
    }

    /// The same group with more labels, e.g. `[("topic", "t"), ("partition",
    /// "3")]` for a series per partition.
    pub fn with_labels(&self, extra: &[(&str, &str)]) -> MetricGroup {
        let mut labels = self.labels.clone();
        labels.extend(
            extra
                .iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned())),
        );
        MetricGroup {
            metrics: self.metrics.clone(),
            labels,
        }
    }

    /// A counter (exported as `eddy_operator_<name>_total`).
    pub fn counter(&self, name: &str, help: &str) -> Counter {
        self.with(|f, full| f.counter(full, help, &self.labels), name)
    }

    /// A gauge.
    pub fn gauge(&self, name: &str, help: &str) -> Gauge {
        self.with(|f, full| f.gauge(full, help, &self.labels), name)
    }

    /// A histogram of milliseconds (buckets 0.25 ms to about 72 s, ×1.5).
    pub fn histogram_ms(&self, name: &str, help: &str) -> Histogram {
        let full = format!("eddy_operator_{name}");
        match self.metrics.as_ref().map(|m| m.families.lock()) {
            Some(Ok(mut families)) => families.histogram(&full, help, &self.labels),
            _ => millisecond_buckets(),
        }
    }
}
