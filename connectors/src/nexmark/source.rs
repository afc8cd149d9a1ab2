//! `NexmarkSource`: the Nexmark generator as a split-based source.

use std::sync::Arc;

use eddy_engine::context::RuntimeContext;
use eddy_engine::error::BoxError;
use eddy_engine::source::{
    Boundedness, FixedSplits, ReadStatus, Source, SourceOutput, SourceReader, SplitEnumerator,
};
use eddy_engine::time::WatermarkStrategy;

use super::config::NexmarkConfig;
use super::generator::NexmarkGenerator;
use super::model::Event;
use crate::datagen::{validate_rate, IndexDriver, IndexSplit};
use crate::error::ConnectorError;

/// A source of Nexmark [`Event`]s: event numbers `0, 1, 2, …` through a
/// shared [`NexmarkGenerator`].
///
/// Splits work as in [`DataGen`](crate::datagen::DataGen): split `i` of `n`
/// generates event numbers `i, i + n, …`, and a split's snapshot is its next
/// event number. Each event is emitted with its `date_time` as native
/// timestamp, so a job gets event time without a timestamp assigner;
/// [`NexmarkSource::watermarks`] gives the strategy under which no event is
/// late.
///
/// ```
/// use eddy_connectors::nexmark::{NexmarkConfig, NexmarkSource};
///
/// let source = NexmarkSource::new(NexmarkConfig::default())?
///     .with_events(10_000_000)
///     .with_rate(1_000_000.0);
/// let watermarks = source.watermarks(); // for `.assign_timestamps(..)`
/// # let _ = (source, watermarks);
/// # Ok::<(), eddy_connectors::error::ConnectorError>(())
/// ```
#[derive(Clone, Debug)]
pub struct NexmarkSource {
    generator: Arc<NexmarkGenerator>,
    events: Option<u64>,
    rate: Option<f64>,
    splits: Option<usize>,
}

impl NexmarkSource {
    /// An unbounded source of the events `config` describes, as fast as the
    /// job can take them, with one split per subtask.
    ///
    /// # Errors
    /// [`ConnectorError::InvalidConfig`] when a field of `config` is out of
    /// range.
    pub fn new(config: NexmarkConfig) -> Result<Self, ConnectorError> {
        Ok(NexmarkSource {
            generator: Arc::new(NexmarkGenerator::new(config)?),
            events: None,
            rate: None,
            splits: None,
        })
    }

    /// Generates exactly `n` events (event numbers `0..n`), then ends.
    pub fn with_events(mut self, n: u64) -> Self {
        self.events = Some(n);
        self
    }

    /// Emits at most `events_per_second` events per second of processing
    /// time, in total over all subtasks. Must be positive and finite; checked
    /// when the job starts.
    pub fn with_rate(mut self, events_per_second: f64) -> Self {
        self.rate = Some(events_per_second);
        self
    }

    /// Divides the event numbers into `n` splits (default: one per subtask).
    pub fn with_splits(mut self, n: usize) -> Self {
        self.splits = Some(n);
        self
    }

    /// The generator, to compute the same events outside a job.
    pub fn generator(&self) -> &Arc<NexmarkGenerator> {
        &self.generator
    }

    /// Bounded out-of-orderness of the configured `max_disorder`, on the
    /// events' own timestamps: every split emits event numbers in order, so
    /// no event is late under it.
    pub fn watermarks(&self) -> WatermarkStrategy<Event> {
        WatermarkStrategy::bounded_out_of_orderness(self.generator.config().max_disorder)
    }

    fn validate(&self) -> Result<(), ConnectorError> {
        validate_rate("NexmarkSource::with_rate", self.rate)?;
        if self.splits == Some(0) {
            return Err(ConnectorError::config(
                "NexmarkSource::with_splits",
                0,
                "must be at least 1",
            ));
        }
        Ok(())
    }
}

impl Source for NexmarkSource {
    type Out = Event;
    type Split = IndexSplit;
    type Reader = NexmarkReader;

    fn boundedness(&self) -> Boundedness {
        match self.events {
            Some(_) => Boundedness::Bounded,
            None => Boundedness::Unbounded,
        }
    }

    fn expected_records(&self) -> Option<u64> {
        self.events
    }

    fn create_enumerator(
        &self,
        parallelism: usize,
    ) -> Result<Box<dyn SplitEnumerator<IndexSplit>>, BoxError> {
        self.validate()?;
        let n = self.splits.unwrap_or(parallelism).max(1);
        Ok(FixedSplits::boxed(IndexSplit::all(n as u64)))
    }

    fn create_reader(&self, ctx: &RuntimeContext) -> Result<NexmarkReader, BoxError> {
        self.validate()?;
        Ok(NexmarkReader {
            generator: Arc::clone(&self.generator),
            driver: IndexDriver::new(self.events, self.rate, Arc::clone(ctx.clock())),
        })
    }
}

/// The per-subtask reader of a [`NexmarkSource`].
#[derive(Debug)]
pub struct NexmarkReader {
    generator: Arc<NexmarkGenerator>,
    driver: IndexDriver,
}

impl SourceReader for NexmarkReader {
    type Out = Event;
    type Split = IndexSplit;

    fn add_splits(&mut self, splits: Vec<IndexSplit>) -> Result<(), BoxError> {
        self.driver.add_splits(splits);
        Ok(())
    }

    fn poll_next(&mut self, out: &mut SourceOutput<'_, Event>) -> Result<ReadStatus, BoxError> {
        let generator = &*self.generator;
        Ok(self.driver.poll(out, |out, split, n| {
            let event = generator.event(n);
            let ts = event.date_time();
            out.emit_at(split, event, ts);
        }))
    }

    fn snapshot_splits(&self) -> Vec<IndexSplit> {
        self.driver.snapshot()
    }
}

#[cfg(test)]
mod tests {
    use eddy_engine::testing::{assert_resumes_exactly, initial_splits};

    use super::*;

    #[test]
    fn a_reader_resumed_from_any_snapshot_emits_the_same_events_and_times() -> Result<(), BoxError>
    {
        let config = NexmarkConfig {
            seed: 11,
            ..NexmarkConfig::default()
        };
        for splits in [1, 3] {
            let source = NexmarkSource::new(config.clone())?
                .with_events(120)
                .with_splits(splits);
            for room in [1, 7, 50] {
                let cuts = assert_resumes_exactly(&source, room)?;
                let whole = &cuts[0].contents.records;
                assert_eq!(whole.len(), 120);
                let generator = source.generator();
                for r in whole {
                    let n = (0..120)
                        .find(|&n| generator.event(n) == r.value)
                        .ok_or("an event the generator does not make")?;
                    assert_eq!(r.ts, generator.timestamp(n));
                }
            }
        }
        // Rate-limited: one event per 10 ms poll.
        let source = NexmarkSource::new(config)?
            .with_events(20)
            .with_splits(2)
            .with_rate(100.0);
        assert_resumes_exactly(&source, 4)?;
        Ok(())
    }

    #[test]
    fn a_source_with_an_event_count_is_bounded() {
        let s = NexmarkSource::new(NexmarkConfig::default()).expect("valid");
        assert_eq!(s.boundedness(), Boundedness::Unbounded);
        assert_eq!(s.with_events(10).boundedness(), Boundedness::Bounded);
    }

    #[test]
    fn an_invalid_config_or_rate_is_rejected_with_its_name() {
        let bad = NexmarkConfig {
            events_per_second: 0,
            ..NexmarkConfig::default()
        };
        let e = NexmarkSource::new(bad).err().map(|e| e.to_string());
        assert!(e.is_some_and(|m| m.contains("events_per_second")));
        let s = NexmarkSource::new(NexmarkConfig::default()).expect("valid");
        let e = initial_splits(&s.with_rate(-5.0), 2)
            .err()
            .map(|e| e.to_string());
        assert!(e.is_some_and(|m| m.contains("NexmarkSource::with_rate")));
    }
}
