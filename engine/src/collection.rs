//! A bounded source over an in-memory vector (Flink's `fromCollection`).
//! With parallelism `p` the items are dealt to `p` splits: split `i` reads
//! items `i, i+p, i+2p, …` in order.

use std::sync::Arc;

use serde::{Deserialize, Serialize};

use crate::context::RuntimeContext;
use crate::element::Data;
use crate::error::BoxError;
use crate::source::{Boundedness, ReadStatus, Source, SourceOutput, SourceReader, Split};

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

    fn splits(&self, parallelism: usize) -> Result<Vec<CollectionSplit>, BoxError> {
        let n = parallelism.max(1);
        Ok((0..n)
            .map(|index| CollectionSplit {
                next: index,
                stride: n,
                index,
            })
            .collect())
    }

    fn create_reader(&self, _ctx: &RuntimeContext) -> Result<CollectionReader<T>, BoxError> {
        Ok(CollectionReader {
            items: Arc::clone(&self.items),
            splits: Vec::new(),
            cursor: 0,
        })
    }
}

/// Reads the splits of a [`CollectionSource`] one after another.
pub struct CollectionReader<T> {
    items: Arc<Vec<T>>,
    splits: Vec<CollectionSplit>,
    cursor: usize,
}

impl<T: Data + Sync> SourceReader for CollectionReader<T> {
    type Out = T;
    type Split = CollectionSplit;

    fn add_splits(&mut self, splits: Vec<CollectionSplit>) -> Result<(), BoxError> {
        self.splits.extend(splits);
        Ok(())
    }

    fn poll_next(&mut self, out: &mut SourceOutput<'_, T>) -> Result<ReadStatus, BoxError> {
        // One batch per poll, from the splits in turn, so splits interleave.
        let (len, n) = (self.items.len(), self.splits.len());
        for step in 0..n {
            let i = (self.cursor + step) % n;
            let split = &mut self.splits[i];
            if split.next >= len {
                continue;
            }
            while split.next < len && out.room() > 0 {
                out.emit(i, self.items[split.next].clone());
                split.next += split.stride;
            }
            if split.next >= len {
                out.finish_split(i);
            }
            self.cursor = (i + 1) % n;
            return Ok(ReadStatus::MoreAvailable);
        }
        Ok(ReadStatus::Finished)
    }

    fn snapshot_splits(&self) -> Vec<CollectionSplit> {
        self.splits
            .iter()
            .filter(|s| s.next < self.items.len())
            .cloned()
            .collect()
    }
}
