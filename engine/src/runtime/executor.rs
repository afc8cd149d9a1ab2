//! Runs a job graph in this process: creates the channels of every network
//! edge, spawns one thread per subtask, builds each subtask's chain on its own
//! thread, and coordinates checkpoints while it waits. The first task to fail
//! cancels the others; the job then restarts from its latest checkpoint if
//! the restart strategy allows, or fails with that task's error.

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, Sender};

use crate::checkpoint::coordinator::{
    job_root, CompletedCheckpoint, Coordinator, Progress, TaskCommand, TaskInfo,
};
use crate::checkpoint::requests::{Request, RequestInbox};
use crate::checkpoint::restart::RestartPolicy;
use crate::checkpoint::restore::RestoredJob;
use crate::checkpoint::storage::{OperatorEntry, SnapshotKind};
use crate::checkpoint::writer::Acknowledgement;
use crate::checkpoint::CheckpointConfig;
use crate::clock::Clock;
use crate::config::ClusterSettings;
use crate::config::StateBackendKind;
use crate::context::RuntimeContext;
use crate::error::{EngineError, Location};
use crate::graph::job::JobGraph;
use crate::graph::stream::{NodeBody, NodeId, StreamGraph};
use crate::metrics::{JobMetrics, JobState, WorkerView};
use crate::runtime::cluster::coordinator::{Cluster, RemoteRun, RunLines};
use crate::runtime::enumerator::SourceEnumerator;
use crate::runtime::loopback::{LoopbackExchange, RunningExchange};
use crate::runtime::placement::{slots_needed, SlotPlan};
use crate::runtime::stats::{JobStats, OperatorStats, StageStats};
use crate::runtime::task::TaskSettings;
use crate::runtime::worker::{AssignedTask, SubtaskIo, TaskEnded, WorkerRun};

/// Name of the side-output slot carrying a source's dead letters.
pub(crate) const DEAD_LETTER_SLOT: &str = "dead-letters";

/// What one node needs at run time, shareable across threads.
pub(crate) struct PlanNode {
    pub body: NodeBody,
    pub slots: Vec<(&'static str, Arc<dyn crate::graph::erased::SlotFactory>)>,
    pub strategy: Option<Arc<dyn std::any::Any + Send + Sync>>,
}

/// One run of a job: its graph, what each node runs, and the restore point.
pub(crate) struct Plan {
    pub job_name: Arc<str>,
    pub nodes: Vec<PlanNode>,
    pub job: JobGraph,
    clock: Arc<dyn Clock>,
    restored: Option<Arc<RestoredJob>>,
    pub checkpointing: bool,
    state_backend: StateBackendKind,
    state_dir: PathBuf,
    staging_root: PathBuf,
    pub metrics: Arc<JobMetrics>,
    /// How many times the job restarted before this run of it.
    pub attempt: u32,
}

impl Plan {
    /// Run `attempt` of `job` (built from `graph`), from `restored`.
    pub(crate) fn new(
        job_name: &str,
        graph: &StreamGraph,
        job: &JobGraph,
        run: &RunSettings,
        restored: Option<Arc<RestoredJob>>,
        attempt: u32,
    ) -> Arc<Self> {
        let config = &run.checkpoints;
        let staging_root = match config.interval {
            Some(_) => job_root(&config.dir, job_name).join("staging"),
            None => run
                .state_dir
                .join(format!("staging-{}", std::process::id())),
        };
        Arc::new(Plan {
            job_name: Arc::from(job_name),
            nodes: graph
                .nodes
                .iter()
                .map(|n| PlanNode {
                    body: match &n.body {
                        NodeBody::Source(s) => NodeBody::Source(Arc::clone(s)),
                        NodeBody::Operator(o) => NodeBody::Operator(Arc::clone(o)),
                        NodeBody::Sink(s) => NodeBody::Sink(Arc::clone(s)),
                    },
                    slots: n
                        .slots
                        .iter()
                        .map(|s| (s.name, Arc::clone(&s.factory)))
                        .collect(),
                    strategy: n.strategy.clone(),
                })
                .collect(),
            job: job.clone(),
            clock: Arc::clone(&run.clock),
            restored,
            checkpointing: config.interval.is_some(),
            state_backend: run.state_backend,
            state_dir: run.state_dir.clone(),
            staging_root,
            metrics: Arc::clone(&run.metrics),
            attempt,
        })
    }

    /// The runtime context of subtask `subtask` of node `node`.
    pub(crate) fn context(&self, node: NodeId, subtask: usize) -> RuntimeContext {
        let n = &self.job.nodes[node];
        let restored = self.restored.as_ref().and_then(|r| {
            r.for_subtask(&n.uid, subtask, n.parallelism, n.max_parallelism)
                .map(Arc::new)
        });
        RuntimeContext {
            job: Arc::clone(&self.job_name),
            location: Location {
                operator: n.name.clone(),
                uid: n.uid.clone(),
                subtask,
                parallelism: n.parallelism,
            },
            max_parallelism: n.max_parallelism,
            clock: Arc::clone(&self.clock),
            restored,
            checkpointing: self.checkpointing,
            state_backend: self.state_backend,
            state_dir: self.state_dir.clone(),
            staging_root: self.staging_root.clone(),
            metrics: self.metrics.group(node, subtask),
        }
    }

    fn is_restoring(&self, node: NodeId) -> bool {
        let uid = &self.job.nodes[node].uid;
        self.restored
            .as_ref()
            .is_some_and(|r| r.uids().any(|u| u == uid))
    }
}

/// How to run a job, besides its graph.
pub(crate) struct RunSettings {
    pub settings: TaskSettings,
    pub channel_capacity: usize,
    /// Run as if on this many workers, channels between them over
    /// loopback TCP ([`crate::runtime::loopback`]).
    pub loopback_workers: Option<usize>,
    pub clock: Arc<dyn Clock>,
    pub checkpoints: CheckpointConfig,
    /// Savepoint and cancel requests from this process (REST API,
    /// [`crate::dsl::JobControl`]).
    pub requests: Receiver<Request>,
    pub state_backend: StateBackendKind,
    pub state_dir: PathBuf,
    pub metrics: Arc<JobMetrics>,
    /// Coordinate a cluster of workers instead of running the tasks here.
    pub cluster: Option<ClusterSettings>,
}

/// Runs the job to its end, restarting it from its latest checkpoint after
/// failures as the restart strategy allows.
pub(crate) fn execute(
    job_name: &str,
    graph: &StreamGraph,
    job: JobGraph,
    run: RunSettings,
) -> Result<JobStats, EngineError> {
    let config = &run.checkpoints;
    let restored = match &config.restore {
        Some(path) => {
            let r = load_restore_point(path, &job, &run)?;
            check_restored_uids(&r, &job, config.allow_non_restored_state)?;
            tracing::info!(from = %r.path.display(), checkpoint = r.id.0, "restoring");
            Some(Arc::new(r))
        }
        None => None,
    };
    let mut cluster = run
        .cluster
        .as_ref()
        .map(|settings| Cluster::start(settings, &job))
        .transpose()?;
    let result = run_until_done(job_name, graph, &job, &run, restored, &mut cluster);
    if let Some(c) = cluster {
        c.shut_down();
    }
    result
}

/// Runs the job, and runs it again after each failure the restart strategy
/// allows, from the newest restore point.
fn run_until_done(
    job_name: &str,
    graph: &StreamGraph,
    job: &JobGraph,
    run: &RunSettings,
    mut restored: Option<Arc<RestoredJob>>,
    cluster: &mut Option<Cluster>,
) -> Result<JobStats, EngineError> {
    let started = Instant::now();
    let config = &run.checkpoints;
    let mut policy = RestartPolicy::new(config.restart_strategy());
    let mut checkpoints = Vec::new();
    let mut attempt = 0;
    loop {
        let plan = Plan::new(job_name, graph, job, run, restored.clone(), attempt);
        run.metrics.set_state(JobState::Running);
        let outcome = run_once(&plan, run, &mut checkpoints, cluster);
        match outcome {
            Ok((stats, savepoint)) => {
                let mut summary = summarise(job_name, &plan.job, &stats, started.elapsed());
                summary.restarts = policy.restarts();
                summary.checkpoints = checkpoints;
                summary.stopped_with_savepoint = savepoint;
                return Ok(summary);
            }
            Err(e) if restartable(&e) => {
                let Some(delay) = policy.on_failure(Instant::now()) else {
                    return Err(e);
                };
                // The newest restore point: a checkpoint, or a completed
                // stop-with-savepoint (its output is committed).
                let from = checkpoints
                    .iter()
                    .rev()
                    .find(|c: &&CompletedCheckpoint| c.kind == SnapshotKind::Checkpoint || c.stop);
                tracing::warn!(
                    error = %e,
                    ?delay,
                    from = ?from.map(|c| c.id.0),
                    "job failed; restarting"
                );
                run.metrics.restarted(&e);
                std::thread::sleep(delay);
                attempt += 1;
                if let Some(c) = from {
                    restored = Some(Arc::new(load_restore_point(&c.path, job, run)?));
                }
            }
            Err(e) => return Err(e),
        }
    }
}

/// Reads a checkpoint or savepoint and readies it for `job`.
pub(crate) fn load_restore_point(
    path: &std::path::Path,
    job: &JobGraph,
    run: &RunSettings,
) -> Result<RestoredJob, EngineError> {
    let mut restored = RestoredJob::load(path)?;
    restored.prepare(job, run.state_backend == StateBackendKind::Rocksdb)?;
    Ok(restored)
}

pub(crate) fn restartable(e: &EngineError) -> bool {
    matches!(
        e,
        EngineError::UserFunction { .. }
            | EngineError::UserPanic { .. }
            | EngineError::Connector { .. }
            | EngineError::State { .. }
            | EngineError::Checkpoint { .. }
            | EngineError::Exchange { .. }
    )
}

/// Refuses a restore whose snapshot holds state for uids the job lacks.
fn check_restored_uids(
    restored: &RestoredJob,
    job: &JobGraph,
    allow_non_restored: bool,
) -> Result<(), EngineError> {
    let mut missing: Vec<&str> = restored
        .uids()
        .filter(|uid| !job.nodes.iter().any(|n| n.uid == *uid))
        .collect();
    if missing.is_empty() || allow_non_restored {
        return Ok(());
    }
    missing.sort_unstable();
    Err(EngineError::checkpoint(
        format!("restoring from {}", restored.path.display()),
        format!(
            "it holds state of operators with uid {} that this job does not have; give those operators their old uid, or pass --allow-non-restored-state to drop that state",
            missing.join(", ")
        ),
    ))
}

/// Runs the job once: until it ends, stops with a savepoint, or fails.
fn run_once(
    plan: &Arc<Plan>,
    run: &RunSettings,
    completed: &mut Vec<CompletedCheckpoint>,
    cluster: &mut Option<Cluster>,
) -> Result<(Vec<StageStats>, Option<PathBuf>), EngineError> {
    let (ack_tx, report_rx) = crossbeam_channel::unbounded();
    let (done_tx, done_rx) = crossbeam_channel::unbounded();
    let cancel = Arc::new(AtomicBool::new(false));
    let needed = slots_needed(&plan.job);
    let slots = match cluster {
        Some(c) => {
            let slots = c.ready(needed, &run.requests, &plan.metrics)?;
            plan.metrics.set_state(JobState::Running);
            slots
        }
        None => {
            let loopback = run.loopback_workers.unwrap_or(0);
            let slots = SlotPlan::even(loopback, needed);
            let workers = (0..loopback)
                .map(|i| WorkerView {
                    id: format!("loopback worker {i}"),
                    pid: std::process::id(),
                    slots: needed,
                    slots_used: slots.used(i, needed),
                })
                .collect();
            plan.metrics.set_roster(workers, Some(slots));
            // Loopback workers or not, this process is one worker with
            // one snapshot writer.
            SlotPlan::even(1, needed)
        }
    };
    let placement = slots.tasks(&plan.job);
    let mut tasks = Vec::new();
    let mut receivers = Vec::new();
    let mut commands: Vec<Vec<Sender<TaskCommand>>> = Vec::new();
    for (v, vertex) in plan.job.vertices.iter().enumerate() {
        let head = vertex.nodes[0];
        commands.push(Vec::new());
        for s in 0..vertex.parallelism {
            let (tx, rx) = crossbeam_channel::unbounded();
            commands[v].push(tx.clone());
            receivers.push(rx);
            tasks.push(TaskInfo {
                vertex: v,
                subtask: s,
                commands: tx,
                is_source: matches!(plan.nodes[head].body, NodeBody::Source(_)),
                writer: placement[tasks.len()],
            });
        }
    }
    // The first splits wait in the command channels before the tasks start.
    let mut enumerators = start_enumerators(plan, &commands)?;
    drop(commands);
    let (deployed, writers) = match cluster.take() {
        Some(c) => {
            let restore = plan.restored.as_ref().map(|r| r.path.clone());
            let lines = RunLines {
                commands: receivers,
                cancel: Arc::clone(&cancel),
                acks: ack_tx,
                ended: done_tx,
                metrics: Arc::clone(&plan.metrics),
                clock: Arc::clone(&run.clock),
            };
            let (remote, writers) = c.deploy(plan.attempt, restore, &slots, placement, lines)?;
            (Deployed::Cluster(remote), writers)
        }
        None => {
            let local = deploy_locally(plan, run, receivers, &cancel, ack_tx, &done_tx)?;
            drop(done_tx);
            let writers = vec![local.0.writer()];
            (Deployed::Local(local.0, local.1), writers)
        }
    };
    let operators = plan
        .job
        .nodes
        .iter()
        .map(|n| OperatorEntry {
            uid: n.uid.clone(),
            parallelism: n.parallelism,
            max_parallelism: n.max_parallelism,
        })
        .collect();
    let mut coordinator = Coordinator::new(
        &plan.job_name,
        &run.checkpoints,
        Arc::clone(&run.clock),
        tasks,
        writers,
        operators,
        Arc::clone(&plan.metrics),
    );
    let mut inbox = RequestInbox::new(&job_root(&run.checkpoints.dir, &plan.job_name));

    let mut failure: Option<EngineError> = None;
    let mut stats: Vec<StageStats> = Vec::new();
    let mut stopped = None;
    let mut cancelled = false;
    let mut asked = Vec::new();
    let fail = |e: EngineError, failure: &mut Option<EngineError>| {
        if matches!(failure, None | Some(EngineError::Cancelled)) {
            if !matches!(e, EngineError::Cancelled) {
                tracing::error!(error = %e, "job failed");
            }
            *failure = Some(e);
        }
    };
    loop {
        let deadline = enumerators
            .iter()
            .filter_map(SourceEnumerator::next_deadline)
            .fold(
                coordinator.next_deadline().min(inbox.next_deadline()),
                Instant::min,
            );
        let wait = deadline.saturating_duration_since(Instant::now());
        crossbeam_channel::select! {
            recv(done_rx) -> result => match result {
                Ok((_, Ok(s))) => stats.extend(s),
                Ok((_, Err(e))) => {
                    coordinator.abort_all("a task failed");
                    fail(e, &mut failure);
                }
                Err(_) => break,
            },
            recv(report_rx) -> report => {
                if let Ok(report) = report {
                    match coordinator.on_report(report) {
                        Ok(Progress::Running) => {}
                        Ok(Progress::Stopping(path)) => stopped = Some(path),
                        Err(e) => {
                            cancel.store(true, Ordering::SeqCst);
                            fail(e, &mut failure);
                        }
                    }
                }
            },
            recv(run.requests) -> request => {
                asked.extend(request.ok());
            },
            default(wait) => {},
        }
        let now = Instant::now();
        enumerators.iter_mut().for_each(|e| e.tick(now));
        asked.extend(inbox.poll(now));
        for request in asked.drain(..) {
            match request {
                Request::Savepoint(request) => coordinator.savepoint(request),
                Request::Cancel => {
                    tracing::info!(job = %plan.job_name, "cancelled on request");
                    plan.metrics.set_state(JobState::Cancelling);
                    cancelled = true;
                    coordinator.abort_all("the job was cancelled");
                    cancel.store(true, Ordering::SeqCst);
                }
            }
        }
        if let Err(e) = coordinator.tick(now) {
            cancel.store(true, Ordering::SeqCst);
            fail(e, &mut failure);
        }
    }
    completed.append(&mut coordinator.completed);
    drop(coordinator);
    // Tasks that saw their network channel close ended as cancelled; the
    // connection's failure is the cause.
    let network_failure = match deployed {
        Deployed::Local(worker, exchange) => {
            worker.join();
            exchange.and_then(RunningExchange::finish)
        }
        Deployed::Cluster(remote) => {
            let (c, failure) = remote.finish()?;
            *cluster = Some(c);
            failure
        }
    };
    if let Some(reason) = network_failure {
        if matches!(failure, None | Some(EngineError::Cancelled)) && !cancelled {
            failure = Some(EngineError::Exchange {
                channel: "loopback".into(),
                reason,
            });
        }
    }
    inbox.poll(Instant::now());
    if cancelled {
        return Err(EngineError::Cancelled);
    }
    match failure {
        // Every task reported cancellation, yet none failed and nobody
        // cancelled: a task ended without telling its consumers.
        Some(EngineError::Cancelled) => Err(EngineError::Internal(
            "tasks stopped because an upstream task ended without end-of-input".into(),
        )),
        Some(e) => Err(e),
        None => Ok((stats, stopped)),
    }
}

/// Where a run's tasks run.
enum Deployed {
    /// In this process, with the loopback exchange if there is one.
    Local(WorkerRun, Option<RunningExchange>),
    /// On the workers of a cluster.
    Cluster(RemoteRun),
}

/// Wires the run's channels and starts every task in this process; task
/// `t` reads its commands from `commands[t]`.
fn deploy_locally(
    plan: &Arc<Plan>,
    run: &RunSettings,
    commands: Vec<Receiver<TaskCommand>>,
    cancel: &Arc<AtomicBool>,
    acks: Sender<Acknowledgement>,
    ended: &Sender<TaskEnded>,
) -> Result<(WorkerRun, Option<RunningExchange>), EngineError> {
    let loopback = run
        .loopback_workers
        .map(|n| SlotPlan::even(n, slots_needed(&plan.job)));
    let (io, exchange) = wire(plan, run.channel_capacity, loopback)?;
    let exchange = exchange.map(LoopbackExchange::start).transpose()?;
    let mut commands = commands.into_iter();
    let mut assigned = Vec::new();
    for (v, subtasks) in io.into_iter().enumerate() {
        for (s, io) in subtasks.into_iter().enumerate() {
            assigned.push(AssignedTask {
                task: assigned.len(),
                vertex: v,
                subtask: s,
                io,
                commands: commands.next().ok_or_else(|| {
                    EngineError::Internal("fewer command channels than tasks".into())
                })?,
            });
        }
    }
    let worker = WorkerRun::start(
        plan,
        &run.settings,
        &run.clock,
        assigned,
        cancel,
        acks,
        ended,
    )?;
    Ok((worker, exchange))
}

/// The channel ends of every subtask, and the network channels among them
/// (with `loopback_workers`).
type Wiring = (Vec<Vec<SubtaskIo>>, Option<LoopbackExchange>);

/// Creates every channel and deals the ends to the subtasks: a local
/// channel, or with `workers` a network channel between subtasks on
/// different workers of those slots.
pub(crate) fn wire(
    plan: &Plan,
    capacity: usize,
    workers: Option<SlotPlan>,
) -> Result<Wiring, EngineError> {
    let job = &plan.job;
    let mut exchange = workers.map(|slots| LoopbackExchange::new(slots, capacity));
    let mut io: Vec<Vec<SubtaskIo>> = job
        .vertices
        .iter()
        .map(|v| (0..v.parallelism).map(|_| SubtaskIo::default()).collect())
        .collect();
    for (ei, e) in job.edges.iter().enumerate().filter(|(_, e)| !e.chained) {
        let (up, down) = (&job.nodes[e.from], &job.nodes[e.to]);
        for i in 0..up.parallelism {
            let mut senders = Vec::with_capacity(down.parallelism);
            for (j, receiving) in io[down.vertex].iter_mut().enumerate() {
                let label = || format!("{} → {}, subtask {i} → {j}", up.uid, down.uid);
                let remote = exchange.as_mut().and_then(|x| x.channel(&label(), i, j));
                let (tx, rx) = match remote {
                    Some((output, input)) => e.factory.remote(output, input),
                    None => e.factory.channel(capacity),
                };
                senders.push(tx);
                receiving.receivers.push(rx);
            }
            io[up.vertex][i].senders.insert(ei, senders);
        }
    }
    Ok((io, exchange))
}

/// Starts the enumerator of every source: it deals the first splits to the
/// subtasks' command channels before they run. `commands[v][s]` is the
/// channel of subtask `s` of vertex `v`.
fn start_enumerators(
    plan: &Plan,
    commands: &[Vec<Sender<TaskCommand>>],
) -> Result<Vec<SourceEnumerator>, EngineError> {
    let mut started = Vec::new();
    for (id, node) in plan.nodes.iter().enumerate() {
        let NodeBody::Source(source) = &node.body else {
            continue;
        };
        let n = &plan.job.nodes[id];
        let restoring = plan.is_restoring(id);
        let restored: Vec<RuntimeContext> = if restoring {
            (0..n.parallelism).map(|s| plan.context(id, s)).collect()
        } else {
            Vec::new()
        };
        let ctx = plan.context(id, 0);
        let assigner = source.create_assigner(n.parallelism, &ctx, &restored)?;
        started.push(SourceEnumerator::start(
            ctx.location().clone(),
            assigner,
            commands[n.vertex].clone(),
            restoring,
            Instant::now(),
        )?);
    }
    Ok(started)
}

fn summarise(job_name: &str, job: &JobGraph, stats: &[StageStats], duration: Duration) -> JobStats {
    let mut operators: Vec<OperatorStats> = job
        .nodes
        .iter()
        .map(|n| OperatorStats {
            name: n.name.clone(),
            uid: n.uid.clone(),
            parallelism: n.parallelism,
            records_in: 0,
            records_out: 0,
            side_dropped: 0,
            dead_letters: 0,
            backpressured: Duration::ZERO,
            metrics: Default::default(),
        })
        .collect();
    for s in stats {
        let o = &mut operators[s.node];
        o.records_in += s.records_in;
        o.records_out += s.records_out;
        o.side_dropped += s.side_dropped;
        o.dead_letters += s.dead_letters;
        o.backpressured += s.backpressured;
        for (name, value) in &s.custom {
            *o.metrics.entry(name).or_insert(0) += value;
        }
    }
    JobStats {
        job: job_name.to_owned(),
        duration,
        operators,
        restarts: 0,
        checkpoints: Vec::new(),
        stopped_with_savepoint: None,
        answer: None,
    }
}
