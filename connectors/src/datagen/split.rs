//! Index splits: how generator sources divide a sequence of record indices.
//!
//! Split `i` of `n` owns the indices `i, i + n, i + 2n, …` below the source's
//! count (or without end when the source is unbounded). Because a record is a
//! pure function of its index, the union of all splits is the same data set
//! at any number of splits or subtasks; only the interleaving differs.
//!
//! A split's state is the next index it will produce, so a snapshot of a
//! split is a split that resumes exactly where the reader stopped.

use eddy_engine::source::Split;
use serde::{Deserialize, Serialize};

/// One strided share of a generator's indices, and how far it has got.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct IndexSplit {
    /// This split's number, `0..of`.
    pub index: u64,
    /// How many splits the indices are divided into (the stride).
    pub of: u64,
    /// The next index this split produces.
    pub next: u64,
}

impl IndexSplit {
    /// The `n` splits of a sequence, each at its start.
    pub fn all(n: u64) -> Vec<IndexSplit> {
        (0..n)
            .map(|index| IndexSplit {
                index,
                of: n,
                next: index,
            })
            .collect()
    }
}

impl Split for IndexSplit {
    fn id(&self) -> String {
        format!("{}-of-{}", self.index, self.of)
    }
}

/// A run of indices from one split: `first, first + step, …` (`len` of them).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Chunk {
    /// The split's position in the reader's list of splits.
    pub split: usize,
    /// The first index.
    pub first: u64,
    /// The distance between indices.
    pub step: u64,
    /// How many indices (may be 0 when the split was already exhausted).
    pub len: u64,
    /// The split has nothing left after this chunk.
    pub exhausted: bool,
}

impl Chunk {
    /// The indices of this chunk.
    pub fn indices(&self) -> impl Iterator<Item = u64> {
        let (first, step) = (self.first, self.step);
        // `first + j * step` cannot overflow: the cursor only hands out
        // indices that exist.
        (0..self.len).map(move |j| first + j * step)
    }
}

#[derive(Clone, Debug)]
struct Cursor {
    split: IndexSplit,
    done: bool,
}

/// Hands out the indices of a reader's splits in round-robin chunks.
#[derive(Clone, Debug)]
pub(crate) struct IndexCursor {
    /// Indices at or above this do not exist; `None`: unbounded.
    count: Option<u64>,
    splits: Vec<Cursor>,
    /// Where the round-robin scan resumes.
    turn: usize,
}

impl IndexCursor {
    /// A cursor over no splits yet, for a sequence of `count` indices.
    pub fn new(count: Option<u64>) -> Self {
        IndexCursor {
            count,
            splits: Vec::new(),
            turn: 0,
        }
    }

    /// Appends splits; their positions continue after those added before.
    pub fn add_splits(&mut self, splits: Vec<IndexSplit>) {
        self.splits.extend(
            splits
                .into_iter()
                .map(|split| Cursor { split, done: false }),
        );
    }

    /// The splits added so far (finished or not).
    pub fn splits(&self) -> impl Iterator<Item = &IndexSplit> {
        self.splits.iter().map(|c| &c.split)
    }

    /// How many indices `split` still has, from its `next`.
    fn remaining(&self, split: &IndexSplit) -> u64 {
        let (first, step) = (split.next, split.of.max(1));
        match self.count {
            Some(count) if first >= count => 0,
            Some(count) => (count - 1 - first) / step + 1,
            None => (u64::MAX - first) / step + 1,
        }
    }

    /// The number of splits with indices left. (A split that never had any
    /// is not finished until its turn comes, but takes no share of a poll:
    /// so a reader resumed without it plans its polls the same way.)
    pub fn active(&self) -> usize {
        self.splits
            .iter()
            .filter(|c| !c.done && self.remaining(&c.split) > 0)
            .count()
    }

    /// Every split is exhausted (true for a reader without splits).
    pub fn is_finished(&self) -> bool {
        self.splits.iter().all(|c| c.done)
    }

    /// The splits with indices left, at their current positions, starting
    /// with the one whose turn is next: a cursor given them hands out the
    /// remaining indices in the same order as this one.
    pub fn snapshot(&self) -> Vec<IndexSplit> {
        let n = self.splits.len();
        (0..n)
            .map(|k| &self.splits[(self.turn + k) % n])
            .filter(|c| !c.done && self.remaining(&c.split) > 0)
            .map(|c| c.split.clone())
            .collect()
    }

    /// Takes up to `max_len` indices from the next unfinished split in turn,
    /// or `None` when all are exhausted. A split that has run out is returned
    /// once with `exhausted` set (possibly with `len == 0`), then skipped.
    pub fn next_chunk(&mut self, max_len: u64) -> Option<Chunk> {
        let n = self.splits.len();
        let at = (0..n)
            .map(|k| (self.turn + k) % n)
            .find(|&i| !self.splits[i].done)?;
        self.turn = (at + 1) % n;
        let remaining = self.remaining(&self.splits[at].split);
        let cursor = &mut self.splits[at];
        let step = cursor.split.of.max(1);
        let first = cursor.split.next;
        let len = max_len.min(remaining);
        let exhausted = len == remaining;
        cursor.split.next = first.saturating_add(len.saturating_mul(step));
        cursor.done = exhausted;
        Some(Chunk {
            split: at,
            first,
            step,
            len,
            exhausted,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn drain(cursor: &mut IndexCursor, max_len: u64) -> Vec<(usize, u64)> {
        let mut out = Vec::new();
        while let Some(chunk) = cursor.next_chunk(max_len) {
            out.extend(chunk.indices().map(|i| (chunk.split, i)));
        }
        out
    }

    #[test]
    fn split_i_of_n_produces_every_nth_index_below_the_count() {
        let mut c = IndexCursor::new(Some(10));
        c.add_splits(IndexSplit::all(3));
        let got = drain(&mut c, 2);
        let of = |s| -> Vec<u64> { got.iter().filter(|g| g.0 == s).map(|g| g.1).collect() };
        assert_eq!(of(0), [0, 3, 6, 9]);
        assert_eq!(of(1), [1, 4, 7]);
        assert_eq!(of(2), [2, 5, 8]);
        assert!(c.is_finished());
        assert!(c.snapshot().is_empty());
    }

    #[test]
    fn the_union_of_all_splits_is_the_same_at_any_split_count() {
        for n in 1..=7 {
            let mut c = IndexCursor::new(Some(50));
            c.add_splits(IndexSplit::all(n));
            let mut got: Vec<u64> = drain(&mut c, 4).into_iter().map(|g| g.1).collect();
            got.sort_unstable();
            assert_eq!(got, (0..50).collect::<Vec<_>>(), "{n} splits");
        }
    }

    #[test]
    fn chunks_rotate_between_splits() {
        let mut c = IndexCursor::new(None);
        c.add_splits(IndexSplit::all(2));
        let splits: Vec<usize> = (0..4)
            .filter_map(|_| c.next_chunk(1).map(|k| k.split))
            .collect();
        assert_eq!(splits, [0, 1, 0, 1]);
    }

    #[test]
    fn an_exhausted_split_is_reported_once_then_skipped() {
        let mut c = IndexCursor::new(Some(2));
        c.add_splits(IndexSplit::all(4));
        let chunks: Vec<Chunk> = std::iter::from_fn(|| c.next_chunk(10)).collect();
        assert_eq!(chunks.len(), 4);
        assert!(chunks.iter().all(|k| k.exhausted));
        assert_eq!(chunks[2].len, 0);
        assert_eq!(chunks[3].len, 0);
        assert!(c.next_chunk(10).is_none());
    }

    #[test]
    fn a_snapshot_resumes_where_the_reader_stopped() {
        let mut c = IndexCursor::new(Some(20));
        c.add_splits(IndexSplit::all(2));
        let mut before: Vec<u64> = (0..3)
            .filter_map(|_| c.next_chunk(3))
            .flat_map(|k| k.indices().collect::<Vec<_>>())
            .collect();
        let snap = c.snapshot();
        let mut resumed = IndexCursor::new(Some(20));
        resumed.add_splits(snap);
        before.extend(drain(&mut resumed, 5).into_iter().map(|g| g.1));
        before.sort_unstable();
        assert_eq!(before, (0..20).collect::<Vec<_>>());
    }

    #[test]
    fn an_unbounded_split_never_overflows() {
        let mut c = IndexCursor::new(None);
        c.add_splits(vec![IndexSplit {
            index: 0,
            of: 2,
            next: u64::MAX - 3,
        }]);
        let chunk = c.next_chunk(100).expect("one split");
        assert_eq!(chunk.len, 2);
        assert!(chunk.exhausted);
        assert_eq!(
            chunk.indices().collect::<Vec<_>>(),
            [u64::MAX - 3, u64::MAX - 1]
        );
    }
}
