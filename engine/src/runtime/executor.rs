//! Runs a job graph in this process: creates the channels of every network
//! edge, spawns one thread per subtask, builds each subtask's chain on its own
//! thread, and coordinates checkpoints while it waits. The first task to fail
//! cancels the others; the job then restarts from its latest checkpoint if
//! the restart strategy allows, or fails with that task's error.

use std::collections::HashMap;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, Sender};

use crate::checkpoint::coordinator::{
    job_root, CheckpointLink, CompletedCheckpoint, Coordinator, Progress, TaskCommand, TaskInfo,
};
use crate::checkpoint::requests::{Request, RequestInbox};
use crate::checkpoint::restart::RestartPolicy;
use crate::checkpoint::restore::RestoredJob;
use crate::checkpoint::storage::{OperatorEntry, SnapshotKind};
use crate::checkpoint::writer::SnapshotWriter;
use crate::checkpoint::CheckpointConfig;
use crate::clock::Clock;
use crate::config::StateBackendKind;
use crate::context::RuntimeContext;
use crate::error::{panic_message, EngineError, Location};
use crate::graph::erased::{SendAny, StageAny};
use crate::graph::job::JobGraph;
use crate::graph::stream::{NodeBody, NodeId, StreamGraph};
use crate::metrics::{JobMetrics, JobState};
use crate::operator::SideOutputs;
use crate::runtime::enumerator::SourceEnumerator;
use crate::runtime::loopback::{LoopbackExchange, RunningExchange};
use crate::runtime::stats::{JobStats, OperatorStats, StageStats};
use crate::runtime::task::{TaskEnv, TaskSettings};

/// Name of the side-output slot carrying a source's dead letters.
pub(crate) const DEAD_LETTER_SLOT: &str = "dead-letters";

/// What one node needs at run time, shareable across threads.
struct PlanNode {
    body: NodeBody,
    slots: Vec<(&'static str, Arc<dyn crate::graph::erased::SlotFactory>)>,
    strategy: Option<Arc<dyn std::any::Any + Send + Sync>>,
}

struct Plan {
    job_name: Arc<str>,
    nodes: Vec<PlanNode>,
    job: JobGraph,
    clock: Arc<dyn Clock>,
    restored: Option<Arc<RestoredJob>>,
    checkpointing: bool,
    state_backend: StateBackendKind,
    state_dir: PathBuf,
    staging_root: PathBuf,
    metrics: Arc<JobMetrics>,
    /// How many times the job restarted before this run of it.
    attempt: u32,
}

/// The channel ends one subtask owns.
#[derive(Default)]
struct SubtaskIo {
    /// Per network edge leaving the vertex: senders to every downstream subtask.
    senders: HashMap<usize, Vec<SendAny>>,
    /// Receivers of the head's input edges, in edge order.
    receivers: Vec<SendAny>,
}

impl Plan {
    fn context(&self, node: NodeId, subtask: usize) -> RuntimeContext {
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
}

/// Runs the job to its end, restarting it from its latest checkpoint after
/// failures as the restart strategy allows.
pub(crate) fn execute(
    job_name: &str,
    graph: &StreamGraph,
    job: JobGraph,
    run: RunSettings,
) -> Result<JobStats, EngineError> {
    let started = Instant::now();
    let config = &run.checkpoints;
    let mut restored = match &config.restore {
        Some(path) => {
            let r = load_restore_point(path, &job, &run)?;
            check_restored_uids(&r, &job, config.allow_non_restored_state)?;
            tracing::info!(from = %r.path.display(), checkpoint = r.id.0, "restoring");
            Some(Arc::new(r))
        }
        None => None,
    };
    let staging_root = match config.interval {
        Some(_) => job_root(&config.dir, job_name).join("staging"),
        None => run
            .state_dir
            .join(format!("staging-{}", std::process::id())),
    };
    let mut policy = RestartPolicy::new(config.restart_strategy());
    let mut checkpoints = Vec::new();
    let mut attempt = 0;
    loop {
        let plan = Arc::new(Plan {
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
            restored: restored.clone(),
            checkpointing: config.interval.is_some(),
            state_backend: run.state_backend,
            state_dir: run.state_dir.clone(),
            staging_root: staging_root.clone(),
            metrics: Arc::clone(&run.metrics),
            attempt,
        });
        run.metrics.set_state(JobState::Running);
        let outcome = run_once(&plan, &run, &mut checkpoints);
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
                    restored = Some(Arc::new(load_restore_point(&c.path, &job, &run)?));
                }
            }
            Err(e) => return Err(e),
        }
    }
}

/// Reads a checkpoint or savepoint and readies it for `job`.
fn load_restore_point(
    path: &std::path::Path,
    job: &JobGraph,
    run: &RunSettings,
) -> Result<RestoredJob, EngineError> {
    let mut restored = RestoredJob::load(path)?;
    restored.prepare(job, run.state_backend == StateBackendKind::Rocksdb)?;
    Ok(restored)
}

fn restartable(e: &EngineError) -> bool {
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
) -> Result<(Vec<StageStats>, Option<PathBuf>), EngineError> {
    let (ack_tx, report_rx) = crossbeam_channel::unbounded();
    let cancel = Arc::new(AtomicBool::new(false));
    let (mut io, exchange) = wire(plan, run.channel_capacity, run.loopback_workers)?;
    let exchange = exchange.map(LoopbackExchange::start).transpose()?;
    let places = io
        .iter()
        .enumerate()
        .flat_map(|(v, subtasks)| (0..subtasks.len()).map(move |s| (v, s)))
        .collect();
    // One writer for the process: in a cluster, one per worker.
    let writer = SnapshotWriter::start(places, ack_tx)?;
    let mut tasks = Vec::new();
    let mut links = Vec::new();
    let mut commands: Vec<Vec<Sender<TaskCommand>>> = Vec::new();
    for (v, subtasks) in io.iter().enumerate() {
        let head = plan.job.vertices[v].nodes[0];
        commands.push(Vec::new());
        for s in 0..subtasks.len() {
            let (tx, rx) = crossbeam_channel::unbounded();
            commands[v].push(tx.clone());
            links.push(CheckpointLink {
                task: tasks.len(),
                commands: rx,
                reports: writer.input.clone(),
                enabled: plan.checkpointing,
                aborted: Default::default(),
            });
            tasks.push(TaskInfo {
                vertex: v,
                subtask: s,
                commands: tx,
                is_source: matches!(plan.nodes[head].body, NodeBody::Source(_)),
                writer: 0,
            });
        }
    }
    let mut enumerators = start_enumerators(plan, &commands)?;
    drop(commands);
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
        vec![writer.input],
        operators,
        Arc::clone(&plan.metrics),
    );
    let mut inbox = RequestInbox::new(&job_root(&run.checkpoints.dir, &plan.job_name));

    let (done_tx, done_rx) = crossbeam_channel::unbounded();
    let mut handles = Vec::new();
    let mut links = links.into_iter();
    let settings = Arc::new(run.settings.clone());
    for (v, subtasks) in io.iter_mut().enumerate() {
        for (s, task_io) in subtasks.iter_mut().enumerate() {
            let task_io = std::mem::take(task_io);
            let env = TaskEnv {
                settings: Arc::clone(&settings),
                clock: Arc::clone(&run.clock),
                cancel: Arc::clone(&cancel),
                link: links.next().expect("one link per task"),
                metrics: Arc::clone(&plan.metrics),
                attempt: plan.attempt,
                vertex: v,
                subtask: s,
            };
            let (plan, done) = (Arc::clone(plan), done_tx.clone());
            let name = format!("eddy-{v}.{s}");
            let handle = std::thread::Builder::new()
                .name(name)
                .spawn(move || {
                    let head = plan.job.vertices[v].nodes.first().copied().unwrap_or(0);
                    let _span = tracing::info_span!(
                        "task",
                        job = %plan.job_name,
                        task = %plan.job.nodes[head].name,
                        subtask = s
                    )
                    .entered();
                    let result =
                        catch_unwind(AssertUnwindSafe(|| run_subtask(&plan, v, s, task_io, &env)))
                            .unwrap_or_else(|p| {
                                Err(EngineError::Internal(format!(
                                    "task {v}.{s} panicked outside user code: {}",
                                    panic_message(p.as_ref())
                                )))
                            });
                    match &result {
                        Ok(stats) => {
                            env.metrics
                                .publish_stages(env.attempt, s, stats, env.clock.now())
                        }
                        Err(e) => {
                            if !matches!(e, EngineError::Cancelled) {
                                tracing::warn!(error = %e, "task failed");
                            }
                            env.cancel.store(true, Ordering::SeqCst);
                        }
                    }
                    let _ = done.send(result);
                })
                .map_err(|e| {
                    cancel.store(true, Ordering::SeqCst);
                    EngineError::Internal(format!("cannot spawn a task thread: {e}"))
                })?;
            handles.push(handle);
        }
    }
    drop(done_tx);

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
                Ok(Ok(s)) => stats.extend(s),
                Ok(Err(e)) => {
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
    for h in handles {
        let _ = h.join();
    }
    // Tasks that saw their network channel close ended as cancelled; the
    // connection's failure is the cause.
    if let Some(reason) = exchange.and_then(RunningExchange::finish) {
        if matches!(failure, None | Some(EngineError::Cancelled)) && !cancelled {
            failure = Some(EngineError::Exchange {
                channel: "loopback".into(),
                reason,
            });
        }
    }
    inbox.poll(Instant::now());
    completed.append(&mut coordinator.completed);
    // The writer ends once the coordinator and the tasks have let go of it.
    drop(coordinator);
    let _ = writer.thread.join();
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

/// The channel ends of every subtask, and the network channels among them
/// (with `loopback_workers`).
type Wiring = (Vec<Vec<SubtaskIo>>, Option<LoopbackExchange>);

/// Creates every channel and deals the ends to the subtasks: a local
/// channel, or with `loopback_workers` a network channel between subtasks
/// on different workers.
fn wire(
    plan: &Plan,
    capacity: usize,
    loopback_workers: Option<usize>,
) -> Result<Wiring, EngineError> {
    let job = &plan.job;
    let mut exchange = loopback_workers.map(|n| LoopbackExchange::new(n, capacity));
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

/// Builds the chain of vertex `v` for subtask `s` (tail first) and runs it.
fn run_subtask(
    plan: &Plan,
    v: usize,
    s: usize,
    mut io: SubtaskIo,
    env: &TaskEnv,
) -> Result<Vec<StageStats>, EngineError> {
    let job = &plan.job;
    let chain = &job.vertices[v].nodes;
    let mut built: HashMap<NodeId, StageAny> = HashMap::new();
    for (pos, &n) in chain.iter().enumerate().rev() {
        let ctx = plan.context(n, s);
        let node = &plan.nodes[n];
        let mut targets: Vec<Vec<StageAny>> = node.slots.iter().map(|_| Vec::new()).collect();
        for (ei, e) in job.edges.iter().enumerate().filter(|(_, e)| e.from == n) {
            let target = if e.chained {
                built.remove(&e.to).ok_or_else(|| {
                    EngineError::Internal(format!("chained stage {} missing", e.to))
                })?
            } else {
                let senders = io.senders.remove(&ei).ok_or_else(|| {
                    EngineError::Internal(format!("senders of edge {ei} missing"))
                })?;
                e.factory.output(
                    e.partitioning,
                    senders,
                    job.nodes[e.to].max_parallelism,
                    ctx.location(),
                    n,
                    env,
                )?
            };
            targets[e.slot].push(target);
        }
        let mut main = None;
        let mut dead_letters = None;
        let mut sides = SideOutputs::default();
        for (k, t) in targets.into_iter().enumerate() {
            if t.is_empty() {
                continue;
            }
            let (name, factory) = &node.slots[k];
            let combined = factory.combine(t)?;
            if k == 0 {
                main = Some(combined);
            } else if *name == DEAD_LETTER_SLOT && matches!(node.body, NodeBody::Source(_)) {
                dead_letters = Some(combined);
            } else {
                sides.add(name, factory.side(combined)?);
            }
        }
        let is_head = pos == 0;
        match (&node.body, is_head) {
            (NodeBody::Source(source), true) => {
                let strategy = node.strategy.as_deref();
                return source.run(strategy, &ctx, n, main, dead_letters, env);
            }
            (NodeBody::Operator(stage) | NodeBody::Sink(stage), true) => {
                let head = stage.build(&ctx, n, main, sides)?;
                return stage.run_head(head, std::mem::take(&mut io.receivers), env);
            }
            (NodeBody::Operator(stage) | NodeBody::Sink(stage), false) => {
                built.insert(n, stage.build(&ctx, n, main, sides)?);
            }
            (NodeBody::Source(_), false) => {
                return Err(EngineError::Internal("a source inside a chain".into()))
            }
        }
    }
    Err(EngineError::Internal(format!("vertex {v} has no head")))
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
