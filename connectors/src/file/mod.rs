//! Files: a bounded source of JSON lines or CSV, [`FileSink`] (JSON lines
//! or CSV), and [`TransactionalFileSink`], its exactly-once counterpart.
//!
//! [`FileSource`] reads a file, or every regular file directly inside a
//! directory (sorted by name, hidden `.x` and `_x` files skipped, as in
//! Flink). Each file is one [`FileSplit`]; a split's snapshot is the byte
//! offset and line count to resume from.
//!
//! A line or row that does not decode into `T` never fails the job and never
//! vanishes: it goes to the source's dead-letter stream with the file, the
//! line number, the decoder's reason and the raw text. With
//! [`FileSource::fail_on_error`] it fails the job instead, naming the file
//! and the line.
//!
//! ```no_run
//! use eddy_connectors::file::{FileSink, FileSource};
//! # #[derive(Clone, Debug, serde::Serialize, serde::Deserialize)]
//! # struct Payment { card: u64, amount: f64 }
//!
//! let payments = FileSource::<Payment>::csv("data/payments/");
//! let strict = FileSource::<Payment>::json_lines("data/payments.jsonl").fail_on_error();
//! let out = FileSink::<Payment>::json_lines("out/alerts");
//! let csv = FileSink::<Payment>::csv("out/alerts-csv");
//! # let _ = (payments, strict, out, csv);
//! ```

mod csv_records;
mod encode;
mod reader;
mod sink;
mod split;
mod transactional;

use std::fmt;
use std::marker::PhantomData;
use std::path::{Path, PathBuf};

use eddy_engine::context::RuntimeContext;
use eddy_engine::element::Data;
use eddy_engine::error::BoxError;
use eddy_engine::source::{Boundedness, FixedSplits, Source, SplitEnumerator};

pub use encode::RowFormat;
pub use reader::FileReader;
pub use sink::{FileSink, FileWriter};
pub use split::FileSplit;
pub use transactional::{FileCommittable, TransactionalFileSink, TransactionalFileWriter};

/// How records are laid out in a file.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FileFormat {
    /// One JSON value per line; blank lines are skipped.
    JsonLines,
    /// Comma-separated values. With a header row (`has_header: true`) the
    /// header names the fields and records are decoded by name, in any
    /// column order; without one, by position: the fields of the record type
    /// in declaration order. Blank lines are skipped.
    Csv {
        /// Whether the first row of each file is a header.
        has_header: bool,
    },
}

impl FileFormat {
    /// The format's name in messages.
    pub fn name(self) -> &'static str {
        match self {
            FileFormat::JsonLines => "JSON lines",
            FileFormat::Csv { .. } => "CSV",
        }
    }
}

/// What a file source does with a record it cannot decode.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum OnDecodeError {
    /// Send it to the dead-letter stream and go on (default).
    #[default]
    DeadLetter,
    /// Fail the job with an error naming the file and line.
    Fail,
}

/// A bounded source of `T`s read from JSON-lines or CSV files.
pub struct FileSource<T> {
    path: PathBuf,
    format: FileFormat,
    on_error: OnDecodeError,
    _out: PhantomData<fn() -> T>,
}

impl<T> fmt::Debug for FileSource<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FileSource")
            .field("path", &self.path)
            .field("format", &self.format)
            .field("on_error", &self.on_error)
            .finish()
    }
}

impl<T: Data> FileSource<T> {
    /// Reads one JSON value per line from `path` (a file or a directory).
    pub fn json_lines(path: impl AsRef<Path>) -> Self {
        Self::new(path.as_ref(), FileFormat::JsonLines)
    }

    /// Reads CSV with a header row from `path` (a file or a directory);
    /// see [`has_header`](Self::has_header) for files without one.
    pub fn csv(path: impl AsRef<Path>) -> Self {
        Self::new(path.as_ref(), FileFormat::Csv { has_header: true })
    }

    /// For CSV: whether each file starts with a header row (the default for
    /// [`csv`](Self::csv)). Without one, a record's fields are taken by
    /// position, in the record type's field order. No effect on JSON lines.
    pub fn has_header(mut self, has_header: bool) -> Self {
        if let FileFormat::Csv { .. } = self.format {
            self.format = FileFormat::Csv { has_header };
        }
        self
    }

    fn new(path: &Path, format: FileFormat) -> Self {
        FileSource {
            path: path.to_owned(),
            format,
            on_error: OnDecodeError::default(),
            _out: PhantomData,
        }
    }

    /// Fails the job on the first record that does not decode, instead of
    /// sending it to the dead-letter stream.
    pub fn fail_on_error(mut self) -> Self {
        self.on_error = OnDecodeError::Fail;
        self
    }

    /// The input path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The input format.
    pub fn format(&self) -> FileFormat {
        self.format
    }
}

impl<T: Data> Source for FileSource<T> {
    type Out = T;
    type Split = FileSplit;
    type Reader = FileReader<T>;

    fn boundedness(&self) -> Boundedness {
        Boundedness::Bounded
    }

    /// One split per file, whatever the parallelism, listed when the job
    /// first starts.
    fn create_enumerator(
        &self,
        _parallelism: usize,
    ) -> Result<Box<dyn SplitEnumerator<FileSplit>>, BoxError> {
        let splits = split::list_splits(&self.path)?;
        if splits.is_empty() {
            tracing::warn!(path = %self.path.display(), "file source: directory has no files to read");
        }
        Ok(FixedSplits::boxed(splits))
    }

    fn create_reader(&self, _ctx: &RuntimeContext) -> Result<FileReader<T>, BoxError> {
        Ok(FileReader::new(self.format, self.on_error))
    }
}
