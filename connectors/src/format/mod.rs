//! Record formats that are not tied to one connector.

pub mod debezium;
