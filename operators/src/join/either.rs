//! `Either`: a record of one of two inputs, as a two-input operator sees it.

use serde::{Deserialize, Serialize};

/// A record from the first (`Left`) or the second (`Right`) input of a
/// connected pair of streams.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub enum Either<A, B> {
    /// From the first input.
    Left(A),
    /// From the second input.
    Right(B),
}
