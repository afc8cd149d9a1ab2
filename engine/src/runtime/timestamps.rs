//! Assigning event time in the middle of a stream (`assign_timestamps` on a
//! stream that is not a source): re-stamps every record and generates
//! watermarks from them; upstream watermarks are swallowed, except the final
//! `Timestamp::MAX`.

use std::sync::Arc;
use std::time::Duration;

use crate::clock::Clock;

use crate::context::RuntimeContext;
use crate::element::{Data, Record, StreamStatus, Timestamp};
use crate::error::{EngineError, Location};
use crate::graph::erased::{downcast, SendAny, StageAny, StageNode};
use crate::operator::SideOutputs;
use crate::runtime::chain::{guarded, user_error, Control, Downstream, FanOut};
use crate::runtime::stats::StageStats;
use crate::runtime::task::TaskEnv;
use crate::time::{SplitWatermarks, WatermarkEmission, WatermarkStrategy};

/// The graph node of a mid-stream timestamp assigner.
pub(crate) struct TimestampNode<T> {
    pub strategy: WatermarkStrategy<T>,
    /// Periodic emission interval (already resolved against the job default).
    pub interval: Duration,
}

impl<T: Data> StageNode for TimestampNode<T> {
    fn build(
        &self,
        ctx: &RuntimeContext,
        node: usize,
        main: Option<StageAny>,
        sides: SideOutputs,
    ) -> Result<StageAny, EngineError> {
        if !sides.is_empty() {
            return Err(EngineError::InvalidJob {
                node: ctx.operator().to_owned(),
                reason: "a timestamp assigner has no side outputs".into(),
            });
        }
        let next = match main {
            Some(m) => downcast::<Box<dyn Downstream<T>>>(m, "timestamp output")?,
            None => Box::new(FanOut::new(Vec::new())),
        };
        let mut watermarks = SplitWatermarks::new(self.strategy.clone());
        let now = ctx.processing_time();
        watermarks.add_split(now);
        let per_batch = self.strategy.emission() == WatermarkEmission::PerBatch;
        let stage: Box<dyn Downstream<T>> = Box::new(TimestampStage {
            location: ctx.location().clone(),
            clock: Arc::clone(ctx.clock()),
            watermarks,
            per_batch,
            interval_ms: self.interval.as_millis() as i64,
            next_emit: now,
            upstream_idle: false,
            own_idle: false,
            sent: StreamStatus::Active,
            next,
            stats: StageStats {
                node,
                ..StageStats::default()
            },
        });
        Ok(Box::new(stage))
    }

    fn run_head(
        &self,
        stage: StageAny,
        inputs: Vec<SendAny>,
        env: &TaskEnv,
    ) -> Result<Vec<StageStats>, EngineError> {
        crate::graph::erased::run_typed_head::<T>(stage, inputs, env)
    }
}

struct TimestampStage<T> {
    location: Location,
    clock: Arc<dyn Clock>,
    watermarks: SplitWatermarks<T>,
    per_batch: bool,
    interval_ms: i64,
    next_emit: Timestamp,
    /// Whether the input is idle, as upstream reports it.
    upstream_idle: bool,
    /// Whether this stage's own idleness timeout has passed.
    own_idle: bool,
    /// The status last sent downstream.
    sent: StreamStatus,
    next: Box<dyn Downstream<T>>,
    stats: StageStats,
}

impl<T: Data> TimestampStage<T> {
    fn emit(&mut self, now: Timestamp) -> Result<(), EngineError> {
        let update = self.watermarks.check(now);
        if let Some(wm) = update.watermark {
            self.next.on_watermark(wm)?;
        }
        if let Some(status) = update.status {
            self.own_idle = status == StreamStatus::Idle;
            self.send_status()?;
        }
        Ok(())
    }

    /// Idle when upstream is idle or this stage's own timeout has passed.
    fn send_status(&mut self) -> Result<(), EngineError> {
        let status = if self.upstream_idle || self.own_idle {
            StreamStatus::Idle
        } else {
            StreamStatus::Active
        };
        if status != self.sent {
            self.sent = status;
            self.next.on_status(status)?;
        }
        Ok(())
    }
}

impl<T: Data> Downstream<T> for TimestampStage<T> {
    fn on_batch(&mut self, batch: &mut Vec<Record<T>>) -> Result<(), EngineError> {
        let n = batch.len() as u64;
        self.stats.records_in += n;
        self.stats.records_out += n;
        let watermarks = &mut self.watermarks;
        guarded(&self.location, user_error, || {
            for r in batch.iter_mut() {
                r.ts = watermarks.on_record(0, &r.value, r.ts);
            }
            Ok(())
        })?;
        // Records flow again: active before them, as sources do.
        if !batch.is_empty() && (self.own_idle || self.upstream_idle) {
            self.watermarks.mark_active();
            self.own_idle = false;
            self.upstream_idle = false;
            self.send_status()?;
        }
        self.next.on_batch(batch)?;
        if self.per_batch {
            self.emit(self.clock.now())?;
        }
        Ok(())
    }
}

impl<T: Data> Control for TimestampStage<T> {
    fn on_watermark(&mut self, wm: Timestamp) -> Result<(), EngineError> {
        if wm == Timestamp::MAX {
            if let Some(end) = self.watermarks.end() {
                self.next.on_watermark(end)?;
            }
        }
        Ok(())
    }
    fn on_status(&mut self, status: StreamStatus) -> Result<(), EngineError> {
        self.upstream_idle = status == StreamStatus::Idle;
        self.send_status()
    }
    fn on_processing_time(&mut self, now: Timestamp) -> Result<(), EngineError> {
        if !self.per_batch && now >= self.next_emit {
            self.emit(now)?;
            self.next_emit = now.add_millis(self.interval_ms);
        }
        self.next.on_processing_time(now)
    }
    fn next_processing_time(&self) -> Option<Timestamp> {
        let own = (!self.per_batch).then_some(self.next_emit);
        match (own, self.next.next_processing_time()) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }
    fn flush(&mut self) -> Result<(), EngineError> {
        self.next.flush()
    }
    fn finish(&mut self) -> Result<(), EngineError> {
        self.next.finish()
    }
    fn on_barrier(
        &mut self,
        barrier: crate::element::Barrier,
        out: &mut crate::checkpoint::coordinator::TaskState,
    ) -> Result<(), EngineError> {
        self.next.on_barrier(barrier, out)
    }
    fn on_checkpoint_complete(
        &mut self,
        id: crate::element::CheckpointId,
    ) -> Result<(), EngineError> {
        self.next.on_checkpoint_complete(id)
    }
    fn on_latency_marker(
        &mut self,
        marker: &crate::element::LatencyMarker,
    ) -> Result<(), EngineError> {
        self.next.on_latency_marker(marker)
    }
    fn collect_stats(&self, out: &mut Vec<StageStats>) {
        out.push(self.stats.clone());
        self.next.collect_stats(out);
    }
}
