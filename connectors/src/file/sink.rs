//! `JsonLinesSink`: one JSON object per line, one file per subtask.
//!
//! Subtask `i` (0-based) writes `DIR/part-{i}.jsonl`, created or truncated
//! when the writer opens. Only the value is written, not its timestamp.
//!
//! Delivery: the file is written through a buffer and flushed when the
//! input ends; it is not transactional. After a failure and restore the
//! file is rewritten from the restored position on, so earlier records are
//! lost from it: use it for bounded jobs and tests, not as an exactly-once
//! sink.

use std::fmt;
use std::fs::{self, File};
use std::io::{BufWriter, Write};
use std::marker::PhantomData;
use std::path::{Path, PathBuf};

use eddy_engine::context::RuntimeContext;
use eddy_engine::element::{Data, Record};
use eddy_engine::error::BoxError;
use eddy_engine::sink::{Sink, SinkWriter};
use serde::Serialize;

use crate::error::ConnectorError;

/// Writes each record's value as one line of JSON into `DIR/part-{subtask}.jsonl`.
pub struct JsonLinesSink<T> {
    dir: PathBuf,
    _in: PhantomData<fn(T)>,
}

impl<T> fmt::Debug for JsonLinesSink<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("JsonLinesSink")
            .field("dir", &self.dir)
            .finish()
    }
}

impl<T: Data> JsonLinesSink<T> {
    /// A sink writing into directory `dir` (created if missing).
    pub fn new(dir: impl AsRef<Path>) -> Self {
        JsonLinesSink {
            dir: dir.as_ref().to_owned(),
            _in: PhantomData,
        }
    }

    /// The file subtask `subtask` writes.
    pub fn part_path(&self, subtask: usize) -> PathBuf {
        self.dir.join(format!("part-{subtask}.jsonl"))
    }
}

impl<T: Data> Sink for JsonLinesSink<T> {
    type In = T;
    type Writer = JsonLinesWriter<T>;

    fn create_writer(&self, ctx: &RuntimeContext) -> Result<Self::Writer, BoxError> {
        fs::create_dir_all(&self.dir)
            .map_err(|e| ConnectorError::io("create directory", &self.dir, e))?;
        let path = self.part_path(ctx.subtask());
        let file = File::create(&path).map_err(|e| ConnectorError::io("create", &path, e))?;
        Ok(JsonLinesWriter {
            out: BufWriter::with_capacity(64 * 1024, file),
            path,
            _in: PhantomData,
        })
    }
}

/// The writer of one subtask of a [`JsonLinesSink`].
pub struct JsonLinesWriter<T> {
    out: BufWriter<File>,
    path: PathBuf,
    _in: PhantomData<fn(T)>,
}

/// Appends `value` as one JSON line to `out`.
pub(crate) fn write_json_line<W: Write, T: Serialize>(
    out: &mut W,
    value: &T,
    path: &Path,
) -> Result<(), ConnectorError> {
    serde_json::to_writer(&mut *out, value).map_err(|e| match e.io_error_kind() {
        Some(kind) => ConnectorError::io("write", path, std::io::Error::new(kind, e)),
        None => ConnectorError::Encode {
            path: path.to_owned(),
            reason: e.to_string(),
        },
    })?;
    out.write_all(b"\n")
        .map_err(|e| ConnectorError::io("write", path, e))
}

impl<T: Data> SinkWriter for JsonLinesWriter<T> {
    type In = T;

    fn write(&mut self, batch: &mut Vec<Record<T>>) -> Result<(), BoxError> {
        for record in batch.iter() {
            write_json_line(&mut self.out, &record.value, &self.path)?;
        }
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
    use std::collections::HashMap;

    use super::*;

    #[derive(Serialize)]
    struct Alert {
        card: u64,
        reason: &'static str,
    }

    #[test]
    fn each_value_becomes_one_json_line() -> Result<(), ConnectorError> {
        let mut out = Vec::new();
        let path = Path::new("out/part-0.jsonl");
        write_json_line(
            &mut out,
            &Alert {
                card: 7,
                reason: "a\nb",
            },
            path,
        )?;
        write_json_line(
            &mut out,
            &Alert {
                card: 8,
                reason: "",
            },
            path,
        )?;
        assert_eq!(
            String::from_utf8_lossy(&out),
            "{\"card\":7,\"reason\":\"a\\nb\"}\n{\"card\":8,\"reason\":\"\"}\n"
        );
        Ok(())
    }

    #[test]
    fn a_value_json_cannot_encode_is_an_encode_error_naming_the_file() {
        let mut bad = HashMap::new();
        bad.insert(vec![1u8], 1);
        let err = write_json_line(&mut Vec::new(), &bad, Path::new("out/part-3.jsonl")).err();
        let msg = err.map(|e| e.to_string()).unwrap_or_default();
        assert!(
            msg.contains("'out/part-3.jsonl'") && msg.contains("encode"),
            "{msg}"
        );
    }

    #[test]
    fn each_subtask_writes_its_own_part_file_in_a_created_directory() -> Result<(), BoxError> {
        let tmp = tempfile::tempdir()?;
        let dir = tmp.path().join("nested/out");
        let sink = JsonLinesSink::<(u32, String)>::new(&dir);
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
        let sink = JsonLinesSink::<u32>::new("out");
        assert_eq!(sink.part_path(0), Path::new("out/part-0.jsonl"));
    }
}
