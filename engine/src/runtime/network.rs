//! The output of a task towards other tasks: partitions records into
//! per-channel buffers and sends them as batches over bounded channels
//! (local, or network channels with credit: [`crate::runtime::exchange`]).
//!
//! A full channel blocks the sender: that is backpressure, and it travels
//! upstream until it reaches a source, which then stops reading. Blocking
//! sends wake up regularly to notice a cancelled job.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crossbeam_channel::{SendTimeoutError, Sender, TrySendError};

use crate::element::{Data, Element, LatencyMarker, Record, StreamStatus, Timestamp};
use crate::error::{EngineError, Location};
use crate::keygroup::subtask_for_key_group;
use crate::runtime::chain::{guarded, user_error};
use crate::runtime::chain::{Control, Downstream};
use crate::runtime::exchange::OutputChannel;
use crate::runtime::stats::StageStats;

/// Hashes a record's key (see [`crate::keygroup::key_hash`]).
pub(crate) type KeyHasher<T> = Arc<dyn Fn(&T) -> u64 + Send + Sync>;

/// How records are spread over the downstream subtasks.
pub(crate) enum Partitioner<T> {
    /// Subtask i sends to subtask i (one channel).
    Forward,
    /// Whole batches go round-robin to the downstream subtasks.
    Rebalance { next: usize },
    /// Every record goes to every downstream subtask.
    Broadcast,
    /// Each record goes to the subtask owning its key group.
    Hash {
        key_hash: KeyHasher<T>,
        max_parallelism: usize,
    },
}

/// How long a blocked send waits before checking for cancellation.
const CANCEL_POLL: Duration = Duration::from_millis(50);

/// Sends one element on `tx`, blocking while the channel is full.
pub(crate) fn send_blocking<T>(
    tx: &Sender<Element<T>>,
    element: Element<T>,
    cancel: &AtomicBool,
    blocked: &mut Duration,
) -> Result<(), EngineError> {
    let mut element = match tx.try_send(element) {
        Ok(()) => return Ok(()),
        Err(TrySendError::Full(e)) => e,
        Err(TrySendError::Disconnected(_)) => return Err(EngineError::Cancelled),
    };
    let started = Instant::now();
    let result = loop {
        match tx.send_timeout(element, CANCEL_POLL) {
            Ok(()) => break Ok(()),
            Err(SendTimeoutError::Timeout(e)) => {
                if cancel.load(Ordering::Relaxed) {
                    break Err(EngineError::Cancelled);
                }
                element = e;
            }
            Err(SendTimeoutError::Disconnected(_)) => break Err(EngineError::Cancelled),
        }
    };
    *blocked += started.elapsed();
    result
}

/// A task's output on one network edge.
pub(crate) struct NetworkOutput<T> {
    channels: Vec<OutputChannel<T>>,
    buffers: Vec<Vec<Record<T>>>,
    partitioner: Partitioner<T>,
    batch_size: usize,
    cancel: Arc<AtomicBool>,
    last_watermark: Timestamp,
    /// The upstream operator, named when its key selector fails.
    location: Location,
    /// Key hashes of the batch being partitioned (reused).
    hashes: Vec<u64>,
    /// Per channel: a latency marker that waits behind the buffered records.
    markers: Vec<Option<LatencyMarker>>,
    /// The channel the next latency marker goes to (they rotate).
    next_marker: usize,
    stats: StageStats,
}

impl<T: Data> NetworkOutput<T> {
    pub(crate) fn new(
        channels: Vec<OutputChannel<T>>,
        partitioner: Partitioner<T>,
        batch_size: usize,
        cancel: Arc<AtomicBool>,
        location: Location,
        node: usize,
    ) -> Self {
        NetworkOutput {
            buffers: channels.iter().map(|_| Vec::new()).collect(),
            markers: vec![None; channels.len()],
            channels,
            partitioner,
            batch_size,
            cancel,
            last_watermark: Timestamp::MIN,
            location,
            hashes: Vec::new(),
            next_marker: 0,
            stats: StageStats {
                node,
                ..StageStats::default()
            },
        }
    }

    fn send(&mut self, channel: usize, element: Element<T>) -> Result<(), EngineError> {
        if matches!(element, Element::Batch(_)) {
            self.stats.batches_out += 1;
        }
        self.channels[channel].send(element, &self.cancel, &mut self.stats.backpressured)
    }

    fn send_buffer(&mut self, channel: usize) -> Result<(), EngineError> {
        if self.buffers[channel].is_empty() {
            return Ok(());
        }
        let full = std::mem::replace(
            &mut self.buffers[channel],
            Vec::with_capacity(self.batch_size),
        );
        self.send(channel, Element::Batch(full))?;
        match self.markers[channel].take() {
            Some(marker) => self.send(channel, Element::LatencyMarker(marker)),
            None => Ok(()),
        }
    }

    /// Appends `batch` to one channel's buffer, sending big batches whole.
    fn append_to_channel(
        &mut self,
        channel: usize,
        batch: &mut Vec<Record<T>>,
    ) -> Result<(), EngineError> {
        if self.buffers[channel].is_empty() && batch.len() * 2 >= self.batch_size {
            return self.send(channel, Element::Batch(std::mem::take(batch)));
        }
        self.buffers[channel].append(batch);
        if self.buffers[channel].len() >= self.batch_size {
            self.send_buffer(channel)?;
        }
        Ok(())
    }

    fn broadcast(&mut self, make: impl Fn() -> Element<T>) -> Result<(), EngineError> {
        self.flush_buffers()?;
        (0..self.channels.len()).try_for_each(|c| self.send(c, make()))
    }

    fn flush_buffers(&mut self) -> Result<(), EngineError> {
        (0..self.channels.len()).try_for_each(|c| self.send_buffer(c))
    }
}

impl<T: Data> Downstream<T> for NetworkOutput<T> {
    fn on_batch(&mut self, batch: &mut Vec<Record<T>>) -> Result<(), EngineError> {
        if batch.is_empty() {
            return Ok(());
        }
        match &mut self.partitioner {
            Partitioner::Forward => self.append_to_channel(0, batch),
            Partitioner::Rebalance { next } => {
                let c = *next;
                *next = (c + 1) % self.channels.len();
                self.append_to_channel(c, batch)
            }
            Partitioner::Broadcast => {
                let last = self.channels.len() - 1;
                for c in 0..last {
                    let mut copy = batch.clone();
                    self.append_to_channel(c, &mut copy)?;
                }
                self.append_to_channel(last, batch)
            }
            Partitioner::Hash {
                key_hash,
                max_parallelism,
            } => {
                let (key_hash, max) = (Arc::clone(key_hash), *max_parallelism as u64);
                let n = self.channels.len();
                // The key selector is user code: hash the whole batch under
                // one guard, so a panic names the operator.
                let mut hashes = std::mem::take(&mut self.hashes);
                hashes.clear();
                guarded(&self.location, user_error, || {
                    hashes.extend(batch.iter().map(|r| key_hash(&r.value)));
                    Ok(())
                })?;
                for (record, hash) in batch.drain(..).zip(hashes.iter()) {
                    let kg = (hash % max) as u16;
                    let c = subtask_for_key_group(kg, n, max as usize);
                    self.buffers[c].push(record);
                    if self.buffers[c].len() >= self.batch_size {
                        self.send_buffer(c)?;
                    }
                }
                self.hashes = hashes;
                Ok(())
            }
        }
    }
}

impl<T: Data> Control for NetworkOutput<T> {
    fn on_watermark(&mut self, wm: Timestamp) -> Result<(), EngineError> {
        if wm <= self.last_watermark {
            return Ok(());
        }
        self.last_watermark = wm;
        self.broadcast(|| Element::Watermark(wm))
    }

    fn on_status(&mut self, status: StreamStatus) -> Result<(), EngineError> {
        self.broadcast(|| Element::Status(status))
    }

    fn on_processing_time(&mut self, _now: Timestamp) -> Result<(), EngineError> {
        Ok(())
    }

    fn next_processing_time(&self) -> Option<Timestamp> {
        None
    }

    fn flush(&mut self) -> Result<(), EngineError> {
        self.flush_buffers()
    }

    fn finish(&mut self) -> Result<(), EngineError> {
        self.broadcast(|| Element::EndOfInput)
    }

    fn on_barrier(
        &mut self,
        barrier: crate::element::Barrier,
        _out: &mut crate::checkpoint::coordinator::TaskState,
    ) -> Result<(), EngineError> {
        // The end-of-input snapshot follows end-of-input: nothing to send.
        if barrier.id == crate::element::CheckpointId::END {
            return Ok(());
        }
        self.broadcast(|| Element::Barrier(barrier))
    }

    fn on_checkpoint_complete(
        &mut self,
        _id: crate::element::CheckpointId,
    ) -> Result<(), EngineError> {
        // Downstream tasks hear from the coordinator themselves.
        Ok(())
    }

    /// To one downstream subtask, the next in turn, behind the records
    /// buffered for it (as a record would wait).
    fn on_latency_marker(&mut self, marker: &LatencyMarker) -> Result<(), EngineError> {
        let c = self.next_marker % self.channels.len();
        self.next_marker = c + 1;
        if self.buffers[c].is_empty() {
            return self.send(c, Element::LatencyMarker(marker.clone()));
        }
        self.markers[c] = Some(marker.clone());
        Ok(())
    }

    fn collect_stats(&self, out: &mut Vec<StageStats>) {
        out.push(self.stats.clone());
    }
}
