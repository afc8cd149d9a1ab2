//! The typed DSL: [`Env`] builds a job from [`DataStream`]s and
//! [`KeyedStream`]s, explains it and runs it.

mod env;
mod keyed;
mod stream;

pub(crate) use env::short_type_name;
pub use env::{Env, JobControl};
pub use keyed::KeyedStream;
pub use stream::{DataStream, StreamSink, DEAD_LETTERS};
