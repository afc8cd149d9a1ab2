//! `TransactionalFileSink`: exactly-once JSON lines, one file per transaction.
//!
//! Built on [`TwoPhaseCommitSink`]; wrap it with
//! [`TransactionalFileSink::exactly_once`] to get a [`Sink`](eddy_engine::sink::Sink):
//!
//! ```no_run
//! use eddy_connectors::file::TransactionalFileSink;
//! use eddy_engine::dsl::Env;
//!
//! let env = Env::new();
//! env.from_collection((0..1_000u64).collect())
//!     .sink(TransactionalFileSink::json_lines("out/numbers").exactly_once());
//! env.execute("numbers")?;
//! let numbers = TransactionalFileSink::<u64>::read_committed("out/numbers")?;
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! Each subtask writes the current transaction into a hidden in-progress
//! file, `DIR/.part-{subtask}-{token}-{seq}.jsonl.inprogress` (`.csv…` for
//! CSV), one row per line (a JSON value, or a CSV record under the file's
//! header). The token is unique per writer instance (process id,
//! start time in nanoseconds and a counter), so a restarted job never
//! reuses a name; `seq` counts the writer's transactions.
//!
//! On a checkpoint barrier the writer *prepares*: it flushes and fsyncs the
//! in-progress file and hands its name, with the name it will have when
//! visible, to the checkpoint. When the checkpoint completes the file is
//! renamed (atomically) to
//! `DIR/part-{checkpoint:020}-{subtask:05}-{token}-{seq:06}.jsonl`; the
//! zero-padded checkpoint id sorts the committed files in checkpoint order
//! (the end-of-input transaction of a job without checkpoints carries
//! `u64::MAX`, so it sorts last). A transaction with no records leaves no
//! file. Without checkpoints, everything is committed when the input ends.
//!
//! Readers must look only at visible `part-*.jsonl` (or `part-*.csv`) files
//! ([`TransactionalFileSink::read_committed`] does): hidden files are
//! transactions not (yet) committed. A failed subtask deletes its open
//! in-progress file; a prepared file whose checkpoint never completed stays
//! hidden. A restored job deletes such leftovers of its killed writers —
//! the in-progress files no restored checkpoint refers to, which can never
//! commit ([`TransactionalFileSink::in_progress_files`] lists them).

use std::fmt;
use std::fs::{self, File};
use std::io::{self, BufRead, BufReader, BufWriter};
use std::marker::PhantomData;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

use eddy_engine::context::RuntimeContext;
use eddy_engine::element::{CheckpointId, Data, Record};
use eddy_engine::error::BoxError;
use eddy_engine::two_phase::{ExactlyOnce, TwoPhaseCommitSink, TwoPhaseCommitWriter};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use super::encode::RowFormat;
use crate::error::ConnectorError;

/// Prefix of committed (visible) files.
const PART_PREFIX: &str = "part-";
/// Prefix of in-progress (hidden) files.
const IN_PROGRESS_PREFIX: &str = ".part-";
/// Suffix of in-progress files, after the format's extension.
const IN_PROGRESS_SUFFIX: &str = ".inprogress";
/// The formats whose committed files `read_committed` reads.
const FORMATS: [RowFormat; 2] = [RowFormat::JsonLines, RowFormat::Csv];

/// An exactly-once sink writing each record's value as a row (a JSON line,
/// or a CSV record under a header per file); output becomes visible only
/// when the checkpoint covering it completes.
///
/// Use it through [`TransactionalFileSink::exactly_once`].
pub struct TransactionalFileSink<T> {
    dir: PathBuf,
    format: RowFormat,
    _in: PhantomData<fn(T)>,
}

impl<T> fmt::Debug for TransactionalFileSink<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TransactionalFileSink")
            .field("dir", &self.dir)
            .finish()
    }
}

impl<T: Data> TransactionalFileSink<T> {
    /// A sink writing JSON lines into directory `dir`, created when the job
    /// starts if it is missing.
    pub fn json_lines(dir: impl AsRef<Path>) -> Self {
        TransactionalFileSink {
            dir: dir.as_ref().to_owned(),
            format: RowFormat::JsonLines,
            _in: PhantomData,
        }
    }

    /// A sink writing CSV (a header row at the top of each committed file)
    /// into directory `dir`, created when the job starts if it is missing.
    pub fn csv(dir: impl AsRef<Path>) -> Self {
        TransactionalFileSink {
            format: RowFormat::Csv,
            ..Self::json_lines(dir)
        }
    }

    /// The sink as a job's [`Sink`](eddy_engine::sink::Sink):
    /// `stream.sink(TransactionalFileSink::json_lines(dir).exactly_once())`.
    pub fn exactly_once(self) -> ExactlyOnce<Self> {
        ExactlyOnce::new(self)
    }
}

impl<T> TransactionalFileSink<T> {
    /// The output directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The committed files in `dir` (visible `part-*.jsonl` and
    /// `part-*.csv`), sorted by name, which is checkpoint order.
    ///
    /// # Errors
    /// When `dir` cannot be listed.
    pub fn committed_files(dir: impl AsRef<Path>) -> Result<Vec<PathBuf>, ConnectorError> {
        let mut all = Vec::new();
        for format in FORMATS {
            all.extend(list_files(dir.as_ref(), PART_PREFIX, format.extension())?);
        }
        all.sort_unstable();
        Ok(all)
    }

    /// The hidden in-progress files in `dir`: transactions being written,
    /// prepared and waiting for their checkpoint, or left over from a failure.
    ///
    /// # Errors
    /// When `dir` cannot be listed.
    pub fn in_progress_files(dir: impl AsRef<Path>) -> Result<Vec<PathBuf>, ConnectorError> {
        list_files(dir.as_ref(), IN_PROGRESS_PREFIX, IN_PROGRESS_SUFFIX)
    }
}

impl<T: DeserializeOwned> TransactionalFileSink<T> {
    /// Reads every committed value in `dir`: the visible `part-*` files in
    /// name order, each file's rows in order (JSON lines, or CSV by header).
    /// Uncommitted (hidden) files are ignored.
    ///
    /// # Errors
    /// When `dir` or a file cannot be read, or a row is not a `T`.
    pub fn read_committed(dir: impl AsRef<Path>) -> Result<Vec<T>, ConnectorError> {
        let mut values = Vec::new();
        for path in Self::committed_files(dir)? {
            let file = File::open(&path).map_err(|e| ConnectorError::io("open", &path, e))?;
            let undecodable = |at: String, e: &dyn fmt::Display| {
                let reason = format!(
                    "{at}: not a value of the expected type: {e}; read it as the type the \
                     job wrote"
                );
                ConnectorError::io(
                    "decode",
                    &path,
                    io::Error::new(io::ErrorKind::InvalidData, reason),
                )
            };
            if path.extension().is_some_and(|e| e == "csv") {
                for (index, row) in csv::Reader::from_reader(file).deserialize().enumerate() {
                    values
                        .push(row.map_err(|e| undecodable(format!("data row {}", index + 1), &e))?);
                }
                continue;
            }
            for (index, line) in BufReader::new(file).lines().enumerate() {
                let line = line.map_err(|e| ConnectorError::io("read", &path, e))?;
                if line.trim().is_empty() {
                    continue;
                }
                values.push(
                    serde_json::from_str(&line)
                        .map_err(|e| undecodable(format!("line {}", index + 1), &e))?,
                );
            }
        }
        Ok(values)
    }
}

/// The regular files in `dir` whose UTF-8 names start with `prefix` and end
/// with `suffix`, sorted by name.
fn list_files(dir: &Path, prefix: &str, suffix: &str) -> Result<Vec<PathBuf>, ConnectorError> {
    let entries = fs::read_dir(dir).map_err(|e| {
        ConnectorError::io(
            "list directory",
            dir,
            with_hint(
                e,
                "check that it is the sink's output directory and is readable",
            ),
        )
    })?;
    let mut names = Vec::new();
    for entry in entries {
        let entry = entry.map_err(|e| ConnectorError::io("list directory", dir, e))?;
        let Ok(name) = entry.file_name().into_string() else {
            continue;
        };
        if !(name.starts_with(prefix) && name.ends_with(suffix)) {
            continue;
        }
        let is_file = entry
            .file_type()
            .map_err(|e| ConnectorError::io("inspect", entry.path(), e))?
            .is_file();
        if is_file {
            names.push(name);
        }
    }
    names.sort_unstable();
    Ok(names.into_iter().map(|n| dir.join(n)).collect())
}

/// `e` with `hint` (how to fix it) appended to its message.
fn with_hint(e: io::Error, hint: &str) -> io::Error {
    io::Error::new(e.kind(), format!("{e}; {hint}"))
}

/// Makes the directory entries of `dir` durable (renames, new files). Only
/// on Unix, where a directory can be opened and synced.
fn sync_dir(dir: &Path) -> Result<(), ConnectorError> {
    #[cfg(unix)]
    {
        let dir = if dir.as_os_str().is_empty() {
            Path::new(".")
        } else {
            dir
        };
        File::open(dir)
            .and_then(|d| d.sync_all())
            .map_err(|e| ConnectorError::io("sync directory", dir, e))?;
    }
    #[cfg(not(unix))]
    let _ = dir;
    Ok(())
}

/// A token unique to one writer instance: process id, wall-clock
/// nanoseconds and a per-process counter, in hex.
fn writer_token() -> String {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos());
    format!("{:x}-{nanos:x}-{n:x}", std::process::id())
}

/// A prepared transaction: the hidden file holding it and the name it gets
/// when committed.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct FileCommittable {
    /// The in-progress file, as the writer named it (output directory joined
    /// with a hidden file name).
    pub pending: PathBuf,
    /// The visible file name it is renamed to, in the same directory.
    pub final_name: String,
}

impl FileCommittable {
    /// Where the file is once committed.
    pub fn final_path(&self) -> PathBuf {
        self.pending.with_file_name(&self.final_name)
    }
}

impl<T: Data> TwoPhaseCommitSink for TransactionalFileSink<T> {
    type In = T;
    type Committable = FileCommittable;
    type Writer = TransactionalFileWriter<T>;

    fn create_writer(&self, ctx: &RuntimeContext) -> Result<Self::Writer, BoxError> {
        fs::create_dir_all(&self.dir).map_err(|e| {
            ConnectorError::io(
                "create directory",
                &self.dir,
                with_hint(
                    e,
                    "check that the parent directory is writable and the path is not a file, \
                     or choose another output directory",
                ),
            )
        })?;
        Ok(TransactionalFileWriter {
            dir: self.dir.clone(),
            format: self.format,
            subtask: ctx.subtask(),
            token: writer_token(),
            seq: 0,
            open: None,
            _in: PhantomData,
        })
    }

    fn commit(&self, committable: &FileCommittable) -> Result<(), BoxError> {
        Ok(commit(committable)?)
    }

    /// Deletes the in-progress files that no restored checkpoint refers to
    /// (open transactions of killed writers, prepared ones whose checkpoint
    /// never completed): they can never commit. Each subtask deletes those
    /// of the old subtasks numbered like it modulo the parallelism; the
    /// files of this run's writers are not there yet (a writer creates its
    /// file at its first record).
    fn clean_up_after_restore(
        &self,
        ctx: &RuntimeContext,
        restored: &[&FileCommittable],
    ) -> Result<(), BoxError> {
        if !self.dir.exists() {
            return Ok(());
        }
        let referenced: std::collections::HashSet<&std::ffi::OsStr> = restored
            .iter()
            .filter_map(|c| c.pending.file_name())
            .collect();
        let mut removed = 0;
        for path in Self::in_progress_files(&self.dir)? {
            let Some(name) = path.file_name() else {
                continue;
            };
            let subtask = name
                .to_str()
                .and_then(|n| n.strip_prefix(IN_PROGRESS_PREFIX))
                .and_then(|n| n.split('-').next())
                .and_then(|n| n.parse::<usize>().ok());
            let mine = subtask.is_some_and(|s| s % ctx.parallelism() == ctx.subtask());
            if mine && !referenced.contains(name) {
                fs::remove_file(&path).map_err(|e| ConnectorError::io("delete", &path, e))?;
                removed += 1;
            }
        }
        if removed > 0 {
            tracing::info!(dir = %self.dir.display(), removed, "deleted in-progress files no checkpoint refers to");
        }
        Ok(())
    }
}

/// Renames the pending file of `c` to its final name; committing again
/// after success does nothing.
fn commit(c: &FileCommittable) -> Result<(), ConnectorError> {
    let valid_name = !c.final_name.starts_with('.')
        && Path::new(&c.final_name).file_name() == Some(c.final_name.as_ref());
    if !valid_name {
        let reason = format!(
            "the committed name '{}' is not a visible file name; the checkpoint holding it \
             was not written by this sink",
            c.final_name
        );
        return Err(ConnectorError::io(
            "commit",
            &c.pending,
            io::Error::new(io::ErrorKind::InvalidData, reason),
        ));
    }
    let target = c.final_path();
    match fs::rename(&c.pending, &target) {
        Ok(()) => {}
        // Committed before (a restore commits the checkpoint's files again).
        Err(e) if e.kind() == io::ErrorKind::NotFound && target.is_file() => return Ok(()),
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            let reason = format!(
                "neither it nor its committed name '{}' exists, so this transaction's \
                 output is lost; were files deleted from the output directory, or was it \
                 moved since the checkpoint was taken?",
                target.display()
            );
            return Err(ConnectorError::io(
                "commit",
                &c.pending,
                io::Error::new(e.kind(), reason),
            ));
        }
        Err(e) => {
            return Err(ConnectorError::io(
                "commit",
                &c.pending,
                with_hint(
                    e,
                    &format!(
                        "renaming it to '{}' failed; check that the output directory is writable",
                        target.display()
                    ),
                ),
            ))
        }
    }
    sync_dir(c.pending.parent().unwrap_or(Path::new("")))
}

/// The transaction a writer is filling.
struct OpenFile {
    out: BufWriter<File>,
    path: PathBuf,
    /// Whether any row is in it yet (a CSV file starts with its header).
    written: bool,
}

/// The writer of one subtask of a [`TransactionalFileSink`].
pub struct TransactionalFileWriter<T> {
    dir: PathBuf,
    format: RowFormat,
    subtask: usize,
    token: String,
    seq: u64,
    open: Option<OpenFile>,
    _in: PhantomData<fn(T)>,
}

impl<T> fmt::Debug for TransactionalFileWriter<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TransactionalFileWriter")
            .field("dir", &self.dir)
            .field("subtask", &self.subtask)
            .field("token", &self.token)
            .field("seq", &self.seq)
            .field("open", &self.open.as_ref().map(|o| &o.path))
            .finish()
    }
}

impl<T> TransactionalFileWriter<T> {
    /// Creates the in-progress file of the current transaction.
    fn create_file(&self) -> Result<OpenFile, ConnectorError> {
        let name = format!(
            "{IN_PROGRESS_PREFIX}{:05}-{}-{:06}{}{IN_PROGRESS_SUFFIX}",
            self.subtask,
            self.token,
            self.seq,
            self.format.extension()
        );
        let path = self.dir.join(name);
        let file = File::options()
            .write(true)
            .create_new(true)
            .open(&path)
            .map_err(|e| ConnectorError::io("create", &path, e))?;
        Ok(OpenFile {
            out: BufWriter::with_capacity(64 * 1024, file),
            path,
            written: false,
        })
    }

    /// The visible name of transaction `seq` prepared for checkpoint `id`.
    fn final_name(&self, id: CheckpointId) -> String {
        format!(
            "{PART_PREFIX}{:020}-{:05}-{}-{:06}{}",
            id.0,
            self.subtask,
            self.token,
            self.seq,
            self.format.extension()
        )
    }
}

impl<T: Data> TwoPhaseCommitWriter for TransactionalFileWriter<T> {
    type In = T;
    type Committable = FileCommittable;

    fn write(&mut self, batch: &mut Vec<Record<T>>) -> Result<(), BoxError> {
        if batch.is_empty() {
            return Ok(());
        }
        let open = match self.open.take() {
            Some(open) => open,
            None => self.create_file()?,
        };
        let open = self.open.insert(open);
        self.format
            .write(&mut open.out, batch, !open.written, &open.path)?;
        open.written = true;
        Ok(())
    }

    fn prepare(&mut self, id: CheckpointId) -> Result<Option<FileCommittable>, BoxError> {
        let Some(open) = self.open.take() else {
            return Ok(None);
        };
        let OpenFile { out, path, .. } = open;
        let file = out
            .into_inner()
            .map_err(|e| ConnectorError::io("flush", &path, e.into_error()))?;
        file.sync_all()
            .map_err(|e| ConnectorError::io("sync", &path, e))?;
        drop(file);
        // The new file's directory entry must survive a crash too.
        sync_dir(&self.dir)?;
        let committable = FileCommittable {
            final_name: self.final_name(id),
            pending: path,
        };
        self.seq += 1;
        Ok(Some(committable))
    }
}

impl<T> Drop for TransactionalFileWriter<T> {
    /// A transaction still open was never prepared, so no checkpoint refers
    /// to it and it can never be committed: delete its file.
    fn drop(&mut self) {
        if let Some(open) = self.open.take() {
            let OpenFile { out, path, .. } = open;
            drop(out.into_parts());
            if let Err(e) = fs::remove_file(&path) {
                tracing::warn!(path = %path.display(), error = %e, "transactional file sink: cannot delete an aborted in-progress file");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use eddy_engine::clock::SystemClock;
    use eddy_engine::element::Timestamp;

    use super::*;

    type TestResult = Result<(), BoxError>;

    fn ctx(subtask: usize) -> RuntimeContext {
        RuntimeContext::standalone("sink", subtask, 2, 128, Arc::new(SystemClock))
    }

    fn batch(values: impl IntoIterator<Item = u64>) -> Vec<Record<u64>> {
        values
            .into_iter()
            .map(|v| Record::new(Timestamp(v as i64), v))
            .collect()
    }

    fn read(dir: &Path) -> Result<Vec<u64>, ConnectorError> {
        TransactionalFileSink::<u64>::read_committed(dir)
    }

    fn hidden(dir: &Path) -> Result<Vec<PathBuf>, ConnectorError> {
        TransactionalFileSink::<u64>::in_progress_files(dir)
    }

    #[test]
    fn prepared_output_is_hidden_until_committed_and_commit_is_idempotent() -> TestResult {
        let tmp = tempfile::tempdir()?;
        let dir = tmp.path().join("nested/out");
        let sink = TransactionalFileSink::<u64>::json_lines(&dir);
        let mut writer = sink.create_writer(&ctx(1))?;
        writer.write(&mut batch(0..3))?;
        writer.write(&mut batch(3..5))?;
        let c = writer.prepare(CheckpointId(1))?.ok_or("a committable")?;

        assert!(read(&dir)?.is_empty());
        assert_eq!(hidden(&dir)?, vec![c.pending.clone()]);
        let pending_name = c.pending.file_name().and_then(|n| n.to_str()).unwrap_or("");
        assert!(pending_name.starts_with(".part-00001-"), "{pending_name}");
        assert!(
            c.final_name.starts_with("part-00000000000000000001-00001-")
                && c.final_name.ends_with("-000000.jsonl"),
            "{}",
            c.final_name
        );
        assert_eq!(fs::read_to_string(&c.pending)?, "0\n1\n2\n3\n4\n");

        sink.commit(&c)?;
        assert_eq!(read(&dir)?, vec![0, 1, 2, 3, 4]);
        assert!(hidden(&dir)?.is_empty());
        assert_eq!(
            TransactionalFileSink::<u64>::committed_files(&dir)?,
            vec![dir.join(&c.final_name)]
        );

        sink.commit(&c)?;
        assert_eq!(read(&dir)?, vec![0, 1, 2, 3, 4]);
        Ok(())
    }

    #[test]
    fn transactions_commit_in_checkpoint_order_and_empty_ones_leave_no_file() -> TestResult {
        let tmp = tempfile::tempdir()?;
        let sink = TransactionalFileSink::<u64>::json_lines(tmp.path());
        let mut writer = sink.create_writer(&ctx(0))?;
        assert_eq!(writer.prepare(CheckpointId(1))?, None);
        writer.write(&mut Vec::new())?;
        assert_eq!(writer.prepare(CheckpointId(2))?, None);
        assert!(hidden(tmp.path())?.is_empty());

        writer.write(&mut batch([10, 11]))?;
        let second = writer.prepare(CheckpointId(9))?.ok_or("second")?;
        writer.write(&mut batch([12]))?;
        let last = writer.prepare(CheckpointId::END)?.ok_or("last")?;
        assert_eq!(writer.prepare(CheckpointId::END)?, None);
        assert!(last.final_name.starts_with(&format!("part-{}-", u64::MAX)));
        assert!(second.final_name < last.final_name);

        // Committed out of order, read in checkpoint order.
        sink.commit(&last)?;
        assert_eq!(read(tmp.path())?, vec![12]);
        sink.commit(&second)?;
        assert_eq!(read(tmp.path())?, vec![10, 11, 12]);
        Ok(())
    }

    #[test]
    fn uncommitted_transactions_never_show_and_aborted_writers_clean_up() -> TestResult {
        let tmp = tempfile::tempdir()?;
        let sink = TransactionalFileSink::<u64>::json_lines(tmp.path());
        let mut a = sink.create_writer(&ctx(0))?;
        let mut b = sink.create_writer(&ctx(0))?;
        a.write(&mut batch([1]))?;
        b.write(&mut batch([2]))?;
        let ca = a.prepare(CheckpointId(1))?.ok_or("a")?;
        let cb = b.prepare(CheckpointId(1))?.ok_or("b")?;
        assert_ne!(
            ca.pending, cb.pending,
            "writer instances never share a file"
        );
        assert_ne!(ca.final_name, cb.final_name);
        sink.commit(&ca)?;
        // b's transaction is prepared but its checkpoint never completes,
        // and a has a transaction open when it fails.
        a.write(&mut batch([3]))?;
        assert_eq!(read(tmp.path())?, vec![1]);
        assert_eq!(hidden(tmp.path())?.len(), 2);
        drop(a);
        assert_eq!(hidden(tmp.path())?, vec![cb.pending.clone()]);
        assert_eq!(read(tmp.path())?, vec![1]);
        Ok(())
    }

    #[test]
    fn a_commit_whose_files_are_both_gone_names_both_paths() -> TestResult {
        let tmp = tempfile::tempdir()?;
        let sink = TransactionalFileSink::<u64>::json_lines(tmp.path());
        let mut writer = sink.create_writer(&ctx(0))?;
        writer.write(&mut batch([1]))?;
        let c = writer.prepare(CheckpointId(4))?.ok_or("c")?;
        fs::remove_file(&c.pending)?;
        let msg = sink
            .commit(&c)
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert!(msg.contains(&c.pending.display().to_string()), "{msg}");
        assert!(msg.contains(&c.final_path().display().to_string()), "{msg}");
        assert!(msg.contains("lost"), "{msg}");
        Ok(())
    }

    #[test]
    fn a_committable_naming_a_path_outside_the_directory_is_rejected() -> TestResult {
        let tmp = tempfile::tempdir()?;
        let sink = TransactionalFileSink::<u64>::json_lines(tmp.path());
        for bad in ["../escape.jsonl", ".hidden.jsonl", "", "a/b.jsonl"] {
            let c = FileCommittable {
                pending: tmp.path().join(".x"),
                final_name: bad.to_owned(),
            };
            assert!(sink.commit(&c).is_err(), "{bad:?}");
        }
        Ok(())
    }

    #[test]
    fn a_directory_that_cannot_be_created_is_named() -> TestResult {
        let tmp = tempfile::tempdir()?;
        let file = tmp.path().join("a-file");
        fs::write(&file, "x")?;
        let dir = file.join("out");
        let sink = TransactionalFileSink::<u64>::json_lines(&dir);
        let msg = sink
            .create_writer(&ctx(0))
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert!(msg.contains(&dir.display().to_string()), "{msg}");
        assert!(msg.contains("choose another output directory"), "{msg}");
        Ok(())
    }

    #[test]
    fn reading_names_the_file_and_line_that_does_not_decode() -> TestResult {
        let tmp = tempfile::tempdir()?;
        let path = tmp.path().join("part-1.jsonl");
        fs::write(&path, "1\n\"two\"\n")?;
        fs::write(tmp.path().join(".part-2.jsonl.inprogress"), "oops\n")?;
        let msg = read(tmp.path())
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert!(msg.contains(&path.display().to_string()), "{msg}");
        assert!(msg.contains("line 2"), "{msg}");

        let missing = tmp.path().join("missing");
        let msg = read(&missing)
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert!(msg.contains(&missing.display().to_string()), "{msg}");
        Ok(())
    }

    #[test]
    fn a_restore_deletes_the_leftovers_of_its_subtasks_no_checkpoint_refers_to() -> TestResult {
        let tmp = tempfile::tempdir()?;
        let sink = TransactionalFileSink::<u64>::json_lines(tmp.path());
        let hidden = |subtask: usize, token: &str| {
            tmp.path().join(format!(
                ".part-{subtask:05}-{token}-000000.jsonl.inprogress"
            ))
        };
        for subtask in 0..4 {
            fs::write(hidden(subtask, "old"), "1\n")?;
        }
        fs::write(hidden(2, "prepared"), "2\n")?;
        let prepared = FileCommittable {
            pending: hidden(2, "prepared"),
            final_name: "part-x.jsonl".into(),
        };
        // Subtask 0 of 2: the old subtasks 0 and 2 are its own.
        sink.clean_up_after_restore(&ctx(0), &[&prepared])?;
        let mut left = TransactionalFileSink::<u64>::in_progress_files(tmp.path())?;
        left.sort();
        let mut want = vec![hidden(1, "old"), hidden(2, "prepared"), hidden(3, "old")];
        want.sort();
        assert_eq!(left, want);
        Ok(())
    }
}
