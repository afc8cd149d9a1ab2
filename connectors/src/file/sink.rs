//! `FileSink`: JSON lines or CSV, one file per subtask.
//!
//! Subtask `i` (0-based) writes `DIR/part-{i}.jsonl` (or `.csv`), created or
//! truncated when the writer opens. Only the value is written, not its
//! timestamp.
//!
//! Delivery: the file is written through a buffer and flushed when the
//! input ends; it is not transactional. After a failure and restore the
//! file is rewritten from the restored position on, so earlier records are
//! lost from it: use it for bounded jobs and tests, and
//! [`TransactionalFileSink`](super::TransactionalFileSink) for exactly once.

use std::fmt;
use std::fs::{self, File};
use std::io::{BufWriter, Write};
use std::marker::PhantomData;
use std::path::{Path, PathBuf};

use eddy_engine::context::RuntimeContext;
use eddy_engine::element::{Data, Record};
use eddy_engine::error::BoxError;
use eddy_engine::sink::{Sink, SinkWriter};

use super::encode::RowFormat;
use crate::error::ConnectorError;

/// Writes each record's value as a row — a JSON line or a CSV record — into
/// `DIR/part-{subtask}` with the format's extension.
pub struct FileSink<T> {
    dir: PathBuf,
    format: RowFormat,
    _in: PhantomData<fn(T)>,
}

impl<T> fmt::Debug for FileSink<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FileSink")
            .field("dir", &self.dir)
            .field("format", &self.format)
            .finish()
    }
}

impl<T: Data> FileSink<T> {
    /// JSON lines into directory `dir` (created if missing).
    pub fn json_lines(dir: impl AsRef<Path>) -> Self {
        Self::new(dir.as_ref(), RowFormat::JsonLines)
    }

    /// CSV with a header row into directory `dir` (created if missing).
    pub fn csv(dir: impl AsRef<Path>) -> Self {
        Self::new(dir.as_ref(), RowFormat::Csv)
    }

    fn new(dir: &Path, format: RowFormat) -> Self {
        FileSink {
            dir: dir.to_owned(),
            format,
            _in: PhantomData,
        }
    }

    /// The file subtask `subtask` writes.
    pub fn part_path(&self, subtask: usize) -> PathBuf {
        self.dir
            .join(format!("part-{subtask}{}", self.format.extension()))
    }
}

impl<T: Data> Sink for FileSink<T> {
    type In = T;
    type Writer = FileWriter<T>;

    fn create_writer(&self, ctx: &RuntimeContext) -> Result<Self::Writer, BoxError> {
        fs::create_dir_all(&self.dir)
            .map_err(|e| ConnectorError::io("create directory", &self.dir, e))?;
        let path = self.part_path(ctx.subtask());
        let file = File::create(&path).map_err(|e| ConnectorError::io("create", &path, e))?;
        Ok(FileWriter {
            out: BufWriter::with_capacity(64 * 1024, file),
            path,
            format: self.format,
            written: false,
            _in: PhantomData,
        })
    }
}

/// The writer of one subtask of a [`FileSink`].
pub struct FileWriter<T> {
    out: BufWriter<File>,
    path: PathBuf,
    format: RowFormat,
    written: bool,
    _in: PhantomData<fn(T)>,
}

impl<T: Data> SinkWriter for FileWriter<T> {
    type In = T;

    fn write(&mut self, batch: &mut Vec<Record<T>>) -> Result<(), BoxError> {
        if batch.is_empty() {
            return Ok(());
        }
        self.format
            .write(&mut self.out, batch, !self.written, &self.path)?;
        self.written = true;
        Ok(())
    }

    fn finish(&mut self) -> Result<(), BoxError> {
        self.out
            .flush()
            .map_err(|e| ConnectorError::io("flush", &self.path, e))?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_subtask_writes_its_own_part_file_in_a_created_directory() -> Result<(), BoxError> {
        let tmp = tempfile::tempdir()?;
        let dir = tmp.path().join("nested/out");
        let sink = FileSink::<(u32, String)>::json_lines(&dir);
        let clock = std::sync::Arc::new(eddy_engine::clock::SystemClock);
        let ctx = RuntimeContext::standalone("sink", 1, 2, 128, clock);
        let mut writer = sink.create_writer(&ctx)?;
        let mut batch = vec![
            Record::new(eddy_engine::element::Timestamp(5), (1, "one".to_owned())),
            Record::new(eddy_engine::element::Timestamp(6), (2, "two".to_owned())),
        ];
        writer.write(&mut batch)?;
        writer.finish()?;
        let text = fs::read_to_string(dir.join("part-1.jsonl"))?;
        assert_eq!(text, "[1,\"one\"]\n[2,\"two\"]\n");
        Ok(())
    }

    #[test]
    fn subtask_files_are_numbered_from_zero() {
        let sink = FileSink::<u32>::json_lines("out");
        assert_eq!(sink.part_path(0), Path::new("out/part-0.jsonl"));
        let sink = FileSink::<u32>::csv("out");
        assert_eq!(sink.part_path(3), Path::new("out/part-3.csv"));
    }

    #[test]
    fn a_csv_file_has_one_header_over_all_batches() -> Result<(), BoxError> {
        #[derive(Clone, Debug, serde::Serialize, serde::Deserialize)]
        struct Row {
            id: u32,
            name: String,
        }
        let tmp = tempfile::tempdir()?;
        let sink = FileSink::<Row>::csv(tmp.path());
        let clock = std::sync::Arc::new(eddy_engine::clock::SystemClock);
        let mut writer =
            sink.create_writer(&RuntimeContext::standalone("sink", 0, 1, 128, clock))?;
        for id in [1, 2] {
            let mut batch = vec![Record::new(
                eddy_engine::element::Timestamp(0),
                Row {
                    id,
                    name: format!("n{id}"),
                },
            )];
            writer.write(&mut batch)?;
        }
        writer.finish()?;
        let text = fs::read_to_string(tmp.path().join("part-0.csv"))?;
        assert_eq!(text, "id,name\n1,n1\n2,n2\n");
        Ok(())
    }
}
