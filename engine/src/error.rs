//! Errors of the engine.
//!
//! Every error that leaves a task names where it happened (operator, uid,
//! subtask) and keeps its cause chain. Errors are classified by [`ErrorKind`]
//! so that restart strategies can tell user errors from external failures.

use std::error::Error as StdError;
use std::fmt;

/// A boxed error from user code or a connector.
pub type BoxError = Box<dyn StdError + Send + Sync + 'static>;

/// What user functions return: any error type converts with `?`.
pub type UserResult<T = ()> = Result<T, BoxError>;

/// Where in a running job something happened.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Location {
    /// Operator name (as in `explain()`).
    pub operator: String,
    /// The operator's stable uid.
    pub uid: String,
    /// Subtask index, 0-based.
    pub subtask: usize,
    /// Parallelism of the operator.
    pub parallelism: usize,
}

impl fmt::Display for Location {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "operator '{}' (uid '{}', subtask {}/{})",
            self.operator,
            self.uid,
            self.subtask + 1,
            self.parallelism
        )
    }
}

/// Broad classes of failure; the restart strategy depends on them.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ErrorKind {
    /// A user function failed or panicked, or the job is built wrongly.
    User,
    /// Something outside the engine failed (file, server).
    External,
    /// A broken invariant inside Eddy: a bug.
    Internal,
}

/// Errors returned by the engine.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum EngineError {
    /// A configuration value is out of range or malformed.
    #[error("{option} = '{value}': {reason}")]
    Config {
        /// The option, as the user spells it (e.g. `--parallelism`).
        option: String,
        /// The rejected value.
        value: String,
        /// What is wrong and what would be right.
        reason: String,
    },
    /// Command-line arguments could not be parsed (includes `--help` text).
    #[error("{0}")]
    Cli(#[from] clap::Error),
    /// The job graph is not valid.
    #[error("invalid job: {node}: {reason}")]
    InvalidJob {
        /// The node concerned (name and uid).
        node: String,
        /// What is wrong and how to fix it.
        reason: String,
    },
    /// A user function returned an error.
    #[error("{location}: user function failed: {source}")]
    UserFunction {
        /// Where it happened.
        location: Location,
        /// The user's error.
        source: BoxError,
    },
    /// A user function panicked.
    #[error("{location}: user function panicked: {message}")]
    UserPanic {
        /// Where it happened.
        location: Location,
        /// The panic payload, when it was a string.
        message: String,
    },
    /// A source or sink failed to talk to the outside world.
    #[error("{location}: {source}")]
    Connector {
        /// Where it happened.
        location: Location,
        /// The connector's error.
        source: BoxError,
    },
    /// Keyed state was used wrongly (e.g. one name with two types).
    #[error("{location}: state: {source}")]
    State {
        /// Where it happened.
        location: Location,
        /// What went wrong.
        source: StateError,
    },
    /// Checkpoint storage failed, or a checkpoint or savepoint cannot be
    /// restored (missing, damaged, or not matching the job).
    #[error("{context}: {reason}")]
    Checkpoint {
        /// What was being done, with the path concerned.
        context: String,
        /// What went wrong and how to fix it.
        reason: String,
    },
    /// A command could not reach a job's REST API, or the API refused it.
    #[error("{url}: {reason}")]
    Rest {
        /// The endpoint asked.
        url: String,
        /// What went wrong (the API's own reason when it answered) and how
        /// to fix it.
        reason: String,
    },
    /// A network channel between workers failed: its connection broke, or
    /// a record crossing it could not be encoded or decoded.
    #[error("network channel {channel}: {reason}")]
    Exchange {
        /// The channel: edge, upstream and downstream subtask, workers.
        channel: String,
        /// What went wrong and how to fix it.
        reason: String,
    },
    /// The job was cancelled (by the user, or because another task failed).
    #[error("the job was cancelled")]
    Cancelled,
    /// A broken invariant inside Eddy.
    #[error("internal error (a bug in Eddy, please report it): {0}")]
    Internal(String),
}

impl EngineError {
    /// The class of this error.
    pub fn kind(&self) -> ErrorKind {
        match self {
            EngineError::Config { .. }
            | EngineError::Cli(_)
            | EngineError::InvalidJob { .. }
            | EngineError::UserFunction { .. }
            | EngineError::UserPanic { .. }
            | EngineError::State { .. } => ErrorKind::User,
            EngineError::Connector { .. }
            | EngineError::Checkpoint { .. }
            | EngineError::Rest { .. }
            | EngineError::Exchange { .. }
            | EngineError::Cancelled => ErrorKind::External,
            EngineError::Internal(_) => ErrorKind::Internal,
        }
    }

    /// A checkpoint error: `context` says what was done (and where).
    pub fn checkpoint(context: impl Into<String>, reason: impl fmt::Display) -> Self {
        EngineError::Checkpoint {
            context: context.into(),
            reason: reason.to_string(),
        }
    }

    /// A configuration error for `option` with `value`.
    pub fn config(option: &str, value: impl fmt::Display, reason: impl Into<String>) -> Self {
        EngineError::Config {
            option: option.to_owned(),
            value: value.to_string(),
            reason: reason.into(),
        }
    }
}

/// Errors of keyed state access.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StateError {
    /// The same state name was used with two different types.
    #[error("state '{name}' is already registered with another type ({existing}); give each state its own name")]
    TypeMismatch {
        /// State name.
        name: String,
        /// The type it was first registered with.
        existing: &'static str,
    },
    /// A state value could not be written into a snapshot.
    #[error("state '{name}' cannot be snapshotted: {reason}")]
    Encode {
        /// State name.
        name: String,
        /// The encoder's message.
        reason: String,
    },
    /// Restored state does not decode as the type the job now uses.
    #[error("state '{name}' {reason}; restore with the state type it was saved with (adding fields with #[serde(default)] is compatible), or give the operator a new uid and pass --allow-non-restored-state")]
    Incompatible {
        /// State name.
        name: String,
        /// The type saved, the type expected, and the decoder's message.
        reason: String,
    },
    /// The state backend failed (a RocksDB read or write, its directory).
    #[error("state '{name}': the state backend failed: {reason}")]
    Backend {
        /// State name (or the backend's directory).
        name: String,
        /// The backend's message.
        reason: String,
    },
    /// State was accessed outside of a keyed context.
    #[error("state '{name}' used without a current key")]
    NoCurrentKey {
        /// State name.
        name: String,
    },
}

/// Turns a panic payload into a readable message.
pub(crate) fn panic_message(payload: &(dyn std::any::Any + Send)) -> String {
    if let Some(s) = payload.downcast_ref::<&str>() {
        (*s).to_owned()
    } else if let Some(s) = payload.downcast_ref::<String>() {
        s.clone()
    } else {
        "non-string panic payload".to_owned()
    }
}
