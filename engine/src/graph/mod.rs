//! From program to tasks: the stream graph as written by the DSL, the job
//! graph with operators chained into vertices, and its printed form
//! ([`explain`]).

pub(crate) mod erased;
pub mod explain;
pub(crate) mod job;
pub(crate) mod stream;

pub use erased::Partitioning;
pub use explain::Explain;
