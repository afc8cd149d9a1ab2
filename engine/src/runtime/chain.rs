//! Operator chaining: the stages inside one task, connected by calls.
//!
//! Each stage accepts elements of one type ([`Downstream`]) and passes its
//! results to the next stage, a fan-out, or a network output. Control events
//! (watermarks, status, processing time, flushes, checkpoint barriers, end of
//! input) travel down the same path through [`Control`].

use std::collections::HashMap;
use std::panic::{catch_unwind, AssertUnwindSafe};

use crate::checkpoint::coordinator::TaskState;
use crate::checkpoint::StateSnapshot;
use crate::context::RuntimeContext;
use crate::element::{Barrier, CheckpointId, Data, LatencyMarker, Record, StreamStatus, Timestamp};
use crate::error::{panic_message, BoxError, EngineError, Location};
use crate::metrics::{Histogram, MetricGroup};
use crate::operator::{Collector, Operator, SideOutputs};
use crate::runtime::stats::StageStats;
use crate::sink::SinkWriter;

/// The type-independent part of a chain stage.
pub(crate) trait Control {
    /// The input watermark advanced.
    fn on_watermark(&mut self, wm: Timestamp) -> Result<(), EngineError>;
    /// The input became idle or active.
    fn on_status(&mut self, status: StreamStatus) -> Result<(), EngineError>;
    /// Processing time reached `now`.
    fn on_processing_time(&mut self, now: Timestamp) -> Result<(), EngineError>;
    /// The earliest processing time any stage from here on waits for.
    fn next_processing_time(&self) -> Option<Timestamp>;
    /// Send buffered output (buffer timeout).
    fn flush(&mut self) -> Result<(), EngineError>;
    /// The input ended: emit what is held, then pass the end on.
    fn finish(&mut self) -> Result<(), EngineError>;
    /// A barrier: snapshot this stage into `out`, then pass the barrier on
    /// (over the network unless it is the end-of-input snapshot).
    fn on_barrier(&mut self, barrier: Barrier, out: &mut TaskState) -> Result<(), EngineError>;
    /// Checkpoint `id` completed.
    fn on_checkpoint_complete(&mut self, id: CheckpointId) -> Result<(), EngineError>;
    /// A latency marker: pass it on (sinks measure it).
    fn on_latency_marker(&mut self, marker: &LatencyMarker) -> Result<(), EngineError>;
    /// Appends the statistics of this stage and everything after it.
    fn collect_stats(&self, out: &mut Vec<StageStats>);
}

/// A chain stage that accepts records of type `T`.
pub(crate) trait Downstream<T>: Control {
    /// Takes the records out of `batch` (which the caller may reuse).
    fn on_batch(&mut self, batch: &mut Vec<Record<T>>) -> Result<(), EngineError>;
}

fn earliest(a: Option<Timestamp>, b: Option<Timestamp>) -> Option<Timestamp> {
    match (a, b) {
        (Some(x), Some(y)) => Some(x.min(y)),
        (x, None) => x,
        (None, y) => y,
    }
}

/// Runs `f`, turning errors and panics into job errors naming `location`.
pub(crate) fn guarded<R>(
    location: &Location,
    wrap: fn(Location, BoxError) -> EngineError,
    f: impl FnOnce() -> Result<R, BoxError>,
) -> Result<R, EngineError> {
    match catch_unwind(AssertUnwindSafe(f)) {
        Ok(Ok(r)) => Ok(r),
        Ok(Err(e)) => Err(wrap(location.clone(), e)),
        Err(payload) => Err(EngineError::UserPanic {
            location: location.clone(),
            message: panic_message(payload.as_ref()),
        }),
    }
}

pub(crate) fn user_error(location: Location, source: BoxError) -> EngineError {
    EngineError::UserFunction { location, source }
}

pub(crate) fn connector_error(location: Location, source: BoxError) -> EngineError {
    EngineError::Connector { location, source }
}

/// An [`Operator`] inside a chain.
pub(crate) struct OperatorStage<Op: Operator> {
    op: Op,
    location: Location,
    max_parallelism: usize,
    out: Vec<Record<Op::Out>>,
    sides: SideOutputs,
    next: Box<dyn Downstream<Op::Out>>,
    stats: StageStats,
}

impl<Op: Operator> OperatorStage<Op> {
    /// Opens `op` and places it before `next`.
    pub(crate) fn open(
        mut op: Op,
        ctx: &RuntimeContext,
        node: usize,
        next: Box<dyn Downstream<Op::Out>>,
        sides: SideOutputs,
    ) -> Result<Self, EngineError> {
        guarded(ctx.location(), user_error, || op.open(ctx))?;
        Ok(OperatorStage {
            op,
            location: ctx.location().clone(),
            max_parallelism: ctx.max_parallelism(),
            out: Vec::new(),
            sides,
            next,
            stats: StageStats {
                node,
                ..StageStats::default()
            },
        })
    }

    fn call(
        &mut self,
        f: impl FnOnce(&mut Op, &mut Collector<'_, Op::Out>) -> Result<(), BoxError>,
    ) -> Result<(), EngineError> {
        let (op, out, sides) = (&mut self.op, &mut self.out, &mut self.sides);
        guarded(&self.location, user_error, || {
            let mut collector = Collector {
                main: out,
                sides,
                ts: Timestamp::MIN,
            };
            f(op, &mut collector)
        })?;
        self.emit()
    }

    fn emit(&mut self) -> Result<(), EngineError> {
        if !self.out.is_empty() {
            self.stats.records_out += self.out.len() as u64;
            self.next.on_batch(&mut self.out)?;
            self.out.clear();
        }
        self.sides.flush()
    }
}

impl<Op: Operator> Downstream<Op::In> for OperatorStage<Op> {
    fn on_batch(&mut self, batch: &mut Vec<Record<Op::In>>) -> Result<(), EngineError> {
        self.stats.records_in += batch.len() as u64;
        let r = self.call(|op, out| op.process_batch(batch, out));
        batch.clear();
        r
    }
}

impl<Op: Operator> Control for OperatorStage<Op> {
    fn on_watermark(&mut self, wm: Timestamp) -> Result<(), EngineError> {
        self.stats.watermark = Some(wm);
        self.call(|op, out| op.on_watermark(wm, out))?;
        self.next.on_watermark(wm)?;
        self.sides.channels().try_for_each(|c| c.on_watermark(wm))
    }

    fn on_status(&mut self, status: StreamStatus) -> Result<(), EngineError> {
        self.next.on_status(status)?;
        self.sides.channels().try_for_each(|c| c.on_status(status))
    }

    fn on_processing_time(&mut self, now: Timestamp) -> Result<(), EngineError> {
        if self.op.next_processing_time().is_some_and(|t| t <= now) {
            self.call(|op, out| op.on_processing_time(now, out))?;
        }
        self.next.on_processing_time(now)?;
        self.sides
            .channels()
            .try_for_each(|c| c.on_processing_time(now))
    }

    fn next_processing_time(&self) -> Option<Timestamp> {
        let mut next = earliest(
            self.op.next_processing_time(),
            self.next.next_processing_time(),
        );
        self.sides
            .each_channel(|c| next = earliest(next, c.next_processing_time()));
        next
    }

    fn flush(&mut self) -> Result<(), EngineError> {
        self.next.flush()?;
        self.sides.channels().try_for_each(|c| c.flush())
    }

    fn finish(&mut self) -> Result<(), EngineError> {
        self.call(|op, out| op.finish(out))?;
        self.next.finish()?;
        self.sides.channels().try_for_each(|c| c.finish())
    }

    fn on_barrier(&mut self, barrier: Barrier, out: &mut TaskState) -> Result<(), EngineError> {
        let mut snapshot = StateSnapshot::for_barrier(&barrier, self.max_parallelism);
        let op = &mut self.op;
        guarded(&self.location, user_error, || {
            op.snapshot_state(&mut snapshot)
        })?;
        if !snapshot.is_empty() {
            out.push((self.location.uid.clone(), snapshot.data));
        }
        self.next.on_barrier(barrier, out)?;
        self.sides
            .channels()
            .try_for_each(|c| c.on_barrier(barrier, out))
    }

    fn on_checkpoint_complete(&mut self, id: CheckpointId) -> Result<(), EngineError> {
        let op = &mut self.op;
        guarded(&self.location, user_error, || {
            op.notify_checkpoint_complete(id)
        })?;
        self.next.on_checkpoint_complete(id)?;
        self.sides
            .channels()
            .try_for_each(|c| c.on_checkpoint_complete(id))
    }

    fn on_latency_marker(&mut self, marker: &LatencyMarker) -> Result<(), EngineError> {
        self.next.on_latency_marker(marker)
    }

    fn collect_stats(&self, out: &mut Vec<StageStats>) {
        let mut own = self.stats.clone();
        own.side_dropped = self.sides.dropped();
        own.custom = self.op.metrics();
        out.push(own);
        self.next.collect_stats(out);
        self.sides.each_channel(|c| c.collect_stats(out));
    }
}

/// A sink writer at the end of a chain.
pub(crate) struct SinkStage<W: SinkWriter> {
    writer: W,
    location: Location,
    max_parallelism: usize,
    stats: StageStats,
    metrics: MetricGroup,
    /// End-to-end latency of the markers of each source (by uid).
    latency: HashMap<std::sync::Arc<str>, Histogram>,
}

impl<W: SinkWriter> SinkStage<W> {
    pub(crate) fn new(writer: W, ctx: &RuntimeContext, node: usize) -> Self {
        SinkStage {
            writer,
            location: ctx.location().clone(),
            max_parallelism: ctx.max_parallelism(),
            stats: StageStats {
                node,
                ..StageStats::default()
            },
            metrics: ctx.metrics().clone(),
            latency: HashMap::new(),
        }
    }
}

impl<W: SinkWriter> Downstream<W::In> for SinkStage<W> {
    fn on_batch(&mut self, batch: &mut Vec<Record<W::In>>) -> Result<(), EngineError> {
        self.stats.records_in += batch.len() as u64;
        let writer = &mut self.writer;
        let r = guarded(&self.location, connector_error, || writer.write(batch));
        batch.clear();
        r
    }
}

impl<W: SinkWriter> Control for SinkStage<W> {
    fn on_watermark(&mut self, wm: Timestamp) -> Result<(), EngineError> {
        self.stats.watermark = Some(wm);
        let writer = &mut self.writer;
        guarded(&self.location, connector_error, || writer.on_watermark(wm))
    }
    fn on_status(&mut self, _status: StreamStatus) -> Result<(), EngineError> {
        Ok(())
    }
    fn on_processing_time(&mut self, _now: Timestamp) -> Result<(), EngineError> {
        Ok(())
    }
    fn next_processing_time(&self) -> Option<Timestamp> {
        None
    }
    fn flush(&mut self) -> Result<(), EngineError> {
        Ok(())
    }
    fn finish(&mut self) -> Result<(), EngineError> {
        let writer = &mut self.writer;
        guarded(&self.location, connector_error, || writer.finish())
    }
    fn on_barrier(&mut self, barrier: Barrier, out: &mut TaskState) -> Result<(), EngineError> {
        let mut snapshot = StateSnapshot::new(barrier.id, self.max_parallelism);
        let writer = &mut self.writer;
        guarded(&self.location, connector_error, || {
            writer.snapshot_state(&mut snapshot)
        })?;
        if !snapshot.is_empty() {
            out.push((self.location.uid.clone(), snapshot.data));
        }
        Ok(())
    }
    fn on_checkpoint_complete(&mut self, id: CheckpointId) -> Result<(), EngineError> {
        let writer = &mut self.writer;
        guarded(&self.location, connector_error, || {
            writer.notify_checkpoint_complete(id)
        })
    }
    fn on_latency_marker(&mut self, marker: &LatencyMarker) -> Result<(), EngineError> {
        let metrics = &self.metrics;
        let histogram = self
            .latency
            .entry(std::sync::Arc::clone(&marker.source))
            .or_insert_with(|| {
                metrics
                    .with_labels(&[("source", &marker.source)])
                    .histogram_ms(
                        "latency_ms",
                        "Source to sink time of latency markers (--latency-tracking-interval).",
                    )
            });
        let took = crate::clock::wall_clock_ms() - marker.marked_at_ms;
        histogram.observe(took.max(0) as f64);
        Ok(())
    }
    fn collect_stats(&self, out: &mut Vec<StageStats>) {
        let mut own = self.stats.clone();
        own.custom = self.writer.metrics();
        out.push(own);
    }
}

/// Sends every batch to several stages (a stream consumed more than once).
pub(crate) struct FanOut<T> {
    targets: Vec<Box<dyn Downstream<T>>>,
    copy: Vec<Record<T>>,
}

impl<T: Data> FanOut<T> {
    pub(crate) fn new(targets: Vec<Box<dyn Downstream<T>>>) -> Self {
        FanOut {
            targets,
            copy: Vec::new(),
        }
    }
}

impl<T: Data> Downstream<T> for FanOut<T> {
    fn on_batch(&mut self, batch: &mut Vec<Record<T>>) -> Result<(), EngineError> {
        let Some((last, rest)) = self.targets.split_last_mut() else {
            batch.clear();
            return Ok(());
        };
        for t in rest {
            self.copy.extend_from_slice(batch);
            t.on_batch(&mut self.copy)?;
            self.copy.clear();
        }
        last.on_batch(batch)
    }
}

impl<T: Data> Control for FanOut<T> {
    fn on_watermark(&mut self, wm: Timestamp) -> Result<(), EngineError> {
        self.targets.iter_mut().try_for_each(|t| t.on_watermark(wm))
    }
    fn on_status(&mut self, status: StreamStatus) -> Result<(), EngineError> {
        self.targets
            .iter_mut()
            .try_for_each(|t| t.on_status(status))
    }
    fn on_processing_time(&mut self, now: Timestamp) -> Result<(), EngineError> {
        self.targets
            .iter_mut()
            .try_for_each(|t| t.on_processing_time(now))
    }
    fn next_processing_time(&self) -> Option<Timestamp> {
        self.targets
            .iter()
            .fold(None, |acc, t| earliest(acc, t.next_processing_time()))
    }
    fn flush(&mut self) -> Result<(), EngineError> {
        self.targets.iter_mut().try_for_each(|t| t.flush())
    }
    fn finish(&mut self) -> Result<(), EngineError> {
        self.targets.iter_mut().try_for_each(|t| t.finish())
    }
    fn on_barrier(&mut self, barrier: Barrier, out: &mut TaskState) -> Result<(), EngineError> {
        self.targets
            .iter_mut()
            .try_for_each(|t| t.on_barrier(barrier, out))
    }
    fn on_checkpoint_complete(&mut self, id: CheckpointId) -> Result<(), EngineError> {
        self.targets
            .iter_mut()
            .try_for_each(|t| t.on_checkpoint_complete(id))
    }
    /// To every consumer: each sink downstream gets its measurements.
    fn on_latency_marker(&mut self, marker: &LatencyMarker) -> Result<(), EngineError> {
        self.targets
            .iter_mut()
            .try_for_each(|t| t.on_latency_marker(marker))
    }
    fn collect_stats(&self, out: &mut Vec<StageStats>) {
        self.targets.iter().for_each(|t| t.collect_stats(out));
    }
}
