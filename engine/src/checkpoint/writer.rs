//! The snapshot writer of a worker: the asynchronous part of every
//! snapshot, between the worker's tasks and the coordinator.
//!
//! A task hands its encoded state to the writer of its worker and goes on;
//! the writer uploads the files the state refers to, writes the task's
//! state file into the checkpoint's directory, and acknowledges to the
//! coordinator with a handle (file name, size, checksum, shared files). So
//! the coordinator holds no task's state and writes only `_metadata`, and
//! what crosses between a worker and the coordinator is small and
//! serializable.
//!
//! A finished task's end-of-input state stays with the writer: the
//! coordinator asks for it again (a stand-in) for every later checkpoint
//! that needs it.

use std::collections::HashMap;
use std::path::PathBuf;
use std::thread::JoinHandle;
use std::time::Duration;

use crossbeam_channel::{Receiver, Sender};
use serde::{Deserialize, Serialize};

use crate::checkpoint::coordinator::TaskState;
use crate::checkpoint::storage::{self, FileEntry};
use crate::element::CheckpointId;
use crate::error::EngineError;

/// What a task tells its worker's writer.
pub(crate) enum TaskReport {
    /// The task snapshotted for checkpoint `id`.
    Snapshot {
        task: usize,
        id: CheckpointId,
        state: TaskState,
        /// First to last input's barrier (zero for sources and one input).
        alignment: Duration,
    },
    /// The task has finished its input and taken its end-of-input snapshot.
    Finished { task: usize, state: TaskState },
    /// The task will never snapshot checkpoint `id` (a newer barrier
    /// overtook it without alignment).
    Decline { task: usize, id: CheckpointId },
}

/// What the coordinator tells a writer.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub(crate) enum WriterCommand {
    /// Snapshots for checkpoint `id` go to `dir`. Sent before the trigger,
    /// so it reaches the writer before any snapshot for `id`.
    Begin { id: CheckpointId, dir: PathBuf },
    /// Checkpoint `id` is over (complete or abandoned): snapshots for it
    /// that still arrive are dropped.
    Forget(CheckpointId),
    /// Write the end-of-input state of finished task `task` for `id`.
    StandIn { id: CheckpointId, task: usize },
}

/// Everything a writer reads, in the order it was sent.
pub(crate) enum WriterInput {
    Task(TaskReport),
    Command(WriterCommand),
}

/// Where a task's state for one checkpoint was written.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub(crate) struct StateHandle {
    /// The task's state file in the checkpoint's directory.
    pub file: FileEntry,
    /// Files in the job's shared storage the state refers to.
    pub shared: Vec<String>,
}

/// What a writer tells the coordinator.
#[derive(Debug, Serialize, Deserialize)]
pub(crate) enum Acknowledgement {
    /// Task `task`'s state for `id` is written (`alignment`: see
    /// [`TaskReport::Snapshot`]; zero for a stand-in).
    Ack {
        task: usize,
        id: CheckpointId,
        handle: StateHandle,
        alignment: Duration,
    },
    /// Task `task` has finished; its end-of-input state waits in the writer.
    Finished { task: usize },
    /// Task `task` will never snapshot `id`.
    Decline { task: usize, id: CheckpointId },
    /// Task `task`'s state for `id` could not be written.
    Failed {
        task: usize,
        id: CheckpointId,
        reason: String,
    },
}

/// A running writer: its input, and its thread (which ends once every
/// sender of its input is gone).
pub(crate) struct SnapshotWriter {
    pub input: Sender<WriterInput>,
    pub thread: JoinHandle<()>,
}

impl SnapshotWriter {
    /// Starts a writer for the tasks in `places` (task index → its vertex
    /// and subtask, which name its state file), acknowledging to `acks`.
    pub(crate) fn start(
        places: HashMap<usize, (usize, usize)>,
        acks: Sender<Acknowledgement>,
    ) -> Result<Self, EngineError> {
        let (input, rx) = crossbeam_channel::unbounded();
        let thread = std::thread::Builder::new()
            .name("eddy-snapshot-writer".into())
            .spawn(move || Writer::new(places, acks).run(&rx))
            .map_err(|e| EngineError::Internal(format!("cannot spawn the snapshot writer: {e}")))?;
        Ok(SnapshotWriter { input, thread })
    }
}

struct Writer {
    places: HashMap<usize, (usize, usize)>,
    acks: Sender<Acknowledgement>,
    /// Directories of the checkpoints in progress.
    dirs: HashMap<CheckpointId, PathBuf>,
    /// The newest checkpoint begun: a snapshot for an id above it came
    /// before its `Begin` (in a cluster the trigger or a barrier can
    /// overtake the coordinator's word) and waits in `early`; one for an id at or below
    /// it that is not in progress is for a checkpoint that is over.
    newest_begun: Option<CheckpointId>,
    early: HashMap<CheckpointId, Vec<(usize, TaskState, Duration)>>,
    /// End-of-input states of finished tasks.
    finished: HashMap<usize, TaskState>,
}

impl Writer {
    fn new(places: HashMap<usize, (usize, usize)>, acks: Sender<Acknowledgement>) -> Self {
        Writer {
            places,
            acks,
            dirs: HashMap::new(),
            newest_begun: None,
            early: HashMap::new(),
            finished: HashMap::new(),
        }
    }

    fn run(mut self, input: &Receiver<WriterInput>) {
        for message in input {
            let ack = match message {
                WriterInput::Command(WriterCommand::Begin { id, dir }) => {
                    self.dirs.insert(id, dir);
                    self.newest_begun = self.newest_begun.max(Some(id));
                    for (task, state, alignment) in self.early.remove(&id).unwrap_or_default() {
                        if let Some(ack) = self.write(task, id, &state, alignment) {
                            let _ = self.acks.send(ack);
                        }
                    }
                    None
                }
                WriterInput::Command(WriterCommand::Forget(id)) => {
                    self.dirs.remove(&id);
                    self.early.remove(&id);
                    None
                }
                WriterInput::Command(WriterCommand::StandIn { id, task }) => {
                    let state = self.finished.remove(&task);
                    let ack = state
                        .as_ref()
                        .and_then(|s| self.write(task, id, s, Duration::ZERO));
                    if let Some(state) = state {
                        self.finished.insert(task, state);
                    }
                    ack
                }
                WriterInput::Task(TaskReport::Snapshot {
                    task,
                    id,
                    state,
                    alignment,
                }) => {
                    if !self.dirs.contains_key(&id) && self.newest_begun < Some(id) {
                        self.early
                            .entry(id)
                            .or_default()
                            .push((task, state, alignment));
                        None
                    } else {
                        self.write(task, id, &state, alignment)
                    }
                }
                WriterInput::Task(TaskReport::Finished { task, state }) => {
                    self.finished.insert(task, state);
                    Some(Acknowledgement::Finished { task })
                }
                WriterInput::Task(TaskReport::Decline { task, id }) => {
                    Some(Acknowledgement::Decline { task, id })
                }
            };
            if let Some(ack) = ack {
                // A coordinator that is gone means the run is ending.
                let _ = self.acks.send(ack);
            }
        }
    }

    /// Writes `state` of `task` for `id`; `None` when `id` is over.
    fn write(
        &self,
        task: usize,
        id: CheckpointId,
        state: &TaskState,
        alignment: Duration,
    ) -> Option<Acknowledgement> {
        let dir = self.dirs.get(&id)?;
        let Some(&(vertex, subtask)) = self.places.get(&task) else {
            return Some(Acknowledgement::Failed {
                task,
                id,
                reason: format!("task {task} is not one of this writer's"),
            });
        };
        Some(
            match storage::write_task_file(dir, vertex, subtask, state) {
                Ok(file) => Acknowledgement::Ack {
                    task,
                    id,
                    handle: StateHandle {
                        file,
                        shared: shared_ids(state).collect(),
                    },
                    alignment,
                },
                Err(e) => Acknowledgement::Failed {
                    task,
                    id,
                    reason: e.to_string(),
                },
            },
        )
    }
}

/// The shared files a task's state refers to.
fn shared_ids(state: &TaskState) -> impl Iterator<Item = String> + '_ {
    state
        .iter()
        .filter_map(|(_, s)| s.native.as_ref())
        .flat_map(|n| n.shared.iter().map(|(_, id)| id.clone()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::checkpoint::snapshot::{ListBlob, OperatorSnapshot, Redistribution};

    fn state(item: u8) -> TaskState {
        vec![(
            "op".into(),
            OperatorSnapshot {
                lists: vec![ListBlob {
                    name: "l".into(),
                    mode: Redistribution::Split,
                    items: vec![vec![item]],
                }],
                ..Default::default()
            },
        )]
    }

    /// Task `task`'s snapshot for checkpoint `id`, holding `item`.
    fn snapshot(task: usize, id: u64, item: u8) -> WriterInput {
        WriterInput::Task(TaskReport::Snapshot {
            task,
            id: CheckpointId(id),
            state: state(item),
            alignment: Duration::ZERO,
        })
    }

    /// Checkpoint `id` goes to `dir`.
    fn begin(id: u64, dir: impl Into<PathBuf>) -> WriterInput {
        WriterInput::Command(WriterCommand::Begin {
            id: CheckpointId(id),
            dir: dir.into(),
        })
    }

    /// The next acknowledgement, which must be an ack: task, id, handle.
    fn next_ack(acks: &Receiver<Acknowledgement>) -> (usize, CheckpointId, StateHandle) {
        match acks.recv().unwrap() {
            Acknowledgement::Ack {
                task, id, handle, ..
            } => (task, id, handle),
            other => panic!("not an ack: {other:?}"),
        }
    }

    /// The list items of the state file `handle` in `dir`.
    fn items(dir: &std::path::Path, handle: &StateHandle) -> Vec<Vec<u8>> {
        let read = storage::read_task_file(dir, &handle.file).unwrap();
        read[0].1.lists[0].items.clone()
    }

    fn started() -> (SnapshotWriter, Receiver<Acknowledgement>) {
        let (tx, rx) = crossbeam_channel::unbounded();
        (
            SnapshotWriter::start(HashMap::from([(0, (0, 0)), (1, (1, 2))]), tx).unwrap(),
            rx,
        )
    }

    #[test]
    fn writes_a_snapshot_and_acknowledges_with_its_handle() {
        let dir = tempfile::tempdir().unwrap();
        let (writer, acks) = started();
        let id = CheckpointId(3);
        let send = |m| writer.input.send(m).unwrap();
        send(begin(id.0, dir.path()));
        send(WriterInput::Task(TaskReport::Snapshot {
            task: 1,
            id,
            state: state(7),
            alignment: Duration::from_millis(5),
        }));
        let (task, _, handle) = next_ack(&acks);
        assert_eq!(task, 1);
        assert_eq!(handle.file.name, "1-2.state");
        assert_eq!(items(dir.path(), &handle), vec![vec![7]]);
    }

    #[test]
    fn drops_snapshots_of_a_forgotten_checkpoint_and_writes_stand_ins() {
        let dir = tempfile::tempdir().unwrap();
        let (writer, acks) = started();
        let send = |m| writer.input.send(m).unwrap();
        send(WriterInput::Task(TaskReport::Finished {
            task: 0,
            state: state(9),
        }));
        send(begin(1, dir.path().join("gone")));
        send(WriterInput::Command(WriterCommand::Forget(CheckpointId(1))));
        send(snapshot(1, 1, 1));
        // The end-of-input state stands in for every later checkpoint.
        for id in [2, 3] {
            let id = CheckpointId(id);
            let chk = dir.path().join(format!("chk-{}", id.0));
            std::fs::create_dir(&chk).unwrap();
            send(WriterInput::Command(WriterCommand::Begin { id, dir: chk }));
            send(WriterInput::Command(WriterCommand::StandIn { id, task: 0 }));
        }
        assert!(matches!(
            acks.recv().unwrap(),
            Acknowledgement::Finished { task: 0 }
        ));
        for expected in [2, 3] {
            let (_, id, handle) = next_ack(&acks);
            assert_eq!(id, CheckpointId(expected));
            let chk = dir.path().join(format!("chk-{expected}"));
            assert_eq!(items(&chk, &handle), vec![vec![9]]);
        }
        drop(writer.input);
        writer.thread.join().unwrap();
        assert!(acks.try_recv().is_err(), "the forgotten snapshot was acked");
    }

    #[test]
    fn a_snapshot_before_its_checkpoint_began_waits_for_it() {
        let dir = tempfile::tempdir().unwrap();
        let (writer, acks) = started();
        let send = |m| writer.input.send(m).unwrap();
        send(snapshot(0, 5, 5));
        send(begin(5, dir.path()));
        let (_, id, handle) = next_ack(&acks);
        assert_eq!(id, CheckpointId(5));
        assert_eq!(items(dir.path(), &handle), vec![vec![5]]);
    }

    #[test]
    fn a_write_that_fails_is_reported() {
        let dir = tempfile::tempdir().unwrap();
        let (writer, acks) = started();
        let missing = dir.path().join("no-such-dir");
        let send = |m| writer.input.send(m).unwrap();
        send(begin(4, missing));
        send(snapshot(0, 4, 0));
        let Acknowledgement::Failed { reason, .. } = acks.recv().unwrap() else {
            panic!("not a failure");
        };
        assert!(reason.contains("no-such-dir"), "{reason}");
    }

    #[test]
    fn acknowledgements_survive_the_wire() {
        let ack = Acknowledgement::Failed {
            task: 2,
            id: CheckpointId(8),
            reason: "disk full".into(),
        };
        let bytes = bincode::serialize(&ack).unwrap();
        let back: Acknowledgement = bincode::deserialize(&bytes).unwrap();
        assert!(matches!(back, Acknowledgement::Failed { task: 2, .. }));
    }
}
