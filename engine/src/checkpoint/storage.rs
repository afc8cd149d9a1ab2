//! Checkpoint storage on a file system.
//!
//! A job's checkpoints live under `<checkpoint dir>/<job>/chk-<n>/`: one state
//! file per task (`<vertex>-<subtask>.state`, bincode of its operators'
//! snapshots) and `_metadata` (JSON), written last by temp file + rename. A
//! checkpoint without `_metadata` is incomplete and never restored from. A
//! savepoint is the same layout in a directory the user names.

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::checkpoint::snapshot::OperatorSnapshot;
use crate::element::CheckpointId;
use crate::error::EngineError;

/// Name of the file that makes a checkpoint complete.
pub(crate) const METADATA: &str = "_metadata";
const FORMAT_VERSION: u32 = 1;

/// Whether a snapshot was taken periodically or on request.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SnapshotKind {
    /// Periodic, owned and deleted by the job.
    Checkpoint,
    /// Requested by the user, never deleted by the job.
    Savepoint,
}

/// One task's state file, as recorded in the metadata.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub(crate) struct FileEntry {
    pub name: String,
    pub bytes: u64,
    pub xxh3: u64,
    /// Bytes of new files this task put into shared storage.
    #[serde(default)]
    pub uploaded: u64,
}

/// Parallelism and key groups of one operator when it was snapshotted.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub(crate) struct OperatorEntry {
    pub uid: String,
    pub parallelism: usize,
    pub max_parallelism: usize,
}

/// The `_metadata` of a complete checkpoint or savepoint.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub(crate) struct Metadata {
    pub format: u32,
    pub job: String,
    pub id: u64,
    pub kind: SnapshotKind,
    pub taken_at_ms: i64,
    pub operators: Vec<OperatorEntry>,
    pub files: Vec<FileEntry>,
    /// Files in the job's shared storage that this checkpoint needs
    /// (incremental RocksDB checkpoints).
    #[serde(default)]
    pub shared: Vec<String>,
}

impl Metadata {
    pub(crate) fn new(job: &str, id: CheckpointId, kind: SnapshotKind, taken_at_ms: i64) -> Self {
        Metadata {
            format: FORMAT_VERSION,
            job: job.to_owned(),
            id: id.0,
            kind,
            taken_at_ms,
            operators: Vec::new(),
            files: Vec::new(),
            shared: Vec::new(),
        }
    }
}

fn io_error(context: impl Into<String>, e: std::io::Error) -> EngineError {
    EngineError::checkpoint(context, e)
}

/// The directory of checkpoint `id` under a job's checkpoint root.
pub(crate) fn checkpoint_dir(root: &Path, id: CheckpointId) -> PathBuf {
    root.join(format!("chk-{}", id.0))
}

/// The directory of files shared by the checkpoints of a job.
pub(crate) fn shared_dir(root: &Path) -> PathBuf {
    root.join("shared")
}

/// Copies the files a task's snapshots refer to into shared storage (only
/// those not there yet: an SST file never changes under its name), then
/// deletes the task's scratch copies.
fn upload(shared: &Path, operators: &[(String, OperatorSnapshot)]) -> Result<u64, EngineError> {
    let mut uploaded = 0;
    for (_, snapshot) in operators {
        if !snapshot.uploads.is_empty() {
            fs::create_dir_all(shared)
                .map_err(|e| io_error(format!("creating {}", shared.display()), e))?;
        }
        for u in &snapshot.uploads {
            let to = shared.join(&u.shared_id);
            if to.exists() {
                continue;
            }
            let context = || format!("uploading {} to {}", u.from.display(), to.display());
            // A hard link is an upload for free when both are on one disk.
            if fs::hard_link(&u.from, &to).is_err() {
                let tmp = to.with_extension("uploading");
                fs::copy(&u.from, &tmp).map_err(|e| io_error(context(), e))?;
                fs::rename(&tmp, &to).map_err(|e| io_error(context(), e))?;
            }
            uploaded += fs::metadata(&to).map_or(0, |m| m.len());
        }
        if let Some(scratch) = &snapshot.scratch {
            let _ = fs::remove_dir_all(scratch);
        }
    }
    Ok(uploaded)
}

/// Total size of the shared files `ids` under a job's checkpoint root.
pub(crate) fn shared_size(root: &Path, ids: &[String]) -> u64 {
    let shared = shared_dir(root);
    ids.iter()
        .filter_map(|id| fs::metadata(shared.join(id)).ok())
        .map(|m| m.len())
        .sum()
}

/// Writes one task's state file into `dir`, after uploading the shared
/// files it refers to; returns its metadata entry.
pub(crate) fn write_task_file(
    dir: &Path,
    vertex: usize,
    subtask: usize,
    operators: &[(String, OperatorSnapshot)],
) -> Result<FileEntry, EngineError> {
    let uploaded = match dir.parent() {
        Some(root) => upload(&shared_dir(root), operators)?,
        None => 0,
    };
    let name = format!("{vertex}-{subtask}.state");
    let path = dir.join(&name);
    let bytes = bincode::serialize(operators)
        .map_err(|e| EngineError::checkpoint(format!("encoding {}", path.display()), e))?;
    write_synced(&path, &bytes)?;
    Ok(FileEntry {
        name,
        bytes: bytes.len() as u64,
        xxh3: xxhash_rust::xxh3::xxh3_64(&bytes),
        uploaded,
    })
}

fn write_synced(path: &Path, bytes: &[u8]) -> Result<(), EngineError> {
    let context = || format!("writing {}", path.display());
    let mut file = fs::File::create(path).map_err(|e| io_error(context(), e))?;
    file.write_all(bytes).map_err(|e| io_error(context(), e))?;
    file.sync_all().map_err(|e| io_error(context(), e))
}

/// Writes `_metadata` atomically (temp file, fsync, rename): only now is
/// the checkpoint in `dir` complete.
pub(crate) fn write_metadata(dir: &Path, metadata: &Metadata) -> Result<(), EngineError> {
    let bytes = serde_json::to_vec_pretty(metadata).map_err(|e| {
        EngineError::checkpoint(format!("encoding metadata in {}", dir.display()), e)
    })?;
    let tmp = dir.join(format!("{METADATA}.inprogress"));
    write_synced(&tmp, &bytes)?;
    fs::rename(&tmp, dir.join(METADATA))
        .map_err(|e| io_error(format!("completing {}", dir.display()), e))?;
    // Make the rename itself durable.
    if let Ok(d) = fs::File::open(dir) {
        let _ = d.sync_all();
    }
    Ok(())
}

/// Reads and checks the metadata of the checkpoint or savepoint in `dir`.
pub(crate) fn read_metadata(dir: &Path) -> Result<Metadata, EngineError> {
    let path = dir.join(METADATA);
    let context = || format!("reading {}", path.display());
    let bytes = fs::read(&path).map_err(|e| {
        EngineError::checkpoint(
            context(),
            format!("{e}; a complete checkpoint or savepoint directory holds a _metadata file"),
        )
    })?;
    let metadata: Metadata = serde_json::from_slice(&bytes)
        .map_err(|e| EngineError::checkpoint(context(), format!("damaged metadata: {e}")))?;
    if metadata.format != FORMAT_VERSION {
        return Err(EngineError::checkpoint(
            context(),
            format!(
                "format version {} is not supported (this Eddy reads version {FORMAT_VERSION})",
                metadata.format
            ),
        ));
    }
    Ok(metadata)
}

/// Reads one task's state file and checks it against its metadata entry.
pub(crate) fn read_task_file(
    dir: &Path,
    entry: &FileEntry,
) -> Result<Vec<(String, OperatorSnapshot)>, EngineError> {
    let path = dir.join(&entry.name);
    let context = || format!("reading {}", path.display());
    let bytes = fs::read(&path).map_err(|e| io_error(context(), e))?;
    if bytes.len() as u64 != entry.bytes || xxhash_rust::xxh3::xxh3_64(&bytes) != entry.xxh3 {
        return Err(EngineError::checkpoint(
            context(),
            "damaged state file: size or checksum differs from _metadata; restore from another checkpoint or savepoint",
        ));
    }
    bincode::deserialize(&bytes)
        .map_err(|e| EngineError::checkpoint(context(), format!("damaged state file: {e}")))
}

/// Ids of the `chk-<n>` directories under `root`, complete or not.
fn checkpoint_ids(root: &Path) -> Vec<(u64, bool)> {
    let Ok(entries) = fs::read_dir(root) else {
        return Vec::new();
    };
    let mut ids: Vec<(u64, bool)> = entries
        .filter_map(Result::ok)
        .filter_map(|e| {
            let name = e.file_name().into_string().ok()?;
            let id = name.strip_prefix("chk-")?.parse().ok()?;
            Some((id, e.path().join(METADATA).is_file()))
        })
        .collect();
    ids.sort_unstable();
    ids
}

/// The newest complete checkpoint under a job's checkpoint root.
pub(crate) fn latest_complete(root: &Path) -> Option<PathBuf> {
    checkpoint_ids(root)
        .into_iter()
        .rev()
        .find(|(_, complete)| *complete)
        .map(|(id, _)| checkpoint_dir(root, CheckpointId(id)))
}

/// Where the next checkpoint id is recorded.
fn next_id_file(root: &Path) -> PathBuf {
    root.join("next-checkpoint-id")
}

/// The id after every checkpoint and savepoint ever started for the job
/// under `root`, so ids (which sinks may name transactions after) never
/// repeat across restarts.
pub(crate) fn next_id(root: &Path) -> CheckpointId {
    let scanned = checkpoint_ids(root).last().map_or(1, |(id, _)| id + 1);
    let recorded = fs::read_to_string(next_id_file(root))
        .ok()
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(1);
    CheckpointId(scanned.max(recorded))
}

/// Records that ids below `next` are taken.
pub(crate) fn record_next_id(root: &Path, next: CheckpointId) {
    let path = next_id_file(root);
    let tmp = path.with_extension("tmp");
    let written = fs::create_dir_all(root)
        .and_then(|()| fs::write(&tmp, next.0.to_string()))
        .and_then(|()| fs::rename(&tmp, &path));
    if let Err(e) = written {
        tracing::warn!(path = %path.display(), error = %e, "cannot record the next checkpoint id");
    }
}

/// Deletes all but the newest `keep` complete checkpoints, incomplete ones
/// older than the newest complete one, and shared files that neither a
/// remaining checkpoint nor one in flight (`in_flight`) refers to.
pub(crate) fn prune(root: &Path, keep: usize, in_flight: &std::collections::HashSet<String>) {
    let ids = checkpoint_ids(root);
    let complete: Vec<u64> = ids.iter().filter(|(_, c)| *c).map(|(id, _)| *id).collect();
    let Some(&newest) = complete.last() else {
        return;
    };
    let kept = &complete[complete.len().saturating_sub(keep.max(1))..];
    for (id, _) in ids {
        if id < newest && !kept.contains(&id) {
            let dir = checkpoint_dir(root, CheckpointId(id));
            if let Err(e) = fs::remove_dir_all(&dir) {
                tracing::warn!(dir = %dir.display(), error = %e, "cannot delete an old checkpoint");
            }
        }
    }
    let Ok(files) = fs::read_dir(shared_dir(root)) else {
        return;
    };
    let mut needed = in_flight.clone();
    for id in kept {
        match read_metadata(&checkpoint_dir(root, CheckpointId(*id))) {
            Ok(m) => needed.extend(m.shared),
            // Unsure what is needed: delete nothing.
            Err(_) => return,
        }
    }
    for file in files.filter_map(Result::ok) {
        let name = file.file_name().to_string_lossy().into_owned();
        if !needed.contains(&name) {
            let _ = fs::remove_file(file.path());
        }
    }
}

/// Deletes the directory of a checkpoint that did not complete.
pub(crate) fn discard(root: &Path, id: CheckpointId) {
    let _ = fs::remove_dir_all(checkpoint_dir(root, id));
}
