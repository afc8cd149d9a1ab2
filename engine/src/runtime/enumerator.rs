//! Runs each source's split enumerator once per job run, on the thread that
//! coordinates the job, and deals the splits it finds to the source's
//! subtasks as commands on their checkpoint channels (so a barrier sent
//! after an assignment covers it).

use std::collections::HashSet;
use std::time::{Duration, Instant};

use crossbeam_channel::Sender;

use crate::checkpoint::coordinator::{SplitBatch, TaskCommand};
use crate::checkpoint::snapshot::encode_value;
use crate::context::RuntimeContext;
use crate::error::{BoxError, EngineError, Location, StateError};
use crate::runtime::chain::{connector_error, guarded};
use crate::runtime::source_task::{FINISHED_SPLITS_STATE, SPLITS_STATE};
use crate::source::{Split, SplitEnumerator};

/// One source's enumerator with the split type erased.
pub(crate) trait SplitAssigner: Send {
    /// Asks the enumerator for splits and deals those not seen before,
    /// round-robin: `(subtask, splits)` for each subtask that gets some.
    fn assign(&mut self) -> Result<Vec<(usize, SplitBatch)>, BoxError>;

    /// How often to discover again; `None`: once, at the first start.
    fn discovery_interval(&self) -> Option<Duration>;
}

/// The typed assigner of one source.
pub(crate) struct Assigner<S: Split> {
    enumerator: Box<dyn SplitEnumerator<S>>,
    /// Ids of every split ever assigned (restored and finished ones too).
    known: HashSet<String>,
    parallelism: usize,
    next_owner: usize,
}

impl<S: Split> Assigner<S> {
    /// An assigner for `parallelism` readers; `restored` are the restored
    /// states of the source's subtasks (empty at a first start).
    pub(crate) fn new(
        enumerator: Box<dyn SplitEnumerator<S>>,
        parallelism: usize,
        restored: &[RuntimeContext],
    ) -> Result<Self, EngineError> {
        let mut known = HashSet::new();
        for ctx in restored {
            let Some(state) = ctx.restored_state() else {
                continue;
            };
            let state_error = |source| EngineError::State {
                location: ctx.location().clone(),
                source,
            };
            let open = state.list::<S>(SPLITS_STATE).map_err(state_error)?;
            known.extend(open.iter().map(Split::id));
            known.extend(
                state
                    .list::<String>(FINISHED_SPLITS_STATE)
                    .map_err(state_error)?,
            );
        }
        Ok(Assigner {
            next_owner: known.len() % parallelism.max(1),
            enumerator,
            known,
            parallelism: parallelism.max(1),
        })
    }
}

impl<S: Split> SplitAssigner for Assigner<S> {
    fn assign(&mut self) -> Result<Vec<(usize, SplitBatch)>, BoxError> {
        let mut per_reader: Vec<Vec<S>> = (0..self.parallelism).map(|_| Vec::new()).collect();
        for split in self.enumerator.discover()? {
            if self.known.insert(split.id()) {
                per_reader[self.next_owner].push(split);
                self.next_owner = (self.next_owner + 1) % self.parallelism;
            }
        }
        Ok(per_reader
            .into_iter()
            .enumerate()
            .filter(|(_, splits)| !splits.is_empty())
            .map(|(s, splits)| {
                let mut bytes = Vec::new();
                encode_value("splits", &splits, &mut bytes)?;
                Ok((s, SplitBatch(bytes)))
            })
            .collect::<Result<_, StateError>>()?)
    }

    fn discovery_interval(&self) -> Option<Duration> {
        self.enumerator.discovery_interval()
    }
}

/// A source's assigner and the command channels of its subtasks.
pub(crate) struct SourceEnumerator {
    pub location: Location,
    pub assigner: Box<dyn SplitAssigner>,
    pub subtasks: Vec<Sender<TaskCommand>>,
    /// When to discover next; `None` once discovery is over.
    next: Option<Instant>,
}

impl SourceEnumerator {
    /// Discovers the first splits (failing the run when that fails) and
    /// deals them; a source without periodic discovery is then told there
    /// are no more. A restored source without periodic discovery discovers
    /// nothing: its readers resume their snapshotted splits.
    pub(crate) fn start(
        location: Location,
        assigner: Box<dyn SplitAssigner>,
        subtasks: Vec<Sender<TaskCommand>>,
        restoring: bool,
        now: Instant,
    ) -> Result<Self, EngineError> {
        let periodic = assigner.discovery_interval().is_some();
        let mut this = SourceEnumerator {
            location,
            assigner,
            subtasks,
            next: None,
        };
        if periodic || !restoring {
            let location = this.location.clone();
            guarded(&location, connector_error, || this.deal())?;
        }
        this.schedule(now);
        Ok(this)
    }

    /// When this source wants to discover again.
    pub(crate) fn next_deadline(&self) -> Option<Instant> {
        self.next
    }

    /// Discovers again if it is time. A failure is logged and tried again
    /// at the next interval: the running readers are unaffected.
    pub(crate) fn tick(&mut self, now: Instant) {
        match self.next {
            Some(at) if now >= at => {}
            _ => return,
        }
        let location = self.location.clone();
        if let Err(e) = guarded(&location, connector_error, || self.deal()) {
            tracing::warn!(source = %location.operator, error = %e, "split discovery failed; trying again later");
        }
        self.schedule(now);
    }

    /// Plans the next discovery; once the enumerator has no interval (any
    /// more), tells every reader that no more splits will come.
    fn schedule(&mut self, now: Instant) {
        match self.assigner.discovery_interval() {
            Some(every) => self.next = Some(now + every),
            None => {
                self.next = None;
                for tx in &self.subtasks {
                    let _ = tx.send(TaskCommand::NoMoreSplits);
                }
            }
        }
    }

    fn deal(&mut self) -> Result<(), BoxError> {
        for (subtask, splits) in self.assigner.assign()? {
            if let Some(tx) = self.subtasks.get(subtask) {
                // A task that is gone has failed; the run is ending.
                let _ = tx.send(TaskCommand::AddSplits(splits));
            }
        }
        Ok(())
    }
}
