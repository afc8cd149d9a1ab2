//! The loop of a source task: poll the reader for a batch, push it down the
//! chain, emit watermarks per the strategy, and end with `Timestamp::MAX`
//! and end-of-input when a bounded source is exhausted. Between polls it
//! serves the coordinator: on a trigger it records the reader's split
//! positions and sends the barrier down the chain.

use std::collections::HashSet;
use std::time::Duration;

use crate::checkpoint::coordinator::{SplitBatch, TaskCommand, TaskState};
use crate::checkpoint::snapshot::decode_value;
use crate::checkpoint::{Redistribution, StateSnapshot};
use crate::context::RuntimeContext;
use crate::element::{Barrier, CheckpointId, LatencyMarker, Record, StreamStatus, Timestamp};
use crate::error::{EngineError, Location};
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
    /// Down the main output only: dead letters are not the job's result.
    fn on_latency_marker(&mut self, marker: &LatencyMarker) -> Result<(), EngineError> {
        self.main.on_latency_marker(marker)
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

/// Name of the list state holding the ids of the splits a source subtask
/// finished: a restored enumerator must not assign them again.
pub(crate) const FINISHED_SPLITS_STATE: &str = "finished-splits";

/// The splits one source subtask was given, and how far the enumerator is.
struct AssignedSplits<T> {
    /// Ids of every split given to the reader, in order (a split's index in
    /// `SourceOutput` calls is its position here).
    ids: Vec<String>,
    /// Ids of splits finished before the restore this run started from.
    finished_before: Vec<String>,
    watermarks: SplitWatermarks<T>,
    no_more: bool,
}

impl<T> AssignedSplits<T> {
    /// Hands `splits` to the reader and starts a watermark clock for each.
    fn add<R: SourceReader<Out = T>>(
        &mut self,
        reader: &mut R,
        splits: Vec<R::Split>,
        ctx: &RuntimeContext,
        now: Timestamp,
    ) -> Result<(), EngineError> {
        for split in &splits {
            self.ids.push(split.id());
            self.watermarks.add_split(now);
        }
        guarded(ctx.location(), connector_error, || {
            reader.add_splits(splits)
        })
    }

    /// The ids of the splits the reader has finished: those given to it that
    /// its snapshot no longer holds, and those finished before a restore.
    fn finished<S: Split>(&self, unfinished: &[S]) -> Vec<String> {
        let open: HashSet<String> = unfinished.iter().map(Split::id).collect();
        let mut done = self.finished_before.clone();
        done.extend(self.ids.iter().filter(|id| !open.contains(*id)).cloned());
        done
    }
}

/// The source's own state: where each unfinished split stands, and which
/// splits it finished.
fn source_state<S: Split>(
    ctx: &RuntimeContext,
    id: CheckpointId,
    splits: Vec<S>,
    finished: Vec<String>,
) -> Result<TaskState, EngineError> {
    let mut own = StateSnapshot::new(id, ctx.max_parallelism());
    let state_error = |source| EngineError::State {
        location: ctx.location().clone(),
        source,
    };
    own.list(SPLITS_STATE, Redistribution::Split, splits)
        .map_err(state_error)?;
    own.list(FINISHED_SPLITS_STATE, Redistribution::Split, finished)
        .map_err(state_error)?;
    Ok(vec![(ctx.uid().to_owned(), own.data)])
}

/// Serves the coordinator's commands; returns true when the task must stop
/// (a stop-with-savepoint completed).
fn serve_commands<R: SourceReader>(
    reader: &mut R,
    assigned: &mut AssignedSplits<R::Out>,
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
                let finished = assigned.finished(&splits);
                let state = source_state(ctx, barrier.id, splits, finished)?;
                if snapshot_chain(chain, barrier, state, Duration::ZERO, env)? {
                    return Ok(true);
                }
            }
            TaskCommand::Complete(id) => {
                guarded(ctx.location(), connector_error, || {
                    reader.notify_checkpoint_complete(id)
                })?;
                chain.on_checkpoint_complete(id)?;
            }
            TaskCommand::AddSplits(SplitBatch(splits)) => {
                let splits: Vec<R::Split> =
                    decode_value("splits", "the enumerator's splits", &splits).map_err(
                        |source| EngineError::State {
                            location: ctx.location().clone(),
                            source,
                        },
                    )?;
                assigned.add(reader, splits, ctx, env.clock.now())?;
            }
            TaskCommand::NoMoreSplits => {
                assigned.no_more = true;
                assigned.watermarks.set_awaiting_splits(false);
            }
            TaskCommand::Abort(_) => {}
        }
    }
    Ok(false)
}

/// Runs one source subtask to the end of its input. It starts with
/// `restored` splits (those its snapshot held) and `finished_before` (the
/// ids of splits finished before that snapshot); the enumerator sends the
/// rest as commands.
#[allow(clippy::too_many_arguments)]
pub(crate) fn run_source_task<S: Source>(
    source: &S,
    restored: Vec<S::Split>,
    finished_before: Vec<String>,
    strategy: Option<WatermarkStrategy<S::Out>>,
    ctx: &RuntimeContext,
    chain: &mut SourceChain<S::Out>,
    stats: &mut StageStats,
    env: &TaskEnv,
) -> Result<(), EngineError> {
    let location = ctx.location();
    let mut reader = guarded(location, connector_error, || source.create_reader(ctx))?;
    let strategy = strategy.unwrap_or_else(WatermarkStrategy::no_watermarks);
    let emission = strategy.emission();
    let interval_ms = match emission {
        WatermarkEmission::Periodic(Some(d)) => d,
        _ => env.settings.watermark_interval,
    }
    .as_millis() as i64;
    let mut assigned = AssignedSplits {
        ids: Vec::new(),
        finished_before,
        watermarks: SplitWatermarks::new(strategy),
        no_more: false,
    };
    assigned.watermarks.set_awaiting_splits(true);
    let now = env.clock.now();
    assigned.add(&mut reader, restored, ctx, now)?;

    let batch_size = env.settings.batch_size;
    let mut batch: Vec<Record<S::Out>> = Vec::with_capacity(batch_size);
    let mut dead: Vec<Record<DeadLetter>> = Vec::new();
    let mut housekeeping = Housekeeping::new(env);
    let mut next_watermark = now;
    let mut markers = env
        .settings
        .latency_tracking_interval
        .map(|every| LatencyMarks {
            every_ms: every.as_millis().max(1) as i64,
            next: now,
            source: std::sync::Arc::from(location.uid.as_str()),
        });
    let mut dead_warned = false;
    loop {
        if env.cancelled() {
            return Err(EngineError::Cancelled);
        }
        if serve_commands(&mut reader, &mut assigned, chain, ctx, env)? {
            return Ok(());
        }
        let status = {
            let mut out = SourceOutput {
                batch: &mut batch,
                dead: &mut dead,
                watermarks: &mut assigned.watermarks,
                split_ids: &assigned.ids,
                source_name: &location.operator,
                batch_size,
            };
            guarded(location, connector_error, || reader.poll_next(&mut out))?
        };
        if !batch.is_empty() {
            if assigned.watermarks.mark_active() {
                chain.on_status(StreamStatus::Active)?;
            }
            stats.records_out += batch.len() as u64;
            chain.main.on_batch(&mut batch)?;
            batch.clear();
        }
        if !dead.is_empty() {
            stats.dead_letters += dead.len() as u64;
            check_dead_letter_ratio(stats, env.settings.max_dead_letter_ratio, location)?;
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
            let update = assigned.watermarks.check(now);
            if let Some(wm) = update.watermark {
                stats.watermark = Some(wm);
                chain.on_watermark(wm)?;
            }
            if let Some(status) = update.status {
                chain.on_status(status)?;
            }
            next_watermark = now.add_millis(interval_ms);
        }
        if let Some(m) = markers.as_mut().filter(|m| now >= m.next) {
            m.next = now.add_millis(m.every_ms);
            chain.on_latency_marker(&LatencyMarker {
                marked_at_ms: crate::clock::wall_clock_ms(),
                source: std::sync::Arc::clone(&m.source),
            })?;
        }
        housekeeping.run(chain, Some(&*stats), env, now)?;
        match status {
            ReadStatus::MoreAvailable => {}
            ReadStatus::Finished if assigned.no_more => break,
            ReadStatus::NothingAvailable | ReadStatus::Finished => {
                env.clock.sleep(IDLE_BACKOFF);
                housekeeping.idle += IDLE_BACKOFF;
            }
        }
    }
    if let Some(wm) = assigned.watermarks.end() {
        chain.on_watermark(wm)?;
    }
    chain.finish()?;
    let finished = assigned.finished::<S::Split>(&[]);
    let state = source_state::<S::Split>(ctx, CheckpointId::END, Vec::new(), finished)?;
    end_of_input_snapshot(chain, state, env)
}

/// When a source subtask emits its next latency marker.
struct LatencyMarks {
    every_ms: i64,
    next: Timestamp,
    source: std::sync::Arc<str>,
}

/// Fails the source when its share of undecodable records exceeds `max`
/// (once it has read enough to judge).
fn check_dead_letter_ratio(
    stats: &StageStats,
    max: Option<f64>,
    location: &Location,
) -> Result<(), EngineError> {
    let Some(max) = max else {
        return Ok(());
    };
    let read = stats.records_out + stats.dead_letters;
    if read < crate::config::DEAD_LETTER_SAMPLE || stats.dead_letters as f64 <= max * read as f64 {
        return Ok(());
    }
    Err(EngineError::Config {
        option: "--max-dead-letter-ratio".into(),
        value: max.to_string(),
        reason: format!(
            "source {} ({}): {} of its first {read} records were undecodable; check the input's \
             format (a CSV header? compressed input? the record type?), or raise the ratio",
            location.operator, location.subtask, stats.dead_letters
        ),
    })
}
