//! Errors of the connectors.
//!
//! One enum, [`ConnectorError`], for every source and sink in this crate. Each
//! variant carries the facts (path, line, option) rather than a preformatted
//! string, and its message says what went wrong, where, and how to fix it.
//! Readers and writers return it boxed as the engine's `BoxError`; the engine
//! adds the operator, uid and subtask.

use std::io;
use std::path::PathBuf;

use eddy_engine::error::ErrorKind;

/// Errors raised by Eddy's connectors.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ConnectorError {
    /// The input path of a file source does not exist or cannot be read.
    #[error(
        "file source: cannot read '{}': {source}; check that the path exists and is \
         readable (a relative path is resolved against the working directory)",
        .path.display()
    )]
    PathUnreadable {
        /// The path as the user gave it.
        path: PathBuf,
        /// Why it could not be read.
        source: io::Error,
    },
    /// A file source was given a compressed file.
    #[error(
        "file source: '{}' is {kind}-compressed; the file sources read uncompressed \
         JSON lines and CSV: decompress it first (e.g. `{tool}`)",
        .path.display()
    )]
    Compressed {
        /// The file.
        path: PathBuf,
        /// The compression, e.g. `gzip`.
        kind: &'static str,
        /// The tool that decompresses it.
        tool: &'static str,
    },
    /// Reading or writing a file failed.
    #[error("cannot {action} '{}': {source}", .path.display())]
    Io {
        /// What was being done, e.g. `open`, `read`, `write`, `create directory`.
        action: &'static str,
        /// The file or directory concerned.
        path: PathBuf,
        /// The operating system's error.
        source: io::Error,
    },
    /// A record could not be decoded and the source was told to fail on
    /// undecodable records (`.fail_on_error()`).
    #[error(
        "'{}', line {line}: cannot decode {format} record: {reason}; fix or remove the \
         record, or drop `.fail_on_error()` to send bad records to the dead-letter stream",
        .path.display()
    )]
    Decode {
        /// The file the record came from.
        path: PathBuf,
        /// The 1-based line where the record starts.
        line: u64,
        /// The format, e.g. `JSON lines` or `CSV`.
        format: &'static str,
        /// The decoder's explanation.
        reason: String,
    },
    /// A record could not be encoded for a sink.
    #[error(
        "'{}': cannot encode a record as JSON: {reason}; check the record type's \
         Serialize implementation (maps need string keys)",
        .path.display()
    )]
    Encode {
        /// The file being written.
        path: PathBuf,
        /// The encoder's explanation.
        reason: String,
    },
    /// A connector option is out of range.
    #[error("{option} = {value}: {reason}")]
    InvalidConfig {
        /// The option as the user spells it, e.g. `DataGen::with_rate`.
        option: &'static str,
        /// The rejected value.
        value: String,
        /// What is wrong and what would be right.
        reason: String,
    },
    /// Kafka could not be reached, or refused a request.
    #[error("Kafka at {bootstrap}: {reason}")]
    Kafka {
        /// The bootstrap servers as configured.
        bootstrap: String,
        /// What failed, and what to check.
        reason: String,
    },
    /// ClickHouse could not be reached, or refused an insert.
    #[error("ClickHouse at {url}: {reason}")]
    ClickHouse {
        /// The HTTP interface's URL as configured.
        url: String,
        /// What failed, and what to check.
        reason: String,
    },
    /// Redis could not be reached, or refused a command.
    #[error("Redis at {url}: {reason}")]
    Redis {
        /// The server URL as configured.
        url: String,
        /// What failed, and what to check.
        reason: String,
    },
    /// Writing to standard output failed (e.g. the reading end of a pipe closed).
    #[error("print sink: cannot write to stdout: {source}")]
    Stdout {
        /// The operating system's error.
        source: io::Error,
    },
}

impl ConnectorError {
    /// The class of this error, for restart strategies: bad input and bad
    /// options are the user's to fix, I/O failures are external.
    pub fn kind(&self) -> ErrorKind {
        match self {
            ConnectorError::Decode { .. }
            | ConnectorError::Encode { .. }
            | ConnectorError::InvalidConfig { .. }
            | ConnectorError::PathUnreadable { .. }
            | ConnectorError::Compressed { .. } => ErrorKind::User,
            ConnectorError::Io { .. }
            | ConnectorError::Kafka { .. }
            | ConnectorError::Redis { .. }
            | ConnectorError::ClickHouse { .. }
            | ConnectorError::Stdout { .. } => ErrorKind::External,
        }
    }

    /// An [`ConnectorError::Io`] error for `path`.
    pub(crate) fn io(action: &'static str, path: impl Into<PathBuf>, source: io::Error) -> Self {
        ConnectorError::Io {
            action,
            path: path.into(),
            source,
        }
    }

    /// An [`ConnectorError::InvalidConfig`] error.
    pub(crate) fn config(
        option: &'static str,
        value: impl std::fmt::Display,
        reason: impl Into<String>,
    ) -> Self {
        ConnectorError::InvalidConfig {
            option,
            value: value.to_string(),
            reason: reason.into(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decode_error_names_file_line_and_the_fix() {
        let e = ConnectorError::Decode {
            path: PathBuf::from("in/a.jsonl"),
            line: 17,
            format: "JSON lines",
            reason: "expected value".into(),
        };
        let msg = e.to_string();
        assert!(msg.contains("'in/a.jsonl', line 17"), "{msg}");
        assert!(msg.contains("fail_on_error"), "{msg}");
        assert_eq!(e.kind(), ErrorKind::User);
    }

    #[test]
    fn missing_path_error_names_the_path() {
        let e = ConnectorError::PathUnreadable {
            path: PathBuf::from("/no/such/dir"),
            source: io::Error::from(io::ErrorKind::NotFound),
        };
        assert!(e.to_string().contains("'/no/such/dir'"));
    }
}
