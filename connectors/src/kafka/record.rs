//! A Kafka record with its metadata, and turning a fetched message into
//! the source's output type.

use rdkafka::message::{BorrowedMessage, Headers, Message};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use crate::format::decode::Decoded;
use crate::format::{decode_message, Format};

/// A decoded value with the metadata of the Kafka record that carried it:
/// read with [`KafkaSourceBuilder::build_with_metadata`](super::KafkaSourceBuilder::build_with_metadata).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct KafkaRecord<T> {
    /// The record's key, if it has one.
    pub key: Option<Vec<u8>>,
    /// The decoded value.
    pub value: T,
    /// The topic it was read from.
    pub topic: String,
    /// Its partition.
    pub partition: i32,
    /// Its offset in the partition.
    pub offset: i64,
    /// Its Kafka timestamp (create or log-append time), ms since the epoch.
    pub timestamp: Option<i64>,
    /// Its headers, in order (a header without a value has an empty one).
    pub headers: Vec<(String, Vec<u8>)>,
}

/// Turns a fetched message into the source's output type.
pub(crate) type Decoder<O> = fn(&BorrowedMessage<'_>, Format) -> Decoded<O>;

/// Decodes the value alone.
pub(crate) fn decode_value<T: DeserializeOwned>(m: &BorrowedMessage<'_>, f: Format) -> Decoded<T> {
    decode_message(f, m.payload().unwrap_or_default())
}

/// Decodes the value and keeps the record's metadata.
pub(crate) fn decode_with_metadata<T: DeserializeOwned>(
    m: &BorrowedMessage<'_>,
    f: Format,
) -> Decoded<KafkaRecord<T>> {
    match decode_value::<T>(m, f) {
        Decoded::Value(value) => Decoded::Value(KafkaRecord {
            key: m.key().map(<[u8]>::to_vec),
            value,
            topic: m.topic().to_owned(),
            partition: m.partition(),
            offset: m.offset(),
            timestamp: m.timestamp().to_millis(),
            headers: m
                .headers()
                .map(|h| {
                    h.iter()
                        .map(|h| (h.key.to_owned(), h.value.unwrap_or_default().to_vec()))
                        .collect()
                })
                .unwrap_or_default(),
        }),
        Decoded::Blank => Decoded::Blank,
        Decoded::Invalid(reason) => Decoded::Invalid(reason),
    }
}
