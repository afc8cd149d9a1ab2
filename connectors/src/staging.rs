//! [`StagingBuffer`]: what an exactly-once sink holds for the current
//! checkpoint (rows, commands), in memory up to a bound and in a file of
//! the operator's staging directory beyond it, so a long checkpoint
//! interval at a high rate never runs the process out of memory.
//!
//! What a writer prepares is a [`Staged`] committable: the items
//! themselves when they fit in memory, or the path of a synced file and its
//! item count. Committing reads the file back in chunks of about the same
//! bound and deletes it once every chunk is applied; a committable whose
//! file is gone was committed already (the file goes only after a commit
//! succeeded, and a checkpoint completes only after its files are synced).

use std::fs::{self, File};
use std::io::{BufReader, BufWriter};
use std::path::{Path, PathBuf};

use eddy_engine::context::RuntimeContext;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use crate::error::ConnectorError;
use crate::run_id::writer_run_id;

/// What a writer holds in memory before it spills to its staging file,
/// unless told otherwise: 32 MiB per sink subtask.
pub const DEFAULT_BUFFER_BYTES: usize = 32 << 20;

/// The file name suffix of staging files.
const SUFFIX: &str = ".staged";

/// One checkpoint's items, prepared for their commit.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Staged<T> {
    /// The items, when they fit in memory.
    Inline(Vec<T>),
    /// The items in a synced file (bincode, one after another).
    File {
        /// The file, in the sink's staging directory.
        path: PathBuf,
        /// How many items it holds.
        items: u64,
    },
}

impl<T: Serialize + DeserializeOwned> Staged<T> {
    /// Hands the items to `apply` in order, in chunks of about `max_bytes`
    /// (as `bytes` measures an item), each with the place of its first item
    /// and whether it is the last chunk. Returns `false`, calling nothing,
    /// when the file is gone: a commit of these items succeeded before.
    ///
    /// # Errors
    /// The file cannot be read (named), or `apply` fails.
    pub fn for_each_chunk<E: From<ConnectorError>>(
        &self,
        max_bytes: usize,
        bytes: impl Fn(&T) -> usize,
        mut apply: impl FnMut(u64, &[T], bool) -> Result<(), E>,
    ) -> Result<bool, E> {
        let (path, items) = match self {
            Staged::Inline(items) => {
                apply(0, items, true)?;
                return Ok(true);
            }
            Staged::File { path, items } => (path, *items),
        };
        let file = match File::open(path) {
            Ok(file) => file,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(false),
            Err(e) => return Err(ConnectorError::io("open", path, e).into()),
        };
        let mut input = BufReader::new(file);
        let (mut read, mut first) = (0u64, 0u64);
        let mut chunk = Vec::new();
        let mut chunk_bytes = 0;
        while read < items {
            let item: T = bincode::deserialize_from(&mut input).map_err(|e| {
                ConnectorError::io(
                    "read",
                    path,
                    std::io::Error::new(
                        std::io::ErrorKind::InvalidData,
                        format!("item {read} of {items}: {e}"),
                    ),
                )
            })?;
            read += 1;
            chunk_bytes += bytes(&item);
            chunk.push(item);
            if chunk_bytes >= max_bytes || read == items {
                apply(first, &chunk, read == items)?;
                first = read;
                chunk.clear();
                chunk_bytes = 0;
            }
        }
        Ok(true)
    }

    /// Deletes the file once the items are committed.
    ///
    /// # Errors
    /// It cannot be deleted (a missing file is fine).
    pub fn discard(&self) -> Result<(), ConnectorError> {
        match self {
            Staged::Inline(_) => Ok(()),
            Staged::File { path, .. } => match fs::remove_file(path) {
                Ok(()) => Ok(()),
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
                Err(e) => Err(ConnectorError::io("delete", path, e)),
            },
        }
    }

    /// The file, if the items are in one.
    fn path(&self) -> Option<&Path> {
        match self {
            Staged::Inline(_) => None,
            Staged::File { path, .. } => Some(path),
        }
    }
}

/// The file of the checkpoint being written.
struct Spill {
    path: PathBuf,
    out: BufWriter<File>,
    items: u64,
}

/// The current checkpoint's items of one sink subtask: in memory up to a
/// bound, then in a file in the operator's
/// [staging directory](RuntimeContext::staging_dir).
pub struct StagingBuffer<T> {
    dir: PathBuf,
    /// `<subtask>-<writer run id>-`: tells whose files are whose.
    prefix: String,
    limit: usize,
    memory: Vec<T>,
    bytes: usize,
    spill: Option<Spill>,
    files: u64,
}

impl<T: Serialize + DeserializeOwned> StagingBuffer<T> {
    /// A buffer for the subtask of `ctx` holding up to `limit` bytes (as
    /// the caller measures them) in memory.
    pub fn new(ctx: &RuntimeContext, limit: usize) -> Self {
        StagingBuffer {
            dir: ctx.staging_dir(),
            prefix: format!("{}-{:016x}-", ctx.subtask(), writer_run_id(ctx)),
            limit: limit.max(1),
            memory: Vec::new(),
            bytes: 0,
            spill: None,
            files: 0,
        }
    }

    /// Adds `item`, of about `bytes` bytes; writes what memory holds to the
    /// staging file once it holds more than the bound.
    ///
    /// # Errors
    /// The staging file cannot be written (named).
    pub fn push(&mut self, item: T, bytes: usize) -> Result<(), ConnectorError> {
        self.memory.push(item);
        self.bytes += bytes;
        if self.bytes > self.limit {
            self.spill()?;
        }
        Ok(())
    }

    /// Writes what memory holds to the staging file.
    ///
    /// # Errors
    /// The staging file cannot be written (named).
    pub fn spill(&mut self) -> Result<(), ConnectorError> {
        if self.memory.is_empty() {
            return Ok(());
        }
        if self.spill.is_none() {
            fs::create_dir_all(&self.dir)
                .map_err(|e| ConnectorError::io("create", &self.dir, e))?;
            let path = self
                .dir
                .join(format!("{}{}{SUFFIX}", self.prefix, self.files));
            self.files += 1;
            let file = File::create(&path).map_err(|e| ConnectorError::io("create", &path, e))?;
            self.spill = Some(Spill {
                path,
                out: BufWriter::with_capacity(1 << 20, file),
                items: 0,
            });
        }
        let Some(spill) = self.spill.as_mut() else {
            return Ok(());
        };
        for item in self.memory.drain(..) {
            bincode::serialize_into(&mut spill.out, &item).map_err(|e| {
                ConnectorError::io("write", &spill.path, std::io::Error::other(e.to_string()))
            })?;
            spill.items += 1;
        }
        self.bytes = 0;
        Ok(())
    }

    /// Whether it holds nothing.
    pub fn is_empty(&self) -> bool {
        self.memory.is_empty() && self.spill.is_none()
    }

    /// The checkpoint's items for its commit (`None` when there are none),
    /// with the file synced when there is one; the buffer starts the next
    /// checkpoint empty.
    ///
    /// # Errors
    /// The staging file cannot be written or synced (named).
    pub fn prepare(&mut self) -> Result<Option<Staged<T>>, ConnectorError> {
        if self.spill.is_none() {
            self.bytes = 0;
            return Ok(
                (!self.memory.is_empty()).then(|| Staged::Inline(std::mem::take(&mut self.memory)))
            );
        }
        self.spill()?;
        let Some(spill) = self.spill.take() else {
            return Ok(None);
        };
        let path = spill.path;
        let file = spill
            .out
            .into_inner()
            .map_err(|e| ConnectorError::io("write", &path, e.into_error()))?;
        file.sync_all()
            .map_err(|e| ConnectorError::io("sync", &path, e))?;
        if let Ok(dir) = File::open(&self.dir) {
            let _ = dir.sync_all();
        }
        Ok(Some(Staged::File {
            path,
            items: spill.items,
        }))
    }
}

impl<T> Drop for StagingBuffer<T> {
    /// A writer going away leaves no half-written file behind (a prepared
    /// one belongs to its committable).
    fn drop(&mut self) {
        if let Some(spill) = self.spill.take() {
            drop(spill.out);
            let _ = fs::remove_file(&spill.path);
        }
    }
}

/// Deletes the staging files in the staging directory of `ctx` that
/// subtasks this one stands for after a restore (those whose index is this
/// subtask's modulo the parallelism) left behind and no restored
/// committable refers to: they belong to checkpoints that never completed.
///
/// # Errors
/// The directory cannot be read or a file deleted (named).
pub fn clean_up_after_restore<'a, T: Serialize + DeserializeOwned + 'static>(
    ctx: &RuntimeContext,
    restored: impl IntoIterator<Item = &'a Staged<T>>,
) -> Result<(), ConnectorError> {
    let dir = ctx.staging_dir();
    let entries = match fs::read_dir(&dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(ConnectorError::io("read", &dir, e)),
    };
    let referenced: std::collections::HashSet<PathBuf> = restored
        .into_iter()
        .filter_map(|s| s.path().map(Path::to_path_buf))
        .collect();
    let mut removed = 0;
    for entry in entries.filter_map(Result::ok) {
        let path = entry.path();
        let Some(name) = path.file_name().and_then(|n| n.to_str()) else {
            continue;
        };
        let subtask = name
            .strip_suffix(SUFFIX)
            .and_then(|n| n.split('-').next())
            .and_then(|n| n.parse::<usize>().ok());
        let mine = subtask.is_some_and(|s| s % ctx.parallelism() == ctx.subtask());
        if mine && !referenced.contains(&path) {
            fs::remove_file(&path).map_err(|e| ConnectorError::io("delete", &path, e))?;
            removed += 1;
        }
    }
    if removed > 0 {
        tracing::info!(dir = %dir.display(), removed, "deleted staging files no checkpoint refers to");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use eddy_engine::clock::SystemClock;

    use super::*;

    fn ctx(dir: &Path, subtask: usize, parallelism: usize) -> RuntimeContext {
        RuntimeContext::standalone("sink", subtask, parallelism, 128, Arc::new(SystemClock))
            .with_staging_root(dir.to_path_buf())
    }

    fn chunks(staged: &Staged<String>, max: usize) -> Vec<(u64, Vec<String>, bool)> {
        let mut out = Vec::new();
        let found = staged
            .for_each_chunk::<ConnectorError>(max, String::len, |first, items, last| {
                out.push((first, items.to_vec(), last));
                Ok(())
            })
            .unwrap_or(false);
        assert!(found);
        out
    }

    #[test]
    fn items_within_the_bound_stay_in_memory() -> Result<(), ConnectorError> {
        let tmp = tempfile::tempdir().map_err(|e| ConnectorError::io("create", "tmp", e))?;
        let mut buffer = StagingBuffer::new(&ctx(tmp.path(), 0, 1), 100);
        assert_eq!(buffer.prepare()?, None);
        buffer.push("a".to_owned(), 1)?;
        buffer.push("b".to_owned(), 1)?;
        let staged = buffer.prepare()?;
        assert_eq!(staged, Some(Staged::Inline(vec!["a".into(), "b".into()])));
        assert!(buffer.is_empty());
        Ok(())
    }

    #[test]
    fn items_beyond_the_bound_go_to_a_file_read_back_in_chunks_in_order(
    ) -> Result<(), ConnectorError> {
        let tmp = tempfile::tempdir().map_err(|e| ConnectorError::io("create", "tmp", e))?;
        let mut buffer = StagingBuffer::new(&ctx(tmp.path(), 0, 1), 10);
        let items: Vec<String> = (0..25).map(|i| format!("{i:04}")).collect();
        for item in &items {
            buffer.push(item.clone(), item.len())?;
        }
        let Some(staged) = buffer.prepare()? else {
            panic!("nothing prepared");
        };
        assert!(matches!(staged, Staged::File { items: 25, .. }));
        let read = chunks(&staged, 12);
        assert!(read.iter().all(|(_, chunk, _)| chunk.len() <= 3));
        assert_eq!(read.iter().filter(|(_, _, last)| *last).count(), 1);
        assert!(read.last().is_some_and(|(_, _, last)| *last));
        let mut next = 0;
        for (first, chunk, _) in &read {
            assert_eq!(*first, next);
            next += chunk.len() as u64;
        }
        let flat: Vec<String> = read.into_iter().flat_map(|(_, c, _)| c).collect();
        assert_eq!(flat, items);
        staged.discard()?;
        let found = staged.for_each_chunk::<ConnectorError>(12, String::len, |_, _, _| {
            panic!("a discarded file was read")
        })?;
        assert!(!found, "a discarded file counts as committed");
        Ok(())
    }

    #[test]
    fn a_restore_deletes_only_unreferenced_files_of_the_subtasks_it_stands_for(
    ) -> Result<(), ConnectorError> {
        let tmp = tempfile::tempdir().map_err(|e| ConnectorError::io("create", "tmp", e))?;
        let mut staged = Vec::new();
        for subtask in 0..4 {
            for _ in 0..2 {
                let mut buffer = StagingBuffer::new(&ctx(tmp.path(), subtask, 4), 1);
                buffer.push("row".to_owned(), 2)?;
                if let Some(s) = buffer.prepare()? {
                    staged.push(s);
                }
            }
        }
        // Restored at parallelism 2, subtask 0 stands for 0 and 2; the
        // checkpoint refers to the first file of each.
        let referenced: Vec<&Staged<String>> = staged.iter().step_by(2).collect();
        clean_up_after_restore(&ctx(tmp.path(), 0, 2), referenced)?;
        let exists: Vec<bool> = staged
            .iter()
            .map(|s| s.path().is_some_and(Path::exists))
            .collect();
        assert_eq!(exists, [true, false, true, true, true, false, true, true]);
        Ok(())
    }

    #[test]
    fn a_writer_dropped_mid_checkpoint_leaves_no_file() -> Result<(), ConnectorError> {
        let tmp = tempfile::tempdir().map_err(|e| ConnectorError::io("create", "tmp", e))?;
        let c = ctx(tmp.path(), 0, 1);
        let mut buffer = StagingBuffer::new(&c, 1);
        buffer.push("row".to_owned(), 2)?;
        drop(buffer);
        let left = fs::read_dir(c.staging_dir())
            .map(Iterator::count)
            .unwrap_or(0);
        assert_eq!(left, 0);
        Ok(())
    }
}
