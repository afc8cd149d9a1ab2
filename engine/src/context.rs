//! What every operator, source reader and sink writer knows about the
//! subtask it runs in.

use std::sync::Arc;

use crate::clock::Clock;
use crate::element::Timestamp;
use crate::error::Location;
use crate::keygroup::KeyGroupRange;

/// Information about the running subtask, handed to user code when it opens.
#[derive(Clone, Debug)]
pub struct RuntimeContext {
    pub(crate) job: Arc<str>,
    pub(crate) location: Location,
    pub(crate) max_parallelism: usize,
    pub(crate) clock: Arc<dyn Clock>,
}

impl RuntimeContext {
    /// A context for running a single operator outside a job (harnesses, tools).
    pub fn standalone(
        operator: &str,
        subtask: usize,
        parallelism: usize,
        max_parallelism: usize,
        clock: Arc<dyn Clock>,
    ) -> Self {
        RuntimeContext {
            job: Arc::from("standalone"),
            location: Location {
                operator: operator.to_owned(),
                uid: operator.to_owned(),
                subtask,
                parallelism,
            },
            max_parallelism,
            clock,
        }
    }

    /// The job's name.
    pub fn job(&self) -> &str {
        &self.job
    }

    /// The operator's name.
    pub fn operator(&self) -> &str {
        &self.location.operator
    }

    /// The operator's stable uid.
    pub fn uid(&self) -> &str {
        &self.location.uid
    }

    /// Index of this subtask, `0..parallelism`.
    pub fn subtask(&self) -> usize {
        self.location.subtask
    }

    /// Number of parallel subtasks of this operator.
    pub fn parallelism(&self) -> usize {
        self.location.parallelism
    }

    /// Number of key groups of this operator.
    pub fn max_parallelism(&self) -> usize {
        self.max_parallelism
    }

    /// The key groups this subtask owns.
    pub fn key_groups(&self) -> KeyGroupRange {
        KeyGroupRange::for_subtask(self.subtask(), self.parallelism(), self.max_parallelism)
    }

    /// Current processing time.
    pub fn processing_time(&self) -> Timestamp {
        self.clock.now()
    }

    /// The job's clock.
    pub fn clock(&self) -> &Arc<dyn Clock> {
        &self.clock
    }

    /// Where this subtask is, for error messages.
    pub fn location(&self) -> &Location {
        &self.location
    }
}
