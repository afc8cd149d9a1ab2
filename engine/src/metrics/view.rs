//! What the web view and the REST API show of a running job: plain,
//! serialisable snapshots read off [`super::JobMetrics`].

use crate::graph::job::JobGraph;

/// How many completed checkpoints and failures the web view lists.
pub(super) const HISTORY: usize = 20;

/// Where a running job is in its life.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum JobState {
    /// Its tasks run.
    Running,
    /// A task failed; the job waits to restart from its latest checkpoint.
    Restarting,
    /// It was cancelled; its tasks are stopping.
    Cancelling,
    /// A cluster's coordinator waits for workers to offer the slots the
    /// job needs (before its first run, or after losing a worker).
    WaitingForSlots,
}

/// What the web view and the REST API show of a job (`GET /v1/jobs/{job}`).
#[derive(Clone, Debug, serde::Serialize)]
pub struct JobView {
    /// The job's name.
    pub job: String,
    /// Where it is in its life.
    pub state: JobState,
    /// When it started (ms since the epoch).
    pub started_at_ms: i64,
    /// Its tasks, in graph order.
    pub vertices: Vec<VertexView>,
    /// The network edges between them.
    pub edges: Vec<EdgeView>,
    /// Restarts after failures.
    pub restarts: u64,
    /// Checkpoints and savepoints completed since the job started.
    pub checkpoints_completed: u64,
    /// … abandoned or declined.
    pub checkpoints_failed: u64,
    /// The latest completed checkpoints and savepoints, oldest first.
    pub checkpoints: Vec<CheckpointView>,
    /// The latest failures the job restarted after, oldest first.
    pub failures: Vec<FailureView>,
}

/// A failure the job restarted after.
#[derive(Clone, Debug, serde::Serialize)]
pub struct FailureView {
    /// When (ms since the epoch).
    pub at_ms: i64,
    /// The error, naming the operator and subtask where it happened.
    pub error: String,
}

/// One vertex (a chain of operators run as one task per subtask).
#[derive(Clone, Debug, Default, serde::Serialize)]
pub struct VertexView {
    /// Its index.
    pub id: usize,
    /// The names of its chained operators, first to last.
    pub operators: Vec<String>,
    /// How many subtasks it has.
    pub parallelism: usize,
    /// Its subtasks and where they run.
    pub subtasks: Vec<SubtaskView>,
    /// Records into its first operator, all subtasks.
    pub records_in: u64,
    /// Records out of its last operator, all subtasks.
    pub records_out: u64,
    /// Records per second its sources read or its first operator
    /// received, over the last second its subtasks published.
    pub records_per_second: u64,
    /// The share of that second its subtasks were busy (0–1, averaged).
    pub busy: f64,
    /// … blocked on full output channels.
    pub backpressured: f64,
    /// … waiting for input.
    pub idle: f64,
    /// The lowest input watermark of its first operator's subtasks.
    pub watermark_ms: Option<i64>,
    #[serde(skip)]
    pub(super) nodes: Vec<usize>,
}

/// One subtask of a vertex.
#[derive(Clone, Debug, serde::Serialize)]
pub struct SubtaskView {
    /// Its index, from 0.
    pub subtask: usize,
    /// The worker that runs it (the local runtime: [`LOCAL_WORKER`]; a
    /// cluster: `worker <index> (<data address>)`).
    pub worker: String,
}

/// A worker of the job's current run (`GET /v1/workers`).
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct WorkerView {
    /// Its name, as the subtasks it runs name it.
    pub id: String,
    /// Its process id, on its machine.
    pub pid: u32,
    /// The slots it offers: each runs one subtask of every vertex.
    pub slots: usize,
    /// How many of them the current run uses.
    pub slots_used: usize,
}

/// The one worker of the local runtime: the job's own process.
pub const LOCAL_WORKER: &str = "local";

/// A network edge between two vertices.
#[derive(Clone, Debug, serde::Serialize)]
pub struct EdgeView {
    /// The upstream vertex.
    pub from: usize,
    /// The downstream vertex.
    pub to: usize,
    /// How records are spread: forward, rebalance, broadcast or hash.
    pub partitioning: String,
}

/// A completed checkpoint or savepoint.
#[derive(Clone, Debug, serde::Serialize)]
pub struct CheckpointView {
    /// Its id.
    pub id: u64,
    /// `checkpoint` or `savepoint`.
    pub kind: &'static str,
    /// Where it is stored.
    pub path: std::path::PathBuf,
    /// When it completed (ms since the epoch).
    pub completed_at_ms: i64,
    /// Trigger to completion.
    pub duration_ms: u64,
    /// The longest time a task's barriers took to align (first to last
    /// input).
    pub alignment_ms: u64,
    /// Bytes written.
    pub bytes: u64,
}

/// The job graph's shape, fixed for a run.
pub(super) struct GraphView {
    pub(super) vertices: Vec<VertexView>,
    pub(super) edges: Vec<EdgeView>,
    /// The source nodes.
    pub(super) sources: Vec<usize>,
}

impl GraphView {
    pub(super) fn of(graph: &JobGraph) -> Self {
        let vertices = graph
            .vertices
            .iter()
            .enumerate()
            .map(|(id, v)| VertexView {
                id,
                operators: v
                    .nodes
                    .iter()
                    .map(|&n| graph.nodes[n].name.clone())
                    .collect(),
                parallelism: v.parallelism,
                subtasks: (0..v.parallelism)
                    .map(|subtask| SubtaskView {
                        subtask,
                        worker: LOCAL_WORKER.to_owned(),
                    })
                    .collect(),
                nodes: v.nodes.clone(),
                ..VertexView::default()
            })
            .collect();
        let edges = graph
            .edges
            .iter()
            .filter(|e| !e.chained)
            .map(|e| EdgeView {
                from: graph.nodes[e.from].vertex,
                to: graph.nodes[e.to].vertex,
                partitioning: format!("{:?}", e.partitioning).to_lowercase(),
            })
            .collect();
        let sources = (0..graph.nodes.len())
            .filter(|&n| graph.nodes[n].is_source)
            .collect();
        GraphView {
            vertices,
            edges,
            sources,
        }
    }
}
