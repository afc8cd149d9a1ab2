//! The loop of a task whose head has network inputs: take the next element
//! from any input channel, hand it to the chain; between elements, fire
//! processing-time timers, flush output buffers on the buffer timeout, and
//! notice cancellation. Checkpoint barriers are aligned across the inputs
//! (exactly-once) or only counted (at-least-once) before the chain snapshots.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crossbeam_channel::Select;

use crate::checkpoint::coordinator::{CheckpointLink, TaskCommand, TaskState};
use crate::checkpoint::writer::TaskReport;
use crate::checkpoint::CheckpointingMode;
use crate::clock::Clock;
use crate::element::{Barrier, CheckpointId, Data, Element, Timestamp};
use crate::error::EngineError;
use crate::metrics::{JobMetrics, TaskTimes, PUBLISH_INTERVAL};
use crate::runtime::chain::{Control, Downstream};
use crate::runtime::exchange::InputChannel;
use crate::runtime::stats::StageStats;
use crate::time::{ValveOutput, WatermarkValve};

/// Runtime settings every task needs.
#[derive(Clone, Debug)]
pub(crate) struct TaskSettings {
    pub batch_size: usize,
    pub buffer_timeout: Duration,
    pub watermark_interval: Duration,
    pub checkpointing_mode: CheckpointingMode,
    pub max_dead_letter_ratio: Option<f64>,
    /// How often sources emit latency markers (`None`: never).
    pub latency_tracking_interval: Option<Duration>,
}

/// What a task shares with the rest of the job.
#[derive(Clone)]
pub(crate) struct TaskEnv {
    pub settings: Arc<TaskSettings>,
    pub clock: Arc<dyn Clock>,
    pub cancel: Arc<AtomicBool>,
    pub link: CheckpointLink,
    pub metrics: Arc<JobMetrics>,
    /// Restarts of the job before this run of the task.
    pub attempt: u32,
    pub vertex: usize,
    pub subtask: usize,
}

/// Longest a task waits without checking cancellation and timers.
const MAX_WAIT: Duration = Duration::from_millis(50);

impl TaskEnv {
    pub(crate) fn cancelled(&self) -> bool {
        self.cancel.load(Ordering::Relaxed)
    }
}

/// Flushes on the buffer timeout, fires processing-time timers, and
/// publishes the task's counts to the live metrics; shared by input tasks
/// and source tasks.
pub(crate) struct Housekeeping {
    next_flush: Timestamp,
    buffer_timeout_ms: i64,
    started: Instant,
    /// When to publish next, on the job's clock (read anyway).
    next_publish: Timestamp,
    /// Time spent waiting for input.
    pub idle: Duration,
    scratch: Vec<StageStats>,
}

impl Housekeeping {
    pub(crate) fn new(env: &TaskEnv) -> Self {
        Housekeeping {
            next_flush: env.clock.now(),
            buffer_timeout_ms: env.settings.buffer_timeout.as_millis() as i64,
            started: Instant::now(),
            next_publish: env.clock.now(),
            idle: Duration::ZERO,
            scratch: Vec::new(),
        }
    }

    /// Publishes the counts of the chain's stages (and `own`, a source's)
    /// and the task's time split, once per [`PUBLISH_INTERVAL`].
    fn publish(
        &mut self,
        chain: &dyn Control,
        own: Option<&StageStats>,
        env: &TaskEnv,
        now: Timestamp,
    ) {
        if now < self.next_publish {
            return;
        }
        self.next_publish = now.add_millis(PUBLISH_INTERVAL.as_millis() as i64);
        let wall = Instant::now();
        self.scratch.clear();
        self.scratch.extend(own.cloned());
        chain.collect_stats(&mut self.scratch);
        env.metrics
            .publish_stages(env.attempt, env.subtask, &self.scratch, now);
        let times = TaskTimes {
            idle: self.idle,
            backpressured: self.scratch.iter().map(|s| s.backpressured).sum(),
            elapsed: wall - self.started,
        };
        env.metrics
            .publish_task(env.attempt, env.vertex, env.subtask, times);
    }

    /// Does what is due at `now` (`own`: a source's own counts); returns
    /// the next time something is due.
    pub(crate) fn run(
        &mut self,
        chain: &mut dyn Control,
        own: Option<&StageStats>,
        env: &TaskEnv,
        now: Timestamp,
    ) -> Result<Timestamp, EngineError> {
        self.publish(chain, own, env, now);
        if chain.next_processing_time().is_some_and(|t| t <= now) {
            chain.on_processing_time(now)?;
        }
        if now >= self.next_flush {
            chain.flush()?;
            self.next_flush = now.add_millis(self.buffer_timeout_ms);
        }
        let timer = chain.next_processing_time().unwrap_or(Timestamp::MAX);
        // A zero timeout flushes after every element; it is no reason to wake.
        if self.buffer_timeout_ms == 0 {
            return Ok(timer);
        }
        Ok(self.next_flush.min(timer))
    }
}

fn apply_valve(chain: &mut dyn Control, out: ValveOutput) -> Result<(), EngineError> {
    if let Some(wm) = out.watermark {
        chain.on_watermark(wm)?;
    }
    if let Some(status) = out.status {
        chain.on_status(status)?;
    }
    Ok(())
}

/// Snapshots the chain for `barrier` (which also sends it on) and hands
/// the state, and how long the barrier took to align (`alignment`: first
/// to last input), to the worker's snapshot writer. A stop-with-savepoint barrier then
/// waits for the savepoint: returns true when it completed and the task
/// must end, false when it failed and the job goes on.
pub(crate) fn snapshot_chain(
    chain: &mut dyn Control,
    barrier: Barrier,
    mut state: TaskState,
    alignment: Duration,
    env: &TaskEnv,
) -> Result<bool, EngineError> {
    let _span = tracing::debug_span!("checkpoint", id = barrier.id.0).entered();
    chain.on_barrier(barrier, &mut state)?;
    tracing::debug!(?alignment, "snapshotted");
    env.link.report(TaskReport::Snapshot {
        task: env.link.task,
        id: barrier.id,
        state,
        alignment,
    });
    if barrier.stop {
        return await_completion(chain, env, barrier.id);
    }
    Ok(false)
}

/// After the input has ended: takes the end-of-input snapshot (two-phase
/// sinks prepare their last output) and hands it to the snapshot writer. With checkpoints, then
/// waits until a completed checkpoint includes that state (sinks commit);
/// without, the state only stands in for the task in savepoints.
pub(crate) fn end_of_input_snapshot(
    chain: &mut dyn Control,
    mut state: TaskState,
    env: &TaskEnv,
) -> Result<(), EngineError> {
    let barrier = Barrier {
        id: CheckpointId::END,
        triggered_at: env.clock.now(),
        stop: false,
        savepoint: false,
    };
    chain.on_barrier(barrier, &mut state)?;
    env.link.report(TaskReport::Finished {
        task: env.link.task,
        state,
    });
    if env.link.enabled {
        await_completion(chain, env, CheckpointId::END)?;
    }
    Ok(())
}

/// Waits for the notice that checkpoint `id` is complete (true), passing on
/// the notices of earlier ones, or that it was abandoned (false).
fn await_completion(
    chain: &mut dyn Control,
    env: &TaskEnv,
    id: CheckpointId,
) -> Result<bool, EngineError> {
    loop {
        if env.cancelled() {
            return Err(EngineError::Cancelled);
        }
        if env.link.was_aborted(id) {
            return Ok(false);
        }
        let command = env.link.commands.recv_timeout(MAX_WAIT);
        if let Ok(TaskCommand::Complete(done)) = command.map(|c| env.link.heard(c)) {
            chain.on_checkpoint_complete(done)?;
            if done >= id {
                return Ok(true);
            }
        }
    }
}

/// Barrier alignment of one task: which inputs delivered the barrier of the
/// checkpoint in progress, and which are held back until the others do.
struct Alignment {
    mode: CheckpointingMode,
    current: Option<Barrier>,
    /// When the first barrier of `current` arrived.
    first_arrived: Option<Instant>,
    arrived: Vec<bool>,
}

impl Alignment {
    fn new(inputs: usize, mode: CheckpointingMode) -> Self {
        Alignment {
            mode,
            current: None,
            first_arrived: None,
            arrived: vec![false; inputs],
        }
    }

    /// True when input `ch` must not be read now.
    fn holds(&self, ch: usize) -> bool {
        self.mode == CheckpointingMode::ExactlyOnce && self.arrived[ch]
    }

    /// Records `barrier` on input `ch`; returns the checkpoint it overtook,
    /// which this task will never snapshot (possible without alignment).
    fn on_barrier(&mut self, ch: usize, barrier: Barrier) -> Option<CheckpointId> {
        let mut overtaken = None;
        match self.current {
            Some(current) if current.id == barrier.id => {}
            Some(current) if current.id > barrier.id => return None, // already declined
            Some(current) => {
                self.arrived.iter_mut().for_each(|a| *a = false);
                self.current = Some(barrier);
                self.first_arrived = Some(Instant::now());
                overtaken = Some(current.id);
            }
            None => {
                self.current = Some(barrier);
                self.first_arrived = Some(Instant::now());
            }
        }
        self.arrived[ch] = true;
        overtaken
    }

    /// The barrier whose alignment is complete, given which inputs ended,
    /// and how long it took from its first input to its last.
    fn complete(&mut self, ended: &[bool]) -> Option<(Barrier, Duration)> {
        let barrier = self.current?;
        let done = self.arrived.iter().zip(ended).all(|(a, e)| *a || *e);
        if !done {
            return None;
        }
        self.current = None;
        self.arrived.iter_mut().for_each(|a| *a = false);
        let took = self
            .first_arrived
            .take()
            .map_or(Duration::ZERO, |t| t.elapsed());
        Some((barrier, took))
    }
}

/// Runs a one-input task until its inputs end, it fails, or it is cancelled.
pub(crate) fn run_input_task<T: Data>(
    mut head: Box<dyn Downstream<T>>,
    inputs: Vec<InputChannel<T>>,
    env: &TaskEnv,
) -> Result<Box<dyn Downstream<T>>, EngineError> {
    let mut valve = WatermarkValve::new(inputs.len());
    let mut ended = vec![false; inputs.len()];
    let mut alignment = Alignment::new(inputs.len(), env.settings.checkpointing_mode);
    let mut housekeeping = Housekeeping::new(env);
    if inputs.is_empty() {
        head.finish()?;
        end_of_input_snapshot(head.as_mut(), Vec::new(), env)?;
        return Ok(head);
    }
    // The inputs being read (not ended, not held by alignment), then the
    // coordinator's commands; rebuilt when that set changes.
    let build = |ended: &[bool], alignment: &Alignment| {
        let mut select = Select::new();
        let mut order = Vec::new();
        for (i, input) in inputs.iter().enumerate() {
            if !ended[i] && !alignment.holds(i) {
                input.register(&mut select);
                order.push(i);
            }
        }
        select.recv(&env.link.commands);
        (select, order)
    };
    let (mut select, mut order) = build(&ended, &alignment);
    loop {
        if env.cancelled() {
            return Err(EngineError::Cancelled);
        }
        let now = env.clock.now();
        let due = housekeeping.run(head.as_mut(), None, env, now)?;
        let wait = Duration::from_millis((due.millis().saturating_sub(now.millis())).max(0) as u64)
            .min(MAX_WAIT);
        let waiting = Instant::now();
        let selected = select.select_timeout(wait);
        housekeeping.idle += waiting.elapsed();
        let Ok(op) = selected else {
            continue;
        };
        let Some(&ch) = order.get(op.index()) else {
            match op.recv(&env.link.commands).map(|c| env.link.heard(c)) {
                Ok(TaskCommand::Complete(id)) => head.on_checkpoint_complete(id)?,
                Ok(_) => {}
                Err(_) => return Err(EngineError::Cancelled),
            }
            continue;
        };
        // Disconnected without EndOfInput: the upstream task failed.
        let element = inputs[ch].take(op)?;
        let mut rebuild = false;
        match element {
            Element::Batch(mut batch) => head.on_batch(&mut batch)?,
            Element::Watermark(wm) => apply_valve(head.as_mut(), valve.on_watermark(ch, wm))?,
            Element::Status(status) => apply_valve(head.as_mut(), valve.on_status(ch, status))?,
            Element::LatencyMarker(marker) => head.on_latency_marker(&marker)?,
            Element::Barrier(barrier) => {
                if let Some(declined) = alignment.on_barrier(ch, barrier) {
                    env.link.report(TaskReport::Decline {
                        task: env.link.task,
                        id: declined,
                    });
                }
                rebuild = alignment.holds(ch);
            }
            Element::EndOfInput => {
                ended[ch] = true;
                rebuild = true;
                apply_valve(head.as_mut(), valve.on_end(ch))?;
            }
        }
        if let Some((barrier, took)) = alignment.complete(&ended) {
            rebuild = true;
            if snapshot_chain(head.as_mut(), barrier, Vec::new(), took, env)? {
                return Ok(head);
            }
        }
        if ended.iter().all(|e| *e) {
            head.finish()?;
            end_of_input_snapshot(head.as_mut(), Vec::new(), env)?;
            return Ok(head);
        }
        if rebuild {
            (select, order) = build(&ended, &alignment);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn barrier(id: u64) -> Barrier {
        Barrier {
            id: CheckpointId(id),
            triggered_at: Timestamp(0),
            stop: false,
            savepoint: false,
        }
    }

    #[test]
    fn exactly_once_holds_each_input_until_all_delivered_the_barrier() {
        let mut a = Alignment::new(3, CheckpointingMode::ExactlyOnce);
        let ended = [false, false, true];
        a.on_barrier(0, barrier(1));
        assert!(a.holds(0) && !a.holds(1));
        assert_eq!(a.complete(&ended), None);
        a.on_barrier(1, barrier(1));
        assert_eq!(a.complete(&ended).map(|b| b.0.id), Some(CheckpointId(1)));
        assert!(!a.holds(0) && !a.holds(1), "released after the snapshot");
    }

    #[test]
    fn at_least_once_counts_barriers_without_holding_inputs() {
        let mut a = Alignment::new(2, CheckpointingMode::AtLeastOnce);
        assert_eq!(a.on_barrier(1, barrier(4)), None);
        assert!(!a.holds(1));
        assert_eq!(a.complete(&[false, false]), None);
        assert_eq!(
            a.on_barrier(0, barrier(5)),
            Some(CheckpointId(4)),
            "4 is declined"
        );
        assert_eq!(a.complete(&[false, false]), None, "4 was overtaken by 5");
        a.on_barrier(1, barrier(5));
        assert_eq!(
            a.complete(&[false, false]).map(|b| b.0.id),
            Some(CheckpointId(5))
        );
    }
}
