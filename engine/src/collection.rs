//! A bounded source over an in-memory vector (Flink's `fromCollection`).
//! With parallelism `p` the items are dealt to `p` splits: split `i` reads
//! items `i, i+p, i+2p, …` in order.

use std::sync::Arc;

use serde::{Deserialize, Serialize};

use crate::context::RuntimeContext;
use crate::element::Data;
use crate::error::BoxError;
use crate::source::{
    Boundedness, FixedSplits, ReadStatus, Source, SourceOutput, SourceReader, Split,
    SplitEnumerator,
};

/// A source reading a shared vector.
pub struct CollectionSource<T> {
    items: Arc<Vec<T>>,
}

impl<T> CollectionSource<T> {
    /// A source over `items`.
    pub fn new(items: Vec<T>) -> Self {
        CollectionSource {
            items: Arc::new(items),
        }
    }
}

/// Items `next, next+stride, …` of the collection.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct CollectionSplit {
    /// Index of the next item to read.
    pub next: usize,
    /// Distance between items of this split.
    pub stride: usize,
    /// Split number (for its id).
    pub index: usize,
}

impl Split for CollectionSplit {
    fn id(&self) -> String {
        format!("collection-{}", self.index)
    }
}

impl<T: Data + Sync> Source for CollectionSource<T> {
    type Out = T;
    type Split = CollectionSplit;
    type Reader = CollectionReader<T>;

    fn boundedness(&self) -> Boundedness {
        Boundedness::Bounded
    }

    fn expected_records(&self) -> Option<u64> {
        Some(self.items.len() as u64)
    }

    fn create_enumerator(
        &self,
        parallelism: usize,
    ) -> Result<Box<dyn SplitEnumerator<CollectionSplit>>, BoxError> {
        let n = parallelism.max(1);
        Ok(FixedSplits::boxed(
            (0..n)
                .map(|index| CollectionSplit {
                    next: index,
                    stride: n,
                    index,
                })
                .collect(),
        ))
    }

    fn create_reader(&self, _ctx: &RuntimeContext) -> Result<CollectionReader<T>, BoxError> {
        Ok(CollectionReader {
            items: Arc::clone(&self.items),
            splits: Vec::new(),
            cursor: 0,
        })
    }
}

/// A split of a [`CollectionReader`] and whether it has been finished.
#[derive(Debug)]
struct SplitState {
    split: CollectionSplit,
    done: bool,
}

/// Reads the splits of a [`CollectionSource`]: each poll fills the batch
/// from one split, taking the unfinished splits in turn.
///
/// A snapshot lists the unfinished splits starting with the one whose turn
/// is next, so a reader resumed from it emits the remaining items in the
/// same order this one would have.
pub struct CollectionReader<T> {
    items: Arc<Vec<T>>,
    splits: Vec<SplitState>,
    /// The split whose turn is next.
    cursor: usize,
}

impl<T: Data + Sync> SourceReader for CollectionReader<T> {
    type Out = T;
    type Split = CollectionSplit;

    fn add_splits(&mut self, splits: Vec<CollectionSplit>) -> Result<(), BoxError> {
        self.splits.extend(
            splits
                .into_iter()
                .map(|split| SplitState { split, done: false }),
        );
        Ok(())
    }

    fn poll_next(&mut self, out: &mut SourceOutput<'_, T>) -> Result<ReadStatus, BoxError> {
        let (len, n) = (self.items.len(), self.splits.len());
        let Some(i) = (0..n)
            .map(|step| (self.cursor + step) % n)
            .find(|&i| !self.splits[i].done)
        else {
            return Ok(ReadStatus::Finished);
        };
        if out.room() == 0 {
            // A full batch: the turn stays with this split.
            return Ok(ReadStatus::MoreAvailable);
        }
        let state = &mut self.splits[i];
        // A deserialised split could carry stride 0; never loop in place.
        let stride = state.split.stride.max(1);
        while state.split.next < len && out.room() > 0 {
            out.emit(i, self.items[state.split.next].clone());
            state.split.next = state.split.next.saturating_add(stride);
        }
        if state.split.next >= len {
            // Also for a split that had no items at all: it must not hold
            // the watermark back.
            state.done = true;
            out.finish_split(i);
        }
        self.cursor = (i + 1) % n;
        Ok(if self.splits.iter().all(|s| s.done) {
            ReadStatus::Finished
        } else {
            ReadStatus::MoreAvailable
        })
    }

    fn snapshot_splits(&self) -> Vec<CollectionSplit> {
        let n = self.splits.len();
        (0..n)
            .map(|step| &self.splits[(self.cursor + step) % n])
            .filter(|s| !s.done && s.split.next < self.items.len())
            .map(|s| s.split.clone())
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clock::ManualClock;
    use crate::element::Timestamp;
    use crate::testing::{assert_resumes_exactly, initial_splits, read_resumed, read_source};

    #[test]
    fn every_item_is_read_once_at_any_parallelism() -> Result<(), BoxError> {
        for p in 1..=5 {
            let source = CollectionSource::new((0..7).collect::<Vec<u32>>());
            let mut got: Vec<u32> = read_source(&source, p, None)?
                .records
                .into_iter()
                .map(|r| r.value)
                .collect();
            got.sort_unstable();
            assert_eq!(got, (0..7).collect::<Vec<_>>(), "parallelism {p}");
        }
        Ok(())
    }

    /// A collection source with chosen splits.
    struct WithSplits(CollectionSource<u32>, Vec<CollectionSplit>);

    impl Source for WithSplits {
        type Out = u32;
        type Split = CollectionSplit;
        type Reader = CollectionReader<u32>;

        fn boundedness(&self) -> Boundedness {
            Boundedness::Bounded
        }

        fn create_enumerator(
            &self,
            _parallelism: usize,
        ) -> Result<Box<dyn SplitEnumerator<CollectionSplit>>, BoxError> {
            Ok(FixedSplits::boxed(self.1.clone()))
        }

        fn create_reader(&self, ctx: &RuntimeContext) -> Result<CollectionReader<u32>, BoxError> {
            self.0.create_reader(ctx)
        }
    }

    #[test]
    fn a_resumed_reader_continues_exactly_where_the_snapshot_was_taken() -> Result<(), BoxError> {
        // Splits of 4, 3, 3 and 0 items (the last one starts past the end).
        let splits = (0..4)
            .map(|index| CollectionSplit {
                next: if index == 3 { 10 } else { index },
                stride: 3,
                index,
            })
            .collect();
        let source = WithSplits(CollectionSource::new((0..10).collect()), splits);
        for room in [1, 2, 3, 5] {
            let cuts = assert_resumes_exactly(&source, room)?;
            let whole = &cuts[0].contents.records;
            let mut values: Vec<u32> = whole.iter().map(|r| r.value).collect();
            values.sort_unstable();
            assert_eq!(values, (0..10).collect::<Vec<_>>());
            assert!(cuts
                .iter()
                .all(|cut| cut.snapshot.iter().all(|s| s.next < 10)));
        }
        Ok(())
    }

    #[test]
    fn a_split_without_items_is_finished_and_never_snapshotted() -> Result<(), BoxError> {
        let source = CollectionSource::new(vec![1u32]);
        let clock = ManualClock::new(Timestamp(0));
        let mut splits = initial_splits(&source, 3)?;
        splits.rotate_left(1); // the empty splits first
        let source = WithSplits(source, splits);
        let resumed = read_resumed(&source, 10, 1, &clock)?;
        assert_eq!(resumed.snapshot.len(), 1);
        assert_eq!(resumed.before, 0);
        assert_eq!(resumed.contents.records.len(), 1);
        Ok(())
    }
}
