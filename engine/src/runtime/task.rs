//! The loop of a task whose head has network inputs: take the next element
//! from any input channel, hand it to the chain; between elements, fire
//! processing-time timers, flush output buffers on the buffer timeout, and
//! notice cancellation.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use crossbeam_channel::{Receiver, Select};

use crate::clock::Clock;
use crate::element::{Data, Element, Timestamp};
use crate::error::EngineError;
use crate::runtime::chain::{Control, Downstream};
use crate::time::{ValveOutput, WatermarkValve};

/// Runtime settings every task needs.
#[derive(Clone, Debug)]
pub(crate) struct TaskSettings {
    pub batch_size: usize,
    pub buffer_timeout: Duration,
    pub watermark_interval: Duration,
}

/// What a task shares with the rest of the job.
#[derive(Clone)]
pub(crate) struct TaskEnv {
    pub settings: Arc<TaskSettings>,
    pub clock: Arc<dyn Clock>,
    pub cancel: Arc<AtomicBool>,
}

/// Longest a task waits without checking cancellation and timers.
const MAX_WAIT: Duration = Duration::from_millis(50);

impl TaskEnv {
    pub(crate) fn cancelled(&self) -> bool {
        self.cancel.load(Ordering::Relaxed)
    }
}

/// Flushes on the buffer timeout and fires processing-time timers; shared by
/// input tasks and source tasks.
pub(crate) struct Housekeeping {
    next_flush: Timestamp,
    buffer_timeout_ms: i64,
}

impl Housekeeping {
    pub(crate) fn new(env: &TaskEnv) -> Self {
        Housekeeping {
            next_flush: env.clock.now(),
            buffer_timeout_ms: env.settings.buffer_timeout.as_millis() as i64,
        }
    }

    /// Does what is due at `now`; returns the next time something is due.
    pub(crate) fn run(
        &mut self,
        chain: &mut dyn Control,
        now: Timestamp,
    ) -> Result<Timestamp, EngineError> {
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

/// Runs a one-input task until its inputs end, it fails, or it is cancelled.
pub(crate) fn run_input_task<T: Data>(
    mut head: Box<dyn Downstream<T>>,
    inputs: Vec<Receiver<Element<T>>>,
    env: &TaskEnv,
) -> Result<Box<dyn Downstream<T>>, EngineError> {
    let mut valve = WatermarkValve::new(inputs.len());
    let mut select = Select::new();
    for rx in &inputs {
        select.recv(rx);
    }
    let mut live = inputs.len();
    let mut housekeeping = Housekeeping::new(env);
    if live == 0 {
        head.finish()?;
        return Ok(head);
    }
    loop {
        if env.cancelled() {
            return Err(EngineError::Cancelled);
        }
        let now = env.clock.now();
        let due = housekeeping.run(head.as_mut(), now)?;
        let wait = Duration::from_millis((due.millis().saturating_sub(now.millis())).max(0) as u64)
            .min(MAX_WAIT);
        let Ok(op) = select.select_timeout(wait) else {
            continue;
        };
        let ch = op.index();
        // Disconnected without EndOfInput: the upstream task failed.
        let element = op.recv(&inputs[ch]).map_err(|_| EngineError::Cancelled)?;
        match element {
            Element::Batch(mut batch) => head.on_batch(&mut batch)?,
            Element::Watermark(wm) => apply_valve(head.as_mut(), valve.on_watermark(ch, wm))?,
            Element::Status(status) => apply_valve(head.as_mut(), valve.on_status(ch, status))?,
            Element::Barrier(barrier) => {
                return Err(EngineError::Internal(format!(
                    "received barrier for checkpoint {:?}, but checkpointing is not implemented yet (issue #5)",
                    barrier.id
                )))
            }
            Element::EndOfInput => {
                select.remove(ch);
                live -= 1;
                apply_valve(head.as_mut(), valve.on_end(ch))?;
                if live == 0 {
                    head.finish()?;
                    return Ok(head);
                }
            }
        }
    }
}
