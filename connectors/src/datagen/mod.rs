//! `DataGen`: a deterministic, seeded generator source (Flink's
//! `DataGeneratorSource`).
//!
//! The user gives a function from a record's index (and a random generator
//! seeded for that index) to the record. Record `k` depends only on the
//! source's seed and `k`, never on which subtask computes it, so a job's
//! output is the same at any parallelism and after a restore.
//!
//! ```
//! use eddy_connectors::datagen::{DataGen, SplitMix64};
//!
//! // A million readings from 100 sensors, at most 50 000 per second.
//! let readings = DataGen::new(|index: u64, rng: &mut SplitMix64| {
//!     (index % 100, rng.next_f64() * 40.0)
//! })
//! .with_count(1_000_000)
//! .with_seed(7)
//! .with_rate(50_000.0);
//! # let _ = readings;
//! ```
//!
//! # Splits and checkpointing
//! The indices are divided into [`IndexSplit`]s (by default one per reader
//! subtask): split `i` of `n` generates `i, i + n, i + 2n, …`. A split's
//! snapshot is its next index, so a restored job continues exactly where the
//! checkpoint was taken, at the same or another parallelism.
//!
//! # Event time
//! Records are emitted without a native timestamp: give the stream a
//! `WatermarkStrategy` with a timestamp assigner if it needs event time.

mod driver;
mod rate;
mod rng;
mod split;

use std::fmt;
use std::marker::PhantomData;
use std::sync::Arc;

use eddy_engine::context::RuntimeContext;
use eddy_engine::element::Data;
use eddy_engine::error::BoxError;
use eddy_engine::source::{
    Boundedness, FixedSplits, ReadStatus, Source, SourceOutput, SourceReader, SplitEnumerator,
};

pub(crate) use driver::IndexDriver;
pub use rng::SplitMix64;
pub use split::IndexSplit;

use crate::error::ConnectorError;

/// A source of `T`s computed from their index by a user function.
///
/// `F` is the generator function, `Fn(index, &mut SplitMix64) -> T`; it is
/// called once per record on the reader's thread and must be a pure function
/// of its arguments for the output to be deterministic.
pub struct DataGen<T, F> {
    generate: Arc<F>,
    seed: u64,
    count: Option<u64>,
    rate: Option<f64>,
    splits: Option<usize>,
    _out: PhantomData<fn() -> T>,
}

impl<T, F> fmt::Debug for DataGen<T, F> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DataGen")
            .field("seed", &self.seed)
            .field("count", &self.count)
            .field("rate", &self.rate)
            .field("splits", &self.splits)
            .finish_non_exhaustive()
    }
}

impl<T, F> DataGen<T, F>
where
    T: Data,
    F: Fn(u64, &mut SplitMix64) -> T + Send + Sync + 'static,
{
    /// An unbounded generator of `generate(index, rng)` for indices
    /// `0, 1, 2, …`, with seed 0, no rate limit and one split per subtask.
    pub fn new(generate: F) -> Self {
        DataGen {
            generate: Arc::new(generate),
            seed: 0,
            count: None,
            rate: None,
            splits: None,
            _out: PhantomData,
        }
    }

    /// Generates exactly `count` records (indices `0..count`), then ends:
    /// the source becomes bounded.
    pub fn with_count(mut self, count: u64) -> Self {
        self.count = Some(count);
        self
    }

    /// The seed that, with each index, seeds the per-record random generator
    /// (default 0).
    pub fn with_seed(mut self, seed: u64) -> Self {
        self.seed = seed;
        self
    }

    /// Emits at most `events_per_second` records per second of processing
    /// time, in total over all subtasks (each split gets an equal share).
    /// Must be positive and finite; checked when the job starts.
    pub fn with_rate(mut self, events_per_second: f64) -> Self {
        self.rate = Some(events_per_second);
        self
    }

    /// Divides the indices into `n` splits (default: one per reader subtask).
    /// More splits than subtasks lets a restore use a higher parallelism.
    pub fn with_splits(mut self, n: usize) -> Self {
        self.splits = Some(n);
        self
    }

    fn validate(&self) -> Result<(), ConnectorError> {
        validate_rate("DataGen::with_rate", self.rate)?;
        if self.splits == Some(0) {
            return Err(ConnectorError::config(
                "DataGen::with_splits",
                0,
                "must be at least 1",
            ));
        }
        Ok(())
    }
}

/// Checks an optional rate: positive and finite.
pub(crate) fn validate_rate(option: &'static str, rate: Option<f64>) -> Result<(), ConnectorError> {
    match rate {
        Some(r) if !(r.is_finite() && r > 0.0) => Err(ConnectorError::config(
            option,
            r,
            "must be a positive, finite number of events per second",
        )),
        _ => Ok(()),
    }
}

impl<T, F> Source for DataGen<T, F>
where
    T: Data,
    F: Fn(u64, &mut SplitMix64) -> T + Send + Sync + 'static,
{
    type Out = T;
    type Split = IndexSplit;
    type Reader = DataGenReader<T, F>;

    fn boundedness(&self) -> Boundedness {
        match self.count {
            Some(_) => Boundedness::Bounded,
            None => Boundedness::Unbounded,
        }
    }

    fn expected_records(&self) -> Option<u64> {
        self.count
    }

    fn create_enumerator(
        &self,
        parallelism: usize,
    ) -> Result<Box<dyn SplitEnumerator<IndexSplit>>, BoxError> {
        self.validate()?;
        let n = self.splits.unwrap_or(parallelism).max(1);
        Ok(FixedSplits::boxed(IndexSplit::all(n as u64)))
    }

    fn create_reader(&self, ctx: &RuntimeContext) -> Result<Self::Reader, BoxError> {
        self.validate()?;
        Ok(DataGenReader {
            generate: Arc::clone(&self.generate),
            seed: self.seed,
            driver: IndexDriver::new(self.count, self.rate, Arc::clone(ctx.clock())),
            _out: PhantomData,
        })
    }
}

/// The per-subtask reader of a [`DataGen`].
pub struct DataGenReader<T, F> {
    generate: Arc<F>,
    seed: u64,
    driver: IndexDriver,
    _out: PhantomData<fn() -> T>,
}

impl<T, F> SourceReader for DataGenReader<T, F>
where
    T: Data,
    F: Fn(u64, &mut SplitMix64) -> T + Send + Sync + 'static,
{
    type Out = T;
    type Split = IndexSplit;

    fn add_splits(&mut self, splits: Vec<IndexSplit>) -> Result<(), BoxError> {
        self.driver.add_splits(splits);
        Ok(())
    }

    fn poll_next(&mut self, out: &mut SourceOutput<'_, T>) -> Result<ReadStatus, BoxError> {
        let (generate, seed) = (&*self.generate, self.seed);
        Ok(self.driver.poll(out, |out, split, index| {
            let mut rng = SplitMix64::for_index(seed, index);
            out.emit(split, generate(index, &mut rng));
        }))
    }

    fn snapshot_splits(&self) -> Vec<IndexSplit> {
        self.driver.snapshot()
    }
}

/// The record `DataGen` with `seed` produces at `index`: exactly what a job
/// would emit for that index. For tests and hand-written reference loops.
pub fn generate_at<T>(seed: u64, index: u64, generate: impl Fn(u64, &mut SplitMix64) -> T) -> T {
    generate(index, &mut SplitMix64::for_index(seed, index))
}

#[cfg(test)]
mod tests {
    use eddy_engine::testing::initial_splits;

    use super::*;

    type Pairs = DataGen<(u64, u64), fn(u64, &mut SplitMix64) -> (u64, u64)>;

    fn pair(i: u64, rng: &mut SplitMix64) -> (u64, u64) {
        (i, rng.below(1_000))
    }

    fn source() -> Pairs {
        DataGen::new(pair)
    }

    #[test]
    fn the_value_at_an_index_depends_only_on_seed_and_index() {
        let f = |i: u64, rng: &mut SplitMix64| (i, rng.next_u64());
        assert_eq!(generate_at(1, 99, f), generate_at(1, 99, f));
        assert_ne!(generate_at(1, 99, f), generate_at(2, 99, f));
        // Computing other indices first changes nothing.
        let _ = generate_at(1, 98, f);
        assert_eq!(
            generate_at(1, 99, f).1,
            SplitMix64::for_index(1, 99).next_u64()
        );
    }

    #[test]
    fn a_count_makes_the_source_bounded() {
        assert_eq!(source().boundedness(), Boundedness::Unbounded);
        assert_eq!(source().with_count(5).boundedness(), Boundedness::Bounded);
    }

    #[test]
    fn there_is_one_split_per_subtask_unless_told_otherwise() {
        assert_eq!(initial_splits(&source(), 3).map(|s| s.len()).ok(), Some(3));
        assert_eq!(
            initial_splits(&source().with_splits(8), 3)
                .map(|s| s.len())
                .ok(),
            Some(8)
        );
    }

    #[test]
    fn zero_splits_and_bad_rates_are_rejected_with_the_option_name() {
        let e = initial_splits(&source().with_splits(0), 1)
            .err()
            .map(|e| e.to_string());
        assert!(e.is_some_and(|m| m.contains("DataGen::with_splits")));
        for bad in [0.0, -1.0, f64::NAN, f64::INFINITY] {
            let e = initial_splits(&source().with_rate(bad), 1)
                .err()
                .map(|e| e.to_string());
            assert!(e.is_some_and(|m| m.contains("DataGen::with_rate")), "{bad}");
        }
    }
}

#[cfg(test)]
mod resume_tests {
    use eddy_engine::clock::ManualClock;
    use eddy_engine::element::Timestamp;
    use eddy_engine::testing::{assert_resumes_exactly, read_resumed};

    use super::*;

    fn pair(i: u64, rng: &mut SplitMix64) -> (u64, u64) {
        (i, rng.below(1_000))
    }

    /// The values each split emitted, in order (`(index, _)` comes from
    /// split `index % splits`).
    fn per_split(values: &[(u64, u64)], splits: u64) -> Vec<Vec<(u64, u64)>> {
        (0..splits)
            .map(|s| {
                values
                    .iter()
                    .filter(|v| v.0 % splits == s)
                    .copied()
                    .collect()
            })
            .collect()
    }

    #[test]
    fn a_bounded_generator_resumes_from_any_snapshot() -> Result<(), BoxError> {
        // 5 splits of 23 records; 8 splits of 5 records leave 3 splits empty.
        for (count, splits) in [(23, 5), (5, 8), (7, 1)] {
            let source = DataGen::new(pair)
                .with_count(count)
                .with_seed(3)
                .with_splits(splits);
            for room in [1, 2, 3, 7, 100] {
                let cuts = assert_resumes_exactly(&source, room)?;
                let values: Vec<(u64, u64)> =
                    cuts[0].contents.records.iter().map(|r| r.value).collect();
                let mut indices: Vec<u64> = values.iter().map(|v| v.0).collect();
                indices.sort_unstable();
                assert_eq!(indices, (0..count).collect::<Vec<_>>());
                for v in &values {
                    assert_eq!(*v, generate_at(3, v.0, pair));
                }
                // Exhausted splits are never in a snapshot.
                for cut in &cuts {
                    assert!(cut.snapshot.iter().all(|s| s.next < count), "{cut:?}");
                }
            }
        }
        Ok(())
    }

    #[test]
    fn a_rate_limited_generator_resumes_from_any_snapshot() -> Result<(), BoxError> {
        // 100/s polled every 10 ms: one record a poll, so even the order
        // across splits is the same after a resume.
        let source = DataGen::new(pair)
            .with_count(12)
            .with_splits(3)
            .with_rate(100.0);
        let cuts = assert_resumes_exactly(&source, 5)?;
        assert!(cuts.iter().any(|c| c.before > 0 && !c.snapshot.is_empty()));

        // 1000/s: ten a poll, and a fresh reader's rate limit starts anew,
        // so the splits may interleave differently, but each split goes on
        // exactly where it stopped.
        let source = DataGen::new(pair)
            .with_count(60)
            .with_splits(3)
            .with_rate(1_000.0);
        let clock = ManualClock::new(Timestamp(0));
        let whole = read_resumed(&source, 4, usize::MAX, &clock)?;
        let whole: Vec<(u64, u64)> = whole.contents.records.iter().map(|r| r.value).collect();
        assert_eq!(whole.len(), 60);
        for polls in 0..40 {
            let clock = ManualClock::new(Timestamp(0));
            let resumed = read_resumed(&source, 4, polls, &clock)?;
            let got: Vec<(u64, u64)> = resumed.contents.records.iter().map(|r| r.value).collect();
            assert_eq!(
                per_split(&got, 3),
                per_split(&whole, 3),
                "after {polls} polls"
            );
        }
        Ok(())
    }

    #[test]
    fn a_snapshot_lists_the_split_whose_turn_is_next_first() -> Result<(), BoxError> {
        let source = DataGen::new(pair).with_count(30).with_splits(3);
        let clock = ManualClock::new(Timestamp(0));
        // One poll of room 2 takes index 0 from split 0 and 1 from split 1.
        let resumed = read_resumed(&source, 2, 1, &clock)?;
        let order: Vec<(u64, u64)> = resumed.snapshot.iter().map(|s| (s.index, s.next)).collect();
        assert_eq!(order, [(2, 2), (0, 3), (1, 4)]);
        Ok(())
    }
}
