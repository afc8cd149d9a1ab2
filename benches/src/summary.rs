//! Order-independent summaries of a query's results, so that the engine's
//! output can be checked against the loop's without keeping either.
//!
//! A [`Summary`] counts results, sums one number per result (a count or a
//! price, readable in the output) and sums a 64-bit digest of every result's
//! fields (wrapping). Sums do not depend on the order results arrive in, so
//! two runs that produce the same multiset of results have equal summaries.

use std::fmt;
use std::marker::PhantomData;
use std::sync::{Arc, Mutex};

use eddy::prelude::*;

/// Count, total and digest of a multiset of results.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Summary {
    /// Number of results.
    pub results: u64,
    /// Sum of each result's number (see the query for which one).
    pub total: u64,
    /// Wrapping sum of each result's digest.
    pub digest: u64,
}

impl Summary {
    /// Adds one result with `digest` and `number`.
    #[inline]
    pub fn add(&mut self, digest: u64, number: u64) {
        self.results += 1;
        self.total = self.total.wrapping_add(number);
        self.digest = self.digest.wrapping_add(digest);
    }

    fn merge(&mut self, other: Summary) {
        self.results += other.results;
        self.total = self.total.wrapping_add(other.total);
        self.digest = self.digest.wrapping_add(other.digest);
    }
}

impl fmt::Display for Summary {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} results, total {}, digest {:016x}",
            self.results, self.total, self.digest
        )
    }
}

/// A 64-bit digest of a few numbers (SplitMix64's finaliser, chained).
#[inline]
pub fn digest(parts: &[u64]) -> u64 {
    let mut h = 0x9E37_79B9_7F4A_7C15u64;
    for &p in parts {
        let mut z = (h ^ p).wrapping_add(0x9E37_79B9_7F4A_7C15);
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        h = z ^ (z >> 31);
    }
    h
}

/// How a result turns into `(digest, number)` for its summary.
pub type Summarize<T> = fn(&T) -> (u64, u64);

/// A sink that keeps only the [`Summary`] of what it receives.
pub struct SummarySink<T> {
    summarize: Summarize<T>,
    shared: Arc<Mutex<Summary>>,
}

impl<T: Data> SummarySink<T> {
    /// A sink summarising with `summarize`, and the handle to read the
    /// summary after the job.
    pub fn new(summarize: Summarize<T>) -> (Self, Arc<Mutex<Summary>>) {
        let shared = Arc::new(Mutex::new(Summary::default()));
        let sink = SummarySink {
            summarize,
            shared: Arc::clone(&shared),
        };
        (sink, shared)
    }
}

impl<T: Data> Sink for SummarySink<T> {
    type In = T;
    type Writer = SummaryWriter<T>;

    fn create_writer(
        &self,
        _ctx: &RuntimeContext,
    ) -> Result<Self::Writer, eddy::engine::error::BoxError> {
        Ok(SummaryWriter {
            summarize: self.summarize,
            local: Summary::default(),
            shared: Arc::clone(&self.shared),
            _in: PhantomData,
        })
    }
}

/// One subtask's writer: summarises locally, publishes at the end.
pub struct SummaryWriter<T> {
    summarize: Summarize<T>,
    local: Summary,
    shared: Arc<Mutex<Summary>>,
    _in: PhantomData<fn(T)>,
}

impl<T: Data> SinkWriter for SummaryWriter<T> {
    type In = T;

    fn write(&mut self, batch: &mut Vec<Record<T>>) -> Result<(), eddy::engine::error::BoxError> {
        for record in batch.iter() {
            let (d, n) = (self.summarize)(&record.value);
            self.local.add(d, n);
        }
        Ok(())
    }

    fn finish(&mut self) -> Result<(), eddy::engine::error::BoxError> {
        let mut shared = self.shared.lock().map_err(|_| "summary sink poisoned")?;
        shared.merge(std::mem::take(&mut self.local));
        Ok(())
    }
}
