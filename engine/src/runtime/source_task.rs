//! The loop of a source task: poll the reader for a batch, push it down the
//! chain, emit watermarks per the strategy, and end with `Timestamp::MAX`
//! and end-of-input when a bounded source is exhausted. Between polls it
//! serves the coordinator: on a trigger it records the reader's split
//! positions and sends the barrier down the chain.

use std::time::Duration;

use crate::checkpoint::coordinator::{TaskCommand, TaskState};
use crate::checkpoint::{Redistribution, StateSnapshot};
use crate::context::RuntimeContext;
use crate::element::{Barrier, CheckpointId, Record, StreamStatus, Timestamp};
use crate::error::EngineError;
use crate::runtime::chain::{connector_error, guarded, Control, Downstream};
use crate::runtime::stats::StageStats;
use crate::runtime::task::{end_of_input_snapshot, snapshot_chain, Housekeeping, TaskEnv};
use crate::source::{DeadLetter, ReadStatus, Source, SourceOutput, SourceReader, Split};
use crate::time::{SplitWatermarks, WatermarkEmission, WatermarkStrategy};

/// How long a reader that has nothing to offer is left alone.
const IDLE_BACKOFF: Duration = Duration::from_millis(1);

/// The chain after a source: main output and dead-letter output. Control
/// events go to both.
pub(crate) struct SourceChain<T> {
    pub main: Box<dyn Downstream<T>>,
    pub dead_letters: Option<Box<dyn Downstream<DeadLetter>>>,
}

impl<T> SourceChain<T> {
    fn both(
        &mut self,
        mut f: impl FnMut(&mut dyn Control) -> Result<(), EngineError>,
    ) -> Result<(), EngineError> {
        f(self.main.as_mut())?;
        match self.dead_letters.as_mut() {
            Some(d) => f(d.as_mut()),
            None => Ok(()),
        }
    }
}

impl<T> Control for SourceChain<T> {
    fn on_watermark(&mut self, wm: Timestamp) -> Result<(), EngineError> {
        self.both(|c| c.on_watermark(wm))
    }
    fn on_status(&mut self, status: StreamStatus) -> Result<(), EngineError> {
        self.both(|c| c.on_status(status))
    }
    fn on_processing_time(&mut self, now: Timestamp) -> Result<(), EngineError> {
        self.both(|c| c.on_processing_time(now))
    }
    fn next_processing_time(&self) -> Option<Timestamp> {
        let dead = self
            .dead_letters
            .as_ref()
            .and_then(|d| d.next_processing_time());
        match (self.main.next_processing_time(), dead) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }
    fn flush(&mut self) -> Result<(), EngineError> {
        self.both(|c| c.flush())
    }
    fn finish(&mut self) -> Result<(), EngineError> {
        self.both(|c| c.finish())
    }
    fn on_barrier(&mut self, barrier: Barrier, out: &mut TaskState) -> Result<(), EngineError> {
        self.both(|c| c.on_barrier(barrier, out))
    }
    fn on_checkpoint_complete(&mut self, id: CheckpointId) -> Result<(), EngineError> {
        self.both(|c| c.on_checkpoint_complete(id))
    }
    fn collect_stats(&self, out: &mut Vec<StageStats>) {
        self.main.collect_stats(out);
        if let Some(d) = &self.dead_letters {
            d.collect_stats(out);
        }
    }
}

/// Name of the list state holding a source subtask's split positions.
pub(crate) const SPLITS_STATE: &str = "splits";

/// The source's own state: where each unfinished split stands.
fn source_state<S: Split>(
    ctx: &RuntimeContext,
    id: CheckpointId,
    splits: Vec<S>,
) -> Result<TaskState, EngineError> {
    let mut own = StateSnapshot::new(id, ctx.max_parallelism());
    own.list(SPLITS_STATE, Redistribution::Split, splits)
        .map_err(|source| EngineError::State {
            location: ctx.location().clone(),
            source,
        })?;
    Ok(vec![(ctx.uid().to_owned(), own.data)])
}

/// Serves the coordinator's commands; returns true when the task must stop
/// (a stop-with-savepoint completed).
fn serve_commands<R: SourceReader>(
    reader: &R,
    chain: &mut dyn Control,
    ctx: &RuntimeContext,
    env: &TaskEnv,
) -> Result<bool, EngineError> {
    while let Ok(command) = env.link.commands.try_recv().map(|c| env.link.heard(c)) {
        match command {
            TaskCommand::Trigger(barrier) => {
                let splits = guarded(ctx.location(), connector_error, || {
                    Ok(reader.snapshot_splits())
                })?;
                let state = source_state(ctx, barrier.id, splits)?;
                if snapshot_chain(chain, barrier, state, env)? {
                    return Ok(true);
                }
            }
            TaskCommand::Complete(id) => chain.on_checkpoint_complete(id)?,
            TaskCommand::Abort(_) => {}
        }
    }
    Ok(false)
}

/// Runs one source subtask to the end of its input.
pub(crate) fn run_source_task<S: Source>(
    source: &S,
    splits: Vec<S::Split>,
    strategy: Option<WatermarkStrategy<S::Out>>,
    ctx: &RuntimeContext,
    chain: &mut SourceChain<S::Out>,
    stats: &mut StageStats,
    env: &TaskEnv,
) -> Result<(), EngineError> {
    let location = ctx.location();
    let mut reader = guarded(location, connector_error, || source.create_reader(ctx))?;
    let split_ids: Vec<String> = splits.iter().map(Split::id).collect();
    let strategy = strategy.unwrap_or_else(WatermarkStrategy::no_watermarks);
    let emission = strategy.emission();
    let interval_ms = match emission {
        WatermarkEmission::Periodic(Some(d)) => d,
        _ => env.settings.watermark_interval,
    }
    .as_millis() as i64;
    let mut watermarks = SplitWatermarks::new(strategy);
    let now = env.clock.now();
    splits.iter().for_each(|_| watermarks.add_split(now));
    guarded(location, connector_error, || reader.add_splits(splits))?;

    let batch_size = env.settings.batch_size;
    let mut batch: Vec<Record<S::Out>> = Vec::with_capacity(batch_size);
    let mut dead: Vec<Record<DeadLetter>> = Vec::new();
    let mut housekeeping = Housekeeping::new(env);
    let mut next_watermark = now;
    let mut dead_warned = false;
    loop {
        if env.cancelled() {
            return Err(EngineError::Cancelled);
        }
        if serve_commands(&reader, chain, ctx, env)? {
            return Ok(());
        }
        let status = {
            let mut out = SourceOutput {
                batch: &mut batch,
                dead: &mut dead,
                watermarks: &mut watermarks,
                split_ids: &split_ids,
                source_name: &location.operator,
                batch_size,
            };
            guarded(location, connector_error, || reader.poll_next(&mut out))?
        };
        if !batch.is_empty() {
            if watermarks.mark_active() {
                chain.on_status(StreamStatus::Active)?;
            }
            stats.records_out += batch.len() as u64;
            chain.main.on_batch(&mut batch)?;
            batch.clear();
        }
        if !dead.is_empty() {
            stats.dead_letters += dead.len() as u64;
            match chain.dead_letters.as_mut() {
                Some(d) => d.on_batch(&mut dead)?,
                None if !dead_warned => {
                    dead_warned = true;
                    tracing::warn!(
                        source = %location.operator,
                        first = ?dead[0].value,
                        "undecodable records: counted in the job statistics; consume `dead_letters()` to keep them"
                    );
                }
                None => {}
            }
            dead.clear();
        }
        let now = env.clock.now();
        if emission == WatermarkEmission::PerBatch || now >= next_watermark {
            let update = watermarks.check(now);
            if let Some(wm) = update.watermark {
                chain.on_watermark(wm)?;
            }
            if let Some(status) = update.status {
                chain.on_status(status)?;
            }
            next_watermark = now.add_millis(interval_ms);
        }
        housekeeping.run(chain, now)?;
        match status {
            ReadStatus::MoreAvailable => {}
            ReadStatus::NothingAvailable => env.clock.sleep(IDLE_BACKOFF),
            ReadStatus::Finished => break,
        }
    }
    if let Some(wm) = watermarks.end() {
        chain.on_watermark(wm)?;
    }
    chain.finish()?;
    let state = source_state::<S::Split>(ctx, CheckpointId::END, Vec::new())?;
    end_of_input_snapshot(chain, state, env)
}
