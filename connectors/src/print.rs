//! `PrintSink`: writes every record to standard output (Flink's `print()`).
//!
//! Each record becomes one line, `{value:?}`. When the sink runs with more
//! than one subtask the line starts with the 1-based subtask number,
//! `3> {value:?}`, and an optional prefix comes first: `alerts:3> …`, or
//! `alerts> …` with one subtask. A batch is formatted into a reused buffer
//! and written with one lock of stdout, so lines of different subtasks never
//! interleave mid-line.

use std::fmt::{self, Debug, Write as _};
use std::io::Write as _;
use std::marker::PhantomData;

use eddy_engine::context::RuntimeContext;
use eddy_engine::element::{Data, Record};
use eddy_engine::error::BoxError;
use eddy_engine::sink::{Sink, SinkWriter};

use crate::error::ConnectorError;

/// A sink that prints each record's value on its own line of stdout.
pub struct PrintSink<T> {
    prefix: Option<String>,
    _in: PhantomData<fn(T)>,
}

impl<T> fmt::Debug for PrintSink<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PrintSink")
            .field("prefix", &self.prefix)
            .finish()
    }
}

impl<T: Data> PrintSink<T> {
    /// A sink printing `{value:?}` (with `{subtask}> ` in front when parallel).
    pub fn new() -> Self {
        PrintSink {
            prefix: None,
            _in: PhantomData,
        }
    }

    /// A sink printing `prefix> {value:?}` (`prefix:{subtask}> ` when parallel),
    /// to tell several printed streams apart.
    pub fn with_prefix(prefix: impl Into<String>) -> Self {
        PrintSink {
            prefix: Some(prefix.into()),
            _in: PhantomData,
        }
    }
}

impl<T: Data> Default for PrintSink<T> {
    fn default() -> Self {
        Self::new()
    }
}

/// What goes before each value: `""`, `"3> "`, `"alerts> "` or `"alerts:3> "`.
fn line_prefix(prefix: Option<&str>, subtask: usize, parallelism: usize) -> String {
    match (prefix, parallelism > 1) {
        (None, false) => String::new(),
        (None, true) => format!("{}> ", subtask + 1),
        (Some(p), false) => format!("{p}> "),
        (Some(p), true) => format!("{p}:{}> ", subtask + 1),
    }
}

/// Appends one line per record to `buf`.
fn render<T: Debug>(buf: &mut String, prefix: &str, records: &[Record<T>]) {
    for record in records {
        // Writing into a String cannot fail.
        let _ = writeln!(buf, "{prefix}{:?}", record.value);
    }
}

impl<T: Data> Sink for PrintSink<T> {
    type In = T;
    type Writer = PrintWriter<T>;

    fn create_writer(&self, ctx: &RuntimeContext) -> Result<Self::Writer, BoxError> {
        Ok(PrintWriter {
            prefix: line_prefix(self.prefix.as_deref(), ctx.subtask(), ctx.parallelism()),
            buf: String::new(),
            _in: PhantomData,
        })
    }
}

/// The writer of one subtask of a [`PrintSink`].
pub struct PrintWriter<T> {
    prefix: String,
    /// The current batch's text, reused between batches.
    buf: String,
    _in: PhantomData<fn(T)>,
}

impl<T: Data> SinkWriter for PrintWriter<T> {
    type In = T;

    fn write(&mut self, batch: &mut Vec<Record<T>>) -> Result<(), BoxError> {
        self.buf.clear();
        render(&mut self.buf, &self.prefix, batch);
        let mut stdout = std::io::stdout().lock();
        stdout
            .write_all(self.buf.as_bytes())
            .and_then(|()| stdout.flush())
            .map_err(|source| ConnectorError::Stdout { source })?;
        Ok(())
    }

    fn finish(&mut self) -> Result<(), BoxError> {
        std::io::stdout()
            .flush()
            .map_err(|source| ConnectorError::Stdout { source })?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use eddy_engine::element::Timestamp;

    use super::*;

    #[test]
    fn the_subtask_number_is_shown_only_when_parallel_as_in_flink() {
        assert_eq!(line_prefix(None, 0, 1), "");
        assert_eq!(line_prefix(None, 2, 4), "3> ");
        assert_eq!(line_prefix(Some("alerts"), 0, 1), "alerts> ");
        assert_eq!(line_prefix(Some("alerts"), 0, 4), "alerts:1> ");
    }

    #[test]
    fn each_record_is_one_debug_formatted_line() {
        let records = vec![
            Record::new(Timestamp(1), ("a", 1)),
            Record::new(Timestamp(2), ("b", 2)),
        ];
        let mut buf = String::new();
        render(&mut buf, "2> ", &records);
        assert_eq!(buf, "2> (\"a\", 1)\n2> (\"b\", 2)\n");
    }
}
