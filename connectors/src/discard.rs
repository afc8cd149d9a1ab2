//! `DiscardSink`: drops every record (Flink's `DiscardingSink`).
//!
//! For benchmarks, which measure the job rather than a destination, and for
//! jobs run only for their side effects.

use std::fmt;
use std::marker::PhantomData;

use eddy_engine::context::RuntimeContext;
use eddy_engine::element::{Data, Record};
use eddy_engine::error::BoxError;
use eddy_engine::sink::{Sink, SinkWriter};

/// A sink that accepts records and does nothing with them.
pub struct DiscardSink<T> {
    _in: PhantomData<fn(T)>,
}

impl<T> fmt::Debug for DiscardSink<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("DiscardSink")
    }
}

impl<T: Data> DiscardSink<T> {
    /// A sink that drops every record.
    pub fn new() -> Self {
        DiscardSink { _in: PhantomData }
    }
}

impl<T: Data> Default for DiscardSink<T> {
    fn default() -> Self {
        Self::new()
    }
}

impl<T: Data> Sink for DiscardSink<T> {
    type In = T;
    type Writer = DiscardWriter<T>;

    fn create_writer(&self, _ctx: &RuntimeContext) -> Result<Self::Writer, BoxError> {
        Ok(DiscardWriter { _in: PhantomData })
    }
}

/// The writer of a [`DiscardSink`].
pub struct DiscardWriter<T> {
    _in: PhantomData<fn(T)>,
}

impl<T: Data> SinkWriter for DiscardWriter<T> {
    type In = T;

    /// Leaves the records in `batch`; the runtime clears it (dropping them).
    fn write(&mut self, _batch: &mut Vec<Record<T>>) -> Result<(), BoxError> {
        Ok(())
    }

    fn finish(&mut self) -> Result<(), BoxError> {
        Ok(())
    }
}
