//! The cluster runtime (application mode): every process runs the same job
//! binary, one as `coordinator`, the others as `worker`s.
//!
//! Workers connect to the coordinator's control port and say where their
//! data port is and how many slots they offer. For each run of the job the
//! coordinator waits until the workers offer a slot per subtask of the
//! widest vertex, deploys the run to them (slot `s` runs subtask `s` of
//! every vertex; slots are dealt one per worker in turn,
//! [`crate::runtime::placement`]), relays its checkpoint commands to the
//! tasks and their workers' snapshot writers, and collects the writers'
//! acknowledgements and the tasks' outcomes — the same messages the local
//! runtime passes in process ([`crate::checkpoint::coordinator::TaskCommand`],
//! [`crate::checkpoint::writer`]), here as length-prefixed bincode frames
//! over TCP. Records between workers go over their own connections with
//! credit-based flow control ([`super::tcp`]).
//!
//! A worker that closes its control connection (its process died) or sends
//! nothing, not even a heartbeat, for `--heartbeat-timeout` is lost: the run
//! fails, the other workers cancel their tasks, and the job restarts from its
//! latest complete checkpoint on the workers that remain. Heartbeats go both
//! ways during a run: a worker that hears nothing from the coordinator for
//! as long cancels its tasks and exits with an error.

pub(crate) mod coordinator;
pub(crate) mod worker;

use std::collections::BTreeSet;
use std::io::{self, Read, Write};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Mutex;
use std::time::Duration;

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use crate::checkpoint::coordinator::TaskCommand;
use crate::checkpoint::writer::{Acknowledgement, WriterCommand};
use crate::graph::job::JobGraph;
use crate::runtime::stats::StageStats;

/// The largest control message accepted (a batch of splits is the biggest).
const MAX_MESSAGE: usize = 64 << 20;
/// How often a worker says it is alive.
pub(crate) const HEARTBEAT_INTERVAL: Duration = Duration::from_millis(500);

/// What the coordinator tells a worker.
#[derive(Debug, Serialize, Deserialize)]
pub(crate) enum ToWorker {
    /// Run your share of a new run of the job.
    Deploy(Deployment),
    /// A command for one of your tasks.
    Command { task: usize, command: TaskCommand },
    /// A command for your snapshot writer.
    Writer(WriterCommand),
    /// Cancel this run's tasks (it failed elsewhere, or the job ends).
    Cancel,
    /// The job is over: exit.
    Shutdown,
    /// The worker cannot serve this job (sent instead of anything else).
    Refused { reason: String },
    /// Every task of the run has ended: close it (until then the snapshot
    /// writer may still be asked to write finished tasks' stand-ins).
    EndRun,
    /// The coordinator is alive (sent during a run).
    Heartbeat,
}

/// One run of the job, as a worker is to run it.
#[derive(Debug, Serialize, Deserialize)]
pub(crate) struct Deployment {
    /// Restarts before this run.
    pub attempt: u32,
    /// This worker's index among `workers`.
    pub index: usize,
    /// The data address of every worker of this run, by index.
    pub workers: Vec<SocketAddr>,
    /// The slots every worker of this run offers, by index (they place the
    /// subtasks, [`crate::runtime::placement::SlotPlan::new`]).
    pub slots: Vec<usize>,
    /// The checkpoint or savepoint to restore from.
    pub restore: Option<PathBuf>,
    /// Commands for this worker's tasks sent before the run started (the
    /// first splits), delivered before the tasks start.
    pub initial: Vec<(usize, TaskCommand)>,
    /// A coordinator silent this long during the run is lost.
    pub heartbeat_timeout: Duration,
}

/// What a worker tells the coordinator.
#[derive(Debug, Serialize, Deserialize)]
pub(crate) enum ToCoordinator {
    /// The first message: where other workers reach this one's data port,
    /// the [`fingerprint`] of the job graph it built, its slots, and its
    /// process id.
    Hello {
        data: SocketAddr,
        job: u64,
        slots: usize,
        pid: u32,
    },
    /// About run `attempt` (what a worker says of an older run, once a
    /// newer one is deployed, is stale and ignored).
    Run { attempt: u32, message: RunMessage },
    /// The worker is alive.
    Heartbeat,
}

/// What a worker says about one run of the job.
#[derive(Debug, Serialize, Deserialize)]
pub(crate) enum RunMessage {
    /// A snapshot writer's acknowledgement.
    Ack(Acknowledgement),
    /// This worker's tasks of the run have started.
    Started,
    /// What this worker's tasks last published (sent about once a second):
    /// the coordinator's REST API, web view and metrics show it.
    Published(Vec<crate::metrics::TaskPublication>),
    /// Task `task` ended.
    TaskEnded { task: usize, outcome: RemoteOutcome },
    /// Every task of the run has ended and its connections are closed;
    /// `failure`: why a connection failed, if one did.
    RunEnded { failure: Option<String> },
}

/// How a task on a worker ended.
#[derive(Debug, Serialize, Deserialize)]
pub(crate) enum RemoteOutcome {
    /// It finished; its operators' counters.
    Finished(Vec<StageStats>),
    Cancelled,
    /// It failed; `restartable`: the job may restart from a checkpoint.
    Failed {
        message: String,
        restartable: bool,
    },
}

/// Reads the operator metrics of a [`StageStats`] that crossed from a
/// worker: their names become the one `&'static str` for each.
pub(crate) fn interned_metrics<'de, D: serde::Deserializer<'de>>(
    d: D,
) -> Result<Vec<(&'static str, u64)>, D::Error> {
    let named: Vec<(String, u64)> = Deserialize::deserialize(d)?;
    Ok(named.into_iter().map(|(k, v)| (intern(k), v)).collect())
}

/// The one `&'static str` for an operator metric's name (operators name
/// their metrics with static strings; the coordinator gets them as text).
/// Each distinct name is kept once, for the life of the process.
fn intern(name: String) -> &'static str {
    static NAMES: Mutex<BTreeSet<&'static str>> = Mutex::new(BTreeSet::new());
    let mut names = NAMES.lock().unwrap_or_else(|p| p.into_inner());
    if let Some(known) = names.get(name.as_str()) {
        return known;
    }
    let leaked: &'static str = Box::leak(name.into_boxed_str());
    names.insert(leaked);
    leaked
}

/// What every process of a cluster must agree on to number tasks and
/// channels alike: every operator's uid, parallelism, key groups and
/// vertex, every edge and its partitioning, and the chaining.
pub(crate) fn fingerprint(job: &JobGraph) -> u64 {
    let mut text = String::new();
    for n in &job.nodes {
        text.push_str(&format!(
            "{}/{}/{}/{};",
            n.uid, n.parallelism, n.max_parallelism, n.vertex
        ));
    }
    for e in &job.edges {
        text.push_str(&format!(
            "{}>{}:{}:{:?}:{};",
            e.from, e.to, e.slot, e.partitioning, e.chained
        ));
    }
    xxhash_rust::xxh3::xxh3_64(text.as_bytes())
}

/// Writes one message: `[length u32 LE][bincode]`.
pub(crate) fn send<M: Serialize>(out: &mut impl Write, message: &M) -> io::Result<()> {
    let bytes = bincode::serialize(message).map_err(|e| io::Error::other(e.to_string()))?;
    let len = u32::try_from(bytes.len()).map_err(|_| io::Error::other("message too large"))?;
    out.write_all(&len.to_le_bytes())?;
    out.write_all(&bytes)?;
    out.flush()
}

/// Reads one message; `None` when the peer closed the connection.
pub(crate) fn receive<M: DeserializeOwned>(input: &mut impl Read) -> io::Result<Option<M>> {
    let mut len = [0u8; 4];
    match input.read_exact(&mut len) {
        Ok(()) => {}
        Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => return Ok(None),
        Err(e) => return Err(e),
    }
    let len = u32::from_le_bytes(len) as usize;
    if len > MAX_MESSAGE {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            format!("a control message of {len} bytes is over the limit of {MAX_MESSAGE}"),
        ));
    }
    let mut bytes = vec![0; len];
    input.read_exact(&mut bytes)?;
    bincode::deserialize(&bytes)
        .map(Some)
        .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::element::CheckpointId;

    #[test]
    fn messages_cross_a_connection_and_a_close_reads_as_none() {
        let mut wire = Vec::new();
        send(
            &mut wire,
            &ToWorker::Command {
                task: 3,
                command: TaskCommand::Complete(CheckpointId(7)),
            },
        )
        .unwrap();
        let mut input = wire.as_slice();
        let got: Option<ToWorker> = receive(&mut input).unwrap();
        assert!(matches!(
            got,
            Some(ToWorker::Command {
                task: 3,
                command: TaskCommand::Complete(CheckpointId(7))
            })
        ));
        assert!(receive::<ToWorker>(&mut input).unwrap().is_none());
    }

    #[test]
    fn task_counters_cross_with_their_metric_names_interned_once() {
        let stats = StageStats {
            node: 2,
            records_in: 40,
            custom: vec![("late_records", 3)],
            ..StageStats::default()
        };
        let bytes = bincode::serialize(&stats).unwrap();
        let a: StageStats = bincode::deserialize(&bytes).unwrap();
        let b: StageStats = bincode::deserialize(&bytes).unwrap();
        assert_eq!((a.node, a.records_in), (2, 40));
        assert_eq!(a.custom, vec![("late_records", 3)]);
        assert!(
            std::ptr::eq(a.custom[0].0, b.custom[0].0),
            "one name, kept once"
        );
    }

    #[test]
    fn an_oversized_message_is_refused() {
        let mut wire = (u32::MAX).to_le_bytes().to_vec();
        wire.extend([0; 16]);
        let err = receive::<ToWorker>(&mut wire.as_slice()).unwrap_err();
        assert!(err.to_string().contains("over the limit"), "{err}");
    }
}
