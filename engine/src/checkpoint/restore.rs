//! Loading a checkpoint or savepoint and dealing its state to the subtasks of
//! the restored job, which may run at another parallelism or with another
//! number of key groups.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};

use serde::de::DeserializeOwned;

use crate::checkpoint::snapshot::{
    decode_value, frames, KeyedBlob, NativeRocks, OperatorSnapshot, Redistribution,
};
use crate::checkpoint::storage::{self, Metadata};
use crate::element::CheckpointId;
use crate::error::{EngineError, StateError};
use crate::graph::job::JobGraph;
use crate::keygroup::{KeyGroup, KeyGroupRange};

/// A complete checkpoint or savepoint, read into memory.
pub(crate) struct RestoredJob {
    pub id: CheckpointId,
    pub path: PathBuf,
    /// The job's shared storage (files of incremental checkpoints).
    shared: PathBuf,
    /// Per operator uid: its snapshots, one per old subtask that wrote one.
    operators: HashMap<String, Vec<OperatorSnapshot>>,
}

/// The keyed entries of one state for the key groups of one subtask.
#[derive(Clone, Debug, Default)]
pub(crate) struct RestoredKeyed {
    pub type_name: String,
    /// Framed entries per key group (of the restored job's key groups).
    pub groups: Vec<(KeyGroup, Vec<u8>)>,
}

/// The state one operator subtask restores from: its share of the keyed
/// state and of the operator list states.
#[derive(Debug, Default)]
pub struct RestoredState {
    pub(crate) keyed: HashMap<String, RestoredKeyed>,
    lists: HashMap<String, Vec<Vec<u8>>>,
    /// An incremental RocksDB checkpoint of exactly this subtask's key
    /// groups, and the shared storage its files are in.
    pub(crate) native: Option<(NativeRocks, PathBuf)>,
}

impl RestoredState {
    /// This subtask's items of operator list state `name` (empty when the
    /// snapshot had none).
    ///
    /// # Errors
    /// [`StateError::Incompatible`] when an item does not decode as `T`.
    pub fn list<T: DeserializeOwned>(&self, name: &str) -> Result<Vec<T>, StateError> {
        self.lists
            .get(name)
            .into_iter()
            .flatten()
            .map(|bytes| decode_value(name, "a list state item", bytes))
            .collect()
    }

    /// The share of subtask `subtask` (of `parallelism`, with
    /// `max_parallelism` key groups) of the state in `snapshots` — one
    /// operator's snapshots from all its old subtasks. For harnesses and
    /// tools; jobs restore through `run --restore`.
    pub fn from_snapshots(
        snapshots: Vec<crate::checkpoint::StateSnapshot>,
        subtask: usize,
        parallelism: usize,
        max_parallelism: usize,
    ) -> Self {
        let job = RestoredJob {
            id: CheckpointId(0),
            path: PathBuf::new(),
            shared: PathBuf::new(),
            operators: [(
                String::new(),
                snapshots.into_iter().map(|s| s.data).collect(),
            )]
            .into(),
        };
        job.for_subtask("", subtask, parallelism, max_parallelism)
            .unwrap_or_default()
    }

    /// State made of keyed blobs that all belong to the restoring subtask.
    pub(crate) fn from_blobs(blobs: Vec<KeyedBlob>) -> Self {
        let mut keyed: HashMap<String, RestoredKeyed> = HashMap::new();
        for blob in blobs {
            let state = keyed.entry(blob.state).or_default();
            state.type_name = blob.type_name;
            state.groups.push((blob.key_group, blob.entries));
        }
        RestoredState {
            keyed,
            lists: HashMap::new(),
            native: None,
        }
    }

    /// The restored entries of keyed state `name`, if any.
    pub(crate) fn keyed(&self, name: &str) -> Option<&RestoredKeyed> {
        self.keyed.get(name)
    }
}

impl RestoredJob {
    /// Reads the checkpoint or savepoint at `path`: a directory holding
    /// `_metadata`, or a job's checkpoint root (its newest complete
    /// checkpoint is used).
    pub(crate) fn load(path: &Path) -> Result<Self, EngineError> {
        let dir = if path.join(storage::METADATA).is_file() {
            path.to_path_buf()
        } else {
            storage::latest_complete(path).ok_or_else(|| {
                EngineError::checkpoint(
                    format!("restoring from {}", path.display()),
                    "no complete checkpoint or savepoint there (no _metadata); give a savepoint directory, a chk-<n> directory, or the job's checkpoint directory",
                )
            })?
        };
        let metadata: Metadata = storage::read_metadata(&dir)?;
        // Only operators that wrote state count (a stateless operator may
        // leave the job).
        let mut operators: HashMap<String, Vec<OperatorSnapshot>> = HashMap::new();
        for file in &metadata.files {
            for (uid, snapshot) in storage::read_task_file(&dir, file)? {
                operators.entry(uid).or_default().push(snapshot);
            }
        }
        Ok(RestoredJob {
            id: CheckpointId(metadata.id),
            shared: storage::shared_dir(dir.parent().unwrap_or(&dir)),
            path: dir,
            operators,
        })
    }

    /// Readies incremental RocksDB snapshots for `job`: kept as they are
    /// where each matches one new subtask's key groups exactly and the job
    /// keeps state in RocksDB (`rocks`); converted to the canonical format
    /// otherwise (rescaling, or a restore onto the heap).
    ///
    /// Also checks the entries that will move to other key groups (a changed
    /// `max_parallelism`): moving them reads their frames.
    pub(crate) fn prepare(&mut self, job: &JobGraph, rocks: bool) -> Result<(), EngineError> {
        for (uid, snapshots) in &mut self.operators {
            let node = job.nodes.iter().find(|n| n.uid == *uid);
            let moved = snapshots
                .iter()
                .flat_map(|s| &s.keyed)
                .filter(|b| node.is_some_and(|n| b.max_parallelism as usize != n.max_parallelism));
            for blob in moved {
                if frames(&blob.entries).any(|f| f.is_err()) {
                    return Err(EngineError::checkpoint(
                        format!("restoring from {}", self.path.display()),
                        format!(
                            "damaged state: operator '{uid}', state '{}', key group {} has a truncated entry",
                            blob.state, blob.key_group
                        ),
                    ));
                }
            }
            let fits = |n: &NativeRocks| {
                node.is_some_and(|node| {
                    n.max_parallelism as usize == node.max_parallelism
                        && (0..node.parallelism).any(|s| {
                            let r = KeyGroupRange::for_subtask(
                                s,
                                node.parallelism,
                                node.max_parallelism,
                            );
                            (r.start, r.end) == n.key_groups
                        })
                })
            };
            let keep = rocks && snapshots.iter().filter_map(|s| s.native.as_ref()).all(fits);
            if keep {
                continue;
            }
            for snapshot in snapshots.iter_mut() {
                if let Some(native) = snapshot.native.take() {
                    snapshot.keyed.extend(convert(&native, &self.shared)?);
                }
            }
        }
        Ok(())
    }

    /// The uids that hold state in this snapshot.
    pub(crate) fn uids(&self) -> impl Iterator<Item = &str> {
        self.operators.keys().map(String::as_str)
    }

    /// The state of operator `uid` for one subtask of the restored job;
    /// `None` when the snapshot has nothing for that uid.
    pub(crate) fn for_subtask(
        &self,
        uid: &str,
        subtask: usize,
        parallelism: usize,
        max_parallelism: usize,
    ) -> Option<RestoredState> {
        let snapshots = self.operators.get(uid)?;
        let range = KeyGroupRange::for_subtask(subtask, parallelism, max_parallelism);
        let native = snapshots
            .iter()
            .filter_map(|s| s.native.as_ref())
            .find(|n| n.key_groups == (range.start, range.end))
            .map(|n| (n.clone(), self.shared.clone()));
        let mut keyed: HashMap<String, (String, BTreeMap<KeyGroup, Vec<u8>>)> = HashMap::new();
        let mut lists: HashMap<String, (Redistribution, Vec<&Vec<u8>>)> = HashMap::new();
        for snapshot in snapshots {
            for blob in &snapshot.keyed {
                let (_, groups) = keyed
                    .entry(blob.state.clone())
                    .or_insert_with(|| (blob.type_name.clone(), BTreeMap::new()));
                if blob.max_parallelism as usize == max_parallelism {
                    if range.contains(blob.key_group) {
                        groups
                            .entry(blob.key_group)
                            .or_default()
                            .extend_from_slice(&blob.entries);
                    }
                    continue;
                }
                // Another number of key groups: move each entry by its hash.
                for (hash, frame, _) in frames(&blob.entries).map_while(Result::ok) {
                    let kg = (hash % max_parallelism as u64) as KeyGroup;
                    if range.contains(kg) {
                        groups.entry(kg).or_default().extend_from_slice(frame);
                    }
                }
            }
            for list in &snapshot.lists {
                lists
                    .entry(list.name.clone())
                    .or_insert_with(|| (list.mode, Vec::new()))
                    .1
                    .extend(list.items.iter());
            }
        }
        Some(RestoredState {
            native,
            keyed: keyed
                .into_iter()
                .map(|(name, (type_name, groups))| {
                    (
                        name,
                        RestoredKeyed {
                            type_name,
                            groups: groups.into_iter().collect(),
                        },
                    )
                })
                .collect(),
            lists: lists
                .into_iter()
                .map(|(name, (mode, items))| {
                    let mine = items
                        .into_iter()
                        .enumerate()
                        .filter(|(i, _)| {
                            mode == Redistribution::Union || i % parallelism == subtask
                        })
                        .map(|(_, item)| item.clone())
                        .collect();
                    (name, mine)
                })
                .collect(),
        })
    }
}

/// An incremental RocksDB snapshot as canonical keyed blobs.
fn convert(native: &NativeRocks, shared: &Path) -> Result<Vec<KeyedBlob>, EngineError> {
    #[cfg(feature = "rocksdb")]
    {
        static CONVERSIONS: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
        let n = CONVERSIONS.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let scratch = std::env::temp_dir().join(format!("eddy-restore-{}-{n}", std::process::id()));
        crate::state::native_to_canonical(native, shared, scratch)
            .map_err(|e| EngineError::checkpoint(format!("restoring from {}", shared.display()), e))
    }
    #[cfg(not(feature = "rocksdb"))]
    {
        let _ = native;
        Err(EngineError::checkpoint(
            format!("restoring from {}", shared.display()),
            "this checkpoint holds incremental RocksDB state; restore it with Eddy built with `--features rocksdb`, or restore from a savepoint",
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::checkpoint::snapshot::StateSnapshot;
    use crate::keygroup::key_hash;

    fn job_with(snapshots: Vec<StateSnapshot>) -> RestoredJob {
        RestoredJob {
            id: CheckpointId(1),
            path: PathBuf::new(),
            shared: PathBuf::new(),
            operators: [(
                "op".to_owned(),
                snapshots.into_iter().map(|s| s.data).collect(),
            )]
            .into(),
        }
    }

    fn keys_of(state: &RestoredState) -> Vec<u64> {
        let mut keys: Vec<u64> = state
            .keyed("count")
            .map(|k| {
                k.groups
                    .iter()
                    .flat_map(|(_, bytes)| frames(bytes).map(|f| f.unwrap().2.to_vec()))
                    .map(|body| {
                        decode_value::<(u64, (), u64)>("count", "", &body)
                            .unwrap()
                            .0
                    })
                    .collect()
            })
            .unwrap_or_default();
        keys.sort_unstable();
        keys
    }

    /// Writes keys 0..n into a snapshot with `max` key groups, as one old subtask.
    fn snapshot_of(n: u64, max: usize) -> StateSnapshot {
        let mut snap = StateSnapshot::new(CheckpointId(1), max);
        type Entry = (u64, (u64, (), u64));
        let mut by_group: BTreeMap<KeyGroup, Vec<Entry>> = BTreeMap::new();
        for k in 0..n {
            let h = key_hash(&k);
            by_group
                .entry((h % max as u64) as KeyGroup)
                .or_default()
                .push((h, (k, (), k * 10)));
        }
        for (kg, entries) in by_group {
            snap.keyed_group("count", "u64", kg, entries).unwrap();
        }
        snap
    }

    #[test]
    fn every_key_lands_on_exactly_one_subtask_at_any_parallelism_and_max_parallelism() {
        let job = job_with(vec![snapshot_of(500, 128)]);
        for (p, max) in [(1, 128), (3, 128), (4, 32), (5, 300)] {
            let mut all: Vec<u64> = (0..p)
                .flat_map(|s| keys_of(&job.for_subtask("op", s, p, max).unwrap()))
                .collect();
            all.sort_unstable();
            assert_eq!(all, (0..500).collect::<Vec<_>>(), "p={p} max={max}");
            for s in 0..p {
                let state = job.for_subtask("op", s, p, max).unwrap();
                let range = KeyGroupRange::for_subtask(s, p, max);
                for k in keys_of(&state) {
                    assert!(range.contains((key_hash(&k) % max as u64) as KeyGroup));
                }
            }
        }
    }

    #[test]
    fn split_lists_are_dealt_and_union_lists_copied() {
        let mut a = StateSnapshot::new(CheckpointId(1), 8);
        a.list("splits", Redistribution::Split, [1u32, 2, 3])
            .unwrap();
        a.list("rules", Redistribution::Union, ["x"]).unwrap();
        let mut b = StateSnapshot::new(CheckpointId(1), 8);
        b.list("splits", Redistribution::Split, [4u32]).unwrap();
        let job = job_with(vec![a, b]);
        let of = |s| job.for_subtask("op", s, 3, 8).unwrap();
        assert_eq!(of(0).list::<u32>("splits").unwrap(), vec![1, 4]);
        assert_eq!(of(1).list::<u32>("splits").unwrap(), vec![2]);
        assert_eq!(of(2).list::<u32>("splits").unwrap(), vec![3]);
        for s in 0..3 {
            assert_eq!(of(s).list::<String>("rules").unwrap(), vec!["x".to_owned()]);
        }
        assert!(job.for_subtask("other", 0, 3, 8).is_none());
    }
}
