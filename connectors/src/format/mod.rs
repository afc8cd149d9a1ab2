//! Record formats shared by the connectors: decoding of JSON, CSV (by
//! header or by position), raw text and Debezium change events, for files
//! (a line or row at a time) and message queues (a message at a time).

pub mod debezium;
pub(crate) mod decode;
mod message;

pub(crate) use message::decode_message;
pub use message::Format;
