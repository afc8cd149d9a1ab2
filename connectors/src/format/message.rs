//! Decoding one message (a Kafka record's value) in a chosen [`Format`].

use serde::de::value::StrDeserializer;
use serde::de::DeserializeOwned;
use serde::Deserialize;

use super::decode::{decode_csv_positional, decode_json_line, Decoded};

/// How a message's bytes become a record.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum Format {
    /// One JSON value per message (default).
    #[default]
    Json,
    /// One CSV row per message, decoded by position: the record type's
    /// fields in declaration order (messages carry no header row).
    Csv,
    /// The message as UTF-8 text, into any type that deserializes from a
    /// string (`String`, or a unit-variant enum). Not UTF-8: a dead letter.
    Raw,
    /// A Debezium change event as JSON, with or without the schema envelope
    /// (`{"schema": …, "payload": {…}}`): decode into
    /// [`Change<V>`](super::debezium::Change).
    Debezium,
}

impl Format {
    /// The format's name in messages.
    pub fn name(self) -> &'static str {
        match self {
            Format::Json => "JSON",
            Format::Csv => "CSV",
            Format::Raw => "raw text",
            Format::Debezium => "Debezium JSON",
        }
    }
}

/// The schema envelope of Debezium's JSON converter with schemas enabled.
#[derive(Deserialize)]
struct Envelope<T> {
    payload: T,
}

/// Decodes one message. An empty message decodes as `Blank` in the JSON
/// formats (a tombstone carries no value).
pub(crate) fn decode_message<T: DeserializeOwned>(format: Format, bytes: &[u8]) -> Decoded<T> {
    match format {
        Format::Json => decode_json_line(bytes),
        Format::Debezium => match decode_json_line::<serde_json::Value>(bytes) {
            Decoded::Value(v) if v.get("payload").is_some() && v.get("schema").is_some() => {
                match serde_json::from_value::<Envelope<T>>(v) {
                    Ok(e) => Decoded::Value(e.payload),
                    Err(e) => Decoded::Invalid(e.to_string()),
                }
            }
            Decoded::Value(v) => match serde_json::from_value(v) {
                Ok(t) => Decoded::Value(t),
                Err(e) => Decoded::Invalid(e.to_string()),
            },
            Decoded::Blank => Decoded::Blank,
            Decoded::Invalid(reason) => Decoded::Invalid(reason),
        },
        Format::Csv => {
            let mut reader = csv::ReaderBuilder::new()
                .has_headers(false)
                .from_reader(bytes);
            let mut record = csv::ByteRecord::new();
            match reader.read_byte_record(&mut record) {
                Ok(true) => decode_csv_positional(&record),
                Ok(false) => Decoded::Blank,
                Err(e) => Decoded::Invalid(e.to_string()),
            }
        }
        Format::Raw => match std::str::from_utf8(bytes) {
            Ok(text) => {
                let de = StrDeserializer::<serde::de::value::Error>::new(text);
                match T::deserialize(de) {
                    Ok(v) => Decoded::Value(v),
                    Err(e) => Decoded::Invalid(e.to_string()),
                }
            }
            Err(e) => Decoded::Invalid(format!("not UTF-8: {e}")),
        },
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;
    use serde::Deserialize;

    use super::*;
    use crate::format::debezium::{Change, ChangeOp};

    #[derive(Debug, Clone, PartialEq, Deserialize, serde::Serialize)]
    struct Order {
        id: u64,
        item: String,
        amount: f64,
    }

    fn order() -> Order {
        Order {
            id: 7,
            item: "tea".into(),
            amount: 2.5,
        }
    }

    #[test]
    fn every_format_decodes_its_own_encoding() {
        let json = br#"{"id":7,"item":"tea","amount":2.5}"#;
        assert_eq!(
            decode_message::<Order>(Format::Json, json),
            Decoded::Value(order())
        );
        assert_eq!(
            decode_message::<Order>(Format::Csv, b"7,tea,2.5"),
            Decoded::Value(order())
        );
        assert_eq!(
            decode_message::<String>(Format::Raw, "héllo".as_bytes()),
            Decoded::Value("héllo".to_owned())
        );
        let change =
            br#"{"before":null,"after":{"id":7,"item":"tea","amount":2.5},"op":"c","ts_ms":5}"#;
        let wrapped = format!(
            r#"{{"schema":{{"type":"struct"}},"payload":{}}}"#,
            std::str::from_utf8(change).unwrap_or_default()
        );
        for bytes in [&change[..], wrapped.as_bytes()] {
            let Decoded::Value(c) = decode_message::<Change<Order>>(Format::Debezium, bytes) else {
                panic!("a Debezium event must decode");
            };
            assert_eq!(
                (c.op, c.after, c.ts_ms),
                (ChangeOp::Create, Some(order()), Some(5))
            );
        }
    }

    #[test]
    fn raw_bytes_that_are_not_text_are_rejected() {
        assert!(matches!(
            decode_message::<String>(Format::Raw, b"\xFF\xFE"),
            Decoded::Invalid(_)
        ));
    }

    fn formats() -> impl Strategy<Value = Format> {
        prop_oneof![
            Just(Format::Json),
            Just(Format::Csv),
            Just(Format::Raw),
            Just(Format::Debezium)
        ]
    }

    proptest! {
        /// Random bytes never panic a decoder: they decode or are rejected.
        #[test]
        fn random_bytes_never_panic(format in formats(), bytes in proptest::collection::vec(any::<u8>(), 0..200)) {
            let _ = decode_message::<Order>(format, &bytes);
            let _ = decode_message::<Change<Order>>(format, &bytes);
            let _ = decode_message::<String>(format, &bytes);
        }

        /// A valid record cut short or with a byte changed is either still a
        /// valid record or rejected; never a panic, never silently blank.
        #[test]
        fn damaged_records_are_rejected_not_lost(cut in 1usize..30, flip in 0usize..60, byte in any::<u8>()) {
            let json = serde_json::to_vec(&order()).unwrap_or_default();
            let csv = b"7,tea,2.5".to_vec();
            for (format, good) in [(Format::Json, json), (Format::Csv, csv)] {
                let truncated = &good[..good.len().saturating_sub(cut).max(1)];
                let mut garbled = good.clone();
                let at = flip % garbled.len();
                garbled[at] = byte;
                for bad in [truncated.to_vec(), garbled] {
                    match decode_message::<Order>(format, &bad) {
                        Decoded::Value(_) | Decoded::Invalid(_) => {}
                        Decoded::Blank => prop_assert!(bad.iter().all(|b| b.is_ascii_whitespace() || *b == b'\n'), "{:?}", bad),
                    }
                }
            }
        }
    }
}
