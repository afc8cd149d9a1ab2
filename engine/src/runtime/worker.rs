//! What a worker runs of one run of a job: its share of the subtasks, one
//! thread each, which build their chains on their own thread, and its
//! snapshot writer. The coordinator side (triggers, enumerators, restarts)
//! lives in [`super::executor`]; between the two pass only the messages of
//! [`crate::checkpoint::coordinator::TaskCommand`] and
//! [`crate::checkpoint::writer`], and each task's outcome.

use std::collections::HashMap;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;

use crossbeam_channel::{Receiver, Sender};

use crate::checkpoint::coordinator::{CheckpointLink, TaskCommand};
use crate::checkpoint::writer::{Acknowledgement, SnapshotWriter, WriterInput};
use crate::clock::Clock;
use crate::error::{panic_message, EngineError};
use crate::graph::erased::{SendAny, StageAny};
use crate::graph::stream::{NodeBody, NodeId};
use crate::operator::SideOutputs;
use crate::runtime::executor::{Plan, DEAD_LETTER_SLOT};
use crate::runtime::stats::StageStats;
use crate::runtime::task::{TaskEnv, TaskSettings};

/// The channel ends one subtask owns.
#[derive(Default)]
pub(crate) struct SubtaskIo {
    /// Per network edge leaving the vertex: senders to every downstream subtask.
    pub senders: HashMap<usize, Vec<SendAny>>,
    /// Receivers of the head's input edges, in edge order.
    pub receivers: Vec<SendAny>,
}

/// One subtask a worker is to run.
pub(crate) struct AssignedTask {
    /// Its index among all tasks of the job.
    pub task: usize,
    pub vertex: usize,
    pub subtask: usize,
    pub io: SubtaskIo,
    /// The coordinator's commands to it.
    pub commands: Receiver<TaskCommand>,
}

/// How a task ended: its statistics, or why it failed.
pub(crate) type TaskOutcome = Result<Vec<StageStats>, EngineError>;

/// Task `.0` ended with `.1`.
pub(crate) type TaskEnded = (usize, TaskOutcome);

/// A worker's running subtasks and snapshot writer.
pub(crate) struct WorkerRun {
    tasks: Vec<JoinHandle<()>>,
    writer: SnapshotWriter,
}

impl WorkerRun {
    /// Starts `assigned`: their snapshots go through a new writer that
    /// acknowledges to `acks`; each task's outcome goes to `ended`. The first
    /// task to fail sets `cancel`, which stops the others.
    pub(crate) fn start(
        plan: &Arc<Plan>,
        settings: &TaskSettings,
        clock: &Arc<dyn Clock>,
        assigned: Vec<AssignedTask>,
        cancel: &Arc<AtomicBool>,
        acks: Sender<Acknowledgement>,
        ended: &Sender<TaskEnded>,
    ) -> Result<Self, EngineError> {
        let places = assigned
            .iter()
            .map(|a| (a.task, (a.vertex, a.subtask)))
            .collect();
        let writer = SnapshotWriter::start(places, acks)?;
        let settings = Arc::new(settings.clone());
        let mut tasks = Vec::new();
        for a in assigned {
            let env = TaskEnv {
                settings: Arc::clone(&settings),
                clock: Arc::clone(clock),
                cancel: Arc::clone(cancel),
                link: CheckpointLink {
                    task: a.task,
                    commands: a.commands,
                    reports: writer.input.clone(),
                    enabled: plan.checkpointing,
                    aborted: Default::default(),
                },
                metrics: Arc::clone(&plan.metrics),
                attempt: plan.attempt,
                vertex: a.vertex,
                subtask: a.subtask,
            };
            let spawned = spawn_task(Arc::clone(plan), a.io, env, ended.clone());
            match spawned {
                Ok(handle) => tasks.push(handle),
                Err(e) => {
                    cancel.store(true, Ordering::SeqCst);
                    return Err(e);
                }
            }
        }
        Ok(WorkerRun { tasks, writer })
    }

    /// The writer's input, for the coordinator's commands.
    pub(crate) fn writer(&self) -> Sender<WriterInput> {
        self.writer.input.clone()
    }

    /// Waits for every task, then for the writer (which ends once the
    /// coordinator, too, has dropped its line to it).
    pub(crate) fn join(self) {
        for t in self.tasks {
            let _ = t.join();
        }
        drop(self.writer.input);
        let _ = self.writer.thread.join();
    }
}

/// Spawns the thread of one subtask.
fn spawn_task(
    plan: Arc<Plan>,
    io: SubtaskIo,
    env: TaskEnv,
    ended: Sender<TaskEnded>,
) -> Result<JoinHandle<()>, EngineError> {
    let (v, s) = (env.vertex, env.subtask);
    std::thread::Builder::new()
        .name(format!("eddy-{v}.{s}"))
        .spawn(move || {
            let head = plan.job.vertices[v].nodes.first().copied().unwrap_or(0);
            let _span = tracing::info_span!(
                "task",
                job = %plan.job_name,
                task = %plan.job.nodes[head].name,
                subtask = s
            )
            .entered();
            let result = catch_unwind(AssertUnwindSafe(|| run_subtask(&plan, v, s, io, &env)))
                .unwrap_or_else(|p| {
                    Err(EngineError::Internal(format!(
                        "task {v}.{s} panicked outside user code: {}",
                        panic_message(p.as_ref())
                    )))
                });
            match &result {
                Ok(stats) => env
                    .metrics
                    .publish_stages(env.attempt, s, stats, env.clock.now()),
                Err(e) => {
                    if !matches!(e, EngineError::Cancelled) {
                        tracing::warn!(error = %e, "task failed");
                    }
                    env.cancel.store(true, Ordering::SeqCst);
                }
            }
            let _ = ended.send((env.link.task, result));
        })
        .map_err(|e| EngineError::Internal(format!("cannot spawn a task thread: {e}")))
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
