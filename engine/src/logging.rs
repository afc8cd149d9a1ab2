//! The log output of job binaries: `tracing` events on standard error,
//! filtered by `RUST_LOG` (default `warn`), as text or as one JSON object
//! per line (`--log-format json`). Every event a task logs carries its
//! `task` span (job, task, subtask), so a line says where it came from.

use tracing_subscriber::EnvFilter;

/// How log lines are written.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum LogFormat {
    /// Human-readable lines.
    #[default]
    Text,
    /// One JSON object per line (timestamp, level, fields, spans).
    Json,
}

/// Installs the log output for the process, unless the program installed
/// a `tracing` subscriber of its own first (then this does nothing).
pub(crate) fn init(format: LogFormat) {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("warn"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    // An error means a subscriber is installed already: keep it.
    let _ = match format {
        LogFormat::Text => builder.try_init(),
        LogFormat::Json => builder.json().try_init(),
    };
}
