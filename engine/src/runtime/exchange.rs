//! The two ends of a channel between subtasks, whatever carries it.
//!
//! A *local* channel is a bounded crossbeam channel: batches move between
//! threads without being copied, and a full channel blocks the sender. A
//! *network* channel ([`crate::runtime::tcp`]) carries the same elements
//! bincode-encoded over a connection between workers, and the sender sends
//! only with credit: the receiver grants one credit per element it has room
//! for and returns it when the task takes the element. Either way the
//! elements a channel holds are bounded, so backpressure works the same.

use std::marker::PhantomData;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bincode::Options;
use crossbeam_channel::{
    Receiver, RecvTimeoutError, Select, SelectedOperation, Sender, TryRecvError,
};

use crate::element::{Data, Element};
use crate::error::EngineError;
use crate::runtime::network::send_blocking;

/// Identifies a network channel on its connection.
pub(crate) type ChannelId = u32;

/// The wire format of an element: bincode with fixed-size integers; a
/// frame must be read to its last byte, so a type that does not decode
/// what it encoded is caught more often than not.
fn wire() -> impl Options {
    bincode::DefaultOptions::new()
        .with_fixint_encoding()
        .reject_trailing_bytes()
}

/// How long a send waiting for credit sleeps before checking cancellation.
const CANCEL_POLL: Duration = Duration::from_millis(50);

/// One encoded element on its way to the connection's writer.
pub(crate) struct Frame {
    pub channel: ChannelId,
    pub payload: Vec<u8>,
}

/// The sending end of a network channel, untyped: the typed
/// [`OutputChannel`] encodes.
pub(crate) struct RemoteOutput {
    pub channel: ChannelId,
    /// Names the channel in errors.
    pub label: Arc<str>,
    /// One token per credit the receiver granted.
    pub credits: Receiver<()>,
    /// To the connection's writer.
    pub frames: Sender<Frame>,
}

/// The receiving end of a network channel, untyped: the typed
/// [`InputChannel`] decodes.
pub(crate) struct RemoteInput {
    pub channel: ChannelId,
    /// Names the channel in errors.
    pub label: Arc<str>,
    /// Encoded elements, in order, as the connection's reader routed them.
    pub frames: Receiver<Vec<u8>>,
    /// Returns a credit to the sender, through the connection.
    pub credit: Sender<ChannelId>,
}

/// Where a task sends the elements of one output channel.
pub(crate) enum OutputChannel<T> {
    /// A channel to a subtask in this process.
    Local(Sender<Element<T>>),
    /// A channel to a subtask on another worker.
    Remote(RemoteOutput),
}

impl<T: Data> OutputChannel<T> {
    /// Sends `element`, blocking while the channel is full (a local one)
    /// or has no credit (a network one); adds the time blocked to
    /// `blocked`.
    pub(crate) fn send(
        &self,
        element: Element<T>,
        cancel: &AtomicBool,
        blocked: &mut Duration,
    ) -> Result<(), EngineError> {
        match self {
            OutputChannel::Local(tx) => send_blocking(tx, element, cancel, blocked),
            OutputChannel::Remote(out) => send_remote(out, &element, cancel, blocked),
        }
    }
}

fn send_remote<T: Data>(
    out: &RemoteOutput,
    element: &Element<T>,
    cancel: &AtomicBool,
    blocked: &mut Duration,
) -> Result<(), EngineError> {
    let payload = wire()
        .serialize(element)
        .map_err(|e| EngineError::Exchange {
            channel: out.label.to_string(),
            reason: format!(
                "cannot encode a record of type {}: {e}",
                std::any::type_name::<T>()
            ),
        })?;
    match out.credits.try_recv() {
        Ok(()) => {}
        Err(TryRecvError::Disconnected) => return Err(EngineError::Cancelled),
        Err(TryRecvError::Empty) => {
            let started = Instant::now();
            let waited = loop {
                match out.credits.recv_timeout(CANCEL_POLL) {
                    Ok(()) => break Ok(()),
                    Err(RecvTimeoutError::Timeout) if !cancel.load(Ordering::Relaxed) => {}
                    Err(_) => break Err(EngineError::Cancelled),
                }
            };
            *blocked += started.elapsed();
            waited?;
        }
    }
    // The writer has gone only when the connection broke; the exchange
    // reports why.
    out.frames
        .send(Frame {
            channel: out.channel,
            payload,
        })
        .map_err(|_| EngineError::Cancelled)
}

/// Where a task reads the elements of one input channel.
pub(crate) enum InputChannel<T> {
    /// A channel from a subtask in this process.
    Local(Receiver<Element<T>>),
    /// A channel from a subtask on another worker.
    Remote(RemoteInput, PhantomData<fn() -> T>),
}

impl<T: Data> InputChannel<T> {
    /// Adds this channel to `select`; returns its index there.
    pub(crate) fn register<'a>(&'a self, select: &mut Select<'a>) -> usize {
        match self {
            InputChannel::Local(rx) => select.recv(rx),
            InputChannel::Remote(input, _) => select.recv(&input.frames),
        }
    }

    /// Takes the element `op` selected on this channel (a network
    /// channel's credit goes back to its sender). A channel closed before
    /// its end of input means the producer failed: the task is cancelled.
    pub(crate) fn take(&self, op: SelectedOperation<'_>) -> Result<Element<T>, EngineError> {
        match self {
            InputChannel::Local(rx) => op.recv(rx).map_err(|_| EngineError::Cancelled),
            InputChannel::Remote(input, _) => {
                let bytes = op.recv(&input.frames).map_err(|_| EngineError::Cancelled)?;
                // The connection may be closing; the element is still good.
                let _ = input.credit.send(input.channel);
                decode(&bytes, &input.label)
            }
        }
    }
}

fn decode<T: Data>(bytes: &[u8], label: &str) -> Result<Element<T>, EngineError> {
    wire().deserialize(bytes).map_err(|e| EngineError::Exchange {
        channel: label.to_owned(),
        reason: format!(
            "cannot decode a record of type {} ({e}); records crossing workers are bincode-encoded, which cannot read serde attributes that need a self-describing format (untagged or internally tagged enums, flatten, skip_serializing_if) — drop those attributes from the record type",
            std::any::type_name::<T>()
        ),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::element::{Barrier, CheckpointId, LatencyMarker, Record, StreamStatus, Timestamp};

    fn round_trip<T: Data>(element: Element<T>) -> Element<T> {
        decode(&wire().serialize(&element).unwrap(), "test").unwrap()
    }

    #[test]
    fn every_element_survives_the_wire() {
        let batch = vec![Record::new(Timestamp(5), ("a".to_owned(), 1u64))];
        assert!(
            matches!(round_trip(Element::Batch(batch.clone())), Element::Batch(b) if b == batch)
        );
        assert!(matches!(
            round_trip::<u8>(Element::Watermark(Timestamp::MAX)),
            Element::Watermark(Timestamp::MAX)
        ));
        let barrier = Barrier {
            id: CheckpointId(7),
            triggered_at: Timestamp(3),
            stop: true,
            savepoint: true,
        };
        assert!(
            matches!(round_trip::<u8>(Element::Barrier(barrier)), Element::Barrier(b) if b == barrier)
        );
        assert!(matches!(
            round_trip::<u8>(Element::Status(StreamStatus::Idle)),
            Element::Status(StreamStatus::Idle)
        ));
        let marker = LatencyMarker {
            marked_at_ms: 9,
            source: Arc::from("src"),
        };
        assert!(matches!(
            round_trip::<u8>(Element::LatencyMarker(marker)),
            Element::LatencyMarker(m) if m.marked_at_ms == 9 && &*m.source == "src"
        ));
        assert!(matches!(
            round_trip::<u8>(Element::EndOfInput),
            Element::EndOfInput
        ));
    }

    #[derive(Clone, Debug, serde::Serialize, serde::Deserialize)]
    #[serde(untagged)]
    enum Untagged {
        Number(u64),
    }

    #[test]
    fn a_type_bincode_cannot_read_is_refused_with_the_type_and_the_fix() {
        let bytes = bincode::serialize(&Element::Batch(vec![Record::new(
            Timestamp(0),
            Untagged::Number(1),
        )]))
        .unwrap();
        let err = decode::<Untagged>(&bytes, "edge a → b").unwrap_err();
        let text = err.to_string();
        assert!(text.contains("edge a → b"), "{text}");
        assert!(text.contains("Untagged"), "{text}");
        assert!(text.contains("untagged"), "{text}");
    }
}
