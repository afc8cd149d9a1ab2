//! The runtime: tasks (one OS thread per subtask), the chains inside them,
//! the channels between them (local, or over TCP between workers), and the
//! executor that wires and runs a job graph.

pub(crate) mod chain;
pub(crate) mod cluster;
pub(crate) mod enumerator;
pub(crate) mod exchange;
pub(crate) mod executor;
pub(crate) mod loopback;
pub(crate) mod network;
pub(crate) mod placement;
pub(crate) mod source_task;
pub mod stats;
pub(crate) mod task;
pub(crate) mod tcp;
pub(crate) mod timestamps;
pub(crate) mod worker;
